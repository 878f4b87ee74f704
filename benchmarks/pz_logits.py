"""Store an adapter's digit logits on a simulated split once, so p(z) calibrations are compared without the model.

A calibration (temperature and outlier weight per r-band S/N) only changes how the digit logits become intervals,
so the logits of one (adapter weights, dataset, split) are computed once and kept in an ``.npz`` beside the truths,
the r-band S/N and the row ids; `speclm eval calibrate --logits F` fits on such a file and
`benchmarks/pz_tables.py --logits F` scores cards on it. Resumable: an existing file with the same adapter weights,
dataset fingerprint and rows is left as it is.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/pz_logits.py --adapter bundled --dataset data/v17d_lowz \
        --split val --out runs/logits/v14_v17d_lowz_val.npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    from speclm.evals.redshift import compute_split_logits, load_split_logits
    from speclm.tools.errors import SpeclmError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", required=True, help="adapter directory, or 'bundled'")
    ap.add_argument("--dataset", required=True, help="simulated dataset directory")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=None, help="a seeded subset of the split (default: all of it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help=".npz to write")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        try:
            d = load_split_logits(out, adapter=args.adapter, dataset=args.dataset, split=args.split,
                                  limit=args.limit, seed=args.seed)
            print(f"{out}: already there ({len(d['z'])} spectra)")
            return 0
        except ValueError as e:
            print(f"{out}: {e}; recomputing", file=sys.stderr)
    try:
        d = compute_split_logits(args.adapter, args.dataset, args.split, limit=args.limit, seed=args.seed, out=out)
    except SpeclmError as e:  # a bad adapter, dataset or split: one line, nothing written
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {len(d['z'])} spectra")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
