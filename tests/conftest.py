"""Shared pytest fixtures.

Sections: real SDSS spectra shipped with ppxf; an SDSS spec-FITS writer; a factory of bad input
files. Keep each fixture documented and grouped under its section.
"""
from __future__ import annotations

from pathlib import Path

import pytest

# ------------------------------------------------------------------------------------------
# Real SDSS DR18 spectra (shipped inside the ppxf wheel; never copied into the repo)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ppxf_spectra_dir() -> Path:
    """Directory holding ppxf's example spectra (NGC3522/NGC3073 SDSS DR18 spec files)."""
    from speclm.tools.synthetic import ppxf_spectrum

    p = ppxf_spectrum("NGC3522")
    if p is None:
        pytest.skip("ppxf is not installed (pip install ppxf): no real SDSS spectra")
    return p.parent


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


@pytest.fixture
def bad_inputs(tmp_path):
    """Factory: ``bad_inputs("junk_csv") -> Path``; ``bad_inputs.kinds`` lists every kind
    (the one bad-file factory, :class:`speclm.tools.synthetic.BadFiles`)."""
    from speclm.tools.synthetic import BadFiles

    return BadFiles(tmp_path / "bad_inputs")


# ------------------------------------------------------------------------------------------
# Real DESI coadds + redrock files (inside the fastspecfit 3.6.1 wheel on PyPI; fetched into a
# cache at test time, never committed)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def desi_data_dir() -> Path:
    """A folder holding fastspecfit's two real DESI coadds and their redrock files."""
    from speclm.tools.synthetic import desi_coadd_dir

    d = desi_coadd_dir()
    if d is None:
        pytest.skip("could not download the fastspecfit wheel from PyPI (the real DESI coadds)")
    return d
