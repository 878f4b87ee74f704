"""The one on-disk dataset format: a directory with ``spectra.parquet`` + ``meta.json``.

Why one format: simulated spectra, SDSS downloads and a user's folder of files all feed the same
trainer and evaluator, so they are written the same way and read back with :func:`open_dataset`.
Spectra are stored raw (observed frame, flux/ivar/mask as read), never preprocessed, so any
preprocessing preset can be tried later; preprocessed features are cached per config under
``features/<sha of config>.npy`` next to the data they came from.

Columns of ``spectra.parquet``: id str, split str ("train"/"val"/"test"/""), z float64, source str,
wavelength/flux/ivar list<float32>, mask list<int32>, meta_json str (the Spectrum.meta dict).
``meta.json``: format, source, selection, seed, counts per split, created, speclm_version,
preprocess (if given), notes, simulated, plus whatever the writer adds (e.g. skipped files).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from speclm.tools.json_safe import json_default
from speclm.tools.errors import DatasetError, SpectrumError
from speclm.tools.spectrum import Spectrum

SPECTRA_FILE = "spectra.parquet"
META_FILE = "meta.json"
FEATURES_DIR = "features"
FORMAT_NAME = "speclm-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test", "")
_ROW_GROUP = 512


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("split", pa.string()), ("z", pa.float64()), ("source", pa.string()),
        ("wavelength", pa.list_(pa.float32())), ("flux", pa.list_(pa.float32())),
        ("ivar", pa.list_(pa.float32())), ("mask", pa.list_(pa.int32())), ("meta_json", pa.string()),
    ])


def ids_sha(ids) -> str:
    """Fingerprint of an id list (training cards' ``train_ids_sha``; evals check overlap with it)."""
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def _spectrum_id(s: Spectrum, i: int) -> str:
    m = s.meta
    if m.get("id"):
        return str(m["id"])
    if m.get("specobjid") not in (None, "", 0):
        return f"sdss-{m['specobjid']}"
    if all(m.get(k) not in (None, "") for k in ("plate", "mjd", "fiberid")):
        return f"{int(m['plate']):04d}-{int(m['mjd'])}-{int(m['fiberid']):04d}"
    if m.get("source") and m.get("source") != "simulated":
        return Path(str(m["source"])).name
    return f"spec-{i}"


def _version() -> str:
    try:
        from speclm import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "unknown"


# ----------------------------------------------------------------------------- writing

def write_dataset(path: str | os.PathLike, spectra: Iterable[Spectrum], *,
                  split_of: Sequence[str] | None = None, meta: dict | None = None,
                  overwrite: bool = False) -> Path:
    """Write spectra (any iterable, streamed in row groups) as a dataset directory at ``path``.

    split_of: one of "train"/"val"/"test"/"" per spectrum, in order (None: all "").
    meta: merged into meta.json (source, selection, seed, preprocess, notes, simulated, ...).
    Atomic: written to a hidden temporary directory beside ``path`` and renamed into place, so a
    crash never leaves a half dataset; an existing ``path`` is replaced only with ``overwrite=True``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise DatasetError(f"{path} already exists (pass overwrite=True / --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    schema = _schema()
    counts: dict[str, int] = {}
    seen: dict[str, int] = {}
    n = 0
    try:
        writer = pq.ParquetWriter(tmp / SPECTRA_FILE, schema, compression="zstd")
        rows: dict[str, list] = {k: [] for k in schema.names}

        def flush():
            if rows["id"]:
                writer.write_table(pa.table(rows, schema=schema), row_group_size=_ROW_GROUP)
                for v in rows.values():
                    v.clear()

        for i, s in enumerate(spectra):
            split = "" if split_of is None else (split_of[i] if i < len(split_of) else None)
            if split is None:
                raise DatasetError(f"split_of has {len(split_of)} entries but more spectra were given")
            if split not in SPLITS:
                raise DatasetError(f"unknown split {split!r} (use train/val/test or '')")
            sid = _spectrum_id(s, i)
            if sid in seen:  # same file stem twice, say: keep both, make ids unique
                seen[sid] += 1
                sid = f"{sid}#{seen[sid]}"
            seen.setdefault(sid, 0)
            z = s.meta.get("z")
            meta_s = {k: v for k, v in s.meta.items() if k != "z"}
            rows["id"].append(sid)
            rows["split"].append(split)
            rows["z"].append(float(z) if z is not None and np.isfinite(float(z)) else math.nan)
            rows["source"].append(str(s.meta.get("source", "")))
            rows["wavelength"].append(np.asarray(s.wavelength, np.float32))
            rows["flux"].append(np.asarray(s.flux, np.float32))
            rows["ivar"].append(np.asarray(s.ivar, np.float32))
            rows["mask"].append(np.asarray(s.mask, np.int32))
            rows["meta_json"].append(json.dumps(meta_s, default=json_default, sort_keys=True))
            counts[split or "unassigned"] = counts.get(split or "unassigned", 0) + 1
            n += 1
            if len(rows["id"]) >= _ROW_GROUP:
                flush()
        flush()
        writer.close()
        if split_of is not None and len(split_of) != n:
            raise DatasetError(f"split_of has {len(split_of)} entries for {n} spectra")
        info = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "source": "", "selection": "",
                "seed": None, "notes": "", "simulated": False}
        info.update(meta or {})
        info.update(n=n, counts=counts, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    speclm_version=_version())
        (tmp / META_FILE).write_text(json.dumps(info, indent=2, default=json_default, sort_keys=True))
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# ----------------------------------------------------------------------------- reading

def _list_column(batch, name: str, dtype) -> list[np.ndarray]:
    col = batch.column(name)
    if hasattr(col, "combine_chunks"):  # Table (from take) gives ChunkedArray; RecordBatch gives ListArray
        col = col.combine_chunks()
    offsets = col.offsets.to_numpy()
    values = col.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return [values[offsets[j]:offsets[j + 1]] for j in range(len(col))]


class SpectrumDataset:
    """A dataset directory opened for reading. Light columns (id, split, z) are held in memory;
    spectra are streamed from parquet row groups on demand."""

    def __init__(self, path: Path, meta: dict, pf, ids: np.ndarray, split: np.ndarray, z: np.ndarray):
        self.path = path
        self.meta = meta
        self._pf = pf
        self._ids = ids
        self._split = split
        self._z = z

    def __len__(self) -> int:
        return int(self._ids.size)

    def split_of(self) -> list[str]:
        """Every spectrum's split label, in file order ("" = unassigned)."""
        return [str(x) for x in self._split]

    def __repr__(self) -> str:
        return f"SpectrumDataset({str(self.path)!r}, n={len(self)}, splits={self.counts()})"

    @property
    def splits(self) -> list[str]:
        """Splits present, in the canonical order train, val, test, '' (unassigned)."""
        present = set(self._split.tolist())
        return [s for s in SPLITS if s in present]

    def counts(self) -> dict[str, int]:
        return {s: int((self._split == s).sum()) for s in self.splits}

    def _sel(self, split: str | None) -> np.ndarray:
        if split is None:
            return np.arange(len(self))
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; this dataset has {self.splits}")
        return np.flatnonzero(self._split == split)

    def ids(self, split: str | None = None) -> list[str]:
        return self._ids[self._sel(split)].tolist()

    def z(self, split: str | None = None) -> np.ndarray:
        return self._z[self._sel(split)].copy()

    def iter_spectra(self, split: str | None = None, rows: Sequence[int] | None = None) -> Iterator[Spectrum]:
        """Yield spectra of a split (or the given global row numbers), in file order."""
        want = self._sel(split) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        if want.size == 0:
            return
        start = 0
        for rg in range(self._pf.num_row_groups):
            nrg = self._pf.metadata.row_group(rg).num_rows
            local = want[(want >= start) & (want < start + nrg)] - start
            if local.size:
                batch = self._pf.read_row_group(rg).take(local)
                wl = _list_column(batch, "wavelength", np.float32)
                fl = _list_column(batch, "flux", np.float32)
                iv = _list_column(batch, "ivar", np.float32)
                mk = _list_column(batch, "mask", np.int32)
                mj = batch.column("meta_json").to_pylist()
                zs = batch.column("z").to_numpy(zero_copy_only=False)
                sid = batch.column("id").to_pylist()
                spl = batch.column("split").to_pylist()
                for j in range(batch.num_rows):
                    meta = json.loads(mj[j]) if mj[j] else {}
                    meta["z"] = None if not np.isfinite(zs[j]) else float(zs[j])
                    meta["id"], meta["split"] = sid[j], spl[j]
                    yield Spectrum(wavelength=wl[j].copy(), flux=fl[j].copy(), ivar=iv[j].copy(),
                                   mask=mk[j].copy(), meta=meta)
            start += nrg

    def spectra(self, split: str | None = None) -> list[Spectrum]:
        return list(self.iter_spectra(split))

    def fingerprint(self) -> str:
        """Short sha256 of ids + z + flux bytes: names exactly this content (for caches, reports)."""
        h = hashlib.sha256()
        for rg in range(self._pf.num_row_groups):
            t = self._pf.read_row_group(rg, columns=["id", "z", "flux"])
            h.update("\0".join(t.column("id").to_pylist()).encode())
            h.update(t.column("z").to_numpy().astype("<f8").tobytes())
            fl = t.column("flux").combine_chunks()
            h.update(fl.values.to_numpy(zero_copy_only=False).astype("<f4").tobytes())
            h.update(fl.offsets.to_numpy().astype("<i8").tobytes())
        return h.hexdigest()[:16]

    def features(self, split: str | None, preprocess_cfg, *, workers: int | None = None,
                 progress: bool = False, cache: bool = True) -> np.ndarray:
        """float32 [n, n_bins] of ``preprocess`` for a split (rows in :meth:`ids` order).

        A spectrum the preprocessing refuses (e.g. too few good pixels in range) gets a row of NaN;
        drop those with ``~np.isnan(X).any(axis=1)``. All rows are computed once per config and
        cached under ``features/<sha>.npy`` (best effort: a read-only dataset just isn't cached).
        """
        key = hashlib.sha256(json.dumps(preprocess_cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
        fpath = self.path / FEATURES_DIR / f"{key}.npy"
        X = None
        if cache and fpath.is_file():
            try:
                X = np.load(fpath)
                if X.shape != (len(self), preprocess_cfg.n_bins):
                    X = None
            except (OSError, ValueError):
                X = None
        if X is None:
            X = self._compute_features(preprocess_cfg, workers=workers, progress=progress)
            if cache:
                try:
                    fpath.parent.mkdir(exist_ok=True)
                    tmp = fpath.with_suffix(f".tmp-{uuid.uuid4().hex[:6]}.npy")
                    np.save(tmp, X)
                    os.replace(tmp, fpath)
                    fpath.with_suffix(".json").write_text(json.dumps(preprocess_cfg.to_dict(), indent=2))
                except OSError:
                    pass
        return X[self._sel(split)]

    def _compute_features(self, cfg, *, workers: int | None, progress: bool) -> np.ndarray:
        n_rg = self._pf.num_row_groups
        workers = workers if workers is not None else (2 if len(self) >= 2000 else 1)
        workers = max(1, min(workers, n_rg, os.cpu_count() or 1))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(self), desc="preprocessing", unit="spec", dynamic_ncols=True)
        parts: list[np.ndarray] = []
        try:
            if workers == 1:
                for rg in range(n_rg):
                    parts.append(_features_of_row_group(str(self.path / SPECTRA_FILE), rg, cfg))
                    if bar:
                        bar.update(len(parts[-1]))
            else:
                import multiprocessing as mp
                from concurrent.futures import ProcessPoolExecutor

                method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
                with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as ex:
                    for part in ex.map(_features_of_row_group, [str(self.path / SPECTRA_FILE)] * n_rg,
                                       range(n_rg), [cfg] * n_rg):
                        parts.append(part)
                        if bar:
                            bar.update(len(part))
        finally:
            if bar:
                bar.close()
        if not parts:
            return np.zeros((0, cfg.n_bins), np.float32)
        return np.concatenate(parts).astype(np.float32)


def _features_of_row_group(parquet_path: str, rg: int, cfg) -> np.ndarray:
    import pyarrow.parquet as pq

    from speclm.finetune.preprocess import preprocess

    batch = pq.ParquetFile(parquet_path).read_row_group(rg)
    wl = _list_column(batch, "wavelength", np.float32)
    fl = _list_column(batch, "flux", np.float32)
    iv = _list_column(batch, "ivar", np.float32)
    mk = _list_column(batch, "mask", np.int32)
    out = np.full((batch.num_rows, cfg.n_bins), np.nan, np.float32)
    for j in range(batch.num_rows):
        try:
            out[j] = preprocess(Spectrum(wl[j], fl[j], iv[j], mk[j], {}), cfg)
        except SpectrumError:
            pass
    return out


def open_dataset(path: str | os.PathLike) -> SpectrumDataset:
    """Open a dataset directory; any missing or corrupt piece raises :class:`DatasetError`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset directory")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a dataset directory (expected a folder with {SPECTRA_FILE} and {META_FILE})")
    mfile, sfile = path / META_FILE, path / SPECTRA_FILE
    for f in (mfile, sfile):
        if not f.is_file():
            raise DatasetError(f"{path}: not a speclm dataset (missing {f.name})")
    try:
        meta = json.loads(mfile.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{mfile}: corrupt meta.json ({exc})") from None
    try:
        pf = pq.ParquetFile(sfile)
        missing = set(_schema().names) - set(pf.schema_arrow.names)
        if missing:
            raise DatasetError(f"{sfile}: missing columns {sorted(missing)}")
        light = pf.read(columns=["id", "split", "z"])
    except DatasetError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"{sfile}: corrupt parquet file ({str(exc).splitlines()[0]})") from None
    ids = np.asarray(light.column("id").to_pylist(), dtype=object)
    split = np.asarray(light.column("split").to_pylist(), dtype=object)
    z = light.column("z").to_numpy().astype(np.float64)
    return SpectrumDataset(path, meta, pf, ids, split, z)


# ----------------------------------------------------------------------------- splits

def zbin_split(z: Sequence[float], n_train: int, n_val: int, n_bins: int = 20,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices for train and validation, drawn uniformly across equal-frequency redshift bins.

    Why: a model trained on the raw n(z) learns the prior and collapses to the peak; equal draws
    per z bin (quantile edges, so every bin is populated) spread train and val over the whole
    range (paper §3.1). A bin with too few objects gives what it has and the shortfall is spread
    over the other bins. Non-finite z are never drawn. Raises DatasetError if the two sets would
    overlap (they cannot by construction; the check guards future edits) or if n is too small.
    """
    z = np.asarray(z, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(z))
    if n_train < 0 or n_val < 0:
        raise DatasetError("n_train and n_val must be >= 0")
    if n_train + n_val > ok.size:
        raise DatasetError(f"asked for {n_train} train + {n_val} val but only {ok.size} spectra have a redshift")
    rng = np.random.default_rng(seed)
    n_bins = max(1, min(int(n_bins), ok.size or 1))
    edges = np.quantile(z[ok], np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, z[ok], side="right") - 1, 0, n_bins - 1)
    pools = [list(rng.permutation(ok[which == b])) for b in range(n_bins)]

    def draw(k: int) -> np.ndarray:
        taken: list[int] = []
        while k > 0:
            live = [b for b in range(n_bins) if pools[b]]
            if not live:
                break
            per = np.full(len(live), k // len(live))
            per[rng.permutation(len(live))[: k % len(live)]] += 1
            for b, q in zip(live, per):
                q = min(int(q), len(pools[b]))
                taken.extend(pools[b][:q])
                del pools[b][:q]
                k -= q
        return np.sort(np.asarray(taken, dtype=np.int64))

    train = draw(int(n_train))
    val = draw(int(n_val))
    if np.intersect1d(train, val).size:
        raise DatasetError("zbin_split produced overlapping train and validation sets")
    return train, val


def assign_splits(z: Sequence[float], *, val_frac: float = 0.0, test_frac: float = 0.0,
                  n_bins: int = 20, seed: int = 0) -> list[str]:
    """Split labels for every spectrum: val/test drawn z-uniformly with :func:`zbin_split`, rest train.

    Spectra without a finite redshift are left unassigned ("")."""
    z = np.asarray(z, dtype=np.float64)
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise DatasetError("need 0 <= val_frac, test_frac and val_frac + test_frac < 1")
    ok = np.isfinite(z)
    n_ok = int(ok.sum())
    n_val, n_test = int(round(val_frac * n_ok)), int(round(test_frac * n_ok))
    labels = np.where(ok, "train", "").astype(object)
    if n_val + n_test:
        test, val = zbin_split(z, n_test, n_val, n_bins=n_bins, seed=seed)
        labels[val] = "val"
        labels[test] = "test"
    return labels.tolist()


# ----------------------------------------------------------------------------- merging

def merge_datasets(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Concatenate datasets, keeping every spectrum's split (train stays train, val stays val).

    Ids must be unique across the inputs (simulations with different seeds are); the meta records
    each input's meta and fingerprint, and ``simulated`` is true only if every input is simulated."""
    dss = [open_dataset(p) for p in paths]
    if len(dss) < 2:
        raise DatasetError("merge needs at least two datasets")
    ids = [i for d in dss for i in d.ids()]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"the datasets share spectrum ids (e.g. {dup!r}); merge datasets made with different seeds")
    split_of = [x for d in dss for x in d.split_of()]

    def stream():
        for d in dss:
            it = d.iter_spectra()
            if progress:
                from tqdm import tqdm

                it = tqdm(it, total=len(d), desc=f"merging {d.path.name}", unit="spec", dynamic_ncols=True)
            yield from it

    meta = {"source": "merge", "selection": [str(d.path) for d in dss],
            "inputs": [{"path": str(d.path), "fingerprint": d.fingerprint(), "meta": d.meta} for d in dss],
            "simulated": all(bool(d.meta.get("simulated")) for d in dss),
            "notes": "concatenation of " + ", ".join(d.path.name for d in dss)}
    return write_dataset(out, stream(), split_of=split_of, meta=meta, overwrite=overwrite)


# ----------------------------------------------------------------------------- folder source

from speclm.tools.spectrum import SPECTRUM_SUFFIXES as FOLDER_EXTENSIONS  # noqa: E402 -- the one list


def dataset_from_folder(folder: str | os.PathLike, out: str | os.PathLike, *, val_frac: float = 0.0,
                        test_frac: float = 0.0, seed: int = 0, recursive: bool = False,
                        overwrite: bool = False, progress: bool = True, notes: str = "") -> Path:
    """Read every spectrum file in ``folder`` with ``read_spectrum`` and write a dataset at ``out``.

    A file that cannot be read is skipped and listed in meta["skipped"] as {file, error, reason};
    nothing in the folder can crash the run. z comes from the file's catalog metadata (NaN if none;
    such spectra are kept but left out of the train/val/test assignment).
    """
    from speclm.tools.spectrum import read_spectrum

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a directory")
    files = sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir())
                   if p.is_file() and p.name.lower().endswith(FOLDER_EXTENSIONS))
    spectra: list[Spectrum] = []
    skipped: list[dict] = []
    it = files
    if progress:
        from tqdm import tqdm

        it = tqdm(files, desc="reading", unit="file", dynamic_ncols=True)
    for f in it:
        try:
            s = read_spectrum(f)
        except Exception as exc:  # noqa: BLE001 - a folder of user files must never crash the run
            skipped.append({"file": str(f.relative_to(folder)), "error": type(exc).__name__,
                            "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
            continue
        s.meta.setdefault("id", str(f.relative_to(folder)))
        spectra.append(s)
    if not spectra:
        raise DatasetError(f"{folder}: no readable spectra among {len(files)} candidate files"
                           + (f" (first error: {skipped[0]['reason']})" if skipped else ""))
    z = [s.meta.get("z") if s.meta.get("z") is not None else math.nan for s in spectra]
    split = assign_splits(z, val_frac=val_frac, test_frac=test_frac, seed=seed)
    meta = {"source": "folder", "selection": str(folder.resolve()), "seed": seed, "skipped": skipped,
            "n_files": len(files), "n_without_z": int(np.sum(~np.isfinite(np.asarray(z, float)))),
            "notes": notes, "simulated": False}
    return write_dataset(out, spectra, split_of=split, meta=meta, overwrite=overwrite)
