"""A redshift catalog for many spectra: one row per target, batched, resumable, on one process or a
Dask cluster.

``speclm predict [--refine] INPUTS… --out catalog.fits`` (or ``.parquet``) runs here:

1. **Targets**: files, folders and globs are expanded (``tools.spectrum.expand_inputs``) and every
   target of every file is listed (``FILE[TARGETID]`` for multi-target files), in a fixed order.
2. **Chunks**: the list is cut into chunks of ``chunk_size`` targets. A chunk is the unit of work: the
   model reads its spectra in one batched forward pass per ``batch_size``, then (``refine``) the
   redshift search runs per spectrum. Chunks are identical from run to run, so a resumed or a
   distributed run computes exactly what an uninterrupted single-process run does.
3. **Resume**: each finished chunk is appended as one JSON line to ``OUT.partial.jsonl`` and fsynced;
   a rerun with the same inputs and settings skips the chunks found there (a half-written last line
   is ignored), so SIGINT or SIGKILL loses at most the chunks in flight. The catalog is written at the
   end (to a temporary name, then renamed) and the partial file removed.
4. **Engines**: ``workers=1`` runs in this process; ``workers>1`` starts a local Dask cluster of that
   many single-threaded worker processes (``dask.distributed.LocalCluster``), or joins the cluster at
   ``scheduler`` — each worker loads the model once and takes chunks as they come.

ZWARN (:data:`ZWARN_BITS`) follows SDSS/redrock's idea: 0 is a clean answer, each set bit a reason to
doubt the row.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError, SpeclmError

#: ZWARN bits: name -> (bit, meaning). README lists them.
ZWARN_BITS: dict[str, tuple[int, str]] = {
    "LITTLE_COVERAGE": (0, "fewer than half of the model's wavelength bins hold good pixels"),
    "SMALL_DELTA_CHI2": (1, "the search's best z beats the best other z by Δχ²/ν < 25 (5σ)"),
    "NEGATIVE_FLUX": (2, "the median flux of the good pixels is ≤ 0"),
    "OUT_OF_DOMAIN": (3, "not a galaxy inside the model's training domain (its adapter card's: z ≤ 0.8 for v12, 0.5 "
                         "before): the model's z is not used"),
    "NO_UNCERTAINTIES": (4, "the file had no uncertainties: the noise was estimated from the flux"),
    "FEW_FEATURES": (5, "fewer than 2 spectral features support the stated z"),
    "MODEL_DISAGREES": (6, "the model's z differs from the stated z by more than 0.01 (1 + z)"),
    "NOT_CONFIDENT": (7, "the stated z is not confident (any of the search's reasons)"),
    "BAD_TARGET": (8, "the target could not be read or fitted: no z"),
    "NOT_REFINED": (9, "model only (no --refine): z is the model's, not checked against the spectrum"),
}

#: the catalog's columns: name -> (unit or "", description)
COLUMNS: dict[str, tuple[str, str]] = {
    "FILE": ("", "spectrum file"),
    "TARGET": ("", "address of the target: FILE or FILE[TARGETID]"),
    "TARGETID": ("", "the file's target id (DESI TARGETID, SDSS specObjID, LAMOST OBSID); 0 if none"),
    "RA": ("deg", "right ascension from the file"),
    "DEC": ("deg", "declination from the file"),
    "Z": ("", "the stated redshift (the search's with --refine, else the model's median)"),
    "Z_ERR": ("", "1σ uncertainty of Z"),
    "SPECTYPE": ("", "GALAXY, QSO or STAR"),
    "CONFIDENT": ("", "the stated z is confident"),
    "ZWARN": ("", "warning bits (README: ZWARN)"),
    "DELTACHI2": ("", "Δχ²/ν between the best z and the best other z"),
    "Z_MODEL": ("", "the model's median of p(z)"),
    "Z_LO": ("", "the model's 68% interval, lower end"),
    "Z_HI": ("", "the model's 68% interval, upper end"),
    "Z_MODE": ("", "the model's mode of p(z)"),
    "Z_MEAN": ("", "the model's mean of p(z)"),
    "SNR_R": ("", "median r-band S/N per pixel (5600-6800 Å)"),
    "Z_CATALOG": ("", "the file's own catalog z (SDSS, redrock, LAMOST pipeline); NaN if none"),
    "CLASS_CATALOG": ("", "the file's own catalog class"),
    "SURVEY": ("", "survey the reader recognised"),
    "ERROR": ("", "why a BAD_TARGET row has no z"),
}


@dataclass
class CatalogConfig(Config):
    """How a catalog run cuts and spreads the work (the model and search settings are their own)."""

    refine: bool = setting(True, "run the redshift search after the model (the assistant's stated z)")
    chunk_size: int = setting(16, "targets per chunk: the unit of resume and of distribution")
    batch_size: int = setting(16, "spectra per forward pass of the model (16: 1.1x faster per spectrum than 8 on "
                              "one CPU core; benchmarks/catalog_throughput.py)")
    merge_lora: bool = setting(True, "merge the LoRA adapter into the base weights for the catalog's forward passes "
                               "(1.3x faster on CPU; in bf16 a z may move by one unit of its last digit against the "
                               "unmerged model of `speclm predict`)")
    attention: str = setting("auto", "attention kernel of the catalog's forward passes: 'auto' = 'eager' on CPU "
                             "(PyTorch's CPU flash-attention kernel spends more on the digit tree's one-token steps "
                             "than their matmuls: 1.2x faster per spectrum), 'sdpa' on CUDA; 'sdpa' with "
                             "merge_lora=False gives `speclm predict`'s exact numbers")
    workers: int = setting(1, "1 = this process; N > 1 = a local Dask cluster of N single-threaded workers")
    scheduler: str = setting("", "address of a running Dask scheduler to use instead of a local cluster")
    adapter: str = setting("bundled", "LoRA adapter directory or 'bundled'")
    base: str = setting("", "base model ('' = the adapter card's)")
    device: str = setting("auto", "model device: auto, cpu, cuda")
    engine: str = setting("hf", "the model's digit tree on: 'hf' (transformers, cached and batched; CPU or CUDA) "
                          "or 'vllm' (vLLM offline inference on a GPU, the LoRA unmerged: finetune/digit_tree.py)")
    progress: bool = setting(True, "progress bar with spectra/s")

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.batch_size < 1 or self.workers < 1:
            raise ConfigError("chunk_size, batch_size and workers must be ≥ 1")
        if self.attention not in ("auto", "eager", "sdpa"):
            raise ConfigError(f"attention must be 'auto', 'eager' or 'sdpa', not {self.attention!r}")
        if self.engine not in ("hf", "vllm"):
            raise ConfigError(f"engine must be 'hf' or 'vllm', not {self.engine!r}")


def zwarn_of(row: dict) -> int:
    bits = 0

    def set_(name):
        nonlocal bits
        bits |= 1 << ZWARN_BITS[name][0]

    if row.get("ERROR"):
        set_("BAD_TARGET")
        return bits
    for name, flag in (("LITTLE_COVERAGE", row.pop("_little_coverage", False)),
                       ("NEGATIVE_FLUX", row.pop("_negative_flux", False)),
                       ("NO_UNCERTAINTIES", row.pop("_noise_estimated", False)),
                       ("OUT_OF_DOMAIN", row.pop("_out_of_domain", False)),
                       ("FEW_FEATURES", row.pop("_few_features", False)),
                       ("NOT_REFINED", row.pop("_not_refined", False))):
        if flag:
            set_(name)
    d = row.get("DELTACHI2")
    if d is not None and not (isinstance(d, float) and math.isnan(d)) and d < 25:
        set_("SMALL_DELTA_CHI2")
    zm, z = row.get("Z_MODEL"), row.get("Z")
    if zm is not None and z is not None and not math.isnan(zm) and abs(zm - z) > 0.01 * (1 + z):
        set_("MODEL_DISAGREES")
    if not row.get("CONFIDENT"):
        set_("NOT_CONFIDENT")
    return bits


# ------------------------------------------------------------------------------------------
# one chunk: read, model, search (runs in this process or on a Dask worker)

_RUNTIME: dict[tuple, Any] = {}
#: what a Dask worker's environment gets before Python starts: one BLAS/OpenMP thread, and no glibc malloc
#: threshold (see run_catalog: distributed's MALLOC_TRIM_THRESHOLD_ made the search 2x slower)
WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}


def _predictor(adapter: str, base: str, device: str, merge: bool = False, attention: str = "sdpa"):
    """The model, loaded once per process (a Dask worker keeps it between chunks); ``merge``: the LoRA
    folded into the base weights (peft's merge_adapter), no adapter matmuls per layer; ``attention``:
    the attention kernel (CatalogConfig.attention; 'auto' = eager on CPU, sdpa on CUDA)."""
    key = (adapter, base, device, merge, attention)
    if key not in _RUNTIME:
        try:  # on a Dask worker: one thread per process (two processes with two threads each on two cores
            from distributed import get_worker  # run ~4x slower than one thread each)

            w = get_worker()
            import torch

            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) > 1 and str(w.name).isdigit():  # LocalCluster names its workers 0..N-1: one core each
                os.sched_setaffinity(0, {cpus[int(w.name) % len(cpus)]})
        except (ImportError, ValueError):
            pass
        from speclm.finetune.predict import RedshiftPredictor
        from speclm.finetune.runtime import ModelRuntime, read_card, resolve_adapter

        path = resolve_adapter(adapter)
        b = base or read_card(path).get("base_model") or "embedded"
        _RUNTIME.clear()
        pred = RedshiftPredictor.from_runtime(ModelRuntime.load(b, adapter=path, device=device))
        if merge and hasattr(pred.rt.model, "merge_adapter"):
            pred.rt.model.merge_adapter()
        if attention == "auto":
            attention = "sdpa" if str(pred.rt.device).startswith("cuda") else "eager"
        pred.rt.model.set_attn_implementation(attention)
        pred.prefix_cache = {}  # the weights are fixed from here on: the prompt head's KV is kept between batches
        _RUNTIME[key] = pred
    return _RUNTIME[key]


def _vllm(adapter: str, base: str, pred):
    """The vLLM engine for the digit tree, once per process (the HF runtime beside it gives the tokenizer,
    the codec and the p(z) temperatures; load it on the CPU: ``CatalogConfig(device="cpu", engine="vllm")``)."""
    from speclm.finetune.digit_tree import VLLMDigits
    from speclm.finetune.runtime import read_card, resolve_adapter, resolve_base

    key = ("vllm", adapter, base)
    if key not in _RUNTIME:
        path = resolve_adapter(adapter)
        card = read_card(path)
        b = resolve_base(base or card.get("base_model") or "embedded")  # a model directory or a hub name
        _RUNTIME[key] = VLLMDigits(b, path, pred.digits, pred.dot, max_lora_rank=int((card.get("lora") or {}).get("r", 64)))
    return _RUNTIME[key]


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


def process_chunk(refs: list[str], cfg: dict) -> list[dict]:
    """Catalog rows of one chunk of target addresses (a module-level function: Dask pickles it)."""
    import numpy as np

    from speclm.finetune.predict import spectrum_prompt
    from speclm.tools.spectrum import r_band_snr, read_spectrum

    pred = _predictor(cfg["adapter"], cfg["base"], cfg["device"], bool(cfg.get("merge_lora")),
                      cfg.get("attention", "sdpa"))
    rows, keep, prompts = [], [], []
    for ref in refs:
        row = {"TARGET": ref, "FILE": ref, "TARGETID": 0, "ERROR": ""}
        try:
            s = read_spectrum(ref)
            m = s.meta
            row.update(FILE=str(m.get("file") or ref), RA=_nan(m.get("ra")), DEC=_nan(m.get("dec")),
                       Z_CATALOG=_nan(s.z_catalog), CLASS_CATALOG=str(m.get("class") or ""),
                       SURVEY=str(m.get("survey_name") or ""))
            tid = m.get("targetid", m.get("specobjid", m.get("obsid")))
            if tid is not None:
                row["TARGETID"] = int(tid)
            prompts.append(spectrum_prompt(s, pred.pre, pred.codec))
            keep.append((row, s))
        except SpeclmError as exc:
            row["ERROR"] = str(exc)
        rows.append(row)
    snr = [r_band_snr(s) for _, s in keep]
    if prompts and pred.shifts > 1:  # several readings per spectrum (the card's decoding): they need the pixels
        if cfg.get("engine") == "vllm":
            raise ConfigError("--engine vllm reads each spectrum once; this adapter's card asks for "
                              f"{pred.shifts} readings (decoding.shifts): use --engine hf")
        preds = pred.predict_spectra([s for _, s in keep], batch_size=max(1, cfg["batch_size"] // pred.shifts))
    elif prompts and cfg.get("engine") == "vllm":
        ids = [pred.rt.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        raw = _vllm(cfg["adapter"], cfg["base"], pred).raw_logits(ids)
        preds = pred.summarise_at_snr(raw, snr)
    else:
        preds = pred.predict_prompts(prompts, batch_size=cfg["batch_size"], snr=snr) if prompts else []
    for (row, s), p, sn in zip(keep, preds, snr):
        good = s.good
        row.update(Z_MODEL=p.z, Z_LO=p.z_lo, Z_HI=p.z_hi, Z_MODE=p.z_mode, Z_MEAN=p.z_mean, SNR_R=_nan(sn))
        w = s.wavelength[good]
        in_grid = w[(w >= pred.pre.wave_min) & (w <= pred.pre.wave_max)]
        cover = 0.0 if in_grid.size == 0 else (in_grid[-1] - in_grid[0]) / (pred.pre.wave_max - pred.pre.wave_min)
        row["_little_coverage"] = bool(cover < 0.5)
        row["_negative_flux"] = bool(good.any() and np.median(s.flux[good]) <= 0)
        row["_noise_estimated"] = bool(s.meta.get("noise_estimated"))
        if cfg["refine"]:
            try:
                from speclm.tools.redshift_search import find_redshift

                a = find_redshift(s, {**p.to_dict(), "z_catalog": s.z_catalog})
                row.update(Z=a.z, Z_ERR=_nan(a.z_err), SPECTYPE=a.spectype, CONFIDENT=bool(a.confident),
                           DELTACHI2=_nan(a.delta_chi2))
                row["_out_of_domain"] = not a.in_model_domain
                row["_few_features"] = len(a.features) < 2
            except SpeclmError as exc:
                row["ERROR"] = str(exc)
        else:
            row.update(Z=p.z, Z_ERR=(p.z_hi - p.z_lo) / 2, SPECTYPE="GALAXY", CONFIDENT=False, DELTACHI2=float("nan"))
            row["_not_refined"] = True
    for row in rows:
        row["ZWARN"] = zwarn_of(row)
        for k in list(row):
            if k.startswith("_"):
                row.pop(k)
    return rows


# ------------------------------------------------------------------------------------------
# the run: targets, chunks, resume, engines, the file

def list_all_targets(inputs) -> list[str]:
    """Every target address of every input, in a fixed order (unreadable files stay as one address,
    so that their error becomes a row)."""
    from speclm.tools.spectrum import expand_inputs, list_targets

    out: list[str] = []
    for f in expand_inputs(inputs):
        try:
            out += list_targets(f)
        except SpeclmError:
            out.append(f)
    return out


def _fingerprint(refs: list[str], cfg: CatalogConfig) -> str:
    h = hashlib.sha256()
    for k in ("refine", "chunk_size", "batch_size", "adapter", "base", "merge_lora", "attention", "engine"):
        h.update(f"{k}={getattr(cfg, k)}\n".encode())
    for r in refs:
        h.update(r.encode() + b"\n")
    return h.hexdigest()[:16]


def _read_partial(path: Path, fp: str) -> dict[int, list[dict]]:
    done: dict[int, list[dict]] = {}
    if not path.is_file():
        return done
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return done
    try:
        head = json.loads(lines[0])
    except json.JSONDecodeError:
        head = {}
    if head.get("fingerprint") != fp:
        raise ConfigError(f"{path}: a partial catalog from other inputs or settings; remove it or use another --out")
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # a half-written last line (the run was killed while writing it)
        done[int(rec["chunk"])] = rec["rows"]
    return done


def _append(fh, chunk: int, rows: list[dict]) -> None:
    fh.write(json.dumps({"chunk": chunk, "rows": rows}, allow_nan=True) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _ascii(text: str) -> str:
    """FITS headers hold ASCII only."""
    for a, b in (("Δχ²/ν", "dchi2/nu"), ("Δχ²", "dchi2"), ("σ", "sigma"), ("≤", "<="), ("≥", ">="), ("Å", "A"),
                 ("–", "-")):
        text = text.replace(a, b)
    return text.encode("ascii", "replace").decode()


def write_catalog(rows: list[dict], out: Path, meta: dict) -> Path:
    """The rows as a FITS binary table (units and column descriptions in the header) or parquet."""
    import numpy as np
    from astropy.table import Table

    cols = {}
    for name, (unit, _) in COLUMNS.items():
        vals = [r.get(name) for r in rows]
        if name in ("FILE", "TARGET", "SPECTYPE", "CLASS_CATALOG", "SURVEY", "ERROR"):
            cols[name] = np.array([str(v or "") for v in vals], dtype=str)
        elif name == "TARGETID":  # SDSS specObjIDs use all 64 bits: unsigned
            cols[name] = np.array([int(v) if v is not None and int(v) >= 0 else 0 for v in vals], dtype=np.uint64)
        elif name == "ZWARN":
            cols[name] = np.array([int(v) for v in vals], dtype=np.int64)
        elif name == "CONFIDENT":
            cols[name] = np.array([bool(v) for v in vals])
        else:
            cols[name] = np.array([float("nan") if v is None else float(v) for v in vals])
    t = Table(cols)
    for name, (unit, desc) in COLUMNS.items():
        if unit:
            t[name].unit = unit
        t[name].description = _ascii(desc)
    t.meta.update({k.upper()[:8]: v for k, v in meta.items()})
    for name, (bit, why) in ZWARN_BITS.items():
        t.meta[f"ZWBIT{bit}"] = _ascii(f"{name}: {why}")[:68]
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".parquet":
        t.write(tmp, format="parquet", overwrite=True)
    else:
        t.write(tmp, format="fits", overwrite=True)
    os.replace(tmp, out)
    return out


def run_catalog(inputs, out, cfg: CatalogConfig | None = None, *, stop_after_chunks: int | None = None) -> dict:
    """Write the catalog of every target of ``inputs`` to ``out`` (.fits or .parquet), resuming a
    partial run. ``stop_after_chunks`` (tests) stops like an interrupted run after that many chunks."""
    from tqdm.auto import tqdm

    cfg = cfg or CatalogConfig()
    out = Path(out)
    if out.suffix not in (".fits", ".parquet"):
        raise ConfigError(f"--out {out}: the catalog is written as .fits or .parquet")
    if cfg.engine == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("engine 'vllm' needs vLLM (pip install vllm, on a machine with a GPU); "
                              "engine 'hf' runs everywhere")
    out.parent.mkdir(parents=True, exist_ok=True)
    refs = list_all_targets(inputs)
    if not refs:
        raise SpeclmError("no spectra found in the given inputs")
    chunks = [refs[i:i + cfg.chunk_size] for i in range(0, len(refs), cfg.chunk_size)]
    fp = _fingerprint(refs, cfg)
    partial = out.with_name(out.name + ".partial.jsonl")
    done = _read_partial(partial, fp)
    todo = [k for k in range(len(chunks)) if k not in done]
    job = {"refine": cfg.refine, "batch_size": cfg.batch_size, "adapter": cfg.adapter, "base": cfg.base,
           "engine": cfg.engine,
           "device": cfg.device, "merge_lora": cfg.merge_lora, "attention": cfg.attention}
    t0 = time.perf_counter()
    n_new = 0
    if not partial.is_file() or not done:
        partial.write_text(json.dumps({"fingerprint": fp, "n_targets": len(refs)}) + "\n", encoding="utf-8")
    bar = tqdm(total=len(refs), initial=sum(len(chunks[k]) for k in done), unit="spectrum", desc="catalog",
               disable=not cfg.progress, smoothing=0.1)
    with open(partial, "a", encoding="utf-8") as fh:
        if cfg.workers == 1 and not cfg.scheduler:
            for i, k in enumerate(todo):
                if stop_after_chunks is not None and i >= stop_after_chunks:
                    bar.close()
                    return {"stopped": True, "done_chunks": len(done) + i, "n_chunks": len(chunks)}
                rows = process_chunk(chunks[k], job)
                _append(fh, k, rows)
                done[k] = rows
                n_new += len(rows)
                bar.update(len(rows))
        else:
            import dask
            from dask.distributed import Client, LocalCluster, as_completed

            # distributed's nanny sets MALLOC_TRIM_THRESHOLD_=64 KiB in each worker. Setting *any* glibc
            # malloc threshold turns off glibc's dynamic mmap threshold, so every large numpy temporary of the
            # search is mmap'ed and unmapped again: a chunk of 16 spectra took 14.4 s on a worker against
            # 6.8 s in this process (13.2 s with the threshold raised to 1 GiB; 7.3 s with no MALLOC_
            # variable at all — measured by benchmarks/dask_worker_malloc.py). So the workers get none.
            dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRON})

            cluster = None
            if cfg.scheduler:
                client = Client(cfg.scheduler)
            else:
                cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, env={"OMP_NUM_THREADS": "1"})
                client = Client(cluster)
            try:
                futures = [client.submit(process_chunk, chunks[k], job, key=f"chunk-{fp}-{k}", pure=False) for k in todo]
                index = {f.key: k for f, k in zip(futures, todo)}
                for i, fut in enumerate(as_completed(futures)):
                    rows = fut.result()
                    k = index[fut.key]
                    _append(fh, k, rows)
                    done[k] = rows
                    n_new += len(rows)
                    bar.update(len(rows))
                    if stop_after_chunks is not None and i + 1 >= stop_after_chunks:
                        for f in futures:
                            f.cancel()
                        bar.close()
                        return {"stopped": True, "done_chunks": len(done), "n_chunks": len(chunks)}
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
    bar.close()
    seconds = time.perf_counter() - t0
    rows = [r for k in range(len(chunks)) for r in done[k]]
    write_catalog(rows, out, {"refine": cfg.refine, "adapter": cfg.adapter, "ntarget": len(rows), "fingerpr": fp})
    partial.unlink(missing_ok=True)
    return {"out": str(out), "n_targets": len(rows), "n_new": n_new, "seconds": round(seconds, 2),
            "spectra_per_s": round(n_new / seconds, 3) if n_new and seconds > 0 else None,
            "n_bad": sum(1 for r in rows if r.get("ERROR"))}
