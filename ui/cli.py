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
    ChatConfig.add_arguments(p, ("port", "host", "base", "adapter", "adapter_mode", "backend", "checkpoint_db",
                                 "max_upload_mb", "concurrency"))  # help and defaults from the fields
    p.add_argument("--examples", type=int, default=d.n_simulated_examples, dest="n_simulated_examples",
                   metavar="N", help=h["n_simulated_examples"] + f" (default {d.n_simulated_examples})")
    p.add_argument("--share", type=_yes_no, default=False, metavar="{yes,no}", help=h["share"])
    p.set_defaults(func=_chat)


def _chat(args) -> int:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_SERVER_NAME", args.host)
    from speclm.ui.app import ChatConfig, launch, make_assistant

    try:
        cfg = ChatConfig.from_args(args)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None
    print(f"speclm chat: loading base={cfg.base} adapter={cfg.adapter} ({cfg.adapter_mode}) …", flush=True)
    assistant = make_assistant(cfg)
    if cfg.backend == "local":
        assistant.runtime  # load now: a wrong --base fails here as one line, not in the chat
        adapter_error = getattr(assistant.backend, "adapter_error", None)
        if adapter_error:  # chat still works without the adapter; spectra turns will say why not
            print(f"speclm chat: warning: {adapter_error}", file=sys.stderr, flush=True)
    launch(cfg, assistant=assistant, block=True)
    return 0
