"""Every kind of bad file fails with its own exception type -- in the library and in the CLI.

The CLI half runs the real `speclm inspect` in a subprocess: exit code != 0, exactly one line on
stderr naming the file, and never a traceback.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from speclm.tools import errors
from speclm.tools.spectrum import read_spectrum

EXPECTED = {
    "missing": errors.SpectrumFileNotFound,
    "empty": errors.EmptyFileError,
    "truncated_fits": errors.CorruptFileError,
    "fits_no_coadd": errors.MissingColumnError,
    "nan_flux": errors.InvalidFluxError,
    "inf_flux": errors.InvalidFluxError,
    "zero_ivar": errors.InvalidIvarError,
    "non_monotonic": errors.WavelengthOrderError,
    "out_of_range": errors.WavelengthRangeError,
    "too_few_pixels": errors.TooFewPixelsError,
    "junk_csv": errors.JunkRowsError,
    "too_large": errors.FileTooLargeError,
    "image_fits": errors.ImageFITSError,
    "binary_unknown": errors.UnsupportedFormatError,
}


def test_every_bad_kind_has_an_expectation(bad_inputs):
    assert set(EXPECTED) == set(bad_inputs.kinds)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_read_spectrum_raises_its_own_type(kind, bad_inputs):
    path = bad_inputs(kind)
    with pytest.raises(errors.SpectrumError) as info:
        read_spectrum(path)
    # exactly the expected type, not merely a relative of it
    got = type(info.value)
    assert got is EXPECTED[kind], f"{kind}: got {got.__name__}: {info.value}"
    msg = str(info.value)
    assert path.name in msg and "\n" not in msg


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_cli_inspect_fails_with_one_line(kind, bad_inputs):
    path = bad_inputs(kind)
    proc = subprocess.run([sys.executable, "-m", "speclm.cli", "inspect", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert path.name in lines[0] and "inspect" in lines[0]
    assert proc.stdout == ""


def test_size_checked_before_reading(bad_inputs, tmp_path):
    """The sparse 100 MiB file is garbage after its first card: only a size gate that runs
    before parsing can turn it into FileTooLargeError (parsing would give CorruptFileError)."""
    huge = bad_inputs("too_large")
    assert huge.stat().st_size == 100 * 1024 * 1024
    with pytest.raises(errors.FileTooLargeError, match="100.0 MiB"):
        read_spectrum(huge)
    # and the limit is the knob: a small valid file is refused under a tiny limit ...
    from speclm.tools.spectrum import write_sdss_spec_fits

    wave = np.geomspace(3800, 9200, 500)
    ok = write_sdss_spec_fits(tmp_path / "ok.fits", np.log10(wave), np.ones(500), np.ones(500), 0.1)
    with pytest.raises(errors.FileTooLargeError):
        read_spectrum(ok, max_bytes=1000)
    # ... and read under the default one
    assert read_spectrum(ok).n_pixels == 500


def test_a_few_junk_rows_are_skipped_with_a_warning(tmp_path):

    wave = np.geomspace(3800, 9200, 300)
    lines = ["wavelength,flux,error"] + [f"{w},{1.0},{0.1}" for w in wave]
    lines.insert(10, "oops,not,numbers")
    lines.insert(200, "1,2")  # wrong column count
    p = tmp_path / "few_junk.csv"
    p.write_text("\n".join(lines))
    spec = read_spectrum(p)
    assert spec.n_pixels == 300
    expected = "skipped 2 non-numeric row(s) at line(s) 11, 201"
    assert any(expected in w for w in spec.meta["warnings"])


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(errors.SpectrumFileNotFound, match="not a regular file"):
        read_spectrum(tmp_path)


def test_fits_named_file_that_is_text(tmp_path):
    p = tmp_path / "fake.fits"
    p.write_text("wavelength,flux\n1,2\n")
    with pytest.raises(errors.CorruptFileError, match="does not start with a FITS header"):
        read_spectrum(p)


def test_coadd_without_flux_column(tmp_path):
    from astropy.io import fits

    coadd = fits.BinTableHDU.from_columns(
        [fits.Column("loglam", "E", array=np.linspace(3.6, 3.9, 200).astype("f4"))], name="COADD")
    p = tmp_path / "coadd_no_flux.fits"
    fits.HDUList([fits.PrimaryHDU(), coadd]).writeto(p)
    with pytest.raises(errors.MissingColumnError, match="COADD table lacks loglam/flux"):
        read_spectrum(p)


def test_prose_text_file_is_junk(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("This is not a spectrum.\nIt is a note about one.\n" * 20)
    with pytest.raises(errors.JunkRowsError, match="40 of 40 data rows"):
        read_spectrum(p)
