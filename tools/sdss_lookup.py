"""The agent's SDSS lookup tool: "what does SDSS say about this object?" -> catalog row + spectrum.

Why a separate module from :mod:`speclm.tools.sdss`: that one is the client (SQL, downloads,
cache); this one is the *question* a user or the agent asks, in whatever form they write the
identifier — ``0266-51630-0001``, ``spec-0266-51630-0001.fits``, ``plate 266 mjd 51630 fiber 1``,
a specObjID, ``RA 179.5 Dec -0.5``, ``12:00:00 +01:00:00`` or ``SDSS J120000.00+010000.0`` —
and the answer as one dataclass the agent can quote numbers from.

Answers are cached locally (JSON next to the spectrum cache), so repeating a lookup needs no
network. Failures are SpeclmError subclasses: SDSSIdentifierError (malformed), SDSSNotFound
(nothing there), SDSSError (server or network).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SDSSError, SDSSIdentifierError, SDSSNotFound
from .sdss import SDSSConfig, SpecKey, fetch_spectrum, query_sql, resolve_config, specobj_sql, table_rows

MAX_RADIUS_ARCSEC = 600.0  # a lookup, not a survey: refuse cone searches wider than 10'


@dataclass(frozen=True)
class SDSSIdentifier:
    """A parsed identifier: exactly one of (plate, fiberid[, mjd]), specobjid or (ra, dec)."""

    kind: str  # "plate" | "specobjid" | "coords"
    plate: int | None = None
    mjd: int | None = None
    fiberid: int | None = None
    specobjid: int | None = None
    ra: float | None = None
    dec: float | None = None


def _check_pmf(plate, mjd, fiberid) -> None:
    if not 1 <= plate <= 99999:
        raise SDSSIdentifierError(f"plate {plate} out of range 1..99999")
    if mjd is not None and not 50000 <= mjd <= 99999:
        raise SDSSIdentifierError(f"mjd {mjd} out of range 50000..99999 (SDSS began at 51xxx)")
    if not 1 <= fiberid <= 1000:
        raise SDSSIdentifierError(f"fiber {fiberid} out of range 1..1000")


def _check_coords(ra: float, dec: float) -> None:
    if not (np.isfinite(ra) and 0.0 <= ra < 360.0):
        raise SDSSIdentifierError(f"RA {ra} out of range [0, 360) degrees")
    if not (np.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise SDSSIdentifierError(f"Dec {dec} out of range [-90, 90] degrees")


_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_KW_PLATE = re.compile(r"plate\s*[:=#]?\s*(\d+)", re.I)
_KW_MJD = re.compile(r"mjd\s*[:=#]?\s*(\d+)", re.I)
_KW_FIBER = re.compile(r"fib(?:er|re)?(?:\s*id)?\s*[:=#]?\s*(\d+)", re.I)
_PMF = re.compile(r"(?<![\d.])(\d{3,5})[-/_ ](\d{5})[-/_ ](\d{1,4})(?!\d|\.\d)")
_SPECOBJID = re.compile(r"(?:spec\s*obj\s*id|specobjid)\s*[:=#]?\s*(\d+)", re.I)
_BARE_INT = re.compile(r"^\s*(\d{12,20})\s*$")
_KW_RA = re.compile(rf"\bra\s*[:=]?\s*(\d{{1,2}}[:h ]\d{{1,2}}[:m ]\d{{1,2}}(?:\.\d*)?s?|{_NUM})", re.I)
_KW_DEC = re.compile(rf"\bdec\s*[:=]?\s*([-+]?\d{{1,2}}[:d ]\d{{1,2}}[:m ]\d{{1,2}}(?:\.\d*)?s?|{_NUM})", re.I)
_SEXA = re.compile(r"(\d{1,2}[:h ]\d{1,2}[:m ]\d{1,2}(?:\.\d*)?s?)\s*,?\s+"
                   r"([-+]?\d{1,2}[:d ]\d{1,2}[:m ]\d{1,2}(?:\.\d*)?s?)")
_JNAME = re.compile(r"J(\d{2})(\d{2})(\d{2}(?:\.\d+)?)([-+])(\d{2})(\d{2})(\d{2}(?:\.\d+)?)")
_TWO_FLOATS = re.compile(rf"^\s*\(?\s*({_NUM})\s*[, ]\s*({_NUM})\s*\)?\s*$")


def _angle(text: str, hours: bool) -> float:
    """Decimal degrees from a decimal or sexagesimal string (RA sexagesimal is hours)."""
    import astropy.units as u
    from astropy.coordinates import Angle

    text = text.strip()
    try:
        if re.fullmatch(_NUM, text):
            return float(text)
        return round(float(Angle(text, unit=u.hourangle if hours else u.deg).deg), 9)
    except Exception as exc:  # astropy raises several types for junk
        raise SDSSIdentifierError(f"cannot read angle {text!r}: {exc}") from None


def parse_sdss_identifier(text: str | int) -> SDSSIdentifier:
    """Read an SDSS identifier written the ways people write them; raise SDSSIdentifierError."""
    if isinstance(text, (int, np.integer)):
        text = str(int(text))
    if not isinstance(text, str) or not text.strip():
        raise SDSSIdentifierError("empty SDSS identifier")
    s = text.strip()

    plate, mjd, fiber = (_KW_PLATE.search(s), _KW_MJD.search(s), _KW_FIBER.search(s))
    if plate or fiber:
        if not (plate and fiber):
            raise SDSSIdentifierError(f"{text!r}: need both a plate and a fiber number")
        p, f = int(plate[1]), int(fiber[1])
        m = int(mjd[1]) if mjd else None
        _check_pmf(p, m, f)
        return SDSSIdentifier("plate", plate=p, mjd=m, fiberid=f)
    m = _PMF.search(s)
    if m:
        p, mj, f = int(m[1]), int(m[2]), int(m[3])
        _check_pmf(p, mj, f)
        return SDSSIdentifier("plate", plate=p, mjd=mj, fiberid=f)
    m = _SPECOBJID.search(s) or _BARE_INT.match(s)
    if m:
        sid = int(m[1])
        if not 0 < sid < 2**64:
            raise SDSSIdentifierError(f"specObjID {sid} does not fit 64 bits")
        return SDSSIdentifier("specobjid", specobjid=sid)
    m = _JNAME.search(s)
    if m:
        ra = _angle(f"{m[1]}:{m[2]}:{m[3]}", hours=True)
        dec = _angle(f"{m[4]}{m[5]}:{m[6]}:{m[7]}", hours=False)
        _check_coords(ra, dec)
        return SDSSIdentifier("coords", ra=ra, dec=dec)
    ra_m, dec_m = _KW_RA.search(s), _KW_DEC.search(s)
    if ra_m or dec_m:
        if not (ra_m and dec_m):
            raise SDSSIdentifierError(f"{text!r}: need both RA and Dec")
        ra_txt = ra_m[1]
        ra = _angle(ra_txt, hours=not re.fullmatch(_NUM, ra_txt))
        dec = _angle(dec_m[1], hours=False)
        _check_coords(ra, dec)
        return SDSSIdentifier("coords", ra=ra, dec=dec)
    m = _SEXA.search(s)
    if m:
        ra, dec = _angle(m[1], hours=True), _angle(m[2], hours=False)
        _check_coords(ra, dec)
        return SDSSIdentifier("coords", ra=ra, dec=dec)
    m = _TWO_FLOATS.match(s)
    if m:
        ra, dec = float(m[1]), float(m[2])
        _check_coords(ra, dec)
        return SDSSIdentifier("coords", ra=ra, dec=dec)
    raise SDSSIdentifierError(
        f"cannot read {text!r} as an SDSS identifier; try plate-mjd-fiber (0266-51630-0001), "
        "a specObjID, or coordinates (RA 179.5 Dec -0.5 / 12:00:00 +01:00:00)")


@dataclass
class LookupResult:
    """SDSS's catalog answer for one spectrum, plus where its FITS file is cached."""

    plate: int
    mjd: int
    fiberid: int
    specobjid: int
    run2d: str
    ra: float
    dec: float
    z: float
    z_err: float
    obj_class: str
    subclass: str
    zwarning: int
    magnitudes: dict[str, float | None] = field(default_factory=dict)  # dereddened u,g,r,i,z
    data_release: int = 16
    separation_arcsec: float | None = None  # for coordinate lookups
    n_matches: int = 1  # how many catalog rows matched (coordinate / plate+fiber lookups)
    spectrum_path: Path | None = None

    @property
    def name(self) -> str:
        return SpecKey(self.plate, self.mjd, self.fiberid).name

    @property
    def spectrum(self):
        """The spectrum read through the one reader (speclm.tools.spectrum.read_spectrum)."""
        if self.spectrum_path is None:
            raise SDSSError(f"spectrum {self.name} was not fetched (lookup with fetch=True)")
        if not hasattr(self, "_spectrum"):
            from .spectrum import read_spectrum

            self._spectrum = read_spectrum(self.spectrum_path)
        return self._spectrum

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the agent state / tool messages."""
        d = asdict(self)
        d["name"] = self.name
        d["spectrum_path"] = None if self.spectrum_path is None else str(self.spectrum_path)
        return d

    def summary(self) -> str:
        """One line the agent can quote."""
        sep = "" if self.separation_arcsec is None else f", {self.separation_arcsec:.2f}\" away"
        i = self.magnitudes.get("i")
        mag = "" if i is None else f", dereddened i = {i:.2f}"
        return (f"SDSS DR{self.data_release} {self.name} (specObjID {self.specobjid}): "
                f"{self.obj_class}{' ' + self.subclass if self.subclass else ''}, "
                f"z = {self.z:.5f} ± {self.z_err:.5f}, zWarning = {self.zwarning}"
                f"{mag}{sep}")

    @classmethod
    def from_row(cls, row: dict[str, Any], data_release: int, **extra) -> "LookupResult":
        def num(key, default=float("nan")):
            v = row.get(key)
            return default if v is None else float(v)

        return cls(
            plate=int(row["plate"]), mjd=int(row["mjd"]), fiberid=int(row["fiberid"]),
            specobjid=int(row["specobjid"]), run2d=str(row.get("run2d") or ""),
            ra=num("ra"), dec=num("dec"), z=num("z"), z_err=num("z_err"),
            obj_class=str(row.get("class") or "").strip(),
            subclass=str(row.get("subclass") or "").strip(),
            zwarning=int(row.get("zwarning") or 0),
            magnitudes={b: (None if row.get(f"dered_{b}") is None else float(row[f"dered_{b}"]))
                        for b in "ugriz"},
            data_release=data_release, **extra)


def _separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (haversine), arcsec."""
    r1, d1, r2, d2 = (np.radians(np.asarray(v, float)) for v in (ra1, dec1, ra2, dec2))
    a = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))) * 3600.0


def _cache_file(cfg: SDSSConfig, ident: SDSSIdentifier, radius: float) -> Path:
    if ident.kind == "plate":
        tag = f"plate-{ident.plate}-{ident.mjd or 'any'}-{ident.fiberid}"
    elif ident.kind == "specobjid":
        tag = f"specobjid-{ident.specobjid}"
    else:
        tag = f"coords-{ident.ra:.6f}-{ident.dec:+.6f}-{radius:g}"
    return cfg.release_dir / "lookups" / f"{tag}.json"


def _catalog_rows(ident: SDSSIdentifier, radius: float, cfg: SDSSConfig) -> list[dict]:
    if ident.kind == "plate":
        sql = specobj_sql(plate=ident.plate, mjd=ident.mjd, fiberid=ident.fiberid)
    elif ident.kind == "specobjid":
        sql = specobj_sql(specobjid=ident.specobjid)
    else:
        sql = specobj_sql(box=(ident.ra, ident.dec, radius / 3600.0))
    rows = table_rows(query_sql(sql, cfg))
    if ident.kind == "coords":
        for r in rows:
            r["separation_arcsec"] = float(_separation_arcsec(ident.ra, ident.dec, r["ra"],
                                                              r["dec"]))
        rows = sorted((r for r in rows if r["separation_arcsec"] <= radius),
                      key=lambda r: r["separation_arcsec"])
    return rows


def _describe(ident: SDSSIdentifier, radius: float) -> str:
    if ident.kind == "plate":
        return (f"plate {ident.plate}" + (f" mjd {ident.mjd}" if ident.mjd else "")
                + f" fiber {ident.fiberid}")
    if ident.kind == "specobjid":
        return f"specObjID {ident.specobjid}"
    return f"RA {ident.ra:.5f} Dec {ident.dec:+.5f} within {radius:g}\""


def sdss_lookup(plate: int | None = None, mjd: int | None = None, fiberid: int | None = None,
                specobjid: int | None = None, ra: float | None = None, dec: float | None = None,
                radius_arcsec: float = 3.0, *, identifier: str | None = None, fetch: bool = True,
                cfg: SDSSConfig | None = None, **overrides) -> LookupResult:
    """Look an object up in SDSS by plate[-mjd]-fiber, specObjID, coordinates or a free string.

    A string as the first argument is parsed like ``identifier``.
    Returns the catalog row (nearest one for coordinates) and, with ``fetch``, the cached
    spectrum path (``result.spectrum`` reads it). ``overrides`` are SDSSConfig fields
    (data_release, skyserver_url, sas_url, cache_dir, timeout, ...).
    """
    cfg = resolve_config(cfg, **overrides)
    if isinstance(plate, str) and identifier is None:  # sdss_lookup("0266-51630-0001")
        identifier, plate = plate, None
    if identifier is not None:
        ident = parse_sdss_identifier(identifier)
    elif specobjid is not None:
        ident = parse_sdss_identifier(int(specobjid))
    elif plate is not None or fiberid is not None:
        if plate is None or fiberid is None:
            raise SDSSIdentifierError("a plate lookup needs both plate and fiberid")
        _check_pmf(int(plate), None if mjd is None else int(mjd), int(fiberid))
        ident = SDSSIdentifier("plate", plate=int(plate), mjd=None if mjd is None else int(mjd),
                               fiberid=int(fiberid))
    elif ra is not None or dec is not None:
        if ra is None or dec is None:
            raise SDSSIdentifierError("a coordinate lookup needs both ra and dec")
        _check_coords(float(ra), float(dec))
        ident = SDSSIdentifier("coords", ra=float(ra), dec=float(dec))
    else:
        raise SDSSIdentifierError("nothing to look up: give plate/mjd/fiberid, specobjid, "
                                  "ra/dec or identifier")
    if not 0 < radius_arcsec <= MAX_RADIUS_ARCSEC:
        raise SDSSIdentifierError(f"radius_arcsec must be in (0, {MAX_RADIUS_ARCSEC:g}]")

    cache_file = _cache_file(cfg, ident, radius_arcsec)
    rows = None
    if cache_file.is_file():
        try:
            rows = json.loads(cache_file.read_text())
        except ValueError:
            rows = None
    if not rows:
        rows = _catalog_rows(ident, radius_arcsec, cfg)
        if not rows:
            raise SDSSNotFound(f"SDSS DR{cfg.data_release} has no spectrum for "
                               f"{_describe(ident, radius_arcsec)}")
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(cache_file)
    best = rows[0]
    result = LookupResult.from_row(best, cfg.data_release, n_matches=len(rows),
                                   separation_arcsec=best.get("separation_arcsec"))
    if fetch:
        result.spectrum_path = fetch_spectrum(result.plate, result.mjd, result.fiberid,
                                              result.run2d or None, cfg)
    return result
