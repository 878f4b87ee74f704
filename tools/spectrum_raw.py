"""What a format reader hands to the one reader (speclm.tools.spectrum): raw arrays, column-name
matching, units and air/vacuum as the file states them. Shared by the FITS and text readers."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speclm.tools.errors import MissingColumnError


DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MIN_PIXELS = 100
#: Observed-frame window every spectrum must fall inside after unit inference (Angstrom).
WAVE_WINDOW = (3000.0, 11000.0)
#: A text table is refused when more than this fraction of its data rows are not numbers;
#: below it the junk rows are skipped and listed in meta["warnings"].
JUNK_ROW_MAX_FRACTION = 0.10


def one_line(text: str) -> str:
    """Error messages are printed as a single line by the CLI; astropy's are multi-line."""
    return " ".join(str(text).split())



# --------------------------------------------------------------------------------------------
# Raw reader output and column-name matching
# --------------------------------------------------------------------------------------------

WAVE_NAMES = ("wavelength", "wave", "lambda", "lam", "loglam", "wavelength_vac", "wave_vac")
FLUX_NAMES = ("flux", "f_lambda", "flam", "fluxes")
IVAR_NAMES = ("ivar", "inverse_variance", "invvar", "inv_var")
ERR_NAMES = ("err", "error", "sigma", "flux_err", "flux_error", "uncertainty", "noise", "std")
MASK_NAMES = ("and_mask", "mask", "pixel_mask", "qual")  # qual: ESO Phase 3 quality flags
CATALOG_KEYS = ("z", "z_err", "class", "plate", "mjd", "fiberid", "specobjid", "ra", "dec",
                "zwarning")


@dataclass
class RawSpectrum:
    """What a format reader found, before the shared checks in :func:`speclm.tools.spectrum.read_spectrum`."""

    fmt: str
    wave: Any
    flux: Any
    ivar: Any = None
    err: Any = None
    mask: Any = None
    mask_bits: int | None = None      # mask bits that mean bad (None: any nonzero value)
    wave_unit: str | None = None      # declared by the file; None = infer from values
    medium: str | None = None         # "air" / "vacuum" declared by the file
    catalog: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def find_column(names: list[str], candidates: tuple[str, ...]) -> str | None:
    """First name (original spelling) whose lower-case form is one of candidates, in their order."""
    lowered = {n.strip().lower(): n for n in names}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    return None


def unit_from_string(unit: str | None) -> str | None:
    """Map a unit string from a file to our unit names (None when unknown or absent)."""
    if not unit:
        return None
    u = unit.strip().lower().replace(" ", "")
    if "log" in u:
        return "log10(Angstrom)"
    if u in ("a", "aa", "angstrom", "angstroms", "angstroem", "å", "0.1nm"):
        return "Angstrom"
    if u in ("nm", "nanometer", "nanometers", "nanometre"):
        return "nm"
    if u in ("um", "micron", "microns", "micrometer", "µm", "μm"):
        return "um"
    return None


def medium_from_value(value: Any, key: str) -> str | None:
    """Interpret AIRORVAC ('air'/'vac') or VACUUM (bool) header values."""
    if value is None:
        return None
    if key.upper() == "VACUUM":
        if isinstance(value, (bool, np.bool_)):
            return "vacuum" if value else "air"
        s = str(value).strip().lower()
        if s in ("t", "true", "1", "yes"):
            return "vacuum"
        return "air" if s in ("f", "false", "0", "no") else None
    s = str(value).strip().lower()
    if s.startswith("air"):
        return "air"
    if s.startswith("vac"):
        return "vacuum"
    return None


def medium_from_header(*headers) -> str | None:
    for hdr in headers:
        if hdr is None:
            continue
        for key in ("AIRORVAC", "VACUUM"):
            if key in hdr:
                medium = medium_from_value(hdr[key], key)
                if medium:
                    return medium
    return None


def columns_from_mapping(fmt: str, names: list[str], get, path: Path, *, units=None) -> RawSpectrum:
    """Build a RawSpectrum from any name->array container (FITS table, npz, structured array, CSV)."""
    wname = find_column(names, WAVE_NAMES)
    fname = find_column(names, FLUX_NAMES)
    if wname is None or fname is None:
        missing = " and ".join(w for w, n in (("wavelength", wname), ("flux", fname)) if n is None)
        raise MissingColumnError(
            f"{path}: no {missing} column found (columns: {', '.join(names) or 'none'}); expected "
            f"one of {'/'.join(WAVE_NAMES[:5])} and {'/'.join(FLUX_NAMES[:2])}")
    iname = find_column(names, IVAR_NAMES)
    ename = None if iname else find_column(names, ERR_NAMES)
    mname = find_column(names, MASK_NAMES)
    unit = None
    if wname.strip().lower() == "loglam":
        unit = "log10(Angstrom)"
    elif units:
        unit = unit_from_string(units.get(wname))
    return RawSpectrum(
        fmt=fmt, wave=get(wname), flux=get(fname),
        ivar=get(iname) if iname else None, err=get(ename) if ename else None,
        mask=get(mname) if mname else None, wave_unit=unit)




_TARGET_RE = re.compile(r"^(?P<path>.+)\[(?P<sel>#?-?\d+)\]$")


def split_target(ref: str) -> tuple[str, str | None]:
    """A target address: ``"FILE[39633345008634465]"`` / ``"FILE[#3]"`` -> (FILE, selector); a plain path -> (path, None)."""
    m = _TARGET_RE.match(ref)
    if not m:
        return ref, None
    return m.group("path"), m.group("sel")
