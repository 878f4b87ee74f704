"""Score an adapter with K sub-bin readings per spectrum (finetune/shift_ensemble.py) on a dataset split, writing
the `report.json` layout `speclm eval redshift` writes (metrics.model, predictions), so that
benchmarks/adapter_rule.py can judge it. K = 1 is the adapter as it ships (one reading).

    python benchmarks/shift_ensemble.py --adapter bundled --dataset data/t27_boss --shifts 4 --out runs/e27/v17d/v24s4_boss
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _weights(path) -> str:
    import hashlib

    return hashlib.sha256((Path(path) / "adapter_model.safetensors").read_bytes()).hexdigest()[:16]  # the weights only


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", default="bundled")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--shifts", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0, help="the first N spectra of the split (0 = all)")
    ap.add_argument("--intervals", default="mixture", choices=("mixture", "nearest"),
                    help="the ensemble's intervals (finetune/shift_ensemble.py: combine_readings)")
    ap.add_argument("--readings", default=None,
                    help="an .npz of the K readings' digit logits: written when missing, read (no model run) when present")
    ap.add_argument("--mode", default="centred", choices=("centred", "forward"),
                    help="where the K shifts lie: centred on the unshifted reading, or forward (0 .. (K-1)/K of a bin)")
    ap.add_argument("--only", type=int, default=None, help="score reading J alone (K odd: J = (K-1)/2 is the unshifted one)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from speclm.evals.metrics import redshift_metrics
    from speclm.finetune.datasets import open_dataset
    from speclm.finetune.predict import RedshiftPredictor
    from speclm.finetune.runtime import ModelRuntime, read_train_ids, resolve_adapter
    from speclm.finetune.shift_ensemble import combine_readings, read_shifted, shift_offsets
    from speclm.tools.spectrum import r_band_snr

    path = resolve_adapter(args.adapter)
    ds = open_dataset(args.dataset)
    spectra = ds.spectra(args.split)
    spectra = spectra[:args.limit] if args.limit else spectra
    ids = [s.meta.get("id") for s in spectra]
    seen = set(read_train_ids(path)) & set(ids)
    if seen:
        raise SystemExit(f"{len(seen)} of these spectra are in the adapter's training ids: not an evaluation set")
    z = np.array([float(s.meta["z"]) for s in spectra])
    rt = ModelRuntime.load("embedded", path)
    pred = RedshiftPredictor.from_runtime(rt)
    t0 = time.perf_counter()
    if args.shifts == 1 and not args.readings:
        res = pred.predict_spectra(spectra, batch_size=args.batch_size, progress=True)
    else:
        rd = Path(args.readings) if args.readings else None
        if rd is not None and rd.exists():
            f = np.load(rd, allow_pickle=False)
            want = shift_offsets(args.shifts, pred.pre, args.mode)
            if (list(f["ids"]) != ids or int(f["k"]) != args.shifts or str(f["weights"]).split(":")[0] != _weights(path)
                    or not np.allclose(f["offsets"], want)):
                raise SystemExit(f"{rd} holds other readings (spectra, K or adapter weights differ)")
            readings = {"raw": {k[4:]: f[k] for k in f.files if k.startswith("raw_")}, "offsets": f["offsets"],
                        "snr": [None if not np.isfinite(v) else float(v) for v in f["snr"]], "k": int(f["k"])}
        else:
            readings = read_shifted(pred, spectra, args.shifts, batch_size=args.batch_size, progress=True, mode=args.mode)
            if rd is not None:
                rd.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(rd, ids=np.array(ids), k=readings["k"], offsets=readings["offsets"],
                                    snr=np.array([np.nan if v is None else v for v in readings["snr"]], float),
                                    weights=_weights(path), **{f"raw_{k}": v for k, v in readings["raw"].items()})
        res = combine_readings(pred, readings, args.intervals, only=args.only)
    secs = time.perf_counter() - t0
    m = redshift_metrics(z, [r.z for r in res], [r.z_lo for r in res], [r.z_hi for r in res],
                         z95=(np.array([r.z_lo95 for r in res]), np.array([r.z_hi95 for r in res])),
                         z99=(np.array([r.z_lo99 for r in res]), np.array([r.z_hi99 for r in res])))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    snr = [r_band_snr(s) for s in spectra]
    rep = {"kind": "shift_ensemble", "config": vars(args), "adapter": str(path),
           "eval_set": {"path": args.dataset, "split": args.split, "n": len(spectra)},
           "metrics": {"model": m}, "timing": {"predict_seconds": round(secs, 1), "spectra_per_s": round(len(res) / secs, 2)},
           "predictions": [{"id": i, "z_true": float(t), "z": r.z, "z_lo": r.z_lo, "z_hi": r.z_hi, "z_lo99": r.z_lo99,
                            "z_hi99": r.z_hi99, "z_greedy": r.z_greedy, "snr_r": x}
                           for i, t, r, x in zip(ids, z, res, snr)]}
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    print(f"{args.dataset} {args.split} K={args.shifts}: n {m['n']}, MAE {m['mae']:.4f}, >0.05 {m['outlier_frac_0.05']:.1%}, "
          f"sigma_NMAD {m['sigma_nmad']:.4f}, 68% cov {m['coverage_68']:.1%}, conf. wrong {m['confidently_wrong']:.1%} "
          f"({len(res) / secs:.1f} spectra/s)")
    return 0


if __name__ == "__main__":
    from speclm.tools.errors import SpeclmError

    try:
        raise SystemExit(main())
    except SpeclmError as e:  # a bad path, adapter or dataset: one line
        raise SystemExit(f"error: {e}") from None
