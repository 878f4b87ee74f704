"""`speclm eval agent`: the command line of the scenario suite."""
from __future__ import annotations

import argparse

from speclm.evals.scenarios.checks import shorten
from speclm.evals.scenarios.runner import AgentEvalConfig, format_table, run_suite, write_report
from speclm.evals.scenarios.schema import ScenarioError, load_scenarios, select


# ------------------------------------------------------------------------------------------------
# CLI: speclm eval agent
# ------------------------------------------------------------------------------------------------

def _names(s: str | None) -> tuple:
    return tuple(n.strip() for n in (s or "").split(",") if n.strip())


def register_eval(esub) -> None:
    """Add ``speclm eval agent`` to the ``speclm eval`` subcommand group."""
    p = esub.add_parser(
        "agent", help="scripted multi-turn agent scenarios (YAML) against the real graph",
        description="Play each scenario (evals/scenarios/*.yaml) through the Assistant in a fresh thread, check "
                    "every turn (route, tools, reply quoting tool numbers, z within tolerance, graceful errors), "
                    "print a pass/fail table and write JSON. Exit 0 if all pass, 1 if any check fails, 2 on "
                    "user errors (bad scenario file, missing model).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    AgentEvalConfig.add_arguments(p, ("scenarios", "out", "ignore_model_dependent"))
    from speclm.agent.ask_cli import ASSISTANT_OPTIONS
    from speclm.agent.config import AgentConfig

    AgentConfig.add_arguments(p, [o for o in ASSISTANT_OPTIONS if o != "checkpoint_db"] + ["device"])
    p.set_defaults(max_new_tokens=120)
    p.add_argument("--only", metavar="NAME,...", default=None, help="run only these scenarios")
    p.add_argument("--exclude", metavar="NAME,...", default=None, help="skip these scenarios")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_agent)


def _cmd_agent(args) -> int:
    from speclm.agent.config import AgentConfig

    cfg = AgentEvalConfig.from_args(args, only=_names(args.only), exclude=_names(args.exclude),
                                    agent=AgentConfig.from_args(args, checkpoint_db=":memory:"))
    scenarios = select(load_scenarios(cfg.scenarios), cfg.only, cfg.exclude)
    if args.list:
        for s in scenarios:
            print(f"{s.name:<28} {len(s.turns)} turns{'  model-dependent' if s.model_dependent else ''}"
                  f"{'  needs ' + ','.join(s.needs) if s.needs else ''}  {shorten(s.description, 80)}")
        return 0
    if not scenarios:
        raise ScenarioError("no scenarios selected")
    report = run_suite(scenarios, cfg, progress=not args.no_progress)
    print(format_table(report))
    if cfg.out:
        print(f"wrote {write_report(report, cfg.out)}")
    return 0 if report["ok"] else 1
