"""DESI coadd and spectra files (desispec's data model), behind the one reader.

A DESI ``coadd-*.fits`` or ``spectra-*.fits`` holds one to hundreds of targets, each observed in three
arms: B (3600–5800 Å), R (5760–7620 Å) and Z (7520–9824 Å). Per arm the file has image HDUs
``{B,R,Z}_WAVELENGTH`` (nwave), ``_FLUX``/``_IVAR``/``_MASK`` (ntarget × nwave) and ``_RESOLUTION``
(ntarget × ndiag × nwave: the band-diagonal resolution matrix); a ``FIBERMAP`` table gives TARGETID,
TARGET_RA/TARGET_DEC and Legacy Surveys photometry (nanomaggies). Redrock's answer is a ``REDSHIFTS``
table (``ZBEST`` before 2021) in a ``redrock-*.fits`` (``zbest-*``) file beside the coadd, or inside it.

What this module does with them:

* **Arms joined onto one grid.** DESI's arms share one linear 0.8 Å grid, so their overlaps (5760–5800,
  7520–7620 Å) are the same wavelengths: there the flux is the ivar-weighted mean and the ivar the sum.
  Arms on different grids are resampled onto the finest step (linear interpolation; a pixel next to a
  bad one stays bad).
* **Masks honoured**: a nonzero ``_MASK`` makes the pixel bad (ivar 0), as desispec's coadds mean it.
* **Instrumental resolution from ``_RESOLUTION``**: the second moment of each pixel's line-spread
  function (a row of the band-diagonal matrix), in pixels × Å → σ in km/s; the median per arm is kept in
  ``meta["instrument"]`` and the measurements remove it from the stellar velocity dispersion.
* **Catalog**: TARGETID, RA, Dec and photometry (g, r, z, fibre r in AB mag from nanomaggies) from
  FIBERMAP; z, z_err, SPECTYPE (as ``class``), SUBTYPE, ZWARN, DELTACHI2 from the redrock table.

Each target becomes one :class:`~speclm.tools.spectrum_raw.RawSpectrum` (format ``desi-coadd`` or
``desi-spectra``); the one reader picks a target (``FILE[TARGETID]``, ``FILE[#index]``) or all of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speclm.tools.errors import CorruptFileError, MissingColumnError
from speclm.tools.spectrum_raw import RawSpectrum

ARMS = ("B", "R", "Z")
C_KM_S = 299792.458
#: DESI's fibres are 107 µm, 1.52″ on the sky (DESI Collaboration 2016, instrument design)
DESI_FIBRE_ARCSEC = 1.5


def is_desi(hdul) -> bool:
    """DESI layout: at least one ``X_WAVELENGTH`` + ``X_FLUX`` pair of image HDUs (content, not name)."""
    names = {h.name.upper() for h in hdul}
    return any(f"{a}_WAVELENGTH" in names and f"{a}_FLUX" in names for a in ARMS)


def _nmgy_to_mag(flux) -> float | None:
    """Legacy Surveys nanomaggies -> AB magnitude (22.5 - 2.5 log10 f); None for f <= 0."""
    try:
        f = float(flux)
    except (TypeError, ValueError):
        return None
    return round(22.5 - 2.5 * np.log10(f), 3) if np.isfinite(f) and f > 0 else None


def lsf_sigma_kms(resolution: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """σ of the line-spread function per pixel (km/s) from a DESI band-diagonal resolution block.

    ``resolution`` is (ndiag, nwave) as stored for one target; diagonal k holds the matrix element at
    offset ``ndiag//2 - k``. σ² = Σ w d² / Σ w over the offsets d of a pixel's row (w clipped at 0).
    """
    r = np.clip(np.asarray(resolution, float), 0.0, None)
    ndiag = r.shape[0]
    d = (ndiag // 2 - np.arange(ndiag))[:, None].astype(float)
    wsum = r.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sig_pix = np.sqrt((r * d**2).sum(axis=0) / wsum)
    step = np.gradient(np.asarray(wave, float))
    return sig_pix * step / np.asarray(wave, float) * C_KM_S


def _join_arms(arms: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arms -> one grid: (wave, flux, ivar, mask). ivar-weighted mean where arms overlap."""
    waves = [a["wave"] for a in arms]
    steps = [float(np.median(np.diff(w))) for w in waves]
    step = min(steps)
    # common grid when every arm sits on the same lattice (DESI: 0.8 Å from 3600 Å)
    origin = waves[0][0]
    on_lattice = all(np.allclose((w - origin) / step, np.round((w - origin) / step), atol=1e-3) for w in waves)
    lo = min(w[0] for w in waves)
    hi = max(w[-1] for w in waves)
    n = int(round((hi - lo) / step)) + 1
    grid = lo + step * np.arange(n)
    num = np.zeros(n)
    wsum = np.zeros(n)
    covered = np.zeros(n, bool)
    flux_unweighted = np.zeros(n)
    count = np.zeros(n)
    for a in arms:
        w, f, iv, m = a["wave"], a["flux"], a["ivar"].copy(), a["mask"]
        iv[(m != 0) | ~np.isfinite(f) | ~np.isfinite(iv) | (iv < 0)] = 0.0
        f = np.where(np.isfinite(f), f, 0.0)
        if on_lattice:
            idx = np.round((w - lo) / step).astype(int)
            fi, ivi = f, iv
        else:
            idx = np.flatnonzero((grid >= w[0]) & (grid <= w[-1]))
            fi = np.interp(grid[idx], w, f)
            bad = np.interp(grid[idx], w, (iv <= 0).astype(float)) > 0
            ivi = np.where(bad, 0.0, np.interp(grid[idx], w, iv))
        num[idx] += fi * ivi
        wsum[idx] += ivi
        flux_unweighted[idx] += fi
        count[idx] += 1
        covered[idx] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.where(wsum > 0, num / np.where(wsum > 0, wsum, 1.0),
                        flux_unweighted / np.maximum(count, 1))
    keep = covered
    mask = np.where(wsum > 0, 0, 1).astype(np.int64)
    return grid[keep], flux[keep], wsum[keep], mask[keep]


def _table_rows(hdu) -> dict[int, dict[str, Any]] | None:
    """A REDSHIFTS/ZBEST table -> {TARGETID: catalog keys}."""
    from speclm.tools.spectrum_fits import _scalar

    if hdu is None or hdu.data is None:
        return None
    d = hdu.data
    names = {n.upper(): n for n in d.names}
    if "TARGETID" not in names or "Z" not in names:
        return None
    out: dict[int, dict[str, Any]] = {}
    for i in range(len(d)):
        row: dict[str, Any] = {}
        for key, col in (("z", "Z"), ("z_err", "ZERR"), ("zwarning", "ZWARN"), ("class", "SPECTYPE"),
                         ("subclass", "SUBTYPE"), ("deltachi2", "DELTACHI2")):
            if col in names:
                v = _scalar(d[names[col]][i])
                if v is not None:
                    row[key] = v
        out[int(d[names["TARGETID"]][i])] = row
    return out


def _redrock_beside(path: Path) -> tuple[Path | None, dict[int, dict[str, Any]] | None]:
    """The redrock (or zbest) file desispec writes beside a coadd/spectra file, read by TARGETID."""
    from astropy.io import fits

    name = path.name
    cands = []
    for pre in ("coadd-", "spectra-"):
        if name.startswith(pre):
            rest = name[len(pre):]
            cands += [path.with_name("redrock-" + rest), path.with_name("zbest-" + rest)]
            if rest.endswith(".gz"):
                cands += [path.with_name("redrock-" + rest[:-3]), path.with_name("zbest-" + rest[:-3])]
            else:
                cands += [path.with_name("redrock-" + rest + ".gz")]
    for c in cands:
        if c.is_file():
            try:
                with fits.open(c, memmap=False) as h:
                    hdu = next((x for x in h if x.name.upper() in ("REDSHIFTS", "ZBEST")), None)
                    rows = _table_rows(hdu)
                if rows is not None:
                    return c, rows
            except (OSError, ValueError, TypeError, KeyError):
                continue
    return None, None


def read_desi(hdul, path: Path) -> list[RawSpectrum]:
    """Every target of a DESI coadd/spectra file as a RawSpectrum (see the module docstring)."""
    from speclm.tools.spectrum_fits import _scalar

    names = {h.name.upper(): h for h in hdul}
    arms = [a for a in ARMS if f"{a}_WAVELENGTH" in names and f"{a}_FLUX" in names]
    blocks = {}
    ntarget = None
    for a in arms:
        wave = np.asarray(names[f"{a}_WAVELENGTH"].data, float).ravel()
        flux = np.asarray(names[f"{a}_FLUX"].data, float)
        if flux.ndim == 1:
            flux = flux[None, :]
        if flux.shape[-1] != wave.size:
            raise CorruptFileError(f"{path}: {a}_FLUX has {flux.shape[-1]} pixels but {a}_WAVELENGTH {wave.size}")
        ivar_h = names.get(f"{a}_IVAR")
        if ivar_h is None:
            raise MissingColumnError(f"{path}: DESI file has {a}_FLUX but no {a}_IVAR")
        ivar = np.asarray(ivar_h.data, float).reshape(flux.shape)
        mask_h = names.get(f"{a}_MASK")
        mask = np.zeros(flux.shape, np.int64) if mask_h is None else np.asarray(mask_h.data).reshape(flux.shape)
        res_h = names.get(f"{a}_RESOLUTION")
        res = None
        if res_h is not None and res_h.data is not None:
            res = np.asarray(res_h.data, float)
            if res.ndim == 2:
                res = res[None]
        blocks[a] = dict(wave=wave, flux=flux, ivar=ivar, mask=mask, res=res)
        if ntarget is None:
            ntarget = flux.shape[0]
        elif flux.shape[0] != ntarget:
            raise CorruptFileError(f"{path}: arm {a} holds {flux.shape[0]} spectra, arm {arms[0]} {ntarget}")
    fmap = names.get("FIBERMAP")
    fm = fmap.data if fmap is not None else None
    if fm is not None and len(fm) != ntarget:
        raise CorruptFileError(f"{path}: FIBERMAP has {len(fm)} rows for {ntarget} spectra")
    fm_names = {n.upper(): n for n in fm.names} if fm is not None else {}
    inside = next((h for h in hdul if h.name.upper() in ("REDSHIFTS", "ZBEST")), None)
    z_rows, z_from = _table_rows(inside), (f"{inside.name} HDU" if inside is not None else None)
    if z_rows is None:
        zpath, z_rows = _redrock_beside(path)
        z_from = f"{zpath.name} (REDSHIFTS)" if zpath else None
    hdr = hdul[0].header
    # desispec's coadds carry the per-exposure fibermap in EXP_FIBERMAP; spectra files have one FIBERMAP row per exposure
    fmt = "desi-coadd" if "EXP_FIBERMAP" in names else "desi-spectra"
    survey = _scalar(hdr.get("SURVEY"))
    program = _scalar(hdr.get("PROGRAM"))

    out = []
    for i in range(ntarget):
        cat: dict[str, Any] = {"target_index": i, "survey_name": "DESI"}
        if survey:
            cat["desi_survey"] = survey
        if program:
            cat["desi_program"] = program
        if fm is not None:
            row = fm[i]

            def col(name, row=row):
                return _scalar(row[fm_names[name]]) if name in fm_names else None

            tid = col("TARGETID")
            if tid is not None:
                cat["targetid"] = int(tid)
            for key, c in (("ra", "TARGET_RA"), ("dec", "TARGET_DEC"), ("objtype", "OBJTYPE")):
                v = col(c)
                if v is not None:
                    cat[key] = v
            phot = {b: _nmgy_to_mag(col(f"FLUX_{b.upper()}")) for b in ("g", "r", "z")}
            phot["fiber_r"] = _nmgy_to_mag(col("FIBERFLUX_R"))
            phot = {k: v for k, v in phot.items() if v is not None}
            if phot:
                phot["system"] = "AB (Legacy Surveys DR9, from FIBERMAP; g/r/z total model magnitudes)"
                cat["photometry"] = phot
        if z_rows is not None and cat.get("targetid") in z_rows:
            cat.update(z_rows[cat["targetid"]])
            cat["z_source"] = f"redrock, {z_from}"
        arm_data, sig = [], {}
        for a in arms:
            b = blocks[a]
            arm_data.append(dict(wave=b["wave"], flux=b["flux"][i], ivar=b["ivar"][i], mask=b["mask"][i]))
            if b["res"] is not None and b["res"].shape[0] == ntarget:
                s = lsf_sigma_kms(b["res"][i], b["wave"])
                good = np.isfinite(s) & (b["ivar"][i] > 0)
                if good.any():
                    sig[a] = round(float(np.median(s[good])), 1)
        wave, flux, ivar, mask = _join_arms(arm_data)
        notes = []
        if len(arms) > 1:
            notes.append(f"DESI arms {'+'.join(arms)} joined onto one {np.median(np.diff(wave)):.2f} Å grid "
                         "(ivar-weighted mean where they overlap)")
        if z_rows is None:
            notes.append("no redrock REDSHIFTS table inside the file or beside it: no catalog redshift")
        instrument = {"name": "DESI spectrograph", "fibre_arcsec": DESI_FIBRE_ARCSEC,
                      "sigma_inst_kms": round(float(np.median(list(sig.values()))), 1) if sig else 30.0,
                      "sigma_inst_from": "the file's RESOLUTION matrices (median over arms)" if sig else
                      "DESI's nominal R (no RESOLUTION HDU)"}
        if sig:
            instrument["sigma_inst_kms_per_arm"] = sig
        cat["instrument"] = instrument
        out.append(RawSpectrum(fmt=fmt, wave=wave, flux=flux, ivar=ivar, mask=mask, wave_unit="Angstrom",
                               medium="vacuum", catalog=cat, warnings=notes))
    return out


#: DESI's arms on its common 0.8 Å grid (desispec): B 3600–5800, R 5760–7620, Z 7520–9824 Å
ARM_RANGES = {"B": (3600.0, 5800.0), "R": (5760.0, 7620.0), "Z": (7520.0, 9824.0)}


def _resolution_block(sigma_pix: np.ndarray, ndiag: int = 11) -> np.ndarray:
    """A Gaussian LSF of σ (pixels, per pixel) as DESI's (ndiag, nwave) band-diagonal storage."""
    d = (ndiag // 2 - np.arange(ndiag))[:, None].astype(float)
    r = np.exp(-0.5 * (d / np.asarray(sigma_pix, float)[None, :]) ** 2)
    return (r / r.sum(axis=0, keepdims=True)).astype(np.float32)


def write_desi_coadd(path, spectra, *, targetids, z=None, spectype=None, ra=None, dec=None,
                     flux_r_nmgy=None, redrock: str | None = "beside", sigma_pix: float = 1.0,
                     overwrite: bool = True) -> Path:
    """Write targets in DESI's coadd data model (for tests and demos; simulated spectra only).

    spectra: one ``(wavelength Å, flux, ivar)`` per target, resampled onto each arm's 0.8 Å grid
    (pixels outside a spectrum's range get ivar 0 and MASK 1). targetids: one int per target.
    z / spectype: redrock's answer per target, written as a REDSHIFTS table ``beside`` (a
    ``redrock-*.fits`` next to a ``coadd-*.fits``), ``inside`` (an HDU of this file) or not at all.
    sigma_pix: the Gaussian LSF width written into every RESOLUTION block.
    """
    from astropy.io import fits

    path = Path(path)
    n = len(spectra)
    if len(targetids) != n:
        raise ValueError("one TARGETID per spectrum")
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["SPGRP"] = ("healpix", "spectral grouping")
    hdus[0].header["SURVEY"] = "main"
    hdus[0].header["PROGRAM"] = "dark"
    cols = [fits.Column("TARGETID", "K", array=np.asarray(targetids, np.int64)),
            fits.Column("TARGET_RA", "D", array=np.asarray(ra if ra is not None else np.zeros(n), float)),
            fits.Column("TARGET_DEC", "D", array=np.asarray(dec if dec is not None else np.zeros(n), float)),
            fits.Column("OBJTYPE", "3A", array=np.array(["TGT"] * n)),
            fits.Column("FLUX_R", "E", array=np.asarray(flux_r_nmgy if flux_r_nmgy is not None else np.zeros(n),
                                                        np.float32))]
    hdus.append(fits.BinTableHDU.from_columns(cols, name="FIBERMAP"))
    hdus.append(fits.BinTableHDU.from_columns([fits.Column("TARGETID", "K", array=np.asarray(targetids, np.int64))],
                                              name="EXP_FIBERMAP"))
    for arm, (lo, hi) in ARM_RANGES.items():
        wave = lo + 0.8 * np.arange(int(round((hi - lo) / 0.8)) + 1)
        flux = np.zeros((n, wave.size), np.float32)
        ivar = np.zeros((n, wave.size), np.float32)
        mask = np.zeros((n, wave.size), np.int32)
        for i, (w, f, iv) in enumerate(spectra):
            w, f, iv = (np.asarray(a, float) for a in (w, f, iv))
            inside = (wave >= w[0]) & (wave <= w[-1])
            flux[i, inside] = np.interp(wave[inside], w, f)
            ivar[i, inside] = np.interp(wave[inside], w, iv)
            mask[i, ~inside] = 1
            ivar[i, ~inside] = 0.0
        res = np.repeat(_resolution_block(np.full(wave.size, sigma_pix))[None], n, axis=0)
        hdus += [fits.ImageHDU(wave, name=f"{arm}_WAVELENGTH"), fits.ImageHDU(flux, name=f"{arm}_FLUX"),
                 fits.ImageHDU(ivar, name=f"{arm}_IVAR"), fits.ImageHDU(mask, name=f"{arm}_MASK"),
                 fits.ImageHDU(res, name=f"{arm}_RESOLUTION")]
        hdus[-5].header["BUNIT"] = "Angstrom"
    redshifts = None
    if z is not None:
        redshifts = fits.BinTableHDU.from_columns([
            fits.Column("TARGETID", "K", array=np.asarray(targetids, np.int64)),
            fits.Column("Z", "D", array=np.asarray(z, float)),
            fits.Column("ZERR", "D", array=np.full(n, 1e-5)),
            fits.Column("ZWARN", "K", array=np.zeros(n, np.int64)),
            fits.Column("SPECTYPE", "6A", array=np.array(spectype if spectype is not None else ["GALAXY"] * n)),
            fits.Column("DELTACHI2", "D", array=np.full(n, 1e3))], name="REDSHIFTS")
        if redrock == "inside":
            hdus.append(redshifts)
    fits.HDUList(hdus).writeto(path, overwrite=overwrite)
    if redshifts is not None and redrock == "beside":
        name = path.name.replace("coadd-", "redrock-", 1) if path.name.startswith("coadd-") else "redrock-" + path.name
        fits.HDUList([fits.PrimaryHDU(), redshifts]).writeto(path.with_name(name), overwrite=overwrite)
    return path
