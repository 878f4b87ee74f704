"""Where the model misses (beyond 0.05 in Δz/(1+z)) on a simulated split: does the full-resolution template search
read those spectra, does the kNN on the same vectors, and does the model itself when the pixels are shifted by a
fraction of a bin? The diagnosis behind docs/protocols/tta27.md.

    speclm eval redshift --adapter bundled --dataset data/diag_boss --split val --train-dataset data/sim15k --out runs/diag/boss
    python benchmarks/failures_vs_search.py --report runs/diag/boss/report.json --dataset data/diag_boss
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", required=True, help="report.json of speclm eval redshift (with the kNN)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--adapter", default="bundled", help="for the shifted re-readings of the misses")
    ap.add_argument("--shifts", type=float, nargs="*", default=[0.25, 0.5, 0.75], help="fractions of a bin")
    args = ap.parse_args(argv)
    from speclm.finetune.datasets import open_dataset
    from speclm.finetune.predict import RedshiftPredictor
    from speclm.finetune.runtime import ModelRuntime, resolve_adapter
    from speclm.finetune.shift_ensemble import shifted
    from speclm.tools.redshift_search import find_redshift

    rep = json.loads(open(args.report).read())
    pred = {p["id"]: p for p in rep["predictions"]}
    spectra = [s for s in open_dataset(args.dataset).iter_spectra(args.split) if s.meta.get("id") in pred]
    dz = lambda a, t: abs(a - t) / (1 + t)  # noqa: E731
    rows = []
    for s in spectra:
        p = pred[s.meta["id"]]
        rows.append({"s": s, "z": p["z_true"], "snr": p.get("snr_r"), "llm": p["z"], "knn": p.get("knn_z"),
                     "search": find_redshift(s, None).z})
    for k in ("llm", "knn", "search"):
        d = np.array([dz(r[k], r["z"]) for r in rows if r[k] is not None])
        print(f"{k:6s} MAE {d.mean():.4f}, beyond 0.05: {(d > 0.05).sum()} of {d.size}")
    miss = [r for r in rows if dz(r["llm"], r["z"]) > 0.05]
    if not miss:
        return 0
    print(f"on the model's {len(miss)} misses: the search beyond 0.05 on {sum(dz(r['search'], r['z']) > 0.05 for r in miss)}, "
          f"the kNN on {sum(r['knn'] is not None and dz(r['knn'], r['z']) > 0.05 for r in miss)}")
    path = resolve_adapter(args.adapter)
    P = RedshiftPredictor.from_runtime(ModelRuntime.load("embedded", path))
    D = math.log(P.pre.wave_max / P.pre.wave_min) / P.pre.n_bins
    print("true z  S/N  | model  kNN    search | model at shifts " + " ".join(f"{f:g}" for f in args.shifts) + " of a bin")
    for r in miss:
        again = []
        for f in args.shifts:
            s = f * D
            again.append((1 + P.predict_spectra([shifted(r["s"], s)])[0].z) * math.exp(-s) - 1)
        print(f"{r['z']:.3f} {r['snr'] or float('nan'):5.1f} | {r['llm']:.3f}  {r['knn'] if r['knn'] is not None else float('nan'):.3f}  "
              f"{r['search']:.3f} | " + " ".join(f"{v:.3f}" for v in again))
    return 0


if __name__ == "__main__":
    from speclm.tools.errors import SpeclmError

    try:
        raise SystemExit(main())
    except SpeclmError as e:  # a bad path, adapter or dataset: one line
        raise SystemExit(f"error: {e}") from None
