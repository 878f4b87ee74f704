"""`speclm eval redshift`: an honest held-out redshift evaluation of an adapter, next to baselines.

Honest means: (1) the evaluation spectra are never ones the adapter was trained on — we refuse the
"train" split of the adapter's own training dataset, refuse an evaluation set whose ids hash to the
card's ``train_ids_sha``, refuse ids listed in the adapter's ``train_ids.txt`` (if the trainer
wrote one), and refuse spectra whose preprocessed vectors are byte-identical to training vectors;
(2) the model is compared with what the same information gives without a language model: a kNN on
the same binned vectors of the same training spectra (``evals/baseline.py``) and the constant
"always answer the training median"; (3) everything needed to reproduce the number (adapter card,
dataset fingerprint, split, limit seed, preprocessing) is written next to it in ``report.json``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speclm.tools.config import Config, setting
from speclm.evals.metrics import json_default as _json_default

from speclm.evals.metrics import metrics_table, redshift_metrics
from speclm.tools.errors import ConfigError, SpeclmError

REPORT_KIND = "speclm-eval-redshift"


class EvalOverlapError(SpeclmError):
    """The evaluation set overlaps the adapter's (or the baseline's) training spectra."""


@dataclass
class RedshiftEvalConfig(Config):
    """One evaluation run (mirrors the CLI flags of `speclm eval redshift`)."""

    adapter: str = setting("bundled", "Adapter directory, or 'bundled'.")
    out: str = setting("", "Output directory for report.json and pred_vs_true.png.")
    base: str | None = setting(None, "Base model; default: the adapter card's base_model, else 'embedded'.")
    dataset: str | None = setting(None, "Dataset directory to evaluate on (one of dataset/folder).")
    split: str = setting("val", "Split of --dataset: val, test, or '' (unassigned); 'train' is refused for the adapter's own dataset.")
    folder: str | None = setting(None, "Folder of spectrum files (FITS etc.) with catalog z, instead of a dataset.")
    limit: int | None = setting(None, "Evaluate a random subset of this many spectra (seeded, z-unbiased).")
    seed: int = setting(0, "Seed of the --limit subset.")
    train_dataset: str | None = setting(None, "Dataset whose train split fits the kNN baseline; default: the adapter card's dataset path.")
    knn: bool = setting(True, "Fit and evaluate the kNN baseline.")
    refine: bool = setting(True, "Also run the assistant's redshift procedure (find_redshift: template fit + "
                            "spectral type) on each file of a --folder; reported as 'refined' beside the model.")
    catalog_class: str | None = setting(None, "Keep only files whose catalog CLASS is this (GALAXY, QSO, STAR); --folder only.")
    z_min: float | None = setting(None, "Keep only files with catalog z >= this; --folder only.")
    z_max: float | None = setting(None, "Keep only files with catalog z < this; --folder only.")
    unconstrained: bool = setting(False, "Also run plain (unconstrained) greedy generation and count its parse failures.")
    batch_size: int = setting(16, "Spectra per forward batch.")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N.")
    cache_features: bool = setting(True, "Cache preprocessed vectors inside the dataset directory (off for read-only data).")
    progress: bool = setting(True, "Show progress bars.")

    def __post_init__(self):
        if bool(self.dataset) == bool(self.folder):
            raise ConfigError("give exactly one of --dataset DIR or --folder DIR")
        if not self.out:
            raise ConfigError("--out DIR is required")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be >= 1")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        if self.catalog_class is not None and self.catalog_class.upper() not in ("GALAXY", "QSO", "STAR"):
            raise ConfigError(f"--class {self.catalog_class!r}: use GALAXY, QSO or STAR")
        if (self.catalog_class or self.z_min is not None or self.z_max is not None) and not self.folder:
            raise ConfigError("--class / --z-min / --z-max select files of a --folder by their catalog entries")
        if self.split not in ("train", "val", "test", ""):
            raise ConfigError(f"unknown split {self.split!r}: use val, test or '' (unassigned)")


# ----------------------------------------------------------------------------------- helpers

def ids_sha(ids) -> str:
    """The trainer's fingerprint of an id list (train.py writes ``train_ids_sha`` with it)."""
    from speclm.finetune.datasets import ids_sha as _fingerprint

    return _fingerprint(list(ids))


def _card_dataset(card: dict) -> tuple[str | None, str | None]:
    """(path, fingerprint) of the dataset an adapter was trained on, as far as its card records it."""
    d = card.get("dataset") or {}
    if isinstance(d, str):
        return d, None
    path = d.get("path") or d.get("dir") or d.get("dataset")
    return (str(path) if path else None), d.get("fingerprint")


def _same_path(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _row_keys(X: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(np.ascontiguousarray(r, dtype=np.float32).tobytes(), digest_size=12).digest() for r in X]


def card_summary(card: dict, path: str) -> dict:
    keys = ("base_model", "speclm_version", "steps", "n_train", "n_val", "train_ids_sha", "dataset", "seed",
            "final_loss", "metrics_val", "train_seconds", "tokens_per_second", "device", "note")
    out = {k: card[k] for k in keys if k in card}
    preset = card.get("preset") or {}
    out["preset"] = preset.get("name") or preset.get("description")
    out["train"] = {k: (card.get("train") or {}).get(k) for k in ("lr", "epochs", "batch_size", "grad_accum")}
    out["lora"] = card.get("lora")
    out["path"] = path
    return out


@dataclass
class EvalSet:
    """Preprocessed vectors of the objects to evaluate, with their ids and true redshifts."""

    ids: list
    z: np.ndarray
    X: np.ndarray
    info: dict
    skipped: list = field(default_factory=list)
    spectra: list | None = None  # the Spectrum objects (folders only: the refine step needs the pixels)
    classes: list | None = None  # catalog CLASS per object, where the files carry one
    snr: np.ndarray | None = None  # r-band S/N per object (NaN: unmeasurable), for the S/N-dependent p(z) calibration


_FEATURES: dict = {}
_FINGERPRINTS: dict = {}


def _ds_key(ds) -> tuple:
    from speclm.finetune.datasets import SPECTRA_FILE

    st = (ds.path / SPECTRA_FILE).stat()
    return str(ds.path.resolve()), len(ds), st.st_mtime_ns, st.st_size


def dataset_fingerprint(ds) -> str:
    """``ds.fingerprint()`` once per process (it reads every flux value)."""
    key = _ds_key(ds)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = ds.fingerprint()
    return _FINGERPRINTS[key]


def split_features(ds, split: str, pre, cache: bool, progress: bool) -> np.ndarray:
    """``ds.features(split, pre)``, computing all rows at most once per process.

    Why: with ``cache=False`` (a read-only dataset) the dataset computes every row for each call,
    and an evaluation asks twice (held-out split + train split for the baselines).
    """
    key = (*_ds_key(ds), pre.fingerprint())
    if key not in _FEATURES:
        _FEATURES.clear()  # keep at most one dataset's vectors in memory
        _FEATURES[key] = ds.features(None, pre, progress=progress, cache=cache)
    pos = {sid: i for i, sid in enumerate(ds.ids(None))}
    return _FEATURES[key][[pos[sid] for sid in ds.ids(split)]]


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Positions to evaluate: all, or a seeded random subset (kept in file order)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def load_dataset_split(cfg: RedshiftEvalConfig, pre) -> EvalSet:
    from speclm.finetune.datasets import open_dataset

    ds = open_dataset(cfg.dataset)
    if cfg.split not in ds.splits:
        raise ConfigError(f"{cfg.dataset} has no {cfg.split!r} split (it has {ds.splits})")
    ids = ds.ids(cfg.split)
    z = ds.z(cfg.split)
    t0 = time.perf_counter()
    X = split_features(ds, cfg.split, pre, cfg.cache_features, cfg.progress)
    prep_s = time.perf_counter() - t0
    skipped = [{"id": ids[i], "reason": "no catalog z"} for i in np.flatnonzero(~np.isfinite(z))]
    skipped += [{"id": ids[i], "reason": "preprocessing refused (too few good pixels in range)"}
                for i in np.flatnonzero(np.isfinite(z) & np.isnan(X).any(1))]
    usable = np.flatnonzero(np.isfinite(z) & ~np.isnan(X).any(1))
    pick = usable[_subset(usable.size, cfg.limit, cfg.seed)]
    info = {"source": "dataset", "path": str(Path(cfg.dataset).resolve()), "fingerprint": dataset_fingerprint(ds),
            "split": cfg.split, "n_split": len(ids), "n_usable": int(usable.size), "limit": cfg.limit,
            "limit_seed": cfg.seed if cfg.limit else None, "simulated": ds.meta.get("simulated"),
            "dataset_source": ds.meta.get("source"), "selection": ds.meta.get("selection"),
            "preprocess_seconds": round(prep_s, 3)}
    return EvalSet([ids[i] for i in pick], z[pick], X[pick], info, skipped, snr=dataset_snr(ds, cfg.split, pick))


def dataset_spectra(path: str, split: str, ids: list) -> list:
    """The Spectrum objects of ``ids`` (in that order) from a dataset split."""
    from speclm.finetune.datasets import open_dataset

    ds = open_dataset(path)
    want = set(ids)
    got = {s.meta.get("id"): s for s in ds.iter_spectra(split) if s.meta.get("id") in want}
    return [got[i] for i in ids]


def load_folder(cfg: RedshiftEvalConfig, pre) -> EvalSet:
    """Every readable spectrum file with a catalog z; the rest are skipped and listed with why."""
    from tqdm.auto import tqdm

    from speclm.finetune.datasets import FOLDER_EXTENSIONS
    from speclm.finetune.preprocess import preprocess
    from speclm.tools.errors import SpectrumError
    from speclm.tools.spectrum import expand_inputs, r_band_snr, read_targets

    folder = Path(cfg.folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a directory")
    files = [Path(f) for f in expand_inputs([folder])]  # its spectrum files, redrock catalogs left out
    if not files:
        raise ConfigError(f"{folder}: no spectrum files ({', '.join(FOLDER_EXTENSIONS)})")
    ids, zs, rows, skipped, spectra, classes = [], [], [], [], [], []
    h = hashlib.sha256()
    t0 = time.perf_counter()

    def targets():  # every target of every file (a DESI coadd holds many); a broken one is skipped
        for f in files:
            try:
                for ref, s in read_targets(f):
                    yield f, Path(ref).name, s
            except SpectrumError as exc:
                yield f, f.name, exc

    for f, name, s in tqdm(targets(), desc="reading", unit="spectrum", disable=not cfg.progress):
        try:
            if isinstance(s, Exception):
                raise s
            z = s.z_catalog
            if z is None or not math.isfinite(z):
                skipped.append({"id": name, "reason": "no catalog z in the file"})
                continue
            cls = str(s.meta.get("class") or "").strip().upper() or None
            if cfg.catalog_class and cls != cfg.catalog_class.upper():
                continue  # not selected (counted in n_files - n_selected)
            if (cfg.z_min is not None and z < cfg.z_min) or (cfg.z_max is not None and z >= cfg.z_max):
                continue
            x = preprocess(s, pre)
        except Exception as exc:  # noqa: BLE001 - one bad user file must not end the evaluation
            skipped.append({"id": name, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
            continue
        ids.append(name)
        zs.append(float(z))
        rows.append(x)
        spectra.append(s)
        classes.append(cls)
        h.update(name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    prep_s = time.perf_counter() - t0
    if not ids:
        raise ConfigError(f"{folder}: none of {len(files)} files is usable (first: {skipped[0]['reason']})")
    X = np.vstack(rows).astype(np.float32)
    pick = _subset(len(ids), cfg.limit, cfg.seed)
    info = {"source": "folder", "path": str(folder.resolve()), "fingerprint": h.hexdigest()[:16], "split": None,
            "n_files": len(files), "n_usable": len(ids), "limit": cfg.limit,
            "limit_seed": cfg.seed if cfg.limit else None, "read_and_preprocess_seconds": round(prep_s, 3),
            "selection": {"class": cfg.catalog_class, "z_min": cfg.z_min, "z_max": cfg.z_max}}
    sn = [r_band_snr(spectra[i]) for i in pick]
    return EvalSet([ids[i] for i in pick], np.asarray(zs)[pick], X[pick], info, skipped,
                   spectra=[spectra[i] for i in pick], classes=[classes[i] for i in pick],
                   snr=np.array([np.nan if v is None else v for v in sn], dtype=float))


def load_training_set(path: str, pre, card: dict, cache: bool, progress: bool):
    """(X, z, ids, info) of the training spectra for the kNN, matched to the adapter's if possible.

    The card stores only a hash of the adapter's training ids; we try the subsets the trainer draws
    (the whole usable train split; `speclm train`'s z-uniform ``zbin_split`` of n_train with the
    card's seed; the first n_train) and say in ``info["match"]`` whether we found the
    exact set or fell back to the whole train split.
    """
    from speclm.finetune.datasets import open_dataset

    ds = open_dataset(path)
    if "train" not in ds.splits:
        raise ConfigError(f"{path} has no 'train' split to fit the kNN baseline on")
    ids = ds.ids("train")
    z = ds.z("train")
    X = split_features(ds, "train", pre, cache, progress)
    want = card.get("train_ids_sha")
    n_card = card.get("n_train")
    seed = card.get("seed", (card.get("train") or {}).get("seed", 0)) or 0
    usable = np.flatnonzero(np.isfinite(z) & ~np.isnan(X).any(1))
    match, sel = "train split (adapter's training ids unknown)", usable
    if want:
        from speclm.finetune.datasets import zbin_split

        candidates = {"whole train split": lambda: usable}
        if n_card and n_card < len(usable):
            candidates[f"z-uniform subset of {n_card} (zbin_split, seed {seed})"] = \
                lambda: usable[zbin_split(z[usable], n_card, 0, seed=seed)[0]]
            candidates[f"first {n_card} of the train split"] = lambda: usable[:n_card]
        match = "whole train split (no subset matched the card's train_ids_sha)"
        for name, pick in candidates.items():
            idx = pick()
            if ids_sha([ids[i] for i in idx]) == want:
                match, sel = f"exact: {name} (train_ids_sha matches)", idx
                break
    good = sel[np.isfinite(z[sel]) & ~np.isnan(X[sel]).any(1)]
    info = {"path": str(Path(path).resolve()), "fingerprint": dataset_fingerprint(ds), "n": int(good.size), "match": match}
    return X[good], z[good], [ids[i] for i in good], info


def check_overlap(card: dict, adapter_path: str, ev: EvalSet, cfg: RedshiftEvalConfig,
                  train_X: np.ndarray | None = None, train_is_adapters: bool = False) -> list[str]:
    """Raise EvalOverlapError when the evaluation set contains training spectra; returns what was checked.

    Ids are compared only within the adapter's own dataset: two datasets may both name a spectrum
    "spec-0" without sharing it. Across datasets and folders the content check (byte-identical
    preprocessed vectors) catches a training spectrum that comes back under another name.
    """
    done = []
    c_path, c_fp = _card_dataset(card)
    if ev.info["source"] == "dataset":
        same = (c_fp and c_fp == ev.info["fingerprint"]) or _same_path(c_path, ev.info["path"])
        if same and cfg.split == "train":
            raise EvalOverlapError(
                f"{cfg.dataset} is the dataset this adapter was trained on; its 'train' split is not a "
                "held-out set (use --split val or test)")
        done.append("split vs adapter's dataset: " + ("same dataset, held-out split" if same else "different dataset"))
    if card.get("train_ids_sha"):
        if ids_sha(ev.ids) == card["train_ids_sha"]:
            raise EvalOverlapError("the evaluation ids are exactly the adapter's training ids (train_ids_sha matches)")
        done.append("evaluation ids != adapter training ids (train_ids_sha)")
    from speclm.finetune.runtime import read_train_ids

    listed = card.get("train_ids") or read_train_ids(adapter_path) or None
    if listed:
        both = set(map(str, listed)) & set(map(str, ev.ids))
        if both and (ev.info["source"] == "dataset" and (_same_path(c_path, ev.info["path"]) or c_fp == ev.info["fingerprint"])):
            raise EvalOverlapError(f"{len(both)} evaluation spectra are in the adapter's training ids, e.g. {sorted(both)[:3]}")
        done.append(f"evaluation ids vs {len(listed)} listed training ids: {'no' if not both else len(both)} shared")
    if train_X is not None and len(train_X):
        dup = set(_row_keys(train_X)) & set(_row_keys(ev.X))
        if dup:
            who = "the adapter's (and the kNN's) training" if train_is_adapters else "the kNN training"
            raise EvalOverlapError(f"{len(dup)} evaluation spectra are identical (after preprocessing) to spectra in "
                                   f"{who} set; evaluate on held-out spectra")
        done.append(f"no evaluation vector identical to any of {len(train_X)} training vectors")
    return done


# ----------------------------------------------------------------------------------- the run

def run_redshift_eval(cfg: RedshiftEvalConfig) -> dict:
    """Evaluate; writes ``report.json`` and ``pred_vs_true.png`` into ``cfg.out``; returns the report."""
    from speclm.evals.baseline import KNNRedshift
    from speclm.evals.plots import Panel, plot_pred_vs_true
    from speclm.finetune.codec import build_prompt
    from speclm.finetune.predict import RedshiftPredictor
    from speclm.finetune.preprocess import PreprocessConfig
    from speclm.finetune.runtime import ModelRuntime, read_card, resolve_adapter

    out = Path(cfg.out).expanduser()
    adapter_path = resolve_adapter(cfg.adapter)
    card = read_card(adapter_path)
    if not card.get("preprocess") or not card.get("codec"):
        raise ConfigError(f"{adapter_path} has no training_card.json with preprocess/codec; cannot evaluate it")
    pre = PreprocessConfig.from_dict(card["preprocess"])
    ev = load_dataset_split(cfg, pre) if cfg.dataset else load_folder(cfg, pre)

    # training set of the baselines: the adapter's, unless told otherwise
    c_path, c_fp = _card_dataset(card)
    train_path = cfg.train_dataset or (c_path if c_path and Path(c_path).expanduser().is_dir() else None)
    tr_X = tr_z = tr_ids = None
    train_info: dict = {"path": None, "note": "no training dataset known: pass --train-dataset DIR for the baselines"}
    if train_path:
        tr_X, tr_z, tr_ids, train_info = load_training_set(train_path, pre, card, cfg.cache_features, cfg.progress)
        train_info["is_adapters_dataset"] = bool((c_fp and c_fp == train_info["fingerprint"]) or _same_path(c_path, train_path))
    checks = check_overlap(card, adapter_path, ev, cfg, tr_X, bool(train_info.get("is_adapters_dataset")))

    # the model
    base = cfg.base or card.get("base_model") or "embedded"
    t0 = time.perf_counter()
    rt = ModelRuntime.load(base, adapter_path, device=cfg.device)
    load_s = time.perf_counter() - t0
    pred = RedshiftPredictor.from_runtime(rt)
    t0 = time.perf_counter()
    snr = None if ev.snr is None else [None if not np.isfinite(v) else float(v) for v in ev.snr]
    if pred.shifts > 1:  # several readings per spectrum (the card's decoding): they need the pixels
        spectra = ev.spectra if ev.spectra is not None else dataset_spectra(cfg.dataset, cfg.split, ev.ids)
        res = pred.predict_spectra(spectra, batch_size=max(1, cfg.batch_size // pred.shifts), progress=cfg.progress)
    else:
        res = pred.predict_values(ev.X, batch_size=cfg.batch_size, progress=cfg.progress, snr=snr)
    pred_s = time.perf_counter() - t0
    zm = np.array([r.z for r in res])
    lo = np.array([r.z_lo for r in res])
    hi = np.array([r.z_hi for r in res])
    train_median = float(np.median(tr_z)) if tr_z is not None and len(tr_z) else None
    iv95 = (np.array([r.z_lo95 for r in res], float), np.array([r.z_hi95 for r in res], float))
    iv99 = (np.array([r.z_lo99 for r in res], float), np.array([r.z_hi99 for r in res], float))
    metrics = {"model": redshift_metrics(ev.z, zm, lo, hi, train_median=train_median, z95=iv95, z99=iv99)}
    metrics["model_greedy"] = redshift_metrics(ev.z, [r.z_greedy for r in res])
    timing = {"device": rt.device, "base_load_seconds": round(load_s, 2), "predict_seconds": round(pred_s, 3),
              "spectra_per_s": round(len(res) / pred_s, 2) if pred_s > 0 else None, "batch_size": cfg.batch_size,
              "readings_per_spectrum": pred.shifts}
    z_unc = None
    if cfg.unconstrained:
        prompts = [build_prompt(x, pred.codec) for x in ev.X]
        t0 = time.perf_counter()
        z_unc = pred.generate_unconstrained(prompts)
        timing["unconstrained_spectra_per_s"] = round(len(prompts) / (time.perf_counter() - t0), 2)
        metrics["model_unconstrained"] = redshift_metrics(ev.z, z_unc)

    # baselines
    knn_desc = None
    kz = klo = khi = None
    if train_median is not None:
        metrics["constant"] = redshift_metrics(ev.z, np.full(len(ev.z), train_median))
        metrics["constant"]["value"] = train_median
    if cfg.knn and tr_X is not None and len(tr_X) >= 2:
        t0 = time.perf_counter()
        knn = KNNRedshift().fit(tr_X, tr_z)
        kz, klo, khi = knn.predict(ev.X)
        knn_desc = knn.describe() | {"seconds": round(time.perf_counter() - t0, 3)}
        k95, k99 = knn.interval(kz, 95), knn.interval(kz, 99)
        metrics["knn"] = redshift_metrics(ev.z, kz, klo, khi, train_median=train_median, z95=k95, z99=k99)

    # the assistant's stated redshift: find_redshift with the model's answer as evidence
    refined = None
    if cfg.refine and ev.spectra is not None:
        from tqdm.auto import tqdm

        from speclm.tools.redshift_search import find_redshift

        t0 = time.perf_counter()
        refined = [find_redshift(s, r.to_dict()) for s, r in
                   tqdm(list(zip(ev.spectra, res)), desc="refine", unit="spectrum", disable=not cfg.progress)]
        timing["refine_seconds_per_spectrum"] = round((time.perf_counter() - t0) / max(1, len(refined)), 3)
        zr = np.array([a.z for a in refined])
        metrics["refined"] = redshift_metrics(ev.z, zr)
        metrics["refined"].update(refine_summary(ev.z, refined, ev.classes))

    model_cols = {"z": zm, "lo": lo, "hi": hi, "iv95": iv95, "iv99": iv99}
    knn_cols = None if kz is None else {"z": kz, "lo": klo, "hi": khi, "iv95": k95, "iv99": k99}
    breakdowns = {"z": breakdown(ev.z, ev.z, Z_EDGES, model_cols, knn_cols)}
    if snr is not None:
        breakdowns["snr"] = breakdown([np.nan if v is None else v for v in snr], ev.z, SNR_EDGES, model_cols, knn_cols)

    preds = []
    for i, r in enumerate(res):
        row = {"id": ev.ids[i], "z_true": float(ev.z[i]), "z": r.z, "z_lo": r.z_lo, "z_hi": r.z_hi,
               "z_mode": r.z_mode, "z_mean": r.z_mean, "z_greedy": r.z_greedy}
        if snr is not None:
            row.update(snr_r=snr[i], pz_temperature=pred.temperature_for(snr[i]), pz_outlier=pred.outlier_for(snr[i]))
        if kz is not None:
            row.update(knn_z=float(kz[i]), knn_z_lo=float(klo[i]), knn_z_hi=float(khi[i]))
        if z_unc is not None:
            row["z_unconstrained"] = z_unc[i]
        if refined is not None:
            a = refined[i]
            row.update(catalog_class=ev.classes[i], refined_z=a.z, refined_z_err=a.z_err, spectype=a.spectype,
                       confident=a.confident, z_source=a.z_source, warnings=a.warnings,
                       alternatives=a.alternatives[:3])
        preds.append(row)

    panels = [Panel("speclm (LoRA, constrained)", ev.z, zm, metrics["model"]["mae"])]
    if refined is not None:
        panels.append(Panel("refined (find_redshift)", ev.z, zr, metrics["refined"]["mae"]))
    if kz is not None:
        panels.append(Panel(f"kNN baseline (k={knn_desc['k']}, {knn_desc['metric']})", ev.z, kz, metrics["knn"]["mae"]))
    where = ev.info["path"] if ev.info["source"] == "folder" else f"{Path(ev.info['path']).name}:{ev.info['split']}"
    out.mkdir(parents=True, exist_ok=True)
    plot_pred_vs_true(panels, out / "pred_vs_true.png", suptitle=f"{Path(adapter_path).name} on {where}")

    report = {
        "kind": REPORT_KIND, "format_version": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "speclm_version": _speclm_version(),
        "config": asdict(cfg) | {"base_resolved": base},
        "adapter": card_summary(card, adapter_path),
        "eval_set": ev.info | {"n": len(ev.ids), "n_skipped": len(ev.skipped), "skipped": ev.skipped[:500]},
        "train_set": train_info,
        "preprocess": pre.to_dict(),
        "overlap_checks": checks,
        "metrics": metrics,
        "breakdown": breakdowns,
        "baseline": knn_desc,
        "timing": timing,
        "plot": "pred_vs_true.png",
        "predictions": preds,
    }
    tmp = out / f".report.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(report, indent=1, default=_json_default))
    os.replace(tmp, out / "report.json")
    return report


def _speclm_version() -> str:
    from speclm import __version__

    return __version__


def refine_summary(z_true, answers, classes) -> dict:
    """Scores of the stated redshift: right = |Δz| <= 0.01(1+z); how many are confident, how many
    confident AND wrong (must be 0), how many are flagged (not confident); the spectral-type
    confusion against the files' catalog class."""
    zt = np.asarray(z_true, float)
    zr = np.array([a.z for a in answers])
    right = np.abs(zr - zt) <= 0.01 * (1 + zt)
    conf = np.array([a.confident for a in answers])
    types = [a.spectype for a in answers]
    confusion: dict = {}
    for c, t in zip(classes or [None] * len(types), types):
        confusion.setdefault(c or "unknown", {}).setdefault(t, 0)
        confusion[c or "unknown"][t] += 1
    typed_ok = [c is None or c == t for c, t in zip(classes or [None] * len(types), types)]
    return {"frac_right_0.01": float(right.mean()), "n_right": int(right.sum()), "n_confident": int(conf.sum()),
            "n_confident_wrong": int((conf & ~right).sum()), "n_flagged": int((~conf).sum()),
            "n_wrong_unflagged": int((conf & ~right).sum()),
            "frac_type_right": float(np.mean(typed_ok)), "frac_right_and_typed": float(np.mean(right & np.array(typed_ok))),
            "type_confusion": confusion}


def confusion_table(conf: dict) -> str:
    types = ("GALAXY", "QSO", "STAR")
    lines = ["catalog class \\ stated type " + "".join(f"{t:>8s}" for t in types)]
    for c, row in sorted(conf.items()):
        lines.append(f"{c:<28s}" + "".join(f"{row.get(t, 0):>8d}" for t in types))
    return "\n".join(lines)


SNR_EDGES = (0.0, 1.0, 2.0, 5.0, 10.0, math.inf)  # r-band S/N per pixel
Z_EDGES = (0.0, 0.05, 0.15, 0.3, 0.5, 0.8, math.inf)


def breakdown(values, z_true, edges, model: dict, knn: dict | None = None) -> list[dict]:
    """The model's (and the kNN's) metrics inside each range [edges[k], edges[k+1]) of ``values``
    (the r-band S/N or the true z): where a method fails, side by side. Ranges without spectra are left out."""
    v = np.asarray(values, dtype=np.float64)
    zt = np.asarray(z_true, dtype=np.float64)
    rows = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = np.isfinite(v) & (v >= a) & (v < b)
        if not sel.any():
            continue
        row = {"lo": float(a), "hi": float(b), "n": int(sel.sum())}
        for name, c in (("model", model), ("knn", knn)):
            if c is None:
                continue
            row[name] = redshift_metrics(zt[sel], np.asarray(c["z"], float)[sel], np.asarray(c["lo"], float)[sel],
                                         np.asarray(c["hi"], float)[sel],
                                         z95=tuple(np.asarray(x, float)[sel] for x in c["iv95"]),
                                         z99=tuple(np.asarray(x, float)[sel] for x in c["iv99"]))
        rows.append(row)
    return rows


def breakdown_table(rows: list[dict], label: str) -> str:
    """One line per range: n, then MAE / beyond 0.05 / confidently wrong for the model and the kNN."""
    has_knn = any("knn" in r for r in rows)
    head = f"{label:<12} {'n':>5}  {'MAE':>7} {'>0.05':>6} {'conf.wr':>7}"
    if has_knn:
        head += f"  {'kNN MAE':>7} {'>0.05':>6} {'conf.wr':>7}"
    lines = [head]
    for r in rows:
        hi = "inf" if not math.isfinite(r["hi"]) else f"{r['hi']:g}"
        m = r["model"]
        rng = f"{r['lo']:g}-{hi}"
        line = (f"{rng:<12} {r['n']:>5}  {m['mae']:>7.4f} "
                f"{m['outlier_frac_0.05']:>6.1%} {m['confidently_wrong']:>7.1%}")
        if "knn" in r:
            k = r["knn"]
            line += f"  {k['mae']:>7.4f} {k['outlier_frac_0.05']:>6.1%} {k['confidently_wrong']:>7.1%}"
        lines.append(line)
    return "\n".join(lines)


def summary_table(report: dict) -> str:
    """The compact table the CLI prints: model vs refined vs kNN vs constant (and unconstrained if run)."""
    m = report["metrics"]
    cols = {"model": m["model"]}
    if "refined" in m:
        cols["refined"] = m["refined"]
    if "model_unconstrained" in m:
        cols["unconstrained"] = m["model_unconstrained"]
    if "knn" in m:
        cols["kNN"] = m["knn"]
    if "constant" in m:
        cols[f"median={m['constant']['value']:.3f}"] = m["constant"]
    t = report["timing"]
    ev = report["eval_set"]
    head = (f"{report['adapter']['path']} on {ev['path']}" + (f" [{ev['split']}]" if ev.get("split") else "")
            + f": n={ev['n']}" + (f" (skipped {ev['n_skipped']})" if ev["n_skipped"] else "")
            + f", {t['spectra_per_s']} spectra/s on {t['device']}")
    out = head + "\n" + metrics_table(cols)
    if "refined" in m:
        r = m["refined"]
        out += (f"\nrefined (find_redshift): {r['n_right']}/{r['n']} within 0.01(1+z); {r['n_confident']} confident, "
                f"{r['n_confident_wrong']} of them wrong; {r['n_flagged']} flagged not confident; "
                f"type right {r['frac_type_right']:.0%}\n" + confusion_table(r["type_confusion"]))
    if "knn" in m and m["knn"].get("mae"):
        out += f"\nLLM/kNN MAE ratio: {m['model']['mae'] / m['knn']['mae']:.2f}"
    for key, label in (("snr", "S/N (r)"), ("z", "true z")):
        rows = report.get("breakdown", {}).get(key)
        if rows and len(rows) > 1:
            out += "\n" + breakdown_table(rows, label)
    return out


def dataset_snr(ds, split: str | None, rows=None) -> np.ndarray:
    """r-band S/N (:func:`speclm.tools.spectrum.r_band_snr`) of a split's spectra, in split order
    (NaN where it cannot be measured)."""
    from speclm.tools.spectrum import r_band_snr

    sel = ds._sel(split)
    want = sel if rows is None else sel[np.asarray(rows, dtype=np.int64)]
    by_row = {}
    for r, spec in zip(np.unique(want), ds.iter_spectra(None, rows=want)):
        v = r_band_snr(spec)
        by_row[int(r)] = np.nan if v is None else v
    return np.array([by_row[int(r)] for r in want], dtype=float)


def _fit_T(raws, pred, z, grid, target, rows=None) -> list[dict]:
    """Coverage, width and MAE of every T on the grid (over ``rows`` of the concatenated logits)."""
    out = []
    if rows is not None:  # summarise only those rows (the same numbers, a fraction of the time)
        raws, z = [_take(concat_logits(raws), rows)], z[rows]
    for T in grid:
        res = [r for raw in raws for r in pred.summarise_raw(raw, float(T))]
        lo, hi, zm = (np.array([getattr(r, k) for r in res]) for k in ("z_lo", "z_hi", "z"))
        zz = z
        out.append({"T": float(T), "coverage_68": float(np.mean((lo <= zz) & (zz <= hi))),
                    "median_width": float(np.median(hi - lo)), "mae": float(np.mean(np.abs(zm - zz)))})
    return out


def _best(rows: list[dict], target: float) -> dict:
    return min(rows, key=lambda r: (abs(r["coverage_68"] - target), abs(math.log(r["T"]))))


#: the outlier weights tried, smallest first (the share of p(z) spread evenly over the model's domain)
OUTLIER_GRID = (0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


def concat_logits(raws: list[dict]) -> dict:
    """Batches of digit logits (:meth:`RedshiftPredictor.raw_logits`) as one dict, in order."""
    return {k: np.concatenate([r[k] for r in raws]) for k in raws[0]}


def _take(raw: dict, rows) -> dict:
    """Rows of a concatenated digit-logit dict (:meth:`RedshiftPredictor.raw_logits`)."""
    return {k: v[rows] for k, v in raw.items()}


def _coverages(pred, raw, z, T: float, w: float) -> tuple[float, float]:
    """(68% coverage, 99% coverage) of one temperature and outlier weight on a logit dict."""
    res = pred.summarise_raw(raw, T, w)
    lo, hi = np.array([r.z_lo for r in res]), np.array([r.z_hi for r in res])
    lo99, hi99 = np.array([r.z_lo99 for r in res]), np.array([r.z_hi99 for r in res])
    return float(np.mean((lo <= z) & (z <= hi))), float(np.mean((lo99 <= z) & (z <= hi99)))


def fit_outlier(pred, raw, z, target: float = 0.68, target99: float = 0.99, grid=OUTLIER_GRID,
                t_grid=None) -> dict:
    """The smallest outlier weight w whose 99% intervals hold ``target99`` of the truths, each w with its
    temperature refitted for the 68% ``target`` (the floor widens the 68% interval too). Returns
    {"w", "T", "coverage_68", "coverage_99", "coverage_99_at_w0"}; the largest w tried when none reaches."""
    t_grid = np.round(np.exp(np.linspace(np.log(0.1), np.log(3.0), 35)), 4) if t_grid is None else t_grid
    t_grid = sorted(float(t) for t in t_grid)
    first = None
    for w in grid:
        # the 68% coverage rises with T: bisect the grid for the target, then keep the closer neighbour
        seen: dict[int, tuple] = {}

        def at(i: int) -> tuple:
            if i not in seen:
                seen[i] = (t_grid[i], *_coverages(pred, raw, z, t_grid[i], float(w)))
            return seen[i]

        lo, hi = 0, len(t_grid) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if at(mid)[1] < target else (lo, mid)
        best = min((at(lo), at(hi)), key=lambda r: (abs(r[1] - target), abs(math.log(r[0]))))
        row = {"w": float(w), "T": float(best[0]), "coverage_68": best[1], "coverage_99": best[2]}
        first = first or row
        if row["coverage_99"] >= target99:
            break
    row["coverage_99_at_w0"] = first["coverage_99"]
    return row


def _weights_id(card: dict) -> dict:
    """What identifies an adapter's weights (two cards with the same id differ only in calibration)."""
    return {"train_ids_sha": card.get("train_ids_sha"), "steps": card.get("steps"),
            "base_model": card.get("base_model"), "dataset": card.get("dataset")}


def compute_split_logits(adapter: str, dataset: str, split: str = "val", limit: int | None = None, seed: int = 0,
                         out=None, batch_size: int = 16, device: str = "auto", progress: bool = True) -> dict:
    """Digit logits of an adapter on a simulated split, with the truths, r-band S/N and rows they belong to.

    ``out``: also store them (``.npz``, written whole or not at all) for :func:`load_split_logits`.
    Refuses the train split. Returns {"raw": logits dict, "z", "snr", "rows", "meta"}."""
    from tqdm.auto import tqdm

    from speclm.finetune.codec import build_prompt
    from speclm.finetune.datasets import open_dataset
    from speclm.finetune.predict import RedshiftPredictor
    from speclm.finetune.preprocess import PreprocessConfig
    from speclm.finetune.runtime import ModelRuntime, read_card, resolve_adapter

    if split == "train":
        raise ConfigError("calibrate on a held-out split (val), never on training spectra")
    path = resolve_adapter(adapter)
    card = read_card(path)
    ds = open_dataset(dataset)
    if not ds.meta.get("simulated"):
        raise ConfigError(f"{dataset} is not a simulated dataset: p(z) is calibrated on simulations only, "
                          "so real validation spectra stay an honest test")
    pre = PreprocessConfig.from_dict(card["preprocess"])
    X, z = ds.features(split, pre), ds.z(split)
    ok = np.flatnonzero(np.isfinite(z) & ~np.isnan(X).any(1))
    ok = ok[_subset(ok.size, limit, seed)]
    snr = dataset_snr(ds, split, ok)
    X, z = X[ok], z[ok]
    rt = ModelRuntime.load(card.get("base_model") or "embedded", path, device=device)
    pred = RedshiftPredictor.from_runtime(rt)
    prompts = [build_prompt(x, pred.codec) for x in X]
    raws = [pred.raw_logits(prompts[i : i + batch_size])
            for i in tqdm(range(0, len(prompts), batch_size), desc="logits", unit="batch", disable=not progress)]
    meta = {"weights": _weights_id(card), "dataset": str(Path(dataset).resolve()), "fingerprint": ds.fingerprint(),
            "split": split, "limit": limit, "seed": seed, "simulated": True}
    d = {"raw": concat_logits(raws), "z": np.asarray(z, float), "snr": snr, "rows": ok, "meta": meta}
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part.npz")
        np.savez_compressed(tmp, z=d["z"], snr=d["snr"], rows=d["rows"], meta=json.dumps(meta),
                            **{f"raw_{k}": v for k, v in d["raw"].items()})
        os.replace(tmp, out)
    return d


def load_split_logits(path, adapter: str | None = None, dataset: str | None = None, split: str | None = None,
                      limit: int | None = None, seed: int | None = None) -> dict:
    """Digit logits stored by :func:`compute_split_logits`; with ``adapter``/``dataset``/``split``, checks that
    they are that adapter's weights on that split (ValueError, saying which differs, if not)."""
    from speclm.finetune.datasets import open_dataset
    from speclm.finetune.runtime import read_card, resolve_adapter

    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        d = {"raw": {k[4:]: f[k] for k in f.files if k.startswith("raw_")}, "z": f["z"], "snr": f["snr"],
             "rows": f["rows"], "meta": meta}
    want = {}
    if adapter is not None:
        want["weights"] = _weights_id(read_card(resolve_adapter(adapter)))
    if dataset is not None:
        want["fingerprint"] = open_dataset(dataset).fingerprint()
    if split is not None:
        want["split"] = split
    if limit is not None or seed is not None:
        want.update(limit=limit, seed=seed)
    for k, v in want.items():
        if meta.get(k) != v:
            raise ValueError(f"stored logits {path} are for another {k} ({meta.get(k)!r}, not {v!r})")
    return d


def calibrate_temperature(adapter: str, dataset: str, split: str = "val", limit: int | None = 300, seed: int = 0,
                          target: float = 0.68, write: bool = False, batch_size: int = 16, device: str = "auto",
                          progress: bool = True, snr_bins: int = 0, outlier: bool = False,
                          tail: float = 0.99, logits: str | None = None, floor_local: float = 0.0,
                          floor_sigma: float = 0.01) -> dict:
    """Fit the p(z) temperature T so the 68% interval covers ``target`` of a *simulated* split.

    Digit logits are computed once (or read from ``logits``, a file of :func:`compute_split_logits` for this
    adapter's weights and this split); T is chosen on a grid (0.1-3) by the coverage closest to the
    target (ties: the smaller |log T|). With ``snr_bins`` = k > 1, T is also fitted inside k
    equal-count bins of the spectra's r-band S/N, and the card gets the table (bin median S/N -> T)
    that predictions interpolate in log S/N; the global T stays for spectra without an S/N. With
    ``outlier``, each bin (and the whole set) also gets the smallest outlier weight (p(z) mass spread
    evenly over the model's domain, :func:`fit_outlier`) whose 99% intervals hold ``tail`` of the truths
    (0.99: calibrated tails; higher: conservative tails, wider 99% intervals, fewer confidently wrong answers),
    a ``floor_local`` share of that mass being the model's own p(z) broadened by a Gaussian of ``floor_sigma``,
    with T refitted beside it; the weights are made non-increasing in S/N. Refuses
    the adapter's own training split. With ``write`` the result goes into the adapter card
    (``calibration``), which every later prediction uses.
    """
    from speclm.finetune.predict import RedshiftPredictor, calibration_kwargs, check_floor
    from speclm.finetune.runtime import ModelRuntime, read_card, resolve_adapter

    if split == "train":
        raise ConfigError("calibrate on a held-out split (val), never on training spectra")
    if snr_bins == 1 or snr_bins < 0:
        raise ConfigError(f"--snr-bins {snr_bins}: use 0 (one global T) or at least 2 bins")
    check_floor(floor_local, floor_sigma)
    if not (0.5 < tail < 1.0):
        raise ConfigError(f"--tail {tail}: the 99% interval's coverage target must be in (0.5, 1)")
    path = resolve_adapter(adapter)
    card = read_card(path)
    shifts = int((card.get("decoding") or {}).get("shifts") or 1)
    if shifts > 1 and not logits:
        raise ConfigError(f"{adapter} reads each spectrum {shifts} times (its card's decoding): its intervals are one "
                          "reading's, chosen by the ensemble, so it is calibrated on those readings — build them with "
                          "benchmarks/ensemble_calibration_logits.py and pass --logits")
    if logits:
        try:
            d = load_split_logits(logits, adapter=adapter, dataset=dataset, split=split, limit=limit, seed=seed)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    else:
        d = compute_split_logits(adapter, dataset, split, limit=limit, seed=seed, batch_size=batch_size,
                                 device=device, progress=progress)
    raw_all, z, snr = d["raw"], d["z"], d["snr"]
    if snr_bins:
        keep = np.flatnonzero(np.isfinite(snr))
        raw_all, z, snr = _take(raw_all, keep), z[keep], snr[keep]
        if len(z) < 40 * snr_bins:
            raise ConfigError(f"{len(z)} spectra with an S/N are too few for {snr_bins} S/N bins (need 40 per bin)")
    rt = ModelRuntime.load(card.get("base_model") or "embedded", path, device=device)
    base = RedshiftPredictor.from_runtime(rt)
    pred = RedshiftPredictor(rt, base.pre, base.codec, **(calibration_kwargs(card) | {
        "floor_local": floor_local, "floor_sigma": floor_sigma}))
    raws = [raw_all]
    grid = np.round(np.exp(np.linspace(np.log(0.1), np.log(3.0), 69)), 4)
    rows = _fit_T(raws, pred, z, grid, target)
    best = _best(rows, target)
    at1 = min(rows, key=lambda r: abs(math.log(r["T"])))
    out = {"pz_temperature": best["T"], "target_coverage": target, "coverage_at_T": best["coverage_68"],
           "coverage_at_T1": at1["coverage_68"], "dataset": d["meta"]["dataset"], "split": split,
           "fingerprint": d["meta"]["fingerprint"], "n": int(len(z)), "seed": seed, "grid": rows,
           "simulated": True}
    if snr_bins:
        edges = np.quantile(snr, np.linspace(0, 1, snr_bins + 1))
        bins = []
        for k in range(snr_bins):
            sel = np.flatnonzero((snr >= edges[k]) & ((snr < edges[k + 1]) if k < snr_bins - 1 else (snr <= edges[k + 1])))
            b = _best(_fit_T(raws, pred, z, grid, target, sel), target)
            bins.append({"snr_lo": float(edges[k]), "snr_hi": float(edges[k + 1]), "snr_median": float(np.median(snr[sel])),
                         "n": int(sel.size), "T": b["T"], "coverage_68": b["coverage_68"],
                         "coverage_at_global_T": float(_fit_T(raws, pred, z, [best["T"]], target, sel)[0]["coverage_68"])})
        # T must not rise with S/N (a brighter spectrum is never less certain): pool adjacent violators
        Ts = _non_increasing([b["T"] for b in bins], [b["n"] for b in bins])
        out["pz_temperature_snr"] = {"snr": [b["snr_median"] for b in bins], "T": [round(t, 4) for t in Ts]}
        out["snr_bins"] = bins
    if outlier:
        out.update(tail_coverage_target=tail, pz_floor_local=float(floor_local), pz_floor_sigma=float(floor_sigma))
        g = fit_outlier(pred, raw_all, z, target, target99=tail)
        out.update(pz_temperature=g["T"], pz_outlier=g["w"], coverage_at_T=g["coverage_68"],
                   coverage_99=g["coverage_99"], coverage_99_without_outlier=g["coverage_99_at_w0"])
        if snr_bins:
            for b in bins:
                sel = np.flatnonzero((snr >= b["snr_lo"]) & (snr <= b["snr_hi"]))
                b.update({f"outlier_{k}": v for k, v in fit_outlier(pred, _take(raw_all, sel), z[sel], target,
                                                                     target99=tail).items()})
            ws = _non_increasing([b["outlier_w"] for b in bins], [b["n"] for b in bins])
            for b, w in zip(bins, ws):  # T refitted at the pooled weight
                sel = np.flatnonzero((snr >= b["snr_lo"]) & (snr <= b["snr_hi"]))
                r = fit_outlier(pred, _take(raw_all, sel), z[sel], target, grid=(w,))
                b.update(outlier_w=round(w, 4), outlier_T=r["T"], outlier_coverage_68=r["coverage_68"],
                         outlier_coverage_99=r["coverage_99"])
            Ts = _non_increasing([b["outlier_T"] for b in bins], [b["n"] for b in bins])
            out["pz_temperature_snr"] = {"snr": [b["snr_median"] for b in bins], "T": [round(t, 4) for t in Ts]}
            out["pz_outlier_snr"] = {"snr": [b["snr_median"] for b in bins], "w": [b["outlier_w"] for b in bins]}
    if write:
        card["calibration"] = {k: v for k, v in out.items() if k not in ("grid", "snr_bins")}
        f = Path(path) / "training_card.json"
        f.write_text(json.dumps(card, indent=2))
    return out


def _non_increasing(values, weights) -> list[float]:
    """Weighted pool-adjacent-violators fit of a non-increasing sequence (isotonic regression)."""
    blocks = []  # [mean, weight, count]
    for v, w in zip(values, weights):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            (m2, w2, c2), (m1, w1, c1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return [m for m, _, c in blocks for _ in range(c)]
