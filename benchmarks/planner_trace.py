"""Planned turns on the embedded model, with their traces and CPU latency (README, "Who plans").

The embedded SmolLM2-135M with the bundled planner LoRA plans each text turn (``planner="model"``);
the tools run for real, the SDSS lookup against the loopback SkyServer/SAS of
:mod:`speclm.tools.sdss_sim` (no network here; with internet, leave ``--sdss`` off and SDSS answers).
Prints every event of each turn (plan steps, tool calls, the reply) and the turn's wall time.

    OMP_NUM_THREADS=2 python benchmarks/planner_trace.py [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from speclm.agent.assistant import AgentConfig, Assistant
from speclm.tools.sdss import SDSSConfig
from speclm.tools.sdss_sim import SkyServerSim, make_objects

TURNS = ["Look up {name} and predict its redshift with the model",
         "How far is it, and where would Hβ land?",
         "Is it star-forming?"]


def _short(v, n=160):
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= n else s[:n] + "…"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", default="bundled-planner", help="planner adapter (default: the bundled one)")
    ap.add_argument("--json", default=None, help="also write the turns (events, reply, seconds) here")
    args = ap.parse_args(argv)
    obj = make_objects(3, seed=1)[0]
    out = []
    with SkyServerSim([obj]) as sim, tempfile.TemporaryDirectory() as tmp:
        sdss = SDSSConfig(skyserver_url=sim.skyserver_url, sas_url=sim.sas_url, cache_dir=f"{tmp}/sdss")
        a = Assistant(AgentConfig(planner="model", planner_adapter=args.adapter, sdss=sdss.to_dict(), checkpoint_db=":memory:", eager=True))
        for text in TURNS:
            text = text.format(name=obj.name)
            print(f"\nUSER: {text}")
            t0, events = time.perf_counter(), []
            for ev in a.stream("demo", text):
                if ev["type"] == "done":
                    r = ev["result"]
                    continue
                if ev["type"] in ("route", "plan", "tool"):
                    e = {k: v for k, v in ev.items() if k not in ("output",)}
                    if ev["type"] == "tool":
                        e["output"] = _short(ev.get("output"))
                    events.append(e)
                    print(json.dumps(e, ensure_ascii=False, default=str))
            secs = time.perf_counter() - t0
            print(f"REPLY ({r.planner}, {secs:.1f} s): {r.reply}")
            out.append({"text": text, "events": events, "reply": r.reply, "planner": r.planner, "seconds": round(secs, 2)})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, ensure_ascii=False, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
