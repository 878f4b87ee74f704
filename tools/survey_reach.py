"""Which surveys could observe an object, and why (or why not), from a data file of survey limits.

The limits live in ``tools/data/surveys.yaml``, one reference per entry (the paper the numbers come
from); :func:`load_surveys` validates it. :func:`survey_reach` compares an object's synthetic
magnitudes (:mod:`speclm.tools.measure`), redshift, spectral type and position with each entry:

* **type**: does the survey target galaxies or quasars?
* **redshift**: is z inside the survey's targeted range?
* **brightness**: spectroscopic surveys select on a magnitude, imaging surveys reach a depth. Our
  magnitudes come from the spectrum, i.e. from the light inside the fibre; a galaxy's total light
  is brighter, so a fibre magnitude fainter than a total-magnitude limit gives "maybe", not "no",
  unless it misses by more than ``FIBRE_TOTAL_MAX_MAG`` (the most light a fibre plausibly misses).
  Where the survey cuts on another band or on colours, the verdict says the comparison is approximate.
* **sky**: the declination envelope (and |b| or the exact fields where the file has them).

Verdicts: "yes" (every test passes), "maybe" (none fails but one is uncertain), "no" (one fails,
named). numpy / astropy / PyYAML only: tools layer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from speclm.tools.errors import ConfigError

SURVEY_FILE = Path(__file__).parent / "data" / "surveys.yaml"
REQUIRED = ("name", "kind", "status", "targets", "band", "mag_limit", "selects_on", "z_range", "dec_range",
            "area_deg2", "colour_cuts", "reference")
#: a galaxy's total magnitude is at most this much brighter than its fibre magnitude (z ≳ 0.02)
FIBRE_TOTAL_MAX_MAG = 2.0
_TYPE = {"GALAXY": "galaxy", "QSO": "quasar", "STAR": "star"}
_PLURAL = {"galaxy": "galaxies", "quasar": "quasars", "star": "stars"}


@dataclass(frozen=True)
class Survey:
    name: str
    kind: str
    status: str
    targets: tuple[str, ...]
    band: str
    mag_limit: float
    selects_on: str
    z_range: tuple[float, float]
    dec_range: tuple[float, float]
    area_deg2: float
    colour_cuts: bool
    reference: str
    min_abs_b: float | None = None
    fields: tuple[tuple[float, float, float, float], ...] = ()


@lru_cache(maxsize=4)
def load_surveys(path: str | None = None) -> tuple[Survey, ...]:
    """The survey table, validated (a broken file is a ConfigError naming the entry and field)."""
    import yaml

    p = Path(path) if path else SURVEY_FILE
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    out = []
    for i, e in enumerate((data or {}).get("surveys") or []):
        missing = [k for k in REQUIRED if k not in e]
        if missing:
            raise ConfigError(f"{p.name} entry {i} ({e.get('name', '?')}): missing {', '.join(missing)}")
        if e["kind"] not in ("spectroscopic", "imaging") or e["band"] not in ("g", "r", "i"):
            raise ConfigError(f"{p.name} entry {e['name']}: kind must be spectroscopic|imaging and band g|r|i")
        if not set(e["targets"]) <= {"galaxy", "quasar"}:
            raise ConfigError(f"{p.name} entry {e['name']}: targets must be galaxy and/or quasar")
        out.append(Survey(name=e["name"], kind=e["kind"], status=e["status"], targets=tuple(e["targets"]),
                          band=e["band"], mag_limit=float(e["mag_limit"]), selects_on=e["selects_on"],
                          z_range=tuple(map(float, e["z_range"])), dec_range=tuple(map(float, e["dec_range"])),
                          area_deg2=float(e["area_deg2"]), colour_cuts=bool(e["colour_cuts"]),
                          reference=e["reference"], min_abs_b=e.get("min_abs_b"),
                          fields=tuple(tuple(map(float, f)) for f in e.get("fields") or ())))
    if not out:
        raise ConfigError(f"{p} lists no surveys")
    return tuple(out)


def survey_names() -> list[str]:
    return [s.name for s in load_surveys()]


@dataclass
class Reach:
    survey: str
    kind: str
    verdict: str  # yes | maybe | no
    reasons: list[str]
    reference: str
    status: str

    def to_dict(self) -> dict:
        return asdict(self)


def _in_fields(ra: float, dec: float, fields) -> bool:
    for r0, r1, d0, d1 in fields:
        in_ra = (r0 <= ra <= r1) if r0 <= r1 else (ra >= r0 or ra <= r1)
        if in_ra and d0 <= dec <= d1:
            return True
    return False


def _galactic_b(ra: float, dec: float) -> float:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    return float(SkyCoord(ra * u.deg, dec * u.deg).galactic.b.deg)


def survey_reach(*, z: float, spectype: str, magnitudes: dict | None, ra: float | None = None,
                 dec: float | None = None, surveys=None, fibre_arcsec: float | None = None,
                 total_magnitudes: dict | None = None) -> dict:
    """Every survey's verdict for this object; see the module docstring for the tests.

    magnitudes: fibre magnitudes synthesised from the spectrum (the light inside a fibre of
    ``fibre_arcsec`` on the sky, when the reader knows it: SDSS 3″, BOSS 2″, DESI 1.5″, LAMOST 3.3″).
    total_magnitudes: a galaxy's total magnitudes from the file's own catalog (DESI's FIBERMAP carries
    Legacy Surveys photometry); a band found here is compared as it is, without the fibre allowance.
    """
    kind = _TYPE.get(spectype, "galaxy")
    fib = f"{fibre_arcsec:g}″ fibre" if fibre_arcsec else "fibre"
    total = {k: v for k, v in (total_magnitudes or {}).items() if isinstance(v, (int, float))}
    point = kind == "quasar"  # a quasar is a point source: its fibre magnitude is its total
    b = _galactic_b(ra, dec) if ra is not None and dec is not None else None
    out = []
    for s in surveys or load_surveys():
        reasons, fail, unsure = [], False, False
        if kind not in s.targets:
            reasons.append(f"it targets {' and '.join(_PLURAL[t] for t in s.targets)}, not {_PLURAL[kind]}")
            fail = True
        lo, hi = s.z_range
        if not lo <= z <= hi:
            reasons.append(f"z = {z:.3f} is outside its range {lo:g}–{hi:g}")
            fail = True
        else:
            reasons.append(f"z = {z:.3f} is inside its range {lo:g}–{hi:g}")
        m = (magnitudes or {}).get(s.band)
        if s.band in total:
            t = total[s.band]
            if t <= s.mag_limit:
                reasons.append(f"{s.band} = {t:.2f} (total, the file's catalog) is brighter than its limit {s.mag_limit:g}")
            else:
                reasons.append(f"{s.band} = {t:.2f} (total, the file's catalog) is fainter than its limit {s.mag_limit:g}")
                fail = True
        elif m is None:
            reasons.append(f"no {s.band} magnitude could be synthesised from the spectrum")
            unsure = True
        elif m <= s.mag_limit:
            reasons.append(f"{s.band} = {m:.2f} ({fib if not point else 'point source'}) is brighter than its "
                           f"limit {s.mag_limit:g}")
        elif point:
            reasons.append(f"{s.band} = {m:.2f} is fainter than its limit {s.mag_limit:g}")
            fail = True
        elif m > s.mag_limit + FIBRE_TOTAL_MAX_MAG:
            reasons.append(f"{s.band} = {m:.2f} ({fib}) is fainter than its limit {s.mag_limit:g} by more than the "
                           f"{FIBRE_TOTAL_MAX_MAG:g} mag a fibre can miss")
            fail = True
        else:
            reasons.append(f"the {fib} magnitude {s.band} = {m:.2f} is fainter than its limit {s.mag_limit:g}, but the "
                           "galaxy's total light is brighter")
            unsure = True
        if dec is None:
            reasons.append("the position is unknown, so the sky coverage is not checked")
            unsure = True
        else:
            d0, d1 = s.dec_range
            if s.fields:
                if _in_fields(ra, dec, s.fields):
                    reasons.append("the position is inside one of its fields")
                else:
                    reasons.append("the position is outside its fields")
                    fail = True
            elif not d0 <= dec <= d1:
                reasons.append(f"Dec = {dec:.2f} is outside its declination range {d0:g} to {d1:g}")
                fail = True
            else:
                reasons.append(f"Dec = {dec:.2f} is inside its declination range {d0:g} to {d1:g} (the exact "
                               "footprint is not checked)")
            if s.min_abs_b is not None and b is not None and abs(b) < s.min_abs_b:
                reasons.append(f"Galactic latitude b = {b:.1f} is below its |b| ≥ {s.min_abs_b:g}")
                fail = True
        if s.colour_cuts and not fail:
            reasons.append("its colour selection is not modelled here")
            unsure = True
        if s.band and f"compared here with {s.band}" in s.selects_on and not fail:
            unsure = True
        verdict = "no" if fail else ("maybe" if unsure else "yes")
        out.append(Reach(survey=s.name, kind=s.kind, verdict=verdict, reasons=reasons, reference=s.reference,
                         status=s.status).to_dict())
    return {"z": z, "spectype": spectype, "magnitudes": magnitudes, "total_magnitudes": total or None,
            "fibre_arcsec": fibre_arcsec, "ra": ra, "dec": dec,
            "galactic_b": None if b is None else round(b, 2), "surveys": out,
            "source": "speclm/tools/data/surveys.yaml"}
