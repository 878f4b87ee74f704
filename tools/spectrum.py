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
    InvalidFluxError,
    InvalidIvarError,
    SpectrumError,
    SpectrumFileNotFound,
    TargetNotFoundError,
    TooFewPixelsError,
    UnsupportedFormatError,
    WavelengthOrderError,
    WavelengthRangeError,
)

from speclm.tools.spectrum_fits import SDSS_BAD_PIXEL_BITS, SDSS_MASK_BITS, read_fits, write_sdss_spec_fits  # noqa: F401
from speclm.tools.spectrum_raw import (CATALOG_KEYS, DEFAULT_MAX_BYTES, DEFAULT_MIN_PIXELS, WAVE_WINDOW,  # noqa: F401
                                       RawSpectrum, one_line, split_target)
from speclm.tools.spectrum_text import read_npy, read_npz, read_text


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

def air_to_vacuum(wave_air: np.ndarray | float, *, uv_is_vacuum: bool = False) -> np.ndarray | float:
    """Air -> vacuum wavelength in Angstrom (the IAU standard conversion) — the one conversion of
    speclm, used by the reader, the simulator and the templates alike.

    Uses the refractive index of Morton (2000) / Ciddor (1996) as inverted by N. Piskunov for VALD,
    the same formula SDSS and astropy-affiliated packages use: Halpha 6562.80 (air) -> 6564.61.
    ``uv_is_vacuum``: model grids (BC03, Cloudy line lists) tabulate air wavelengths only above
    2000 Å and vacuum below; with it, wavelengths below 2000 Å are returned unchanged.
    """
    wave = np.asarray(wave_air, dtype=np.float64)
    s2 = (1.0e4 / wave) ** 2
    n = (1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (1.301065924522e2 - s2)
         + 1.599740894897e-4 / (3.892568793293e1 - s2))
    if uv_is_vacuum:
        n = np.where(wave > 2000.0, n, 1.0)
    out = wave * n
    return float(out) if np.ndim(wave_air) == 0 else out


#: the band of the simulator's S/N setting and of :func:`r_band_snr` (observed frame, Angstrom)
R_BAND = (5600.0, 6800.0)


def r_band_snr(spec: Spectrum, band: tuple[float, float] = R_BAND, min_pixels: int = 20) -> float | None:
    """Median per-pixel S/N (flux * sqrt(ivar)) over the good pixels of the r band, the quantity the
    simulator's ``snr_*`` settings describe. None when the file carried no uncertainties (ivar was
    assumed) or fewer than ``min_pixels`` good pixels fall in the band."""
    if spec.meta.get("ivar_assumed") and not spec.meta.get("noise_estimated"):
        return None
    sel = spec.good & (spec.wavelength >= band[0]) & (spec.wavelength <= band[1])
    if int(sel.sum()) < min_pixels:
        return None
    return float(np.median(spec.flux[sel] * np.sqrt(spec.ivar[sel])))


def summary(spec: Spectrum) -> dict[str, Any]:
    """What was read, as a JSON-friendly dict (used by `speclm inspect`, the agent and the UI).

    median_snr is the median of flux*sqrt(ivar) over good pixels; None when the file carried no
    uncertainties (ivar was assumed), because a made-up S/N is worse than none.
    """
    good = spec.good
    m = spec.meta
    snr = None
    if good.any() and (not m.get("ivar_assumed") or m.get("noise_estimated")):
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
        "noise": ("the file's uncertainties" if not m.get("ivar_assumed") else
                  f"estimated from the flux ({m['noise_estimated']})" if m.get("noise_estimated") else
                  "none (ivar = 1, relative weights only)"),
        "z_catalog": spec.z_catalog,
    }
    for key in ("survey_name", "targetid", "target_index", "n_targets", "subclass", "z_source", "instrument",
                "photometry", "data_release", "designation", "obsid"):
        if m.get(key) is not None:
            out[key] = m[key]
    for key in CATALOG_KEYS:
        if key != "z":
            out[key] = m.get(key)
    out["warnings"] = list(m.get("warnings", []))
    return out



#: how :func:`estimate_noise_ivar` estimates the noise of a file without uncertainties
NOISE_METHOD = "DER_SNR (Stoehr et al. 2008), running median over 101 pixels"


def estimate_noise_ivar(flux: np.ndarray, usable: np.ndarray, window: int = 101) -> np.ndarray | None:
    """Per-pixel inverse variance for a spectrum whose file gave no uncertainties.

    DER_SNR (Stoehr, Seaman & Miller 2008, the ST-ECF estimator): σ ≈ 1.482602/√6 × median|2f_i − f_{i−2}
    − f_{i+2}|, which cancels any signal that is linear over 5 pixels and is robust to lines. Taken as a
    running median over ``window`` pixels, so that a noise level that changes along the spectrum (the
    blue end of a CCD, a dichroic) is followed. It assumes independent pixels: a resampled spectrum
    (correlated noise) gets an underestimate. None when it finds no noise at all (a noiseless model).
    """
    from scipy.ndimage import median_filter

    f = np.where(usable, flux, np.nan)
    d = np.full(f.size, np.nan)
    d[2:-2] = np.abs(2.0 * f[2:-2] - f[:-4] - f[4:])
    ok = np.isfinite(d)
    if ok.sum() < 20:
        return None
    fill = np.where(ok, d, np.nanmedian(d))
    sigma = 1.482602 / np.sqrt(6.0) * median_filter(fill, size=min(window, fill.size), mode="nearest")
    scale = np.nanmedian(np.abs(f))
    floor = 1e-6 * (scale if np.isfinite(scale) and scale > 0 else 1.0)
    if not np.nanmax(sigma) > floor:
        return None
    sigma = np.maximum(sigma, floor)
    return np.where(usable, 1.0 / sigma**2, 0.0)


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


_READERS = {"fits": read_fits, "npy": read_npy, "npz": read_npz, "text": read_text}


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


def _finalize(raw: RawSpectrum, path: Path, *, min_pixels: int, air: bool | None,
              estimate_noise: bool = True) -> Spectrum:
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
    noise_estimated = None
    if ivar_assumed and estimate_noise:
        est = estimate_noise_ivar(flux, finite)
        if est is not None:
            ivar, noise_estimated = est, NOISE_METHOD
            notes.append(f"file has no uncertainties; noise estimated from the flux ({NOISE_METHOD})")
    if ivar_assumed and noise_estimated is None:
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
        "ivar_assumed": ivar_assumed, "noise_estimated": noise_estimated, "warnings": notes,
    })
    if raw.mask_bits is not None:
        spec.meta["and_mask_info_pixels"] = info_pixels
    return spec


#: the parsed targets of the last multi-target file read (a DESI healpix coadd holds hundreds: reading
#: it once per target would read it hundreds of times); keyed by path, size and mtime
_MULTI_CACHE: dict[tuple, list[RawSpectrum]] = {}


def _resolve_ref(path, target) -> tuple[Path, str | None]:
    """A path, or a ``FILE[TARGETID]`` / ``FILE[#index]`` address -> (file, selector)."""
    text = os.fspath(path)
    p = Path(text).expanduser()
    if target is not None:
        return p, str(target)
    if not p.exists():
        base, sel = split_target(str(text))
        if sel is not None:
            return Path(base).expanduser(), sel
    return p, None


def target_file(ref) -> Path:
    """The file of a path or a ``FILE[TARGETID]`` / ``FILE[#index]`` address."""
    return _resolve_ref(ref, None)[0]


def _check_file(path: Path, max_bytes: int | None) -> None:
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


def _raw_targets(path: Path) -> list[RawSpectrum]:
    """What the format reader found: one RawSpectrum per target (cached for multi-target files)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _MULTI_CACHE:
        return _MULTI_CACHE[key]
    with open(path, "rb") as fh:
        head = fh.read(4096)
    kind = _sniff(path, head)
    raw = _READERS[kind](path)
    raws = raw if isinstance(raw, list) else [raw]
    if not raws:
        raise TooFewPixelsError(f"{path}: the file holds no spectra")
    if len(raws) > 1:
        _MULTI_CACHE.clear()
        _MULTI_CACHE[key] = raws
    return raws


def _target_id(raw: RawSpectrum):
    c = raw.catalog
    for k in ("targetid", "specobjid", "obsid"):
        if c.get(k) is not None:
            return c[k]
    return None


def _pick(raws: list[RawSpectrum], sel: str | None, path: Path) -> int:
    if sel is None:
        return 0
    n = len(raws)
    if sel.startswith("#"):
        i = int(sel[1:])
        if not 0 <= i < n:
            raise TargetNotFoundError(f"{path}: target #{i} is not in the file (it holds {n} target"
                                      f"{'s' if n != 1 else ''}: #0–#{n - 1})")
        return i
    want = int(sel)
    ids = [_target_id(r) for r in raws]
    for i, t in enumerate(ids):
        if t is not None and int(t) == want:
            return i
    known = [str(t) for t in ids if t is not None]
    listing = (", ".join(known[:5]) + (" …" if len(known) > 5 else "")) if known else "none; use FILE[#index]"
    raise TargetNotFoundError(f"{path}: TARGETID {want} is not in the file (its {n} target id"
                              f"{'s' if n != 1 else ''}: {listing})")


def _ref(path: Path, raw: RawSpectrum, index: int, n: int) -> str:
    if n == 1:
        return str(path)
    tid = raw.catalog.get("targetid")
    return f"{path}[{tid}]" if tid is not None else f"{path}[#{index}]"


def _guarded(path: Path, fn):
    """The reader's boundary: every failure becomes a one-line SpectrumError naming the file."""
    try:
        # numpy/astropy warnings are recorded into meta["warnings"], never printed: the CLI's
        # stderr must stay one line and a UI has no terminal.
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            out = fn()
        return out, caught
    except SpectrumError as exc:
        # guarantee: one line, and it names the file
        msg = one_line(str(exc))
        if str(path) not in msg:
            msg = f"{path}: {msg}"
        if msg != str(exc):
            raise type(exc)(msg) from exc
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the reader's boundary: no raw exception escapes
        raise CorruptFileError(
            one_line(f"{path}: could not read: {type(exc).__name__}: {exc}")) from exc


def _finish(raws, i, path, *, min_pixels, air, estimate_noise, selected: bool) -> Spectrum:
    n = len(raws)
    ref = _ref(path, raws[i], i, n)
    spec, caught = _guarded(Path(ref) if n > 1 else path, lambda: _finalize(
        raws[i], Path(ref) if n > 1 else path, min_pixels=min_pixels, air=air, estimate_noise=estimate_noise))
    for w in caught:
        msg = f"{w.category.__name__}: {one_line(str(w.message))[:200]}"
        if msg not in spec.meta["warnings"]:
            spec.meta["warnings"].append(msg)
    spec.meta["file"] = str(path)
    spec.meta["n_targets"] = n
    if n > 1:
        spec.meta["target_index"] = i
        if not selected:
            spec.meta["warnings"].append(
                f"the file holds {n} targets; this is the first (address one as FILE[TARGETID] or FILE[#index])")
    return spec


def read_spectrum(path, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
                  min_pixels: int = DEFAULT_MIN_PIXELS, air: bool | None = None,
                  target: int | str | None = None, estimate_noise: bool = True) -> Spectrum:
    """Read any supported spectrum file into a :class:`Spectrum` (vacuum Angstrom, increasing).

    Every entry point (CLI, datasets, agent, UI) calls this, so every bad file fails the same way:
    with a :class:`~speclm.tools.errors.SpectrumError` subclass whose one-line message names the
    file and the problem. No other exception type escapes for a bad file.

    path: a file, or one target of a multi-target file as ``FILE[TARGETID]`` or ``FILE[#index]``
    (a DESI coadd holds many; without an address the first is read and a warning says so).
    target: the same address as an argument (a TARGETID, or "#index").
    max_bytes: refuse larger files before opening them (None = no limit).
    min_pixels: fewest good pixels (finite flux, ivar > 0, mask == 0) accepted.
    air: None = trust the file (default vacuum); True/False = the wavelengths are air/vacuum.
    estimate_noise: a file without uncertainties gets its noise estimated from the flux
    (:func:`estimate_noise_ivar`, flagged in ``meta["noise_estimated"]``); False = ivar 1.
    Provenance goes to meta: source, format, wave_unit_in, air_or_vacuum, warnings (list of str),
    n_targets (and target_index / targetid for multi-target files), survey_name and instrument.
    """
    path, sel = _resolve_ref(path, target)
    _check_file(path, max_bytes)
    raws, _ = _guarded(path, lambda: _raw_targets(path))
    i, _ = _guarded(path, lambda: _pick(raws, sel, path))
    return _finish(raws, i, path, min_pixels=min_pixels, air=air, estimate_noise=estimate_noise,
                   selected=sel is not None)


def list_targets(path, *, max_bytes: int | None = None) -> list[str]:
    """The address of every target in a file (``FILE`` itself for a one-target file)."""
    path, sel = _resolve_ref(path, None)
    _check_file(path, max_bytes)
    raws, _ = _guarded(path, lambda: _raw_targets(path))
    if sel is not None:
        i, _ = _guarded(path, lambda: _pick(raws, sel, path))
        return [_ref(path, raws[i], i, len(raws))]
    return [_ref(path, r, i, len(raws)) for i, r in enumerate(raws)]


def read_targets(path, *, max_bytes: int | None = None, min_pixels: int = DEFAULT_MIN_PIXELS,
                 air: bool | None = None, estimate_noise: bool = True):
    """Yield ``(address, Spectrum | SpectrumError)`` for every target of a file: a broken target is
    reported as its error and the others are still read (batch commands take all targets this way)."""
    path, sel = _resolve_ref(path, None)
    _check_file(path, max_bytes)
    raws, _ = _guarded(path, lambda: _raw_targets(path))
    picks = range(len(raws)) if sel is None else [_guarded(path, lambda: _pick(raws, sel, path))[0]]
    for i in picks:
        ref = _ref(path, raws[i], i, len(raws))
        try:
            yield ref, _finish(raws, i, path, min_pixels=min_pixels, air=air, estimate_noise=estimate_noise,
                               selected=True)
        except SpectrumError as exc:
            yield ref, exc


#: file names a folder is searched for (compressed FITS included)
SPECTRUM_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fts", ".csv", ".txt", ".dat", ".npy", ".npz")


def expand_inputs(inputs, *, skip_catalogs: bool = True) -> list[str]:
    """Files, folders (their spectrum files, sorted) and globs -> a list of file paths, in order.

    A folder's redrock/zbest catalog files (no spectra, the answers beside a DESI coadd) are skipped
    when ``skip_catalogs``; named explicitly they are kept, so reading them says what they are.
    """
    import glob

    out: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        p = Path(text).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(SPECTRUM_SUFFIXES))
            out += [str(f) for f in files if not (skip_catalogs and _is_catalog_file(f))]
        elif not p.exists() and any(c in text for c in "*?") and split_target(text)[1] is None:
            out += sorted(glob.glob(os.path.expanduser(text)))
        else:
            out.append(text)
    return out


def _is_catalog_file(path: Path) -> bool:
    """A redshift catalog (redrock REDSHIFTS / ZBEST table) without spectra."""
    if not path.name.lower().endswith((".fits", ".fits.gz", ".fit")):
        return False
    try:
        from astropy.io import fits

        with fits.open(path, memmap=True, lazy_load_hdus=True) as h:
            names = {x.name.upper() for x in h}
    except Exception:  # noqa: BLE001 -- unreadable files are reported by the reader, not here
        return False
    return bool(names & {"REDSHIFTS", "ZBEST"}) and not any(n.endswith("_FLUX") or n == "COADD" for n in names)
