"""FITS readers (SDSS/BOSS spec and spec-lite, SDSS-I spSpec, 1-D images, FITS tables) and the one
SDSS spec-FITS writer (tests, the demo, the loopback SDSS server)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from speclm.tools.errors import CorruptFileError, ImageFITSError, MissingColumnError, SpectrumError


from speclm.tools.spectrum_raw import (FLUX_NAMES, WAVE_NAMES, RawSpectrum, columns_from_mapping, find_column,
                                       medium_from_header, one_line, unit_from_string)


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


def _read_sdss_spec(hdul, coadd, path: Path) -> RawSpectrum:
    names = list(coadd.columns.names)
    wname, fname, iname = (find_column(names, (n,)) for n in ("loglam", "flux", "ivar"))
    if wname is None or fname is None:
        raise MissingColumnError(
            f"{path}: SDSS COADD table lacks loglam/flux columns (has: {', '.join(names)})")
    data = coadd.data
    raw = RawSpectrum(fmt="sdss-spec", wave=_vector(data, wname), flux=_vector(data, fname),
               ivar=_vector(data, iname) if iname else None, mask_bits=SDSS_BAD_PIXEL_BITS,
               wave_unit="log10(Angstrom)", medium="vacuum")
    mname = find_column(names, ("and_mask",))
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
    else:
        raw.catalog["z_source"] = f"SDSS pipeline ({cat.name} HDU)"
    raw.catalog.update(_sdss_instrument(hdul, raw))
    return raw


def _sdss_instrument(hdul, raw: RawSpectrum) -> dict[str, Any]:
    """Which SDSS spectrograph, from the content: SDSS-V files carry a SPALL HDU; BOSS spectra (2″
    fibres, SDSS-III onward) reach 3600–10400 Å, the SDSS-I/II spectrograph (3″ fibres) 3800–9200 Å."""
    names = {h.name.upper() for h in hdul}
    wave = 10.0 ** np.asarray(raw.wave, float)
    boss = bool(wave.size and (np.nanmax(wave) > 9400.0 or np.nanmin(wave) < 3700.0))
    if "SPALL" in names:
        survey, spectro = "SDSS-V", "BOSS spectrograph"
    elif boss:
        survey, spectro = "SDSS BOSS/eBOSS", "BOSS spectrograph"
    else:
        survey, spectro = "SDSS", "SDSS-I/II spectrograph"
    fibre = 2.0 if spectro.startswith("BOSS") else 3.0
    return {"survey_name": survey,
            "instrument": {"name": spectro, "fibre_arcsec": fibre, "sigma_inst_kms": 69.0,
                           "sigma_inst_from": "SDSS's typical instrumental σ (R ≈ 2000; the file's WDISP is not used)"}}


def _read_spspec(hdu, path: Path) -> RawSpectrum:
    data = np.asarray(hdu.data, dtype=np.float64)
    hdr = hdu.header
    n = data.shape[1]
    wave_log = float(hdr["COEFF0"]) + float(hdr["COEFF1"]) * np.arange(n)
    mask = None
    if data.shape[0] >= 4:
        mask = data[3].astype(np.int64) & ~np.int64(_SPSPEC_EMLINE_BIT)
    raw = RawSpectrum(fmt="sdss-spspec", wave=wave_log, flux=data[0], err=data[2], mask=mask,
               mask_bits=SDSS_BAD_PIXEL_BITS, wave_unit="log10(Angstrom)",
               medium=medium_from_header(hdr) or "vacuum")
    for key, hkey in (("z", "Z"), ("z_err", "Z_ERR"), ("plate", "PLATEID"), ("mjd", "MJD"),
                      ("fiberid", "FIBERID"), ("ra", "RAOBJ"), ("dec", "DECOBJ"),
                      ("specobjid", "SPECOBJID"), ("zwarning", "Z_WARNIN")):
        if hkey in hdr:
            val = _scalar(hdr[hkey])
            if val is not None:
                raw.catalog[key] = val
    if "SPEC_CLN" in hdr:
        raw.catalog["class"] = _SPSPEC_CLASS.get(int(hdr["SPEC_CLN"]), "UNKNOWN")
    raw.catalog.update({"survey_name": "SDSS", "instrument": {
        "name": "SDSS-I/II spectrograph", "fibre_arcsec": 3.0, "sigma_inst_kms": 69.0,
        "sigma_inst_from": "SDSS's typical instrumental σ (R ≈ 2000)"}})
    return raw


def _read_image_1d(hdu, path: Path) -> RawSpectrum:
    hdr = hdu.header
    step = hdr.get("CDELT1", hdr.get("CD1_1"))
    if "CRVAL1" not in hdr or step is None:
        raise MissingColumnError(f"{path}: 1-D image has no CRVAL1/CDELT1 wavelength solution")
    flux = np.asarray(hdu.data, dtype=np.float64)
    pix = np.arange(flux.size) + 1.0 - float(hdr.get("CRPIX1", 1.0))
    wave = float(hdr["CRVAL1"]) + float(step) * pix
    log = int(hdr.get("DC-FLAG", 0)) == 1 or "LOG" in str(hdr.get("CTYPE1", "")).upper()
    unit = "log10(Angstrom)" if log else unit_from_string(hdr.get("CUNIT1"))
    return RawSpectrum(fmt="fits-image-1d", wave=wave, flux=flux, wave_unit=unit,
                medium=medium_from_header(hdr))


def _is_table(hdu) -> bool:
    from astropy.io import fits

    return isinstance(hdu, (fits.BinTableHDU, fits.TableHDU))


def _from_hdul(hdul, path: Path) -> RawSpectrum | list[RawSpectrum]:
    """Pick the reader for an opened FITS file by its structure, not its name (a list: one per target)."""
    from speclm.tools.spectrum_desi import is_desi, read_desi
    from speclm.tools.spectrum_lamost import is_lamost, read_lamost

    if len(hdul) == 0:
        raise CorruptFileError(f"{path}: FITS file has no HDUs")
    if is_desi(hdul):
        return read_desi(hdul, path)
    if is_lamost(hdul):
        return read_lamost(hdul, path)
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
        if find_column(names, WAVE_NAMES) and find_column(names, FLUX_NAMES):
            units = {c.name: c.unit for c in hdu.columns}
            raw = columns_from_mapping("fits-table", names,
                                        lambda n, t=hdu.data: _vector(t, n), path, units=units)
            raw.medium = medium_from_header(hdu.header, hdul[0].header)
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
    names = {h.name.upper() for h in hdul}
    if names & {"REDSHIFTS", "ZBEST"}:
        raise MissingColumnError(f"{path}: a redrock redshift catalog (REDSHIFTS table), not a spectrum; "
                                 "keep it beside its coadd-/spectra- file, which is what to read")
    found = "; ".join(f"HDU{i} {h.name}: {', '.join(h.columns.names)}"
                      for i, h in enumerate(hdul) if _is_table(h)) or "no tables"
    raise MissingColumnError(
        f"{path}: no COADD HDU and no table with wavelength and flux columns ({found})")


def _truncation(caught) -> str | None:
    for w in caught:
        msg = str(w.message)
        if "truncated" in msg.lower() or "not multiple of 2880" in msg:
            return one_line(msg)
    return None


def read_fits(path: Path) -> RawSpectrum | list[RawSpectrum]:
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
            raise CorruptFileError(one_line(f"{path}: unreadable FITS file: {why}")) from exc
        trunc = _truncation(caught)
        if trunc:
            raise CorruptFileError(f"{path}: truncated FITS file ({trunc})")
    seen = set()
    for w in caught:
        msg = one_line(str(w.message))[:200]
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


