"""Tokens per encoded spectrum under the embedded SmolLM2 tokenizer, for every preset.

Tokens are the cost unit of training and inference (the paper: ~533 per galaxy with Llama-3).
Uses the real SDSS files shipped in the ppxf wheel plus simulated spectra from a dataset.

    python benchmarks/tokens_per_spectrum.py [--dataset data/sim15k] [--n 50]
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json

import numpy as np

from speclm.finetune.codec import build_prompt, token_report
from speclm.finetune.preprocess import preprocess
from speclm.finetune.presets import get_preset, list_presets
from speclm.finetune.runtime import load_tokenizer
from speclm.tools.spectrum import read_spectrum


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--n", type=int, default=50)
    a = ap.parse_args()
    tok = load_tokenizer("embedded")
    spectra = []
    spec = importlib.util.find_spec("ppxf")
    if spec:
        root = list(spec.submodule_search_locations)[0]
        spectra += [read_spectrum(f) for f in sorted(glob.glob(root + "/spectra/NGC*_SDSS_DR18.fits"))]
    if a.dataset:
        from speclm.finetune.datasets import open_dataset

        spectra += list(open_dataset(a.dataset).iter_spectra("val"))[: a.n]
    rows = {}
    for name in list_presets():
        p = get_preset(name)
        texts = [build_prompt(preprocess(s, p.preprocess), p.codec) for s in spectra]
        r = token_report(texts, tok)
        rows[name] = {"n_bins": p.preprocess.n_bins, "tokens_mean": round(r["mean"], 1), "tokens_max": r["max"]}
        print(f"{name:14s} bins={p.preprocess.n_bins:4d}  tokens/spectrum mean={r['mean']:.1f} max={r['max']}")
    print(json.dumps({"tokenizer": "SmolLM2-135M-Instruct (embedded)", "n_spectra": len(spectra), "presets": rows}))


if __name__ == "__main__":
    main()
