"""The paper's SDSS training set (§3.1): selection -> spectra -> z-binned train/val dataset.

Why its own module: the pull is long (10,000 files) and can fail in many small ways, so each
stage keeps its results where a rerun finds them — the candidate table is cached by SQL text,
spectra go through the resumable cache of :mod:`speclm.tools.sdss`, and files that cannot be
fetched or read are skipped and listed in the dataset's meta.json rather than stopping the run.
The split is :func:`speclm.finetune.datasets.zbin_split` (equal draws per equal-frequency z bin)
and the output is the one dataset format (:func:`speclm.finetune.datasets.write_dataset`).
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from speclm.tools.errors import ConfigError, DatasetError, SpectrumError
from speclm.tools.sdss import (
    DEFAULT_DATA_RELEASE,
    SDSSConfig,
    SpecKey,
    fetch_many,
    galaxy_selection_sql,
    query_sql,
    resolve_config,
    table_rows,
)

# catalog columns copied into every spectrum's meta (the file's own SPECOBJ row has fewer)
_CATALOG_META = ("specobjid", "plate", "mjd", "fiberid", "run2d", "ra", "dec", "z", "z_err",
                 "zwarning", "class", "subclass", "phototype", "dered_u", "dered_g", "dered_r",
                 "dered_i", "dered_z")


def cached_query(sql: str, cfg: SDSSConfig, *, refresh: bool = False):
    """query_sql, with the result kept as ECSV under the cache (keyed by SQL, release, server).

    Why: a resumed build must select exactly the same candidates, and must not need SkyServer.
    """
    from astropy.table import Table

    tag = hashlib.sha256(f"{cfg.skyserver_url}\n{cfg.data_release}\n{sql}".encode()).hexdigest()
    path = cfg.release_dir / "queries" / f"{tag[:20]}.ecsv"
    if path.is_file() and not refresh:
        return Table.read(path, format="ascii.ecsv")
    table = query_sql(sql, cfg)
    table.meta["sql"] = sql
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    table.write(tmp, format="ascii.ecsv", overwrite=True)
    tmp.replace(path)
    return table


def build_sdss_dataset(out: str | Path, n_candidates: int = 10000, n_train: int = 3000,
                       n_val: int = 1000, seed: int = 0, cache: str | Path | None = None,
                       concurrency: int = 4, *, data_release: int = DEFAULT_DATA_RELEASE,
                       n_bins: int = 20, z_max: float = 0.5, i_max: float = 18.0,
                       skyserver_url: str | None = None, sas_url: str | None = None,
                       retries: int = 4, backoff: float = 1.0, timeout: float = 60.0,
                       refresh_query: bool = False, overwrite: bool = False,
                       progress: bool = True) -> dict[str, Any]:
    """Query, fetch (resumable), read, split and write the SDSS dataset; return a summary dict.

    n_candidates galaxies are selected (paper: 10,000), their spectra fetched into ``cache``;
    every one that reads cleanly joins the pool from which ``zbin_split`` draws n_train and
    n_val (paper: 3,000 / 1,000) across ``n_bins`` equal-frequency redshift bins.
    """
    from speclm.finetune.datasets import write_dataset, zbin_split
    from speclm.tools.spectrum import read_spectrum
    from tqdm.auto import tqdm

    if min(n_candidates, n_train + n_val) < 1 or n_train < 0 or n_val < 0:
        raise ConfigError("need n_candidates >= 1 and n_train + n_val >= 1")
    if n_train + n_val > n_candidates:
        raise ConfigError(f"n_train + n_val = {n_train + n_val} exceeds n_candidates = "
                          f"{n_candidates}")
    cfg = resolve_config(None, data_release=data_release, cache_dir=cache,
                         concurrency=concurrency, skyserver_url=skyserver_url, sas_url=sas_url,
                         retries=retries, backoff=backoff, timeout=timeout)
    t0 = time.perf_counter()
    sql = galaxy_selection_sql(n_candidates, z_max=z_max, i_max=i_max)
    rows = table_rows(cached_query(sql, cfg, refresh=refresh_query))
    report = fetch_many(rows, cfg=cfg, progress=progress)
    skipped = [{"id": name, "stage": "fetch", "reason": why}
               for name, why in sorted(report.failed.items())]

    usable: list[tuple[dict, Path]] = []
    for row in tqdm(rows, desc="reading spectra", unit="file", disable=not progress):
        name = SpecKey.from_row(row).name
        path = report.paths.get(name)
        if path is None:
            continue
        try:
            read_spectrum(path)
        except SpectrumError as exc:
            skipped.append({"id": name, "stage": "read", "reason": str(exc)})
            continue
        usable.append((row, path))
    if len(usable) < n_train + n_val:
        raise DatasetError(
            f"only {len(usable)} usable spectra of {len(rows)} candidates ({len(skipped)} "
            f"skipped) for {n_train} train + {n_val} val; raise --candidates or lower the counts")

    train, val = zbin_split([row["z"] for row, _ in usable], n_train, n_val, n_bins=n_bins,
                            seed=seed)
    train_set, val_set = set(train.tolist()), set(val.tolist())
    assert not train_set & val_set, "zbin_split returned overlapping train/val"
    chosen = sorted(train_set | val_set)
    split_of = ["train" if i in train_set else "val" for i in chosen]

    def spectra():
        for i in chosen:
            row, path = usable[i]
            spec = read_spectrum(path)
            spec.meta.update({k: row.get(k) for k in _CATALOG_META if row.get(k) is not None})
            spec.meta.update(source="sdss", file=str(path), data_release=cfg.data_release,
                             id=f"sdss-dr{cfg.data_release}-{SpecKey.from_row(row).name}")
            yield spec

    counts = {"candidates_requested": n_candidates, "candidates": len(rows),
              "fetched": len(report.paths), "fetch_failed": len(report.failed),
              "unreadable": len(skipped) - len(report.failed), "usable": len(usable),
              "train": len(train_set), "val": len(val_set)}
    meta = {"source": "sdss", "simulated": False, "seed": seed, "selection": sql,
            "data_release": cfg.data_release, "skyserver_url": cfg.skyserver_url,
            "sas_url": cfg.sas_url, "sdss_counts": counts, "skipped": skipped,
            "split": {"method": f"zbin_split, {n_bins} equal-frequency z bins",
                      "n_train": n_train, "n_val": n_val, "n_bins": n_bins}}
    path = write_dataset(out, tqdm(spectra(), total=len(chosen), desc="writing dataset",
                                   unit="spec", disable=not progress),
                         split_of=split_of, meta=meta, overwrite=overwrite)
    return {"path": str(path), **counts, "seconds": round(time.perf_counter() - t0, 1),
            "fetch": report.summary()}


def register_cli(data_subparsers) -> None:
    """Add ``speclm data sdss`` to the ``speclm data`` subcommands."""
    p = data_subparsers.add_parser(
        "sdss", help="download the paper's SDSS galaxy sample as a dataset",
        description="Select SDSS galaxies (class GALAXY, photo type 3, 0 < z < 0.5, dereddened "
                    "i < 18, zWarning = 0) on SkyServer, fetch their spectra from the SAS into a "
                    "resumable cache (rerun after an interruption to continue), and write "
                    "z-binned train/val splits. Servers: $SPECLM_SKYSERVER_URL, $SPECLM_SAS_URL.")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--n-train", type=int, default=3000, help="training spectra (default 3000)")
    p.add_argument("--n-val", type=int, default=1000, help="validation spectra (default 1000)")
    p.add_argument("--candidates", type=int, default=10000,
                   help="galaxies selected on SkyServer (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--n-bins", type=int, default=20, help="equal-frequency z bins (default 20)")
    p.add_argument("--cache", default=None,
                   help="spectrum cache (default $SPECLM_SDSS_CACHE or ~/.cache/speclm/sdss)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel downloads (default 4)")
    p.add_argument("--retries", type=int, default=4, help="retries per file (default 4)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--data-release", type=int, default=DEFAULT_DATA_RELEASE,
                   help=f"SDSS data release (default {DEFAULT_DATA_RELEASE}, the paper's)")
    p.add_argument("--refresh-query", action="store_true",
                   help="re-run the SkyServer query instead of reusing the cached candidates")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cli_sdss)


def _cli_sdss(args) -> int:
    summary = build_sdss_dataset(
        args.out, n_candidates=args.candidates, n_train=args.n_train, n_val=args.n_val,
        seed=args.seed, cache=args.cache, concurrency=args.concurrency,
        data_release=args.data_release, n_bins=args.n_bins, retries=args.retries,
        timeout=args.timeout, refresh_query=args.refresh_query, overwrite=args.overwrite,
        progress=not args.no_progress)
    print(f"wrote {summary['train']} train + {summary['val']} val SDSS spectra to "
          f"{summary['path']} in {summary['seconds']} s ({summary['fetch']}; "
          f"{summary['unreadable']} unreadable)", file=sys.stderr)
    return 0
