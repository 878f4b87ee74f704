"""Planned turns with the default configuration, with their plans and CPU latency (README, "One loop").

The default AgentConfig: the embedded SmolLM2-135M with the bundled redshift adapter and the bundled
planner LoRA, the rules as the planner's fallback. Every tool runs for real; the SDSS lookup runs
against the loopback SkyServer/SAS of :mod:`speclm.tools.sdss_sim` (no network here; with internet,
drop it and SDSS answers). Five traces: an upload, the paper's two-step follow-up, a hypothetical, a
summary, and a lookup-then-predict turn. Prints each turn's plan (who planned each call), the calls
and the reply.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/planner_trace.py [--spectrum FILE] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from speclm.agent.assistant import AgentConfig, Assistant
from speclm.tools.sdss import SDSSConfig
from speclm.tools.sdss_sim import SkyServerSim, make_objects

STEP2 = "What type of galaxy is expected at the redshift you just predicted? Which surveys could observe it?"


def _default_spectrum() -> str:
    from speclm.tools.synthetic import ppxf_spectrum

    return str(ppxf_spectrum("NGC3522"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spectrum", default=None, help="the upload (default: ppxf's real SDSS DR18 NGC 3522)")
    ap.add_argument("--json", default=None, help="also write the turns (plan, calls, reply, seconds) here")
    args = ap.parse_args(argv)
    spectrum = args.spectrum or _default_spectrum()
    obj = make_objects(3, seed=1)[0]
    turns = [("upload", "What is the redshift of this galaxy?", spectrum), ("two-step", STEP2, None),
             ("hypothetical", "What would its spectrum look like if it were at z = 1?", None),
             ("summary", "Summarize this object in two sentences for a paper.", None),
             ("lookup-then-predict", f"Look up {obj.name} and predict its redshift with the model", None)]
    out = []
    with SkyServerSim([obj]) as sim, tempfile.TemporaryDirectory() as tmp:
        sdss = SDSSConfig(skyserver_url=sim.skyserver_url, sas_url=sim.sas_url, cache_dir=f"{tmp}/sdss")
        a = Assistant(AgentConfig(sdss=sdss.to_dict(), checkpoint_db=":memory:", eager=True))
        for kind, text, upload in turns:
            print(f"\n[{kind}] USER: {text}" + (f"  (attached: {upload.rsplit('/', 1)[-1]})" if upload else ""))
            t0 = time.perf_counter()
            r = a.turn("demo", text, spectrum_path=upload)
            secs = time.perf_counter() - t0
            for c in r.plan:
                args_ = {k: v for k, v in c["args"].items() if k not in ("spectrum_path", "path")}
                print(f"  call {c['name']} {json.dumps(args_, default=str)}  (planned by {c['planned_by']})")
            print(f"  tools run: {', '.join(e['name'] for e in r.tool_trace)}")
            print(f"ASSISTANT ({secs:.1f} s):\n{r.reply}")
            out.append({"kind": kind, "text": text, "plan": r.plan, "planner": r.planner, "reply": r.reply,
                        "tools": [e["name"] for e in r.tool_trace], "seconds": round(secs, 2)})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, ensure_ascii=False, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
