"""read_spectrum on real SDSS files and on every supported format, units and air/vacuum."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from speclm.tools.spectrum import Spectrum, air_to_vacuum, read_spectrum, summary

# ------------------------------------------------------------------------------------------
# Real SDSS DR18 spectra (ppxf)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture, n_pixels, n_good, plate, mjd, fiberid, cls, specobjid", [
    ("ngc3522_fits", 3815, 3815, 2488, 54149, 1, "GALAXY", 2801239312711051264),
    ("ngc3073_fits", 3848, 3847, 945, 52652, 470, "STAR", 1064104649075746816),
])
def test_real_sdss_file(request, fixture, n_pixels, n_good, plate, mjd, fiberid, cls, specobjid):
    path = request.getfixturevalue(fixture)
    spec = read_spectrum(path)
    with fits.open(path) as hdul:
        z_fits = hdul["SPECOBJ"].data["Z"][0]
        loglam = np.asarray(hdul["COADD"].data["loglam"], dtype=np.float64)
        flux = np.asarray(hdul["COADD"].data["flux"], dtype=np.float64)
    assert spec.z_catalog == float(z_fits)          # exact, no rounding on the way
    assert spec.n_pixels == n_pixels
    assert int(spec.good.sum()) == n_good
    np.testing.assert_array_equal(spec.wavelength, 10.0 ** loglam)
    np.testing.assert_array_equal(spec.flux, flux)
    m = spec.meta
    assert (m["plate"], m["mjd"], m["fiberid"], m["class"], m["specobjid"]) == \
        (plate, mjd, fiberid, cls, specobjid)
    assert m["format"] == "sdss-spec" and m["wave_unit_in"] == "log10(Angstrom)"
    assert m["air_or_vacuum"] == "vacuum" and m["source"] == str(path)
    # masked pixels (and_mask != 0) carry no weight
    assert np.all(spec.ivar[spec.mask != 0] == 0)


def test_ngc3522_catalog_extras(ngc3522_fits):
    m = read_spectrum(ngc3522_fits).meta
    assert m["ra"] == pytest.approx(166.66859) and m["dec"] == pytest.approx(20.085556)
    assert m["z_err"] > 0 and m["zwarning"] == 0 and m["warnings"] == []


def test_cli_inspect_json_real_file(ngc3522_fits):
    proc = subprocess.run([sys.executable, "-m", "speclm.cli", "inspect", "--json",
                           str(ngc3522_fits)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    with fits.open(ngc3522_fits) as hdul:
        assert out["z_catalog"] == float(hdul["SPECOBJ"].data["Z"][0])
    assert out["n_pixels"] == 3815 and out["n_good"] == 3815
    assert out["wave_min"] == pytest.approx(3826.484, abs=1e-3)
    assert out["wave_max"] == pytest.approx(9208.736, abs=1e-3)
    assert out["median_snr"] > 10 and out["class"] == "GALAXY"


def test_cli_inspect_table(ngc3522_fits):
    proc = subprocess.run([sys.executable, "-m", "speclm.cli", "inspect", str(ngc3522_fits)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "n_pixels" in proc.stdout and "3815" in proc.stdout and "GALAXY" in proc.stdout


# ------------------------------------------------------------------------------------------
# Round trips: write a synthetic spectrum in every format, read it back
# ------------------------------------------------------------------------------------------

N = 400
WAVE = np.geomspace(3700.0, 9800.0, N)
FLUX = 2.0 + np.sin(WAVE / 250.0)
IVAR = np.linspace(4.0, 400.0, N)
ERR = 1.0 / np.sqrt(IVAR)


def _w_sdss(p):
    from speclm.tools.spectrum import write_sdss_spec_fits

    return write_sdss_spec_fits(p.with_suffix(".fits"), np.log10(WAVE), FLUX, IVAR, 0.123,
                                plate=1234, mjd=55555, fiberid=77)


def _w_fits_table_ivar(p):
    cols = [fits.Column("WAVELENGTH", "D", array=WAVE, unit="Angstrom"),
            fits.Column("FLUX", "D", array=FLUX), fits.Column("IVAR", "D", array=IVAR)]
    p = p.with_suffix(".fits")
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(p)
    return p


def _w_fits_table_err_vector(p):
    # ESO Phase 3 / LEGA-C style: one row holding N-vectors, uncertainties as 1-sigma errors
    cols = [fits.Column("WAVE", f"{N}D", array=WAVE[None]),
            fits.Column("FLUX", f"{N}D", array=FLUX[None]),
            fits.Column("ERR", f"{N}D", array=ERR[None])]
    p = p.with_suffix(".fits")
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(p)
    return p


def _w_spspec(p):
    # old SDSS spSpec: 2-D image (flux, continuum-subtracted, error, mask), log-linear solution
    loglam = np.log10(WAVE)
    img = np.vstack([FLUX, FLUX - 1, ERR, np.zeros(N)]).astype("f4")
    hdu = fits.PrimaryHDU(img)
    hdu.header["COEFF0"] = loglam[0]
    hdu.header["COEFF1"] = (loglam[-1] - loglam[0]) / (N - 1)
    hdu.header["Z"] = 0.0456
    hdu.header["SPEC_CLN"] = 2
    p = p.with_suffix(".fit")
    hdu.writeto(p)
    return p


def _w_image_1d(p):
    hdu = fits.PrimaryHDU(FLUX.astype("f8"))
    hdu.header["CRVAL1"] = WAVE[0]
    hdu.header["CDELT1"] = 1.0
    hdu.header["CRPIX1"] = 1.0
    p = p.with_suffix(".fits")
    hdu.writeto(p)
    return p


def _w_csv_header(p):
    p = p.with_suffix(".csv")
    np.savetxt(p, np.column_stack([WAVE, FLUX, IVAR]), delimiter=",", header="wavelength,flux,ivar",
               comments="", fmt="%.17g")
    return p


def _w_csv_noheader(p):
    p = p.with_suffix(".csv")
    np.savetxt(p, np.column_stack([WAVE, FLUX, ERR]), delimiter=",", fmt="%.17g")
    return p


def _w_txt_whitespace(p):
    p = p.with_suffix(".txt")
    np.savetxt(p, np.column_stack([WAVE, FLUX, ERR]), fmt="%.17g",
               header="a comment line\nlambda  flux  error")
    # np.savetxt prefixes '# ': make the second line a real header row
    text = p.read_text().replace("# lambda", "lambda")
    p.write_text(text)
    return p


def _w_npy_rows(p):
    p = p.with_suffix(".npy")
    np.save(p, np.vstack([WAVE, FLUX, ERR]))
    return p


def _w_npy_cols(p):
    p = p.with_suffix(".npy")
    np.save(p, np.column_stack([WAVE, FLUX, ERR]))
    return p


def _w_npy_structured(p):
    arr = np.zeros(N, dtype=[("wave", "f8"), ("flux", "f8"), ("ivar", "f8")])
    arr["wave"], arr["flux"], arr["ivar"] = WAVE, FLUX, IVAR
    p = p.with_suffix(".npy")
    np.save(p, arr)
    return p


def _w_npz(p):
    p = p.with_suffix(".npz")
    np.savez(p, wavelength=WAVE, flux=FLUX, ivar=IVAR)
    return p


ROUND_TRIPS = {
    # writer: (format, has_uncertainties, rtol for arrays)
    _w_sdss: ("sdss-spec", True, 1e-5),            # float32 columns, like SDSS
    _w_fits_table_ivar: ("fits-table", True, 0),
    _w_fits_table_err_vector: ("fits-table", True, 1e-12),
    _w_spspec: ("sdss-spspec", True, 1e-5),
    _w_image_1d: ("fits-image-1d", False, 0),
    _w_csv_header: ("text", True, 0),
    _w_csv_noheader: ("text", True, 1e-12),
    _w_txt_whitespace: ("text", True, 1e-12),
    _w_npy_rows: ("npy", True, 1e-12),
    _w_npy_cols: ("npy", True, 1e-12),
    _w_npy_structured: ("npy", True, 0),
    _w_npz: ("npz", True, 0),
}


@pytest.mark.parametrize("writer", list(ROUND_TRIPS), ids=lambda w: w.__name__[3:])
def test_round_trip(writer, tmp_path):
    fmt, has_unc, rtol = ROUND_TRIPS[writer]
    path = writer(tmp_path / "spec")
    spec = read_spectrum(path)
    assert isinstance(spec, Spectrum) and spec.meta["format"] == fmt
    assert spec.n_pixels == N and int(spec.good.sum()) == N
    if writer is _w_image_1d:
        np.testing.assert_allclose(spec.wavelength, WAVE[0] + np.arange(N))
    else:
        np.testing.assert_allclose(spec.wavelength, WAVE, rtol=max(rtol, 1e-15))
    np.testing.assert_allclose(spec.flux, FLUX, rtol=max(rtol, 1e-15))
    if has_unc:
        np.testing.assert_allclose(spec.ivar, IVAR, rtol=max(rtol * 3, 1e-12))
        assert spec.meta["ivar_assumed"] is False
    else:
        # no errors in the file: the noise is estimated from the flux (DER_SNR) and said to be
        assert spec.meta["ivar_assumed"] is True and "DER_SNR" in spec.meta["noise_estimated"]
        assert summary(spec)["noise"].startswith("estimated") and summary(spec)["median_snr"] is not None
        flat = read_spectrum(path, estimate_noise=False)
        assert np.all(flat.ivar[flat.good] == 1.0) and summary(flat)["median_snr"] is None
    assert spec.meta["air_or_vacuum"] == "vacuum"


def test_sdss_writer_catalog_round_trip(tmp_path):
    spec = read_spectrum(_w_sdss(tmp_path / "s"))
    m = spec.meta
    assert spec.z_catalog == float(np.float32(0.123))
    assert (m["plate"], m["mjd"], m["fiberid"], m["class"]) == (1234, 55555, 77, "GALAXY")
    # SDSS specObjID bit packing: plate<<50 | fiber<<38 | (mjd-50000)<<24 | run2d<<10
    assert m["specobjid"] == (1234 << 50) | (77 << 38) | (5555 << 24) | (26 << 10)


def test_spspec_catalog(tmp_path):
    m = read_spectrum(_w_spspec(tmp_path / "s")).meta
    assert m["z"] == pytest.approx(0.0456) and m["class"] == "GALAXY"


# ------------------------------------------------------------------------------------------
# Masks, NaN, ordering
# ------------------------------------------------------------------------------------------


def test_and_mask_bad_bits_and_nan_flux_become_zero_ivar(tmp_path):
    """SDSS and_mask: the no-data bits (FULLREJECT, NOSKY, NODATA, COMBINEREJ) make a pixel bad;
    warning bits (BRIGHTSKY, fiber-level MANYBADCOLUMNS) do not, and are counted in meta."""
    from speclm.tools.spectrum import write_sdss_spec_fits

    flux = FLUX.copy()
    flux[[5, 6]] = np.nan
    mask = np.zeros(N, np.int32)
    mask[[100, 101, 102]] = (1 << 18) | (1 << 4)    # FULLREJECT (+ a fiber-level warning bit)
    mask[103] = 1 << 22                              # NOSKY
    mask[[200, 201]] = 1 << 23                       # BRIGHTSKY: a warning, ivar stays
    mask[300:400] = 1 << 4                           # MANYBADCOLUMNS: fiber-level, ivar stays
    p = write_sdss_spec_fits(tmp_path / "m.fits", np.log10(WAVE), flux, IVAR, 0.1, and_mask=mask)
    spec = read_spectrum(p)
    assert int(spec.good.sum()) == N - 6
    assert np.all(spec.ivar[[5, 6, 100, 101, 102, 103]] == 0)
    assert np.all(spec.ivar[[200, 201, 300, 399]] > 0)
    assert spec.meta["and_mask_info_pixels"] == 102
    assert np.all(spec.flux[[5, 6]] == 0) and np.isfinite(spec.flux).all()


REAL_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sdss_real_dev" / "fits"


@pytest.mark.parametrize("name", ["spec-0266-51602-0526.fits", "spec-0266-51630-0174.fits"])
def test_real_file_with_fiber_level_mask_bits_keeps_its_pixels(name):
    """These real SDSS spectra have and_mask bits on 46-48% of their pixels (MANYBADCOLUMNS,
    NEARBADPIXEL: warnings, ivar is fine there). Reading them must keep every pixel whose ivar
    is positive and that carries no no-data bit; and the preprocessed vector must be usable."""
    path = REAL_DEV / name
    if not path.exists():
        pytest.skip(f"{path} not available (../shared/data/sdss_real_dev)")
    from speclm.finetune.preprocess import preprocess
    from speclm.finetune.presets import get_preset

    with fits.open(path) as hdul:
        and_mask = np.asarray(hdul["COADD"].data["and_mask"]).astype(np.int64)
        ivar = np.asarray(hdul["COADD"].data["ivar"], np.float64)
    assert (and_mask != 0).mean() > 0.4                      # the case this test is about
    spec = read_spectrum(path)
    expected = (ivar > 0) & ((and_mask & ((1 << 18) | (1 << 22) | (1 << 24) | (1 << 25))) == 0)
    np.testing.assert_array_equal(spec.good, expected)
    assert spec.good.mean() > 0.85                           # was ~0.5 when every bit counted
    assert spec.meta["and_mask_info_pixels"] > 0.3 * spec.n_pixels
    for preset in ("smollm2", "paper"):
        vec = preprocess(spec, get_preset(preset).preprocess)
        assert np.isfinite(vec).all() and vec.size == get_preset(preset).preprocess.n_bins


def test_decreasing_wavelengths_are_reversed(tmp_path):
    p = tmp_path / "rev.npz"
    np.savez(p, wave=WAVE[::-1], flux=FLUX[::-1], error=ERR[::-1])
    spec = read_spectrum(p)
    np.testing.assert_allclose(spec.wavelength, WAVE)
    np.testing.assert_allclose(spec.flux, FLUX)
    assert any("reversed" in w for w in spec.meta["warnings"])


# ------------------------------------------------------------------------------------------
# Units
# ------------------------------------------------------------------------------------------


def test_nm_inferred_from_values(tmp_path):
    p = tmp_path / "nm.csv"
    np.savetxt(p, np.column_stack([WAVE / 10.0, FLUX, ERR]), delimiter=",",
               header="wavelength,flux,error", comments="", fmt="%.17g")
    spec = read_spectrum(p)
    assert spec.meta["wave_unit_in"] == "nm"
    np.testing.assert_allclose(spec.wavelength, WAVE, rtol=1e-14)


def test_log10_inferred_from_values(tmp_path):
    p = tmp_path / "log.npz"
    np.savez(p, wave=np.log10(WAVE), flux=FLUX, ivar=IVAR)  # not called loglam: values decide
    spec = read_spectrum(p)
    assert spec.meta["wave_unit_in"] == "log10(Angstrom)"
    np.testing.assert_allclose(spec.wavelength, WAVE, rtol=1e-13)


def test_micron_inferred_from_values(tmp_path):
    p = tmp_path / "um.npy"
    np.save(p, np.vstack([WAVE / 1e4, FLUX]))
    spec = read_spectrum(p)
    assert spec.meta["wave_unit_in"] == "um"
    np.testing.assert_allclose(spec.wavelength, WAVE, rtol=1e-13)


def test_unit_from_header_and_tunit(tmp_path):
    p = tmp_path / "hdr.csv"
    np.savetxt(p, np.column_stack([WAVE / 10.0, FLUX]), delimiter=",",
               header="Wavelength [nm],Flux", comments="", fmt="%.17g")
    assert read_spectrum(p).meta["wave_unit_in"] == "nm"
    cols = [fits.Column("wave", "D", array=WAVE / 10.0, unit="nm"),
            fits.Column("flux", "D", array=FLUX)]
    q = tmp_path / "tunit.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(q)
    spec = read_spectrum(q)
    assert spec.meta["wave_unit_in"] == "nm"
    np.testing.assert_allclose(spec.wavelength, WAVE, rtol=1e-14)


# ------------------------------------------------------------------------------------------
# Air -> vacuum
# ------------------------------------------------------------------------------------------


def test_air_to_vacuum_at_halpha():
    assert air_to_vacuum(6562.80) == pytest.approx(6564.61, abs=0.02)
    # vectorised, and always longer in vacuum
    w = air_to_vacuum(np.array([4000.0, 6562.80, 9000.0]))
    assert np.all(w > [4000.0, 6562.80, 9000.0]) and w[1] == pytest.approx(6564.61, abs=0.02)


def _air_grid():
    """A grid with Halpha (air) at pixel 200."""
    return 6562.80 + (np.arange(N) - 200) * 1.5


def test_air_comment_in_text_file(tmp_path):
    p = tmp_path / "air.txt"
    body = "\n".join(f"{w:.4f} {f:.6f} 0.1" for w, f in zip(_air_grid(), FLUX, strict=True))
    p.write_text("# AIRORVAC = 'air'\n" + body + "\n")
    spec = read_spectrum(p)
    assert spec.meta["air_or_vacuum"] == "air" and spec.meta["air_or_vacuum_assumed"] is False
    assert spec.wavelength[200] == pytest.approx(6564.61, abs=0.02)


def test_air_keyword_argument_and_fits_header(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, wavelength=_air_grid(), flux=FLUX, ivar=IVAR)
    assert read_spectrum(p).wavelength[200] == pytest.approx(6562.80)
    assert read_spectrum(p).meta["air_or_vacuum_assumed"] is True
    assert read_spectrum(p, air=True).wavelength[200] == pytest.approx(6564.61, abs=0.02)

    cols = [fits.Column("WAVE", "D", array=_air_grid()), fits.Column("FLUX", "D", array=FLUX)]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["VACUUM"] = False
    q = tmp_path / "air.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(q)
    spec = read_spectrum(q)
    assert spec.meta["air_or_vacuum"] == "air"
    assert spec.wavelength[200] == pytest.approx(6564.61, abs=0.02)
    # the keyword argument overrides the file and says so
    spec = read_spectrum(q, air=False)
    assert spec.wavelength[200] == pytest.approx(6562.80)
    assert any("overridden" in w for w in spec.meta["warnings"])


def test_sdss_is_vacuum(ngc3522_fits):
    assert read_spectrum(ngc3522_fits).meta["air_or_vacuum"] == "vacuum"
