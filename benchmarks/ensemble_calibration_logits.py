"""Calibration data for a shift ensemble with "nearest" intervals: for each spectrum, the digit logits of the one
reading whose raw median lies nearest the ensemble's point estimate, with the truth moved into that reading's
frame (z' = (1 + z) exp(s) - 1), written as `speclm eval calibrate --logits` reads them.

Why this is the right thing to calibrate: the ensemble's intervals are that reading's calibrated quantiles mapped
back through a monotone map, so their coverage of z equals the reading's coverage of z'. Readings come from
benchmarks/shift_ensemble.py --readings (one .npz per dataset); the datasets' val splits merged
(`speclm data merge`) give the calibration dataset whose fingerprint the file carries.

    python benchmarks/ensemble_calibration_logits.py --adapter bundled --merged data/cal27b \\
        --pairs data/t27b_lowz:runs/readings/t27b_lowz.npz ... --out runs/logits/cal27b_nearest.npz --limit 4000
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", default="bundled")
    ap.add_argument("--merged", required=True, help="the merged calibration dataset (its val split)")
    ap.add_argument("--pairs", nargs="+", required=True, help="DATASET:READINGS.npz, one per source dataset")
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int, default=4000, help="recorded as the calibration's --limit (all rows are kept)")
    args = ap.parse_args(argv)
    from speclm.evals.redshift import _weights_id, concat_logits
    from speclm.finetune.datasets import open_dataset
    from speclm.finetune.predict import RedshiftPredictor
    from speclm.finetune.runtime import ModelRuntime, read_card, resolve_adapter
    from speclm.finetune.shift_ensemble import cdf_back, quantile

    path = resolve_adapter(args.adapter)
    card = read_card(path)
    pred = RedshiftPredictor.from_runtime(ModelRuntime.load(card.get("base_model") or "embedded", path))
    by_id = {}
    for pair in args.pairs:
        dpath, rpath = pair.split(":")
        ds = open_dataset(dpath)
        z_of = dict(zip(ds.ids("val"), ds.z("val")))
        f = np.load(rpath, allow_pickle=False)
        ids, k, offs = list(f["ids"]), int(f["k"]), f["offsets"]
        raw = {key[4:]: f[key] for key in f.files if key.startswith("raw_")}
        for i, sid in enumerate(ids):
            rows = np.arange(i * k, (i + 1) * k)
            sub = {key: v[rows] for key, v in raw.items()}
            rc = [cdf_back(*fp, o) for fp, o in zip(pred.fine_pz(sub, 1.0, 0.0), offs)]
            zc = quantile(np.mean(rc, axis=0), 0.5)
            near = int(np.argmin([abs(quantile(c, 0.5) - zc) for c in rc]))
            z = float(z_of[sid])
            by_id[sid] = ({key: v[rows[near]:rows[near] + 1] for key, v in raw.items()},
                          (1.0 + z) * math.exp(offs[near]) - 1.0, float(f["snr"][i]))
    merged = open_dataset(args.merged)
    order = [i for i in merged.ids("val") if i in by_id]
    missing = len(merged.ids("val")) - len(order)
    if missing:
        raise SystemExit(f"{missing} val spectra of {args.merged} have no readings")
    raws = [by_id[i][0] for i in order]
    meta = {"weights": _weights_id(card), "dataset": str(Path(args.merged).resolve()), "fingerprint": merged.fingerprint(),
            "split": "val", "limit": args.limit, "seed": 0, "simulated": True,
            "note": "shift ensemble: the reading nearest the ensemble's answer, truth in that reading's frame"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, z=np.array([by_id[i][1] for i in order]), snr=np.array([by_id[i][2] for i in order]),
                        rows=np.arange(len(order)), meta=json.dumps(meta),
                        **{f"raw_{k}": v for k, v in concat_logits(raws).items()})
    print(f"wrote {out}: {len(order)} spectra, the nearest reading of each")
    return 0


if __name__ == "__main__":
    from speclm.tools.errors import SpeclmError

    try:
        raise SystemExit(main())
    except SpeclmError as e:  # a bad path, adapter or dataset: one line
        raise SystemExit(f"error: {e}") from None
