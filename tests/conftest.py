"""Shared pytest fixtures.

Sections: real SDSS spectra shipped with ppxf; an SDSS spec-FITS writer; a factory of bad input
files. Keep each fixture documented and grouped under its section.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------
# Real SDSS DR18 spectra (shipped inside the ppxf wheel; never copied into the repo)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ppxf_spectra_dir() -> Path:
    """Directory holding ppxf's example spectra (NGC3522/NGC3073 SDSS DR18 spec files)."""
    spec = importlib.util.find_spec("ppxf")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ppxf is not installed (pip install ppxf): no real SDSS spectra")
    return Path(spec.submodule_search_locations[0]) / "spectra"


@pytest.fixture(scope="session")
def ngc3522_fits(ppxf_spectra_dir) -> Path:
    """SDSS DR18 spec file of NGC 3522 (plate 2488, MJD 54149, fiber 1; 3815 pixels)."""
    return ppxf_spectra_dir / "NGC3522_SDSS_DR18.fits"


@pytest.fixture(scope="session")
def ngc3073_fits(ppxf_spectra_dir) -> Path:
    """SDSS DR18 spec file of NGC 3073 (plate 945, MJD 52652, fiber 470; 3848 pixels)."""
    return ppxf_spectra_dir / "NGC3073_SDSS_DR18.fits"


# ------------------------------------------------------------------------------------------
# SDSS spec-FITS writer (same function the simulator uses to export FITS)
# ------------------------------------------------------------------------------------------


@pytest.fixture
def write_sdss_spec_fits():
    """The writer ``write_sdss_spec_fits(path, loglam, flux, ivar, z, plate=, mjd=, fiberid=,
    specobjid=, cls="GALAXY", and_mask=None, ...) -> Path`` from speclm.tools.spectrum."""
    from speclm.tools.spectrum import write_sdss_spec_fits as writer

    return writer


# ------------------------------------------------------------------------------------------
# Bad input files: bad_inputs(kind) -> Path written under tmp_path
# ------------------------------------------------------------------------------------------


def _synthetic(n: int = 600, lo: float = 3800.0, hi: float = 9200.0):
    """A harmless smooth spectrum that the bad-input writers then break in one way each."""
    wave = np.geomspace(lo, hi, n)
    flux = 1.0 + 0.2 * np.sin(wave / 300.0)
    ivar = np.full(n, 100.0)
    return wave, flux, ivar


def _csv(path: Path, cols: dict[str, np.ndarray]) -> Path:
    np.savetxt(path, np.column_stack(list(cols.values())), delimiter=",",
               header=",".join(cols), comments="")
    return path


def _fits_table(path: Path, cols: dict[str, np.ndarray]) -> Path:
    from astropy.io import fits

    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format="D", array=np.asarray(v, float)) for k, v in cols.items()])
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


class BadInputs:
    """Writes one broken spectrum file per kind; ``kinds`` lists them all.

    Each kind breaks exactly one thing and uses a different format where it can, so the shared
    checks are exercised through every reader.
    """

    kinds = ("missing", "empty", "truncated_fits", "fits_no_coadd", "nan_flux", "inf_flux",
             "zero_ivar", "non_monotonic", "out_of_range", "too_few_pixels", "junk_csv",
             "too_large", "image_fits", "binary_unknown")

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path / "bad_inputs"
        self.dir.mkdir(exist_ok=True)

    def __call__(self, kind: str) -> Path:
        if kind not in self.kinds:
            raise KeyError(f"unknown bad input kind {kind!r}; known: {self.kinds}")
        return getattr(self, "_" + kind)(self.dir)

    # each writer: one defect
    def _missing(self, d):
        return d / "does_not_exist.fits"

    def _empty(self, d):
        p = d / "empty.fits"
        p.touch()
        return p

    def _truncated_fits(self, d):
        from speclm.tools.spectrum import write_sdss_spec_fits

        wave, flux, ivar = _synthetic(4000)
        p = write_sdss_spec_fits(d / "truncated.fits", np.log10(wave), flux, ivar, 0.1)
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * 0.6)])
        return p

    def _fits_no_coadd(self, d):
        return _fits_table(d / "no_coadd.fits", {"A": np.arange(500.0), "B": np.ones(500)})

    def _nan_flux(self, d):
        from speclm.tools.spectrum import write_sdss_spec_fits

        wave, flux, ivar = _synthetic()
        return write_sdss_spec_fits(d / "nan_flux.fits", np.log10(wave), np.full_like(flux, np.nan),
                                    ivar, 0.1)

    def _inf_flux(self, d):
        wave, flux, ivar = _synthetic()
        return _csv(d / "inf_flux.csv", {"wavelength": wave, "flux": np.full_like(flux, np.inf),
                                         "ivar": ivar})

    def _zero_ivar(self, d):
        wave, flux, ivar = _synthetic()
        p = d / "zero_ivar.npz"
        np.savez(p, wavelength=wave, flux=flux, ivar=np.zeros_like(ivar))
        return p

    def _non_monotonic(self, d):
        wave, flux, ivar = _synthetic()
        wave[300], wave[301] = wave[301], wave[300]
        return _csv(d / "non_monotonic.csv", {"wavelength": wave, "flux": flux, "ivar": ivar})

    def _out_of_range(self, d):
        wave, flux, ivar = _synthetic(lo=12000.0, hi=20000.0)
        return _fits_table(d / "infrared.fits", {"WAVE": wave, "FLUX": flux, "IVAR": ivar})

    def _too_few_pixels(self, d):
        wave, flux, ivar = _synthetic(n=50)
        p = d / "short.npy"
        np.save(p, np.vstack([wave, flux, 1 / np.sqrt(ivar)]))
        return p

    def _junk_csv(self, d):
        wave, flux, _ = _synthetic()
        lines = ["wavelength,flux"]
        for i, (w, f) in enumerate(zip(wave, flux, strict=True)):
            lines.append(f"{w},{f}" if i % 3 == 0 else "n/a,--see notes--")
        p = d / "junk.csv"
        p.write_text("\n".join(lines) + "\n")
        return p

    def _too_large(self, d):
        # ~100 MiB without writing 100 MiB: a FITS-looking first card, then a sparse hole.
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


@pytest.fixture
def bad_inputs(tmp_path) -> BadInputs:
    """Factory: ``bad_inputs("junk_csv") -> Path``; ``bad_inputs.kinds`` lists every kind."""
    return BadInputs(tmp_path)
