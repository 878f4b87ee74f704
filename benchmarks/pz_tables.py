"""Two p(z) calibrations of the same adapter weights on one simulated split, from one set of digit logits.

The calibration (temperature and outlier weight per r-band S/N) only changes how the digit logits become
intervals, so two cards with the same weights are compared exactly on the same logits: 68% / 95% coverage,
confidently wrong (truth outside the 99% interval), and the median 68% width, overall and per S/N range.
The numbers equal `speclm eval redshift --adapter X --dataset D --split S --no-knn` run once per card.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/pz_tables.py --adapter runs/v14_cal16 \
        --baseline bundled --dataset data/cal15 --split test [--limit N] [--json out.json]

With ``--logits F`` (stored by benchmarks/pz_logits.py for these weights on that split) the model is not run.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def main(argv=None) -> int:
    from speclm.evals.metrics import redshift_metrics
    from speclm.evals.redshift import compute_split_logits, load_split_logits
    from speclm.finetune.predict import RedshiftPredictor, calibration_kwargs
    from speclm.finetune.runtime import ModelRuntime, read_card, resolve_adapter

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", required=True, help="adapter whose weights and calibration are scored")
    ap.add_argument("--baseline", required=True, help="adapter (same weights) whose calibration is compared")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--logits", default=None, help="digit logits stored by benchmarks/pz_logits.py (same weights, split)")
    args = ap.parse_args(argv)

    path = resolve_adapter(args.adapter)
    card, bcard = read_card(path), read_card(resolve_adapter(args.baseline))
    if card.get("train_ids_sha") != bcard.get("train_ids_sha") or card.get("steps") != bcard.get("steps"):
        raise SystemExit("the two adapters must share their weights (same training card); only calibrations differ")
    rt = ModelRuntime.load(card.get("base_model") or "embedded", path, device="auto")
    p0 = RedshiftPredictor.from_runtime(rt)
    preds = {"adapter": p0, "baseline": RedshiftPredictor(rt, p0.pre, p0.codec, **calibration_kwargs(bcard))}
    if args.logits:
        d = load_split_logits(args.logits, adapter=args.adapter, dataset=args.dataset, split=args.split,
                              limit=args.limit, seed=args.seed if args.limit else None)
    else:
        d = compute_split_logits(args.adapter, args.dataset, args.split, limit=args.limit, seed=args.seed)
    raw, z, snr = d["raw"], d["z"], d["snr"]
    out = {"dataset": args.dataset, "split": args.split, "n": int(len(z))}
    edges = [0, 1.5, 3, 5, 10, 1e9]
    fin = np.isfinite(snr)
    for name, pred in preds.items():
        res = pred.summarise_at_snr(raw, snr)
        g = {k: np.array([getattr(r, k) for r in res]) for k in ("z", "z_lo", "z_hi", "z_lo95", "z_hi95", "z_lo99", "z_hi99")}

        def stats(sel):
            if not sel.any():
                return {"n": 0}
            m = redshift_metrics(z[sel], g["z"][sel], g["z_lo"][sel], g["z_hi"][sel],
                                 z95=(g["z_lo95"][sel], g["z_hi95"][sel]), z99=(g["z_lo99"][sel], g["z_hi99"][sel]))
            return {k: m[k] for k in ("n", "mae", "coverage_68", "coverage_95", "confidently_wrong")} | {
                "median_width_68": float(np.median(g["z_hi"][sel] - g["z_lo"][sel]))}

        out[name] = {"all": stats(np.ones(len(z), bool)), "snr>=5": stats(fin & (snr >= 5)),
                     "bins": {f"{a:g}-{b:g}": stats(fin & (snr >= a) & (snr < b)) for a, b in zip(edges, edges[1:])}}
    print(f"{args.dataset} [{args.split}], n = {len(z)}: {args.adapter} vs the calibration of {args.baseline}")
    print("| S/N | n | calibration | MAE | 68% cov | 95% cov | confidently wrong | median 68% width |")
    print("|---|---|---|---|---|---|---|---|")
    for key in ["all", "snr>=5"] + [f"bins/{k}" for k in out["adapter"]["bins"]]:
        for name in ("baseline", "adapter"):
            d = out[name]
            for part in key.split("/"):
                d = d[part]
            if not d["n"]:
                continue
            print(f"| {key.replace('bins/', '')} | {d['n']} | {name} | {d['mae']:.4f} | {d['coverage_68']:.1%} | "
                  f"{d['coverage_95']:.1%} | {d['confidently_wrong']:.1%} | {d['median_width_68']:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
