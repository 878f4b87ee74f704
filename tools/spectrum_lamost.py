"""LAMOST low-resolution spectra (DR1–DR7 image files and DR8+ COADD tables), behind the one reader.

LAMOST's own description (lamost.org, "Fits Files"): spectra are binned log-linear, in **vacuum**
wavelengths, heliocentric, with flux in *relative* units (not absolute: no magnitudes are synthesised
from them); the and-mask marks pixels that are bad in all exposures. Two layouts:

* DR1–DR7: a primary image of 5 rows — flux, inverse variance, wavelength, and-mask, or-mask (the
  pilot survey had a continuum-subtracted spectrum as row 3; then the wavelengths come from
  COEFF0/COEFF1 or CRVAL1/CD1_1, log-linear).
* DR8 onward: a ``COADD`` binary table, one row with vector columns FLUX, IVAR, WAVELENGTH, ANDMASK,
  ORMASK (NORMALIZATION), the header as before.

The header carries LAMOST's 1D-pipeline answer: Z, Z_ERR, CLASS (STAR/GALAXY/QSO), SUBCLASS, RA, DEC,
OBSID, DESIG, and DATA_V (the release). LAMOST is detected from TELESCOP = 'LAMOST' or, failing that,
from the 5-row image whose third row is a wavelength array.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speclm.tools.errors import MissingColumnError
from speclm.tools.spectrum_raw import RawSpectrum

#: LAMOST low-resolution: R ≈ 1800 at 5500 Å (Cui et al. 2012) -> σ = c / (2.355 R) ≈ 71 km/s
LAMOST_R = 1800.0
LAMOST_SIGMA_KMS = round(299792.458 / (2.3548 * LAMOST_R), 1)
#: LAMOST fibres are 320 µm, 3.3″ on the sky (Cui et al. 2012)
LAMOST_FIBRE_ARCSEC = 3.3


def _looks_like_wavelength(row: np.ndarray) -> bool:
    r = np.asarray(row, float)
    return bool(r.size > 10 and np.all(np.isfinite(r)) and np.all(np.diff(r) > 0) and 3000 < r[0] < r[-1] < 11000)


def is_lamost(hdul) -> bool:
    hdr = hdul[0].header
    if str(hdr.get("TELESCOP", "")).strip().upper() == "LAMOST":
        return True
    data = hdul[0].data
    return (data is not None and np.ndim(data) == 2 and np.shape(data)[0] == 5
            and _looks_like_wavelength(np.asarray(data)[2]))


def _catalog(hdr) -> dict[str, Any]:
    from speclm.tools.spectrum_fits import _scalar

    cat: dict[str, Any] = {"survey_name": "LAMOST"}
    for key, hkey in (("z", "Z"), ("z_err", "Z_ERR"), ("class", "CLASS"), ("subclass", "SUBCLASS"),
                      ("ra", "RA"), ("dec", "DEC"), ("obsid", "OBSID"), ("designation", "DESIG"),
                      ("fiberid", "FIBERID"), ("mjd", "MJD"), ("data_release", "DATA_V")):
        if hkey in hdr:
            v = _scalar(hdr[hkey])
            # LAMOST writes z = -9999 when the pipeline gave none
            if v is not None and not (key in ("z", "z_err") and isinstance(v, float) and v <= -9):
                cat[key] = v
    if isinstance(cat.get("class"), str):
        cat["class"] = cat["class"].upper()
    if "z" in cat:
        cat["z_source"] = f"LAMOST 1D pipeline ({cat.get('data_release', 'header')})"
    cat["instrument"] = {"name": "LAMOST low-resolution spectrographs", "fibre_arcsec": LAMOST_FIBRE_ARCSEC,
                         "sigma_inst_kms": LAMOST_SIGMA_KMS, "sigma_inst_from": f"LAMOST's nominal R ≈ {LAMOST_R:g}"}
    return cat


def _loglinear(hdr, n: int) -> np.ndarray | None:
    c0 = hdr.get("COEFF0", hdr.get("CRVAL1"))
    c1 = hdr.get("COEFF1", hdr.get("CD1_1", hdr.get("CDELT1")))
    if c0 is None or c1 is None:
        return None
    return 10.0 ** (float(c0) + float(c1) * np.arange(n))


def read_lamost(hdul, path: Path) -> RawSpectrum:
    """One LAMOST spectrum (either layout) as a RawSpectrum (format ``lamost-image`` / ``lamost-coadd``)."""
    from speclm.tools.spectrum_fits import _is_table, _vector
    from speclm.tools.spectrum_raw import find_column

    hdr = hdul[0].header
    table = next((h for h in hdul if _is_table(h) and h.name.upper() == "COADD"), None)
    if table is None:
        table = next((h for h in hdul[1:] if _is_table(h) and find_column(list(h.columns.names), ("flux",))
                      and find_column(list(h.columns.names), ("wavelength",))), None)
    if table is not None:
        names = list(table.columns.names)
        get = {k: find_column(names, (k,)) for k in ("flux", "ivar", "wavelength", "andmask")}
        if get["flux"] is None or get["wavelength"] is None:
            raise MissingColumnError(f"{path}: LAMOST COADD table lacks FLUX/WAVELENGTH (has: {', '.join(names)})")
        raw = RawSpectrum(fmt="lamost-coadd", wave=_vector(table.data, get["wavelength"]),
                          flux=_vector(table.data, get["flux"]),
                          ivar=_vector(table.data, get["ivar"]) if get["ivar"] else None,
                          mask=_vector(table.data, get["andmask"]) if get["andmask"] else None,
                          wave_unit="Angstrom", medium="vacuum", catalog=_catalog(hdr))
    else:
        data = np.asarray(hdul[0].data, float)
        if data.ndim != 2 or data.shape[0] < 2:
            raise MissingColumnError(f"{path}: LAMOST file has neither a COADD table nor a flux/ivar image")
        n = data.shape[1]
        if data.shape[0] >= 3 and _looks_like_wavelength(data[2]):
            wave = data[2]
        else:
            wave = _loglinear(hdr, n)
            if wave is None:
                raise MissingColumnError(f"{path}: LAMOST image has no wavelength row and no COEFF0/COEFF1")
        raw = RawSpectrum(fmt="lamost-image", wave=wave, flux=data[0], ivar=data[1],
                          mask=data[3] if data.shape[0] >= 4 else None, wave_unit="Angstrom",
                          medium="vacuum", catalog=_catalog(hdr))
    raw.warnings.append("LAMOST flux is relative (not absolutely calibrated): no magnitudes from it")
    return raw
