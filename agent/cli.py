"""`speclm demo`: the paper's two-step dialogue in the terminal, with the tools' numbers.

Step 1 gives the assistant a spectrum (default: NGC 3522 from SDSS DR18, shipped in the ppxf
wheel; else a synthetic SDSS-like spectrum with emission lines at z = 0.1), step 2 asks the
paper's follow-up "What type of galaxy is expected at the redshift you just predicted? Which
surveys could observe it?". Tool calls and the numbers they produced are printed after each step.
Heavy imports (torch, langgraph) happen inside the handler.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

STEP1 = "Here is a galaxy spectrum. What is its redshift?"
STEP2 = ("What type of galaxy is expected at the redshift you just predicted? "
         "Which surveys could observe it?")


def register(subparsers) -> None:
    _register_planner_data(subparsers)
    p = subparsers.add_parser(
        "demo", help="play the paper's two-step dialogue (spectrum -> redshift, then a follow-up)",
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--spectrum", default=None, help="spectrum file for step 1 (default: ppxf's NGC3522, "
                   "else a synthetic spectrum)")
    p.add_argument("--question", default=STEP2, help="the step-2 follow-up question")
    from speclm.agent.ask_cli import ASSISTANT_OPTIONS
    from speclm.agent.config import AgentConfig

    AgentConfig.add_arguments(p, [o for o in ASSISTANT_OPTIONS if o != "checkpoint_db"])
    p.add_argument("--json", action="store_true",
                   help="print the transcript as JSON ({messages: [{role, content, ...}]}) on stdout, for "
                        "`speclm report --conversation`; the live dialogue goes to stderr")
    p.set_defaults(func=run_demo, max_new_tokens=120)


def default_spectrum(tmpdir: str) -> Path:
    """ppxf's NGC3522 (real SDSS DR18) if installed, else the synthetic spec-FITS at z = 0.1."""
    from speclm.tools.synthetic import ppxf_spectrum, write_synthetic_fits

    return ppxf_spectrum("NGC3522") or write_synthetic_fits(Path(tmpdir) / "spec-0266-51630-0001.fits", z=0.1)


def _play(assistant, thread: str, text: str, spectrum=None, out=sys.stdout):
    print(f"\nUser: {text}" + (f"  [attached: {spectrum}]" if spectrum else ""), file=out)
    result = None
    started = False
    for ev in assistant.stream(thread, text, spectrum_path=spectrum):
        t = ev["type"]
        if t == "tool":
            status = f"error: {ev['error']}" if ev.get("error") else "ok"
            print(f"  [tool] {ev['name']} ({ev['seconds']:.2f} s) {status}", file=out)
        elif t == "route":
            print(f"  [route] {ev['route']} — {ev['reason']}", file=out)
        elif t == "token":
            if not started:
                print("Assistant: ", end="", file=out)
                started = True
            print(ev["text"], end="", file=out, flush=True)
        elif t == "done":
            result = ev["result"]
    print(file=out)
    return result


def _numbers(r, out=sys.stdout) -> None:
    """The tool-derived numbers of a turn, one per line."""
    rows = []
    if r.prediction:
        p = r.prediction
        rows.append(f"model z (median p(z))   {p['z']:.3f}  [68%: {p['z_lo']:.4f}–{p['z_hi']:.4f}]")
    if r.check:
        c = r.check
        rows.append(f"line check              z = {c['z']:.5f} confident={c['confident']} "
                    f"({c['n_lines']} lines)")
    if r.spectrum_summary and r.spectrum_summary.get("z_catalog") is not None:
        rows.append(f"catalog z (file)        {r.spectrum_summary['z_catalog']:.5f}")
    if r.cosmology:
        c = r.cosmology
        rows.append(f"cosmology z             {c['z']:.5g} ({c['cosmology']})")
        rows.append(f"lookback time           {c['lookback_gyr']:.3f} Gyr")
        rows.append(f"luminosity distance     {c['luminosity_distance_mpc']:,.1f} Mpc")
        rows.append(f"recession velocity      {c['recession_velocity_km_s']:,.0f} km/s")
    rows.append(f"adapter on this turn    {r.adapter_on}   ({r.seconds:.2f} s, route {r.route})")
    print("  -- numbers from the tools --", file=out)
    for row in rows:
        print("  " + row, file=out)


def run_demo(args) -> int:
    from speclm.agent.assistant import AgentConfig, Assistant
    from speclm.finetune.runtime import ModelLoadError

    cfg = AgentConfig.from_args(args, checkpoint_db=":memory:")
    with tempfile.TemporaryDirectory() as tmp, Assistant(cfg) as a:
        if not a.backend.has_adapter:  # loads the model; the demo is pointless without the adapter
            raise ModelLoadError(a.backend.adapter_error or "no redshift adapter loaded")
        spectrum = Path(args.spectrum) if args.spectrum else default_spectrum(tmp)
        out = sys.stderr if args.json else sys.stdout
        print(f"speclm demo — {a.backend.describe()}, adapter mode {cfg.adapter_mode}", file=out)
        thread = a.new_thread_id()
        r1 = _play(a, thread, STEP1, spectrum, out=out)
        _numbers(r1, out=out)
        turns = [(STEP1, spectrum.name, r1)]
        if r1.route != "error":
            r2 = _play(a, thread, args.question, out=out)
            _numbers(r2, out=out)
            turns.append((args.question, None, r2))
        if args.json:
            print(json.dumps(transcript(turns, a.backend.describe(), cfg.adapter_mode), indent=1, default=str))
    return 1 if r1.route == "error" else 0


def transcript(turns, backend: str, adapter_mode: str) -> dict:
    """The dialogue as {role, content} messages; each assistant message carries the tool numbers."""
    msgs = []
    for text, attached, r in turns:
        msgs.append({"role": "user", "content": text + (f"  [attached: {attached}]" if attached else "")})
        msgs.append({"role": "assistant", "content": r.reply, "route": r.route, "adapter_on": r.adapter_on,
                     "tools": [t.get("name") for t in r.tool_trace],
                     "numbers": {k: v for k, v in (("prediction", r.prediction), ("check", _brief_check(r.check)),
                                                   ("cosmology", r.cosmology)) if v}})
    return {"kind": "speclm-demo", "backend": backend, "adapter_mode": adapter_mode, "messages": msgs}


def _brief_check(c: dict | None) -> dict | None:
    return None if not c else {k: c.get(k) for k in ("z", "z_input", "confident", "n_lines", "reason")}


def _register_planner_data(subparsers) -> None:
    """``speclm data planner``: the planner's synthetic requests (the generator lives with the agent,
    whose tools it plans; ``speclm data`` is the finetune layer's command group)."""
    import argparse as _ap

    data = subparsers.choices.get("data")
    if data is None:
        return
    dsub = next(a for a in data._actions if isinstance(a, _ap._SubParsersAction))
    p = dsub.add_parser("planner", help="synthetic requests -> tool calls for the embedded planner's LoRA",
                        description="Varied requests (an attached file, cosmology, line positions, what-ifs, class, "
                        "surveys, the model's z, template search, line checks, SDSS lookups, files, multi-step, "
                        "nothing to call) with the tool calls that answer them, phrased from the tool registry's "
                        "vocabulary; `speclm eval planner` checks that none of its held-out phrasings occurs in them.")
    p.add_argument("--n", type=int, required=True, help="number of requests")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--val-frac", type=float, default=0.05, help="validation fraction (default 0.05)")
    p.set_defaults(func=_planner_data)


def _planner_data(args) -> int:
    from speclm.agent.planner_data import write_dataset
    from speclm.tools.errors import ConfigError

    if args.n < 2:
        raise ConfigError("--n must be at least 2")
    meta = write_dataset(args.out, args.n, seed=args.seed, val_frac=args.val_frac)
    print(f"wrote {meta['counts']} requests ({meta['steps']} planning steps) to {args.out} "
          f"(generator v{meta['generator_version']})")
    return 0
