"""Spectra per second of a redshift catalog, before and after, in one run on one machine.

Input: N simulated spectra (the sim15k test split, written as SDSS spec files into --work). Rows:

* model alone (``speclm predict``'s path: batched constrained digits + p(z)), batch 1 and batch 8;
* refined, before: one process, the model then the search as it was before this issue's work on it —
  the full-pixel NNLS (``SearchConfig(nnls="full")``) and the scan as of commit 4606e59 (the module is
  loaded from git, so the row stays "before" whatever the search becomes);
* refined, after: ``run_catalog`` in one process (the search's NNLS on the normal equations), with
  `speclm predict`'s exact model (LoRA unmerged, sdpa attention, batch 8) and with the catalog's defaults
  (LoRA merged into the base weights, eager attention on CPU, batch 16);
* refined, after, 2 workers: ``run_catalog`` on a local Dask cluster of 2 single-threaded processes
  (no glibc malloc threshold in the workers' environment: benchmarks/dask_worker_malloc.py).

Model loading is excluded from the one-process rows and included in the 2-worker row (each worker
loads the model once, in parallel with the other). A cProfile of the refined path's top items is
printed at the end.

    python benchmarks/catalog_throughput.py --n 500 --dataset data/sim15k --work runs/bench_catalog
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time
from pathlib import Path

import numpy as np


BEFORE_COMMIT = "4606e59"  # tools/redshift_search.py before the scan's Schur complement and the row-wise NNLS


def legacy_search(commit: str = BEFORE_COMMIT):
    """tools/redshift_search.py as of ``commit``, imported as a module of its own (from git)."""
    from speclm.evals.history import module_at

    return module_at(commit, "tools/redshift_search.py", "redshift_search")


def write_inputs(dataset: str, n: int, work: Path) -> list[Path]:
    from speclm.finetune.datasets import open_dataset
    from speclm.tools.spectrum_fits import write_sdss_spec_fits

    folder = work / "spectra"
    folder.mkdir(parents=True, exist_ok=True)
    ds = open_dataset(dataset)
    out = []
    for i, s in enumerate(ds.iter_spectra("test")):
        if i >= n:
            break
        p = folder / f"spec-{9000 + i // 1000:04d}-55555-{i % 1000:04d}.fits"
        if not p.is_file():
            write_sdss_spec_fits(p, np.log10(s.wavelength), s.flux, s.ivar, float(s.z_catalog or 0.0),
                                 plate=9000 + i // 1000, mjd=55555, fiberid=i % 1000)
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--dataset", default="data/sim15k")
    ap.add_argument("--work", default="runs/bench_catalog")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work)
    files = write_inputs(args.dataset, args.n, work)

    from speclm.finetune.catalog import CatalogConfig, _predictor, run_catalog
    from speclm.finetune.predict import spectrum_prompt
    from speclm.tools.redshift_search import SearchConfig, find_redshift
    from speclm.tools.spectrum import r_band_snr, read_spectrum

    rows = {}
    t0 = time.perf_counter()
    specs = [read_spectrum(f) for f in files]
    read_s = time.perf_counter() - t0
    pred = _predictor("bundled", "", "auto")
    prompts = [spectrum_prompt(s, pred.pre, pred.codec) for s in specs]
    snr = [r_band_snr(s) for s in specs]
    for bs, m in ((1, min(100, len(prompts))), (8, len(prompts))):  # batch 1 on the first 100 only (slow)
        t0 = time.perf_counter()
        res = pred.predict_prompts(prompts[:m], batch_size=bs, snr=snr[:m])
        rows[f"model alone, batch {bs}"] = len(res) / (time.perf_counter() - t0)
    # the catalog's model: LoRA merged, eager attention on CPU, batch 16 (its load not timed)
    cc = CatalogConfig()
    fast = _predictor("bundled", "", "auto", True, cc.attention)
    t0 = time.perf_counter()
    fast.predict_prompts(prompts, batch_size=cc.batch_size, snr=snr)
    rows[f"model alone, batch {cc.batch_size}, LoRA merged, attention {cc.attention}"] = \
        len(prompts) / (time.perf_counter() - t0)
    # refined, before: the model (batch 8) then the full-pixel NNLS search, one process
    t0 = time.perf_counter()
    res = pred.predict_prompts(prompts, batch_size=8, snr=snr)
    old = legacy_search()
    full = old.SearchConfig(nnls="full")
    before = [old.find_redshift(s, r.to_dict(), full) for s, r in zip(specs, res)]
    rows["refined, before (1 process, full NNLS)"] = len(specs) / (time.perf_counter() - t0 + read_s)
    # refined, after: the catalog in this process (model already loaded)
    out1 = work / "cat_1.fits"
    for p in (out1, out1.with_name(out1.name + ".partial.jsonl")):
        p.unlink(missing_ok=True)
    out0 = work / "cat_1_unmerged.fits"
    for p in (out0, out0.with_name(out0.name + ".partial.jsonl")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    info0 = run_catalog([work / "spectra"], out0, CatalogConfig(progress=False, merge_lora=False, attention="sdpa",
                                                                batch_size=8))
    rows["refined, after (1 process, `speclm predict`'s exact model: LoRA unmerged, sdpa, batch 8)"] = \
        info0["n_targets"] / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    info1 = run_catalog([work / "spectra"], out1, CatalogConfig(progress=False))
    rows["refined, after (1 process, the catalog's defaults)"] = info1["n_targets"] / (time.perf_counter() - t0)
    out2 = work / f"cat_{args.workers}.fits"
    for p in (out2, out2.with_name(out2.name + ".partial.jsonl")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    info2 = run_catalog([work / "spectra"], out2, CatalogConfig(progress=False, workers=args.workers))
    rows[f"refined, after ({args.workers} Dask workers, model loads included)"] = \
        info2["n_targets"] / (time.perf_counter() - t0)
    from astropy.table import Table

    a, b = Table.read(out1, mask_invalid=False), Table.read(out2, mask_invalid=False)
    same = all(np.array_equal(np.asarray(a[c]), np.asarray(b[c]), equal_nan=a[c].dtype.kind == "f") for c in a.colnames)
    agree = np.mean([abs(x.z - z) < 1e-4 for x, z in zip(before, a["Z"])])
    u = Table.read(out0, mask_invalid=False)
    merged_same_z = float(np.mean(np.abs(np.asarray(u["Z"]) - np.asarray(a["Z"])) < 1e-4))
    merged_same_zmodel = float(np.mean(np.asarray(u["Z_MODEL"]) == np.asarray(a["Z_MODEL"])))
    base = rows["refined, before (1 process, full NNLS)"]
    print(f"{len(specs)} simulated spectra, {os.cpu_count()} CPUs")
    print("| path | spectra/s | × before |")
    print("|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.2f} | {v / base:.2f} |" if k.startswith("refined") else f"| {k} | {v:.2f} | — |")
    print(f"1-process and {args.workers}-worker catalogs identical: {same}; before/after z agree (<1e-4) for "
          f"{agree:.1%}; catalog defaults vs the exact model: stated z agree (<1e-4) for {merged_same_z:.1%}, the model's z "
          f"identical for {merged_same_zmodel:.1%}")
    prof = cProfile.Profile()
    prof.enable()
    for s, r in list(zip(specs, res))[:50]:
        find_redshift(s, r.to_dict())
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(8)
    (work / "bench.json").write_text(json.dumps({"rows": rows, "identical": same, "agree": agree,
                                                       "merged_same_z": merged_same_z,
                                                       "merged_same_zmodel": merged_same_zmodel}, indent=2))


if __name__ == "__main__":
    main()
