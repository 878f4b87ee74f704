"""Which preprocessing survives the simulated-to-real gap? A kNN probe (no LLM, seconds per config).

For each PreprocessConfig: fit a k=10 nearest-neighbour regressor on the simulated train split,
score MAE on (a) the augmented simulated val split, (b) a separately simulated *clean* set (no
noise model, tilts, sky, masks: a stand-in for "a different instrument model") and (c) the real
SDSS files in the ppxf wheel. The README's continuum-division numbers come from this script.

    speclm data simulate --n 500 --out data/sim_clean500 --seed 77 --clean
    python benchmarks/knn_preprocessing_study.py --dataset data/sim15k --clean data/sim_clean500
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json

import numpy as np

from speclm.finetune.datasets import open_dataset
from speclm.finetune.preprocess import PreprocessConfig, preprocess
from speclm.tools.spectrum import read_spectrum

CONFIGS = {
    "log_median": PreprocessConfig(),
    "linear_median": PreprocessConfig(grid="linear"),
    "log_divide9": PreprocessConfig(continuum="divide", continuum_window=9, scale=50),
    "log_divide15": PreprocessConfig(continuum="divide", continuum_window=15, scale=50),
}


def knn(A, za, B, k=10):
    mu, sd = A.mean(0), A.std(0) + 1e-6
    A, B = (A - mu) / sd, (B - mu) / sd
    out = []
    for i in range(0, len(B), 300):
        d = ((B[i:i + 300, None, :] - A[None]) ** 2).sum(-1)
        out.append(np.median(za[np.argsort(d, 1)[:, :k]], 1))
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="data/sim15k")
    ap.add_argument("--clean", default=None)
    a = ap.parse_args()
    ds = open_dataset(a.dataset)
    clean = open_dataset(a.clean) if a.clean else None
    root = list(importlib.util.find_spec("ppxf").submodule_search_locations)[0]
    reals = [read_spectrum(f) for f in sorted(glob.glob(root + "/spectra/NGC*_SDSS_DR18.fits"))]
    for name, cfg in CONFIGS.items():
        X, z = ds.features("train", cfg), ds.z("train")
        ok = ~np.isnan(X).any(1)
        X, z = X[ok], z[ok]
        r = {"config": name, "mae_val": float(np.abs(knn(X, z, ds.features("val", cfg)) - ds.z("val")).mean())}
        if clean is not None:
            r["mae_clean"] = float(np.abs(knn(X, z, clean.features(None, cfg)) - clean.z(None)).mean())
        Xr = np.array([preprocess(s, cfg) for s in reals])
        r["real"] = [(round(float(p), 4), round(s.z_catalog, 4)) for p, s in zip(knn(X, z, Xr), reals)]
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
