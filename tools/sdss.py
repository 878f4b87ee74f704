"""The one SDSS client: SkyServer SQL queries and spectrum downloads, through astroquery.

Why astroquery and not hand-written HTTP: it owns the knowledge of SkyServer's search endpoint per
data release and of the Science Archive Server (SAS) path layout per reduction (run2d); we only
add what a 10,000-spectrum pull needs on top of it:

* configurable base URLs (``SPECLM_SKYSERVER_URL`` / ``SPECLM_SAS_URL`` or arguments), so the real
  astroquery client can be pointed at a loopback server in tests;
* a local cache (``~/.cache/speclm/sdss`` by default, ``SPECLM_SDSS_CACHE`` overrides) with atomic
  writes (temp file + rename: a kill never leaves a half file under the final name) and an
  append-only manifest, so a killed pull resumes without duplicating or losing files;
* bounded concurrency, retries with exponential backoff on HTTP 5xx / timeouts, a progress bar.

astroquery calls used: ``SDSS.query_sql_async`` (+ ``SDSS._parse_result``, the class's own CSV
parser, after we have checked the HTTP status ourselves — the sync ``query_sql`` would try to parse
a 500 page as a table) and ``SDSS.get_spectra_async(matches=...)``, whose ``FileContainer`` builds
the SAS URL and downloads it through astropy. Base URLs are astroquery's
``astroquery.sdss.conf.skyserver_baseurl`` / ``conf.sas_baseurl``, set under a lock while a call
builds its URLs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import json
import os
import random
import re
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .errors import ConfigError, SDSSError, SDSSNotFound
from speclm.tools.config import Config, setting

SKYSERVER_ENV = "SPECLM_SKYSERVER_URL"
SAS_ENV = "SPECLM_SAS_URL"
CACHE_ENV = "SPECLM_SDSS_CACHE"
DEFAULT_DATA_RELEASE = 16  # the paper's release (Ahumada et al. 2020)
DEFAULT_CACHE = Path("~/.cache/speclm/sdss")

# Columns every catalog query returns (lower-case aliases; astroquery's parser keeps them).
CATALOG_SELECT = (
    "s.specObjID AS specobjid, s.plate AS plate, s.mjd AS mjd, s.fiberID AS fiberid, "
    "s.run2d AS run2d, s.ra AS ra, s.dec AS dec, s.z AS z, s.zErr AS z_err, "
    "s.zWarning AS zwarning, s.class AS class, s.subClass AS subclass, p.type AS phototype, "
    "p.dered_u AS dered_u, p.dered_g AS dered_g, p.dered_r AS dered_r, "
    "p.dered_i AS dered_i, p.dered_z AS dered_z"
)
# SDSS legacy reductions live without the "full/lite" split (astroquery knows the same list).
_LEGACY_RUN2D = ("26", "103", "104")


@dataclass
class SDSSConfig(Config):
    """Where and how to talk to SDSS. Empty strings are resolved from the environment."""

    data_release: int = setting(DEFAULT_DATA_RELEASE, "SDSS data release (the paper used DR16).")
    skyserver_url: str = setting("", f"SkyServer base URL; default ${SKYSERVER_ENV} or astroquery's.")
    sas_url: str = setting("", f"Science Archive Server base URL; default ${SAS_ENV} or astroquery's.")
    cache_dir: str = setting("", f"Local spectrum cache; default ${CACHE_ENV} or {DEFAULT_CACHE}.")
    timeout: float = setting(60.0, "Seconds before one HTTP request counts as timed out.")
    retries: int = setting(4, "Extra attempts after a retryable failure (HTTP 5xx/429, timeout).")
    backoff: float = setting(1.0, "First retry delay in seconds; doubles each attempt (with jitter).")
    concurrency: int = setting(4, "Parallel downloads in fetch_many (be polite to the SAS).")

    def __post_init__(self):
        from astroquery.sdss import conf

        self.skyserver_url = (self.skyserver_url or os.environ.get(SKYSERVER_ENV)
                              or conf.skyserver_baseurl).rstrip("/")
        self.sas_url = (self.sas_url or os.environ.get(SAS_ENV) or conf.sas_baseurl).rstrip("/")
        self.cache_dir = str(Path(self.cache_dir or os.environ.get(CACHE_ENV)
                                  or DEFAULT_CACHE).expanduser())
        for name in ("skyserver_url", "sas_url"):
            if not getattr(self, name).startswith(("http://", "https://")):
                raise ConfigError(f"{name} must be an http(s) URL, got {getattr(self, name)!r}")
        if not 8 <= int(self.data_release) <= 18:
            raise ConfigError(f"data_release must be 8..18, got {self.data_release}")
        self.data_release = int(self.data_release)
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0, got {self.timeout}")
        if self.retries < 0 or self.backoff < 0:
            raise ConfigError("retries and backoff must be >= 0")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")

    @property
    def release_dir(self) -> Path:
        """Cache root for this data release (reductions differ between releases)."""
        return Path(self.cache_dir) / f"dr{self.data_release}"


def resolve_config(cfg: SDSSConfig | None = None, **overrides) -> SDSSConfig:
    """``cfg`` (or a default one) with every non-None override applied."""
    overrides = {k: (str(v) if k == "cache_dir" else v)
                 for k, v in overrides.items() if v is not None}
    if cfg is None:
        return SDSSConfig(**overrides)
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# --------------------------------------------------------------------------- astroquery plumbing

_CONF_LOCK = threading.RLock()


@contextmanager
def _astroquery_urls(cfg: SDSSConfig) -> Iterator[Any]:
    """Point astroquery's global conf at cfg's servers while a call builds its URLs.

    astroquery reads ``conf.skyserver_baseurl`` / ``conf.sas_baseurl`` at call time; the lock
    keeps concurrent callers with different servers from seeing each other's values.
    """
    from astroquery.sdss import SDSS, conf

    with _CONF_LOCK, conf.set_temp("skyserver_baseurl", cfg.skyserver_url), \
            conf.set_temp("sas_baseurl", cfg.sas_url):
        yield SDSS


class _BadPayload(Exception):
    """A download that arrived but is not a usable spec FITS (truncated, HTML error page...)."""


def _http_status(exc: BaseException) -> int | None:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None)


def _retryable(exc: BaseException) -> bool:
    """Transient failures worth another try: 5xx/408/429, timeouts, dropped connections."""
    import requests

    status = _http_status(exc)
    if status is not None:
        return status >= 500 or status in (408, 425, 429)
    return isinstance(exc, (_BadPayload, urllib.error.URLError, TimeoutError, ConnectionError,
                            http.client.HTTPException, requests.exceptions.ConnectionError,
                            requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError))


def _reason(exc: BaseException) -> str:
    """A transport failure in a few words, without URLs or query strings (a chat message is no log)."""
    import requests

    status = _http_status(exc)
    if status is not None:
        return f"HTTP {status}"
    if isinstance(exc, (requests.exceptions.Timeout, TimeoutError)):
        return "the server did not answer in time"
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError, urllib.error.URLError)):
        return "cannot connect (no network, or the server is down)"
    text = re.sub(r"https?://\S+", "", str(exc))
    text = " ".join(text.split())[:120]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _host_only(what: str) -> str:
    return re.sub(r"https?://([^/\s)]+)[^\s)]*", r"\1", what)


def _with_retries(fn: Callable[[], Any], cfg: SDSSConfig, what: str) -> Any:
    """Run fn, retrying transient failures with exponential backoff; map errors to SDSSError."""
    for attempt in range(cfg.retries + 1):
        try:
            return fn()
        except (SDSSError, ConfigError):  # already classified (404, rejected query)
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            if _http_status(exc) == 404:
                raise SDSSNotFound(f"{what}: not found (HTTP 404)") from exc
            if not _retryable(exc):
                raise SDSSError(f"{_host_only(what)}: {_reason(exc)}") from exc
            if attempt == cfg.retries:
                raise SDSSError(f"{_host_only(what)}: failed after {attempt + 1} attempts: {_reason(exc)}") from exc
            time.sleep(cfg.backoff * (2 ** attempt) * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- catalog queries


def galaxy_selection_sql(n: int = 10000, *, z_min: float = 0.0, z_max: float = 0.5,
                         i_max: float = 18.0) -> str:
    """The paper's selection (§3.1) as SkyServer SQL.

    Spectroscopic class GALAXY whose photometric counterpart is a galaxy (type = 3), reliable
    redshift (zWarning = 0), z_min < z < z_max and dereddened i < i_max. ``TOP n`` with a
    deterministic hash order spreads the sample over all plates instead of the first ones.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    return (
        f"SELECT TOP {int(n)} {CATALOG_SELECT} "
        "FROM SpecObj AS s JOIN PhotoObj AS p ON s.bestObjID = p.objID "
        f"WHERE s.class = 'GALAXY' AND p.type = 3 AND s.zWarning = 0 "
        f"AND s.z > {z_min:g} AND s.z < {z_max:g} AND p.dered_i < {i_max:g} "
        "ORDER BY s.specObjID % 99991, s.specObjID"
    )


def _looks_like_html(text: str) -> bool:
    body = "\n".join(l for l in text.splitlines() if not l.startswith("#")).lstrip()
    return body[:1] == "<" or "<html" in body[:500].lower()


def _html_message(text: str) -> str:
    import re

    plain = re.sub(r"<[^>]+>", " ", text)
    return " ".join(plain.split())[:300]


def query_sql(sql: str, cfg: SDSSConfig | None = None, **overrides):
    """Run SQL on SkyServer; return an astropy Table (zero rows when nothing matched)."""
    from astropy.table import Table

    cfg = resolve_config(cfg, **overrides)

    def once():
        with _astroquery_urls(cfg) as sdss:
            resp = sdss.query_sql_async(sql, timeout=cfg.timeout, data_release=cfg.data_release,
                                        cache=False)
            resp.raise_for_status()
            if _looks_like_html(resp.text):
                raise SDSSError(f"SkyServer rejected the query: {_html_message(resp.text)}")
            return sdss._parse_result(resp)

    try:
        table = _with_retries(once, cfg, f"SkyServer query ({cfg.skyserver_url})")
    except SDSSNotFound as exc:  # a 404 here is a wrong endpoint, not a missing object
        raise SDSSError(f"SkyServer endpoint not found at {cfg.skyserver_url} "
                        f"(data release {cfg.data_release})") from exc
    except SDSSError:
        raise
    except Exception as exc:  # astroquery's RemoteServiceError, table parse errors
        raise SDSSError(f"SkyServer reply unusable: {type(exc).__name__}: {exc}") from exc
    if table is None:
        return Table()
    return table


def query_galaxies(n_candidates: int = 10000, cfg: SDSSConfig | None = None, *,
                   z_min: float = 0.0, z_max: float = 0.5, i_max: float = 18.0, **overrides):
    """The paper's candidate galaxies (see :func:`galaxy_selection_sql`) as an astropy Table."""
    return query_sql(galaxy_selection_sql(n_candidates, z_min=z_min, z_max=z_max, i_max=i_max),
                     cfg, **overrides)


def specobj_sql(*, plate: int | None = None, mjd: int | None = None, fiberid: int | None = None,
                specobjid: int | None = None,
                box: tuple[float, float, float] | None = None) -> str:
    """SQL for catalog rows by plate[-mjd]-fiber, by specObjID, or in an RA/Dec box.

    ``box`` is (ra, dec, half_width_deg); the caller sorts by true separation. A box is plain SQL
    that every SkyServer release (and any SQL engine) runs, unlike the fGetNearby* functions.
    All spectra (SpecObjAll) are searched by identifier; the box searches primary spectra only.
    """
    where: list[str] = []
    table = "SpecObjAll AS s LEFT JOIN PhotoObjAll AS p ON s.bestObjID = p.objID"
    if specobjid is not None:
        where.append(f"s.specObjID = {int(specobjid)}")
    elif plate is not None:
        where.append(f"s.plate = {int(plate)}")
        if fiberid is None:
            raise ConfigError("a plate lookup needs a fiber id")
        where.append(f"s.fiberID = {int(fiberid)}")
        if mjd is not None:
            where.append(f"s.mjd = {int(mjd)}")
    elif box is not None:
        ra, dec, half = (float(v) for v in box)
        table = "SpecObj AS s LEFT JOIN PhotoObj AS p ON s.bestObjID = p.objID"
        dra = 180.0 if abs(dec) + half >= 89.0 else min(180.0, half / np.cos(np.radians(dec)))
        lo, hi = ra - dra, ra + dra
        if dra >= 180.0:
            ra_cut = "1 = 1"
        elif lo < 0:
            ra_cut = f"(s.ra >= {lo + 360:.7f} OR s.ra <= {hi:.7f})"
        elif hi >= 360:
            ra_cut = f"(s.ra >= {lo:.7f} OR s.ra <= {hi - 360:.7f})"
        else:
            ra_cut = f"s.ra BETWEEN {lo:.7f} AND {hi:.7f}"
        where += [ra_cut, f"s.dec BETWEEN {dec - half:.7f} AND {dec + half:.7f}"]
    else:
        raise ConfigError("specobj_sql needs plate+fiberid, specobjid or box")
    return f"SELECT {CATALOG_SELECT} FROM {table} WHERE {' AND '.join(where)} ORDER BY s.mjd DESC"


def table_rows(table) -> list[dict[str, Any]]:
    """astropy Table -> list of plain dicts (python scalars, masked -> None, keys lower-case)."""
    rows = []
    for row in table:
        d = {}
        for name in table.colnames:
            v = row[name]
            if np.ma.is_masked(v):
                v = None
            elif isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, np.generic):
                v = v.item()
            if name.lower() == "run2d" and v is not None:
                v = str(v).strip()  # "26" parses as an int column when no BOSS row is present
            d[name.lower()] = v
        rows.append(d)
    return rows


# --------------------------------------------------------------------------- spectra + cache


@dataclass(frozen=True)
class SpecKey:
    """What names one SDSS spectrum file: plate-mjd-fiber (+ run2d, needed for its SAS path)."""

    plate: int
    mjd: int
    fiberid: int
    run2d: str | None = None

    @property
    def name(self) -> str:
        return f"{self.plate:04d}-{self.mjd:05d}-{self.fiberid:04d}"

    @property
    def filename(self) -> str:
        return f"spec-{self.name}.fits"

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Any) -> "SpecKey":
        """From a dict / astropy Row with plate, mjd, fiberid (any case) and optional run2d."""
        names = row.colnames if hasattr(row, "colnames") else list(row.keys())
        low = {n.lower(): n for n in names}
        try:
            plate, mjd, fiber = (int(row[low[k]]) for k in ("plate", "mjd", "fiberid"))
        except KeyError as exc:
            raise ConfigError(f"row lacks {exc}; need plate, mjd, fiberid") from None
        run2d = row[low["run2d"]] if "run2d" in low else None
        if isinstance(run2d, bytes):
            run2d = run2d.decode()
        if run2d is not None and not np.ma.is_masked(run2d):
            run2d = str(run2d).strip() or None
        else:
            run2d = None
        return cls(plate, mjd, fiber, run2d)


def spectrum_path(key: SpecKey, cfg: SDSSConfig) -> Path:
    """Where the cache keeps (or will keep) this spectrum."""
    return cfg.release_dir / "spectra" / f"{key.plate:04d}" / key.filename


def validate_spec_fits(data: bytes | Path) -> None:
    """Raise _BadPayload unless data is a FITS whose HDU 1 is a spectrum table with rows.

    Cheap structural check only (full reading is read_spectrum's job); it catches truncated
    downloads and HTML error pages served with status 200.
    """
    from astropy.io import fits

    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)
        size = len(data) if isinstance(data, (bytes, bytearray)) else Path(data).stat().st_size
        with fits.open(src, memmap=False) as hdul:
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                raise _BadPayload("no spectrum table in HDU 1")
            info = hdul.fileinfo(len(hdul) - 1)
            if info["datLoc"] + info["datSpan"] > size:  # astropy only warns about this
                raise _BadPayload(f"truncated: {size} bytes, header promises "
                                  f"{info['datLoc'] + info['datSpan']}")
            cols = {c.lower() for c in hdul[1].columns.names}
            if not {"flux", "loglam"} <= cols:
                raise _BadPayload(f"HDU 1 lacks flux/loglam (has {sorted(cols)[:8]})")
            if len(hdul[1].data) == 0:
                raise _BadPayload("empty spectrum table")
    except _BadPayload:
        raise
    except Exception as exc:  # OSError/TypeError/ValueError from a truncated or non-FITS body
        raise _BadPayload(f"not a valid FITS: {type(exc).__name__}: {exc}") from None


class Manifest:
    """Append-only JSON-lines journal of the cache: one line per completed or failed fetch.

    Why: the file system alone cannot tell "downloaded and verified" from "a file someone
    copied here"; the manifest records size and sha256 at the moment a download was committed.
    A kill between rename and journal append is healed on resume (the file is re-validated).
    """

    def __init__(self, release_dir: Path):
        self.path = Path(release_dir) / "manifest.jsonl"
        self._lock = threading.Lock()

    def entries(self) -> dict[str, dict]:
        """Latest entry per key (later lines win)."""
        out: dict[str, dict] = {}
        if not self.path.exists():
            return out
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    out[rec["key"]] = rec
                except (ValueError, KeyError):
                    continue  # a line cut by a kill mid-write
        return out

    def append(self, rec: dict) -> None:
        line = json.dumps(rec, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_complete(key: SpecKey, cfg: SDSSConfig, entry: dict | None, manifest: Manifest) -> bool:
    """True if the cached file is one we committed (size matches), or re-validates."""
    path = spectrum_path(key, cfg)
    if not path.is_file():
        return False
    if entry and entry.get("status") == "ok" and entry.get("size") == path.stat().st_size:
        return True
    try:  # file present but not (correctly) journaled: the kill came after the rename
        validate_spec_fits(path)
    except _BadPayload:
        path.unlink(missing_ok=True)
        return False
    manifest.append({"key": key.name, "status": "ok", "file": str(path.relative_to(
        cfg.release_dir)), "size": path.stat().st_size, "sha256": _sha256(path),
        "recovered": True, "time": time.time()})
    return True


def _clean_partials(release_dir: Path) -> int:
    """Remove temp files left by killed processes (their pid is no longer alive)."""
    n = 0
    for part in (Path(release_dir) / "spectra").glob("*/.*.part"):
        try:
            pid = int(part.name.rsplit(".", 3)[-3])
            os.kill(pid, 0)
            continue  # owner still running
        except ProcessLookupError:
            pass
        except (ValueError, IndexError, PermissionError):
            continue
        part.unlink(missing_ok=True)
        n += 1
    return n


def _download_bytes(key: SpecKey, cfg: SDSSConfig) -> tuple[bytes, str]:
    """Download via astroquery's get_spectra_async (its URL layout); eBOSS path on a 404.

    For BOSS/eBOSS reductions (run2d v5_*) of DR14-17 the SAS keeps files under
    ``eboss/spectro/redux`` while astroquery builds ``sdss/spectro/redux``; on a 404 we retry
    the same URL with that one path component swapped (the paper's "SDSS vs eBOSS" handling).
    """
    from astropy.table import Table
    from astroquery.utils import commons

    if key.run2d is None:
        raise ConfigError(f"{key.name}: run2d unknown; look it up first (fetch_spectrum does)")
    matches = Table(rows=[(key.run2d, key.plate, key.mjd, key.fiberid)],
                    names=("run2d", "plate", "mjd", "fiberID"), dtype=(str, int, int, int))
    with _astroquery_urls(cfg) as sdss:
        try:
            (container,) = sdss.get_spectra_async(matches=matches, data_release=cfg.data_release,
                                                  timeout=cfg.timeout, cache=False,
                                                  show_progress=False)
        except KeyError as exc:  # SDSS-V (DR18, run2d v6+) paths need fieldID/catalogID
            raise SDSSError(f"{key.name}: run2d {key.run2d} in DR{cfg.data_release} uses the "
                            f"SDSS-V file layout, which this client does not fetch") from exc
    url = getattr(container, "_target", "")
    try:
        data = container.get_string()
    except urllib.error.HTTPError as exc:
        alt = url.replace("/sdss/spectro/redux/", "/eboss/spectro/redux/")
        if exc.code != 404 or alt == url or not key.run2d.startswith("v"):
            raise
        url = alt
        data = commons.FileContainer(alt, cache=False, encoding="binary",
                                     remote_timeout=cfg.timeout, show_progress=False).get_string()
    validate_spec_fits(data)
    return data, url


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_one(key: SpecKey, cfg: SDSSConfig, manifest: Manifest) -> Path:
    path = spectrum_path(key, cfg)
    data, url = _with_retries(lambda: _download_bytes(key, cfg), cfg, f"spectrum {key.name}")
    _atomic_write(path, data)
    manifest.append({"key": key.name, "status": "ok", "file": str(path.relative_to(
        cfg.release_dir)), "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "url": url, "run2d": key.run2d, "time": time.time()})
    return path


def fetch_spectrum(plate: int, mjd: int, fiberid: int, run2d: str | None = None,
                   cfg: SDSSConfig | None = None, **overrides) -> Path:
    """Path of the cached spec FITS for plate-mjd-fiber, downloading it if needed.

    Without ``run2d`` (needed for the SAS path) one catalog query finds it first.
    Raises SDSSNotFound when neither SkyServer nor the SAS knows the spectrum.
    """
    cfg = resolve_config(cfg, **overrides)
    key = SpecKey(int(plate), int(mjd), int(fiberid), run2d)
    manifest = Manifest(cfg.release_dir)
    if _is_complete(key, cfg, manifest.entries().get(key.name), manifest):
        return spectrum_path(key, cfg)
    if key.run2d is None:
        rows = table_rows(query_sql(specobj_sql(plate=key.plate, mjd=key.mjd,
                                                fiberid=key.fiberid), cfg))
        if not rows:
            raise SDSSNotFound(f"no SDSS spectrum {key.name} in DR{cfg.data_release}")
        key = SpecKey.from_row(rows[0])
    return _fetch_one(key, cfg, manifest)


@dataclass
class FetchReport:
    """What fetch_many did: paths of usable files, failures with reasons, counts."""

    paths: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    n_cached: int = 0
    n_downloaded: int = 0

    def summary(self) -> str:
        return (f"{len(self.paths)} spectra ready ({self.n_cached} cached, "
                f"{self.n_downloaded} downloaded), {len(self.failed)} failed")


def fetch_many(rows: Iterable[Mapping[str, Any]], cache: str | Path | None = None,
               concurrency: int | None = None, retries: int | None = None,
               backoff: float | None = None, *, cfg: SDSSConfig | None = None,
               progress: bool = True, on_done: Callable[[SpecKey, Path], None] | None = None,
               **overrides) -> FetchReport:
    """Fetch many spectra into the cache; resumable after a kill.

    rows: dicts / table rows with plate, mjd, fiberid, run2d. Already-complete files are
    skipped; the rest go through a thread pool of ``concurrency`` workers, each download
    retried ``retries`` times with exponential ``backoff``. A spectrum that still fails (or
    404s) is recorded in the report and the manifest, never raised, so one bad file cannot
    stop a 10,000-file pull. ``on_done`` is called (in the worker thread) after each commit.
    """
    from tqdm.auto import tqdm

    cfg = resolve_config(cfg, cache_dir=cache, concurrency=concurrency, retries=retries,
                         backoff=backoff, **overrides)
    keys = list(dict.fromkeys(SpecKey.from_row(r) for r in rows))  # dedupe, keep order
    manifest = Manifest(cfg.release_dir)
    _clean_partials(cfg.release_dir)
    entries = manifest.entries()
    report = FetchReport()
    todo = []
    for key in keys:
        if _is_complete(key, cfg, entries.get(key.name), manifest):
            report.paths[key.name] = spectrum_path(key, cfg)
            report.n_cached += 1
        else:
            todo.append(key)

    def work(key: SpecKey) -> Path:
        path = _fetch_one(key, cfg, manifest)
        if on_done is not None:
            on_done(key, path)
        return path

    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool, \
            tqdm(total=len(keys), initial=report.n_cached, desc="SDSS spectra", unit="file",
                 disable=not progress) as bar:
        futures = {pool.submit(work, key): key for key in todo}
        for fut in as_completed(futures):
            key = futures[fut]
            try:
                report.paths[key.name] = fut.result()
                report.n_downloaded += 1
            except SDSSError as exc:
                report.failed[key.name] = str(exc)
                manifest.append({"key": key.name, "status": "failed", "error": str(exc),
                                 "time": time.time()})
            bar.update(1)
            bar.set_postfix(failed=len(report.failed))
    return report
