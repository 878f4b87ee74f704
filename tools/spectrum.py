"""The one in-memory spectrum type, and the one function every entry point reads files with.

Why one type: the CLI, datasets, the agent and the UI all hand spectra to the same preprocessing,
so they must agree on units (vacuum Angstrom, observed frame), on what a bad pixel is (ivar == 0,
or a mask bit that means bad data: for SDSS files only FULLREJECT/NOSKY/NODATA/COMBINEREJ, see
:data:`SDSS_BAD_PIXEL_BITS`) and on where catalog metadata lives.

Why one reader (:func:`read_spectrum`): a user's file can be wrong in a dozen ways. Each way has
its own exception type in :mod:`speclm.tools.errors`, and every entry point must raise the same
one for the same file, so the checks live here once: size before opening, format by magic bytes,
units inferred from the values, air converted to vacuum, masks folded into ``ivar``.

Supported formats (``meta["format"]``):

* ``sdss-spec``  SDSS/BOSS/eBOSS ``spec-*.fits`` and spec-lite: HDU ``COADD`` (or HDU1) with
  loglam/flux/ivar/and_mask; catalog from HDU ``SPECOBJ`` (or ``SPALL``/HDU2). Vacuum.
* ``sdss-spspec`` old (DR1-DR7) ``spSpec`` image FITS: rows flux, continuum-subtracted, error,
  mask; log-linear wavelengths from COEFF0/COEFF1; catalog from header keywords. Vacuum.
* ``fits-table``  any FITS binary/ASCII table with a wavelength and a flux column
  (wave/wavelength/lambda/lam/loglam; flux; ivar/inverse_variance or err/error/sigma).
* ``fits-image-1d`` a 1-D image with a linear (or DC-FLAG=1 log-linear) CRVAL1/CDELT1 solution.
* ``text``  CSV/TXT, comma or whitespace separated, ``#`` comments, optional header row.
  Without a header the columns are wavelength, flux[, error] -- the third column is a 1-sigma
  *error*, not an inverse variance, because that is what ASCII spectrum exports (IRAF wspectext,
  specutils, most pipelines) write. With a header, columns are found by name.
* ``npy``  a (2|3, N) or (N, 2|3) array (same column convention as text), or a structured array.
* ``npz``  arrays named wavelength/wave/lambda/loglam, flux, ivar or error/err/sigma[, mask].

Units: a unit declared by the file (FITS TUNIT/CUNIT1, ``wave[nm]`` style header, a ``loglam``
column) wins; otherwise values in 3.3-4.1 are log10(Angstrom), 0.3-1.1 micron, 300-1100 nm,
anything else Angstrom. After conversion the spectrum must lie in 3000-11000 Angstrom.

Air/vacuum: SDSS is vacuum. Other files may say ``AIRORVAC = 'air'`` / ``VACUUM = F`` (FITS header,
a ``# AIRORVAC = air`` text comment, or an npz ``airorvac`` entry); ``read_spectrum(air=True)``
overrides the file. Air wavelengths are converted with :func:`air_to_vacuum`. Files that say
nothing are taken as vacuum and ``meta["air_or_vacuum_assumed"]`` is True.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speclm.tools.errors import (
    CorruptFileError,
    EmptyFileError,
    FileTooLargeError,
    ImageFITSError,
    InvalidFluxError,
    InvalidIvarError,
    JunkRowsError,
    MissingColumnError,
    SpectrumError,
    SpectrumFileNotFound,
    TooFewPixelsError,
    UnsupportedFormatError,
    WavelengthOrderError,
    WavelengthRangeError,
)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MIN_PIXELS = 100
#: Observed-frame window every spectrum must fall inside after unit inference (Angstrom).
WAVE_WINDOW = (3000.0, 11000.0)
#: A text table is refused when more than this fraction of its data rows are not numbers;
#: below it the junk rows are skipped and listed in meta["warnings"].
JUNK_ROW_MAX_FRACTION = 0.10


@dataclass
class Spectrum:
    """A 1-D observed-frame spectrum.

    wavelength: vacuum Angstrom, strictly increasing (converted from air if the file said air).
    flux: as stored (SDSS: 1e-17 erg/s/cm^2/A); NaN never appears (bad pixels get ivar=0).
    ivar: inverse variance of flux; 0 marks a pixel that carries no information.
    mask: integer mask; nonzero = bad. For SDSS files it holds only the and_mask bits that mean
          "no data here" (:data:`SDSS_BAD_PIXEL_BITS`); the other and_mask bits are warnings
          (counted in ``meta["and_mask_info_pixels"]``). Zeros if the file had none.
    meta: catalog metadata when present: z, z_err, class, plate, mjd, fiberid, specobjid, ra, dec,
          plus provenance: source (path or "simulated"), format, wave_unit_in, air_or_vacuum.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        return int(self.wavelength.size)

    @property
    def good(self) -> np.ndarray:
        """Boolean array: pixels with finite flux, ivar > 0 and mask == 0."""
        return np.isfinite(self.flux) & (self.ivar > 0) & (self.mask == 0)

    @property
    def z_catalog(self) -> float | None:
        z = self.meta.get("z")
        return None if z is None else float(z)


# --------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------

def air_to_vacuum(wave_air: np.ndarray | float) -> np.ndarray | float:
    """Air -> vacuum wavelength in Angstrom (the IAU standard conversion).

    Uses the refractive index of Morton (2000) / Ciddor (1996) as inverted by N. Piskunov for VALD,
    the same formula SDSS and astropy-affiliated packages use: Halpha 6562.80 (air) -> 6564.61.
    """
    wave = np.asarray(wave_air, dtype=np.float64)
    s2 = (1.0e4 / wave) ** 2
    n = (1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (1.301065924522e2 - s2)
         + 1.599740894897e-4 / (3.892568793293e1 - s2))
    out = wave * n
    return float(out) if np.ndim(wave_air) == 0 else out


def summary(spec: Spectrum) -> dict[str, Any]:
    """What was read, as a JSON-friendly dict (used by `speclm inspect`, the agent and the UI).

    median_snr is the median of flux*sqrt(ivar) over good pixels; None when the file carried no
    uncertainties (ivar was assumed), because a made-up S/N is worse than none.
    """
    good = spec.good
    m = spec.meta
    snr = None
    if good.any() and not m.get("ivar_assumed"):
        snr = float(np.median(spec.flux[good] * np.sqrt(spec.ivar[good])))
    out: dict[str, Any] = {
        "source": m.get("source"),
        "format": m.get("format"),
        "n_pixels": spec.n_pixels,
        "n_good": int(good.sum()),
        "wave_min": float(spec.wavelength[0]),
        "wave_max": float(spec.wavelength[-1]),
        "wave_unit_in": m.get("wave_unit_in"),
        "air_or_vacuum": m.get("air_or_vacuum"),
        "median_snr": snr,
        "z_catalog": spec.z_catalog,
    }
    for key in CATALOG_KEYS:
        if key != "z":
            out[key] = m.get(key)
    out["warnings"] = list(m.get("warnings", []))
    return out


def _one_line(text: str) -> str:
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
class _Raw:
    """What a format reader found, before the shared checks in :func:`_finalize`."""

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


def _find(names: list[str], candidates: tuple[str, ...]) -> str | None:
    """First name (original spelling) whose lower-case form is one of candidates, in their order."""
    lowered = {n.strip().lower(): n for n in names}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    return None


def _unit_from_string(unit: str | None) -> str | None:
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


def _medium_from_value(value: Any, key: str) -> str | None:
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


def _medium_from_header(*headers) -> str | None:
    for hdr in headers:
        if hdr is None:
            continue
        for key in ("AIRORVAC", "VACUUM"):
            if key in hdr:
                medium = _medium_from_value(hdr[key], key)
                if medium:
                    return medium
    return None


def _columns_from_mapping(fmt: str, names: list[str], get, path: Path, *, units=None) -> _Raw:
    """Build a _Raw from any name->array container (FITS table, npz, structured array, CSV)."""
    wname = _find(names, WAVE_NAMES)
    fname = _find(names, FLUX_NAMES)
    if wname is None or fname is None:
        missing = " and ".join(w for w, n in (("wavelength", wname), ("flux", fname)) if n is None)
        raise MissingColumnError(
            f"{path}: no {missing} column found (columns: {', '.join(names) or 'none'}); expected "
            f"one of {'/'.join(WAVE_NAMES[:5])} and {'/'.join(FLUX_NAMES[:2])}")
    iname = _find(names, IVAR_NAMES)
    ename = None if iname else _find(names, ERR_NAMES)
    mname = _find(names, MASK_NAMES)
    unit = None
    if wname.strip().lower() == "loglam":
        unit = "log10(Angstrom)"
    elif units:
        unit = _unit_from_string(units.get(wname))
    return _Raw(
        fmt=fmt, wave=get(wname), flux=get(fname),
        ivar=get(iname) if iname else None, err=get(ename) if ename else None,
        mask=get(mname) if mname else None, wave_unit=unit)


# --------------------------------------------------------------------------------------------
# FITS
# --------------------------------------------------------------------------------------------

_SPSPEC_CLASS = {0: "UNKNOWN", 1: "STAR", 2: "GALAXY", 3: "QSO", 4: "QSO", 5: "SKY", 6: "STAR",
                 7: "GALAXY"}
_SPSPEC_EMLINE_BIT = 1 << 30   # spSpec SP_MASK_EMLINE marks emission lines, not bad pixels

# SDSS pixel-mask policy (sdss.org "SPPIXMASK"; DR8-DR17 algorithm pages): "the conditions that
# are considered very bad are already used to set ... the inverse variance to zero", so ivar is the
# authority. Bits 0-15 describe a whole fiber or camera half (MANYBADCOLUMNS, BADTRACE, ... are set
# on half the pixels of many good spectra) and bits 16-31 other than the ones below are warnings
# (NEARBADPIXEL, LOWFLAT, SCATTEREDLIGHT, BRIGHTSKY, BADSKYCHI, ...). Only the bits that mean
# "no data at this pixel" make a pixel bad, whatever its ivar says.
SDSS_MASK_BITS = {"FULLREJECT": 18, "NOSKY": 22, "NODATA": 24, "COMBINEREJ": 25}
SDSS_BAD_PIXEL_BITS = sum(1 << b for b in SDSS_MASK_BITS.values())


def _vector(table, name: str) -> np.ndarray:
    """A table column as 1-D: N scalar rows, or one row holding an N-vector."""
    arr = np.asarray(table[name])
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise MissingColumnError(f"column {name!r} has shape {arr.shape}, not a 1-D spectrum")
    return np.array(arr)


def _scalar(value: Any) -> Any:
    """Numpy/FITS catalog value -> plain Python (str stripped, NaN -> None, ids -> int)."""
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, (np.ndarray,)) and value.ndim > 0:
        return None
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    return value


def _catalog_from_row(row_get, names: list[str]) -> dict[str, Any]:
    """SPECOBJ/SPALL row -> meta catalog keys. Only fields present (and finite) are set."""
    aliases = {
        "z": ("Z",), "z_err": ("Z_ERR",), "class": ("CLASS",), "plate": ("PLATE", "FIELD"),
        "mjd": ("MJD",), "fiberid": ("FIBERID",), "specobjid": ("SPECOBJID",),
        "ra": ("PLUG_RA", "RACAT", "RA"), "dec": ("PLUG_DEC", "DECCAT", "DEC"),
        "zwarning": ("ZWARNING",),
    }
    upper = {n.upper(): n for n in names}
    out: dict[str, Any] = {}
    for key, cands in aliases.items():
        for cand in cands:
            if cand in upper:
                val = _scalar(row_get(upper[cand]))
                if val is not None:
                    out[key] = val
                    break
    if isinstance(out.get("specobjid"), str) and out["specobjid"].isdigit():
        out["specobjid"] = int(out["specobjid"])
    return out


def _read_sdss_spec(hdul, coadd, path: Path) -> _Raw:
    names = list(coadd.columns.names)
    wname, fname, iname = (_find(names, (n,)) for n in ("loglam", "flux", "ivar"))
    if wname is None or fname is None:
        raise MissingColumnError(
            f"{path}: SDSS COADD table lacks loglam/flux columns (has: {', '.join(names)})")
    data = coadd.data
    raw = _Raw(fmt="sdss-spec", wave=_vector(data, wname), flux=_vector(data, fname),
               ivar=_vector(data, iname) if iname else None, mask_bits=SDSS_BAD_PIXEL_BITS,
               wave_unit="log10(Angstrom)", medium="vacuum")
    mname = _find(names, ("and_mask",))
    if mname:
        raw.mask = _vector(data, mname)
    if iname is None:
        raw.warnings.append("SDSS COADD has no ivar column")
    # catalog: named SPECOBJ (SDSS-I..IV) or SPALL (SDSS-V), else HDU2 when it has a Z column
    cat = None
    for hdu in hdul[1:]:
        if hdu.name.upper() in ("SPECOBJ", "SPALL") and _is_table(hdu):
            cat = hdu
            break
    if cat is None and len(hdul) > 2 and _is_table(hdul[2]) and "Z" in [
            n.upper() for n in hdul[2].columns.names]:
        cat = hdul[2]
    if cat is not None and cat.data is not None and len(cat.data) > 0:
        row = cat.data[0]
        raw.catalog = _catalog_from_row(lambda n: row[n], list(cat.columns.names))
    hdr = hdul[0].header
    for key, hkey in (("plate", "PLATEID"), ("mjd", "MJD"), ("fiberid", "FIBERID"),
                      ("ra", "PLUG_RA"), ("dec", "PLUG_DEC")):
        if key not in raw.catalog and hkey in hdr:
            val = _scalar(hdr[hkey])
            if val is not None:
                raw.catalog[key] = val
    if "z" not in raw.catalog:
        raw.warnings.append("no SPECOBJ catalog redshift in file")
    return raw


def _read_spspec(hdu, path: Path) -> _Raw:
    data = np.asarray(hdu.data, dtype=np.float64)
    hdr = hdu.header
    n = data.shape[1]
    wave_log = float(hdr["COEFF0"]) + float(hdr["COEFF1"]) * np.arange(n)
    mask = None
    if data.shape[0] >= 4:
        mask = data[3].astype(np.int64) & ~np.int64(_SPSPEC_EMLINE_BIT)
    raw = _Raw(fmt="sdss-spspec", wave=wave_log, flux=data[0], err=data[2], mask=mask,
               mask_bits=SDSS_BAD_PIXEL_BITS, wave_unit="log10(Angstrom)",
               medium=_medium_from_header(hdr) or "vacuum")
    for key, hkey in (("z", "Z"), ("z_err", "Z_ERR"), ("plate", "PLATEID"), ("mjd", "MJD"),
                      ("fiberid", "FIBERID"), ("ra", "RAOBJ"), ("dec", "DECOBJ"),
                      ("specobjid", "SPECOBJID"), ("zwarning", "Z_WARNIN")):
        if hkey in hdr:
            val = _scalar(hdr[hkey])
            if val is not None:
                raw.catalog[key] = val
    if "SPEC_CLN" in hdr:
        raw.catalog["class"] = _SPSPEC_CLASS.get(int(hdr["SPEC_CLN"]), "UNKNOWN")
    return raw


def _read_image_1d(hdu, path: Path) -> _Raw:
    hdr = hdu.header
    step = hdr.get("CDELT1", hdr.get("CD1_1"))
    if "CRVAL1" not in hdr or step is None:
        raise MissingColumnError(f"{path}: 1-D image has no CRVAL1/CDELT1 wavelength solution")
    flux = np.asarray(hdu.data, dtype=np.float64)
    pix = np.arange(flux.size) + 1.0 - float(hdr.get("CRPIX1", 1.0))
    wave = float(hdr["CRVAL1"]) + float(step) * pix
    log = int(hdr.get("DC-FLAG", 0)) == 1 or "LOG" in str(hdr.get("CTYPE1", "")).upper()
    unit = "log10(Angstrom)" if log else _unit_from_string(hdr.get("CUNIT1"))
    return _Raw(fmt="fits-image-1d", wave=wave, flux=flux, wave_unit=unit,
                medium=_medium_from_header(hdr))


def _is_table(hdu) -> bool:
    from astropy.io import fits

    return isinstance(hdu, (fits.BinTableHDU, fits.TableHDU))


def _from_hdul(hdul, path: Path) -> _Raw:
    """Pick the reader for an opened FITS file by its structure, not its name."""
    if len(hdul) == 0:
        raise CorruptFileError(f"{path}: FITS file has no HDUs")
    tables = [h for h in hdul if _is_table(h)]
    coadd = next((h for h in tables if h.name.upper() == "COADD"), None)
    if coadd is None and len(hdul) > 1 and _is_table(hdul[1]):
        lower = [n.lower() for n in hdul[1].columns.names]
        if {"loglam", "flux", "and_mask"} <= set(lower):
            coadd = hdul[1]
    if coadd is not None:
        return _read_sdss_spec(hdul, coadd, path)
    for hdu in tables:
        names = list(hdu.columns.names)
        if _find(names, WAVE_NAMES) and _find(names, FLUX_NAMES):
            units = {c.name: c.unit for c in hdu.columns}
            raw = _columns_from_mapping("fits-table", names,
                                        lambda n, t=hdu.data: _vector(t, n), path, units=units)
            raw.medium = _medium_from_header(hdu.header, hdul[0].header)
            return raw
    images = [h for h in hdul if not _is_table(h) and int(h.header.get("NAXIS", 0)) > 0]
    if images:
        img = images[0]
        naxis = int(img.header["NAXIS"])
        if naxis == 2 and "COEFF0" in img.header and "COEFF1" in img.header \
                and int(img.header.get("NAXIS2", 0)) >= 3:
            return _read_spspec(img, path)
        if naxis == 1 and not tables:
            return _read_image_1d(img, path)
        if not tables:
            shape = "x".join(str(img.header.get(f"NAXIS{i}")) for i in range(naxis, 0, -1))
            raise ImageFITSError(
                f"{path}: FITS holds a {naxis}-D image ({shape}), not a 1-D spectrum table "
                "(expected an SDSS COADD HDU or a table with wavelength and flux columns)")
    found = "; ".join(f"HDU{i} {h.name}: {', '.join(h.columns.names)}"
                      for i, h in enumerate(hdul) if _is_table(h)) or "no tables"
    raise MissingColumnError(
        f"{path}: no COADD HDU and no table with wavelength and flux columns ({found})")


def _truncation(caught) -> str | None:
    for w in caught:
        msg = str(w.message)
        if "truncated" in msg.lower() or "not multiple of 2880" in msg:
            return _one_line(msg)
    return None


def _read_fits(path: Path) -> _Raw:
    from astropy.io import fits

    # Record (do not print) astropy's warnings: a truncation warning becomes CorruptFileError,
    # others go to meta["warnings"] so the CLI's stderr stays one line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                trunc = _truncation(caught)
                if trunc:
                    raise CorruptFileError(f"{path}: truncated FITS file ({trunc})")
                raw = _from_hdul(hdul, path)
        except SpectrumError:
            raise
        except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
            trunc = _truncation(caught)
            why = f"truncated ({trunc})" if trunc else f"{type(exc).__name__}: {exc}"
            raise CorruptFileError(_one_line(f"{path}: unreadable FITS file: {why}")) from exc
        trunc = _truncation(caught)
        if trunc:
            raise CorruptFileError(f"{path}: truncated FITS file ({trunc})")
    seen = set()
    for w in caught:
        msg = _one_line(str(w.message))[:200]
        if msg not in seen:
            seen.add(msg)
            raw.warnings.append(f"astropy: {msg}")
    return raw


def write_sdss_spec_fits(path, loglam, flux, ivar, z, plate=266, mjd=51630, fiberid=1,
                         specobjid=None, cls="GALAXY", and_mask=None, *, z_err=0.0, ra=None,
                         dec=None, subclass="", zwarning=0, run2d=26, overwrite=True) -> Path:
    """Write a spectrum in SDSS's ``spec-PLATE-MJD-FIBER.fits`` layout.

    HDUs as SDSS ships them: PRIMARY (PLATEID/MJD/FIBERID keywords), COADD (float32 flux, loglam,
    ivar, wdisp, sky, model; int32 and_mask, or_mask) and a one-row SPECOBJ table. Used by tests
    (a loopback SDSS server) and by the simulator to export FITS that :func:`read_spectrum` and
    other SDSS tools read. Z is stored as float32 like SDSS, so it reads back as float32(z).
    specobjid defaults to SDSS's bit packing of plate/fiber/mjd/run2d.
    """
    from astropy.io import fits

    loglam = np.asarray(loglam, dtype=np.float32)
    n = loglam.size
    flux = np.asarray(flux, dtype=np.float32)
    ivar = np.asarray(ivar, dtype=np.float32)
    and_mask = np.zeros(n, np.int32) if and_mask is None else np.asarray(and_mask, np.int32)
    if not (flux.size == ivar.size == and_mask.size == n):
        raise ValueError("loglam, flux, ivar and and_mask must have the same length")
    if specobjid is None:
        specobjid = (int(plate) << 50) | (int(fiberid) << 38) | ((int(mjd) - 50000) << 24) \
            | (int(run2d) << 10)
    ra = 0.0 if ra is None else float(ra)
    dec = 0.0 if dec is None else float(dec)

    primary = fits.PrimaryHDU()
    hdr = primary.header
    hdr["TELESCOP"] = ("SDSS 2.5-M", "Sloan Digital Sky Survey")
    hdr["PLATEID"] = (int(plate), "Plate Id")
    hdr["MJD"] = (int(mjd), "MJD of observation")
    hdr["FIBERID"] = (int(fiberid), "Fiber Id")
    hdr["PLUG_RA"] = (ra, "RA of fiber (deg)")
    hdr["PLUG_DEC"] = (dec, "Dec of fiber (deg)")
    hdr["VACUUM"] = (True, "Wavelengths are in vacuum")
    zeros = np.zeros(n, np.float32)
    coadd = fits.BinTableHDU.from_columns([
        fits.Column("flux", "E", array=flux),
        fits.Column("loglam", "E", array=loglam),
        fits.Column("ivar", "E", array=ivar),
        fits.Column("and_mask", "J", array=and_mask),
        fits.Column("or_mask", "J", array=and_mask.copy()),
        fits.Column("wdisp", "E", array=np.ones(n, np.float32)),
        fits.Column("sky", "E", array=zeros),
        fits.Column("model", "E", array=zeros.copy()),
    ], name="COADD")
    specobj = fits.BinTableHDU.from_columns([
        fits.Column("SPECOBJID", "22A", array=np.array([f"{int(specobjid):>22d}"])),
        fits.Column("PLATE", "J", array=np.array([plate], np.int32)),
        fits.Column("MJD", "J", array=np.array([mjd], np.int32)),
        fits.Column("FIBERID", "J", array=np.array([fiberid], np.int32)),
        fits.Column("PLUG_RA", "D", array=np.array([ra])),
        fits.Column("PLUG_DEC", "D", array=np.array([dec])),
        fits.Column("CLASS", "6A", array=np.array([cls])),
        fits.Column("SUBCLASS", "21A", array=np.array([subclass])),
        fits.Column("Z", "E", array=np.array([z], np.float32)),
        fits.Column("Z_ERR", "E", array=np.array([z_err], np.float32)),
        fits.Column("ZWARNING", "J", array=np.array([zwarning], np.int32)),
    ], name="SPECOBJ")
    path = Path(path)
    fits.HDUList([primary, coadd, specobj]).writeto(path, overwrite=overwrite)
    return path


# --------------------------------------------------------------------------------------------
# Text and NumPy
# --------------------------------------------------------------------------------------------

_MEDIUM_RE = re.compile(r"\b(AIRORVAC|VACUUM)\b\s*[=:]\s*['\"]?([A-Za-z0-9]+)", re.IGNORECASE)
_HEADER_UNIT_RE = re.compile(r"^(.*?)\s*[\[(]\s*([^\])]*)\s*[\])]\s*$")
_NAME_UNIT_SUFFIX = {"_nm": "nm", "_um": "um", "_aa": "Angstrom", "_angstrom": "Angstrom",
                     "_a": "Angstrom"}


def _split(line: str, delim: str | None) -> list[str]:
    if delim:
        return [f.strip() for f in line.split(delim)]
    return line.split()


def _floats(fields: list[str]) -> list[float] | None:
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def _parse_header(fields: list[str]) -> tuple[list[str], dict[str, str]]:
    """'wavelength [nm]' / 'wave(nm)' / 'wave_nm' -> name 'wavelength'/'wave', unit 'nm'."""
    names, units = [], {}
    for raw in fields:
        f = raw.strip().strip("'\"").strip()
        unit = None
        m = _HEADER_UNIT_RE.match(f)
        if m:
            f, unit = m.group(1).strip(), m.group(2).strip()
        low = f.lower()
        for suffix, u in _NAME_UNIT_SUFFIX.items():
            if low.endswith(suffix) and _find([low[: -len(suffix)]], WAVE_NAMES):
                f, unit = f[: -len(suffix)], u
                break
        names.append(f)
        if unit:
            units[f] = unit
    return names, units


def _read_text(path: Path) -> _Raw:
    text = path.read_bytes().decode("utf-8", errors="replace")
    medium = None
    rows: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip().lstrip("\ufeff")
        if not s:
            continue
        if s[0] in "#%!;":
            m = _MEDIUM_RE.search(s)
            if m and medium is None:
                medium = _medium_from_value(m.group(2), m.group(1))
            continue
        rows.append((lineno, s))
    if not rows:
        raise JunkRowsError(f"{path}: text file has no data rows")
    delim = "," if "," in rows[0][1] else ";" if ";" in rows[0][1] else None

    header = None
    first = _split(rows[0][1], delim)
    if _floats(first) is None:
        names, units = _parse_header(first)
        if _find(names, WAVE_NAMES) or _find(names, FLUX_NAMES):
            header = (names, units)
            rows = rows[1:]

    parsed = [(ln, s, _floats(_split(s, delim))) for ln, s in rows]
    if header:
        ncols = len(header[0])
    else:
        counts: dict[int, int] = {}
        for _, _, vals in parsed:
            if vals is not None:
                counts[len(vals)] = counts.get(len(vals), 0) + 1
        ncols = max(counts, key=counts.get) if counts else 0
    good = [vals for _, _, vals in parsed if vals is not None and len(vals) == ncols]
    junk = [(ln, s) for ln, s, vals in parsed if vals is None or len(vals) != ncols]
    total = len(parsed)
    if total == 0 or not good or len(junk) > JUNK_ROW_MAX_FRACTION * total:
        example = f" (e.g. line {junk[0][0]}: {junk[0][1][:40]!r})" if junk else ""
        raise JunkRowsError(
            f"{path}: {len(junk)} of {total} data rows are not {ncols or 'numeric'}-column numbers"
            f"{example}; at most {JUNK_ROW_MAX_FRACTION:.0%} may be skipped")
    if ncols < 2:
        raise MissingColumnError(
            f"{path}: text table has {ncols} column(s); need wavelength and flux")
    table = np.array(good, dtype=np.float64)
    if header:
        names, units = header
        raw = _columns_from_mapping("text", names, lambda n: table[:, names.index(n)], path,
                                    units=units)
    else:
        raw = _Raw(fmt="text", wave=table[:, 0], flux=table[:, 1],
                   err=table[:, 2] if ncols >= 3 else None)
        if ncols > 3:
            raw.warnings.append(f"no header: used columns 1-3 as wavelength, flux, error; "
                                f"ignored {ncols - 3} more")
    raw.medium = medium
    if junk:
        lines = ", ".join(str(ln) for ln, _ in junk[:10]) + (" ..." if len(junk) > 10 else "")
        raw.warnings.append(f"skipped {len(junk)} non-numeric row(s) at line(s) {lines}")
    return raw


def _raw_from_plain_array(arr: np.ndarray, fmt: str, path: Path) -> _Raw:
    """(2|3, N) or (N, 2|3) array: wavelength, flux[, error] (error as in text files)."""
    if arr.ndim == 2 and arr.shape[0] in (2, 3) and arr.shape[1] > 3:
        cols = arr
    elif arr.ndim == 2 and arr.shape[1] in (2, 3):
        cols = arr.T
    else:
        raise MissingColumnError(
            f"{path}: array of shape {arr.shape} is not (2|3, N) or (N, 2|3) "
            "= wavelength, flux[, error]")
    cols = np.asarray(cols, dtype=np.float64)
    return _Raw(fmt=fmt, wave=cols[0], flux=cols[1], err=cols[2] if len(cols) == 3 else None)


def _read_npy(path: Path) -> _Raw:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptFileError(_one_line(f"{path}: unreadable .npy file: {exc}")) from exc
    if arr.dtype.names:
        return _columns_from_mapping("npy", list(arr.dtype.names), lambda n: arr[n], path)
    if not np.issubdtype(arr.dtype, np.number):
        raise UnsupportedFormatError(f"{path}: .npy holds {arr.dtype} values, not numbers")
    return _raw_from_plain_array(arr, "npy", path)


def _read_npz(path: Path) -> _Raw:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (ValueError, OSError, EOFError, KeyError) as exc:
        raise CorruptFileError(_one_line(f"{path}: unreadable .npz file: {exc}")) from exc
    names = list(arrays)
    raw = _columns_from_mapping("npz", names, lambda n: arrays[n], path)
    key = _find(names, ("airorvac", "vacuum", "medium"))
    if key:
        value = arrays[key]
        raw.medium = _medium_from_value(value.item() if value.ndim == 0 else value,
                                        "VACUUM" if key.lower() == "vacuum" else "AIRORVAC")
    key = _find(names, ("wave_unit", "wavelength_unit", "unit"))
    if key and raw.wave_unit is None:
        raw.wave_unit = _unit_from_string(str(arrays[key].item() if arrays[key].ndim == 0 else ""))
    return raw


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------

def _sniff(path: Path, head: bytes) -> str:
    """Format from magic bytes first, extension second (a .txt that is FITS is read as FITS)."""
    name = path.name.lower()
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"\x1f\x8b") and re.search(r"\.(fits?|fts)\.gz$", name):
        return "fits"
    if re.search(r"\.(fits?|fts)(\.gz)?$", name):
        raise CorruptFileError(f"{path}: named like FITS but does not start with a FITS header")
    if name.endswith((".npy", ".npz")):
        raise CorruptFileError(f"{path}: named like NumPy but has no NumPy/zip header")
    if b"\x00" in head:
        raise UnsupportedFormatError(
            f"{path}: binary file of unknown format (supported: FITS, CSV/TXT, .npy, .npz)")
    return "text"


_READERS = {"fits": _read_fits, "npy": _read_npy, "npz": _read_npz, "text": _read_text}


def _infer_unit(wave: np.ndarray) -> str:
    lo, hi = float(np.min(wave)), float(np.max(wave))
    if 3.3 <= lo and hi <= 4.1:
        return "log10(Angstrom)"
    if 0.3 <= lo and hi <= 1.1:
        return "um"
    if 300.0 <= lo and hi <= 1100.0:
        return "nm"
    return "Angstrom"


def _to_angstrom(wave: np.ndarray, unit: str) -> np.ndarray:
    if unit == "log10(Angstrom)":
        return 10.0 ** wave
    return wave * {"Angstrom": 1.0, "nm": 10.0, "um": 1.0e4}[unit]


def _finalize(raw: _Raw, path: Path, *, min_pixels: int, air: bool | None) -> Spectrum:
    """Checks and conventions shared by every format (order matters: most specific error first)."""
    notes = list(raw.warnings)
    wave = np.asarray(raw.wave, dtype=np.float64).ravel()
    flux = np.array(raw.flux, dtype=np.float64).ravel()
    n = wave.size
    if flux.size != n:
        raise CorruptFileError(f"{path}: {n} wavelengths but {flux.size} flux values")
    if n == 0:
        raise TooFewPixelsError(f"{path}: the spectrum has 0 pixels; need at least {min_pixels}")

    finite = np.isfinite(flux)
    if not finite.any():
        raise InvalidFluxError(f"{path}: flux is NaN or infinite in all {n} pixels")

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if raw.ivar is not None:
            ivar = np.array(raw.ivar, dtype=np.float64).ravel()
        elif raw.err is not None:
            err = np.asarray(raw.err, dtype=np.float64).ravel()
            ivar = np.where(np.isfinite(err) & (err > 0), 1.0 / err**2, 0.0)
        else:
            ivar = np.ones(n)
    ivar_assumed = raw.ivar is None and raw.err is None
    if ivar_assumed:
        notes.append("file has no uncertainties; ivar set to 1 (relative weights only)")
    if ivar.size != n:
        raise CorruptFileError(f"{path}: {n} wavelengths but {ivar.size} ivar/error values")
    mask = np.zeros(n, np.int64) if raw.mask is None else \
        np.nan_to_num(np.asarray(raw.mask, dtype=np.float64).ravel()).astype(np.int64)
    if mask.size != n:
        raise CorruptFileError(f"{path}: {n} wavelengths but {mask.size} mask values")

    info_pixels = 0
    if raw.mask_bits is not None:      # SDSS: keep only the bits that mean bad data (see above)
        info_pixels = int(np.sum((mask != 0) & ((mask & raw.mask_bits) == 0)))
        mask = mask & raw.mask_bits
    bad = ~finite | ~np.isfinite(ivar) | (ivar < 0) | (mask != 0)
    ivar[bad] = 0.0
    flux[~finite] = 0.0
    if not (ivar > 0).any():
        raise InvalidIvarError(
            f"{path}: inverse variance is zero, negative or non-finite (or the pixel is masked) "
            f"in all {n} pixels")

    if not np.isfinite(wave).all():
        k = int(np.sum(~np.isfinite(wave)))
        raise WavelengthRangeError(f"{path}: {k} wavelength value(s) are NaN or infinite")
    unit = raw.wave_unit or _infer_unit(wave)
    wave = _to_angstrom(wave, unit)

    medium_file = raw.medium
    medium = medium_file or "vacuum"
    if air is not None:
        medium = "air" if air else "vacuum"
        if medium_file and medium_file != medium:
            notes.append(f"file says {medium_file} wavelengths; overridden by air={air}")
    if medium == "air":
        wave = air_to_vacuum(wave)

    if n > 1:
        step = np.diff(wave)
        if np.all(step < 0):
            wave, flux, ivar, mask = wave[::-1].copy(), flux[::-1].copy(), ivar[::-1].copy(), \
                mask[::-1].copy()
            notes.append("wavelengths were decreasing; arrays reversed")
        elif not np.all(step > 0):
            i = int(np.argmax(step <= 0))
            raise WavelengthOrderError(
                f"{path}: wavelengths are not monotonic: pixel {i + 1} ({wave[i + 1]:.2f} A) "
                f"follows {wave[i]:.2f} A")

    lo, hi = float(wave[0]), float(wave[-1])
    if lo < WAVE_WINDOW[0] or hi > WAVE_WINDOW[1]:
        raise WavelengthRangeError(
            f"{path}: wavelengths span {lo:.1f}-{hi:.1f} A after reading them as {unit}; "
            f"supported observed-frame window is {WAVE_WINDOW[0]:.0f}-{WAVE_WINDOW[1]:.0f} A")

    spec = Spectrum(wavelength=wave, flux=flux, ivar=ivar, mask=mask)
    n_good = int(spec.good.sum())
    if n_good < min_pixels:
        raise TooFewPixelsError(
            f"{path}: only {n_good} valid pixels (of {n}); need at least {min_pixels}")

    spec.meta.update(raw.catalog)
    spec.meta.update({
        "source": str(path), "format": raw.fmt, "wave_unit_in": unit, "air_or_vacuum": medium,
        "air_or_vacuum_assumed": medium_file is None and air is None,
        "ivar_assumed": ivar_assumed, "warnings": notes,
    })
    if raw.mask_bits is not None:
        spec.meta["and_mask_info_pixels"] = info_pixels
    return spec


def read_spectrum(path, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
                  min_pixels: int = DEFAULT_MIN_PIXELS, air: bool | None = None) -> Spectrum:
    """Read any supported spectrum file into a :class:`Spectrum` (vacuum Angstrom, increasing).

    Every entry point (CLI, datasets, agent, UI) calls this, so every bad file fails the same way:
    with a :class:`~speclm.tools.errors.SpectrumError` subclass whose one-line message names the
    file and the problem. No other exception type escapes for a bad file.

    max_bytes: refuse larger files before opening them (None = no limit).
    min_pixels: fewest good pixels (finite flux, ivar > 0, mask == 0) accepted.
    air: None = trust the file (default vacuum); True/False = the wavelengths are air/vacuum.
    Provenance goes to meta: source, format, wave_unit_in, air_or_vacuum, warnings (list of str).
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.exists():
        raise SpectrumFileNotFound(f"{path}: no such file")
    if not path.is_file():
        raise SpectrumFileNotFound(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise EmptyFileError(f"{path}: file is empty (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise FileTooLargeError(
            f"{path}: file is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit")
    try:
        # numpy/astropy warnings are recorded into meta["warnings"], never printed: the CLI's
        # stderr must stay one line and a UI has no terminal.
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            with open(path, "rb") as fh:
                head = fh.read(4096)
            kind = _sniff(path, head)
            raw = _READERS[kind](path)
            spec = _finalize(raw, path, min_pixels=min_pixels, air=air)
        for w in caught:
            msg = f"{w.category.__name__}: {_one_line(str(w.message))[:200]}"
            if msg not in spec.meta["warnings"]:
                spec.meta["warnings"].append(msg)
        return spec
    except SpectrumError as exc:
        # guarantee: one line, and it names the file
        msg = _one_line(str(exc))
        if str(path) not in msg:
            msg = f"{path}: {msg}"
        if msg != str(exc):
            raise type(exc)(msg) from exc
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the reader's boundary: no raw exception escapes
        raise CorruptFileError(
            _one_line(f"{path}: could not read: {type(exc).__name__}: {exc}")) from exc
