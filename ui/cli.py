"""`speclm chat`: serve the Gradio chat on a local port.

Offline by default: no gradio.live share link and no analytics (GRADIO_ANALYTICS_ENABLED=False is
set before gradio is imported). gradio and the model are imported inside the handler so that
`speclm --help` stays fast.
"""
from __future__ import annotations

import argparse
import os
import sys

from speclm.tools.errors import ConfigError


def _yes_no(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("yes", "y", "true", "1", "on"):
        return True
    if v in ("no", "n", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")


def register(subparsers) -> None:
    from speclm.ui.app import ChatConfig

    h = ChatConfig.field_help()
    d = ChatConfig()
    p = subparsers.add_parser("chat", help="serve the chat UI (Gradio) on a local port",
                              description=__doc__.splitlines()[0])
    ChatConfig.add_arguments(p, ("port", "host", "max_upload_mb", "concurrency"))  # help and defaults from the fields
    from speclm.agent.ask_cli import ASSISTANT_OPTIONS
    from speclm.agent.config import AgentConfig

    AgentConfig.add_arguments(p, ASSISTANT_OPTIONS)  # the assistant's options: the same as `ask` and `demo`
    p.add_argument("--examples", type=int, default=d.n_simulated_examples, dest="n_simulated_examples",
                   metavar="N", help=h["n_simulated_examples"] + f" (default {d.n_simulated_examples})")
    p.add_argument("--share", type=_yes_no, default=False, metavar="{yes,no}", help=h["share"])
    p.set_defaults(func=_chat)


def _chat(args) -> int:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_SERVER_NAME", args.host)
    from speclm.agent.config import AgentConfig
    from speclm.ui.app import ChatConfig, default_checkpoint_db, launch, make_assistant

    try:
        agent = AgentConfig.from_args(args)
        if args.checkpoint_db == AgentConfig.checkpoint_db:  # the chat keeps its threads in the cache dir
            agent.checkpoint_db = default_checkpoint_db()
        cfg = ChatConfig.from_args(args, agent=agent)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None
    a = cfg.agent
    print(f"speclm chat: loading base={a.base} adapter={a.adapter} ({a.adapter_mode}), planner {a.planner} …", flush=True)
    assistant = make_assistant(cfg)
    if a.backend == "local":
        assistant.runtime  # load now: a wrong --base fails here as one line, not in the chat
        adapter_error = getattr(assistant.backend, "adapter_error", None)
        if adapter_error:  # chat still works without the adapter; spectra turns will say why not
            print(f"speclm chat: warning: {adapter_error}", file=sys.stderr, flush=True)
    launch(cfg, assistant=assistant, block=True)
    return 0
