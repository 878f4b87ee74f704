"""The `speclm` command: one argparse tree, each layer registering its own subcommands.

Layer CLI modules (``speclm.<layer>.cli``) expose ``register(subparsers)`` and must import heavy
dependencies (torch, gradio, langgraph) only inside their handlers so `speclm --help` stays fast.
Every user-facing failure derives from ``speclm.tools.errors.SpeclmError`` and is printed as one
line on stderr with a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each module exposes register(subparsers). Order = order in `speclm --help`.
CLI_MODULES = (
    "speclm.tools.cli",          # inspect
    "speclm.tools.check_cli",    # check
    "speclm.finetune.data_cli",  # data {simulate,sdss,folder,info}, encode
    "speclm.finetune.model_cli", # predict, train, soup
    "speclm.agent.cli",          # demo
    "speclm.agent.ask_cli",      # ask
    "speclm.ui.cli",             # chat
    "speclm.evals.cli",          # eval {redshift,retention,agent,ablation}, report
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speclm", description="speclm: an assistant that speaks spectroscopy and English.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in CLI_MODULES:  # a missing module is a broken install: fail loudly, never drop a command
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from speclm import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from speclm.tools.errors import SpeclmError

    try:
        rc = args.func(args)
    except (SpeclmError, FileNotFoundError) as exc:
        print(f"speclm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `speclm ... | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print(f"speclm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: still one line unless debugging
        if os.environ.get("SPECLM_DEBUG"):
            raise
        print(f"speclm {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
