"""Survey readers behind the one reader: DESI coadds (real, from the fastspecfit wheel, and written by
our DESI writer), LAMOST DR7 image / DR9 table files and an SDSS white dwarf (real, ../shared), SDSS-V
spec-lite (written in SDSS-V's layout), files without uncertainties (noise estimated), multi-target
addressing and the one-line errors for bad targets."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from speclm.tools.errors import InvalidIvarError, MissingColumnError, SpectrumError, TargetNotFoundError
from speclm.tools.spectrum import (expand_inputs, list_targets, r_band_snr, read_spectrum, read_targets,
                                   summary)
from speclm.tools.spectrum_desi import _resolution_block, lsf_sigma_kms, write_desi_coadd
from speclm.tools.synthetic import synthetic_spectrum

REAL_OTHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_other"
LAMOST_DR9 = REAL_OTHER / "spec-55859-F5902_sp01-001.fits.gz"
LAMOST_DR7 = REAL_OTHER / "spec-58397-EG014118N254444M01_sp03-031.fits"
SDSS_WD = REAL_OTHER / "spec-0266-51602-0031.fits"


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "speclm.cli", *args], capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------
# real DESI coadds (fastspecfit 3.6.1's test data; fetched from PyPI into a cache, never committed)
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, targetid, z, ra", [
    ("coadd-4-80613-thru20210324.fits", 39633345008634465, 0.36874355, 105.48977452),
    ("coadd-special-dark-27247.fits", 39089837499744649, 0.00726967, 149.46540425),
])
def test_real_desi_coadd(desi_data_dir, name, targetid, z, ra):
    path = desi_data_dir / name
    spec = read_spectrum(path)
    m = spec.meta
    assert m["format"] == "desi-coadd" and m["survey_name"] == "DESI"
    assert m["targetid"] == targetid and m["n_targets"] == 1
    assert m["ra"] == pytest.approx(ra, abs=1e-8)
    # the catalog answer comes from the redrock file beside the coadd, matched by TARGETID
    assert spec.z_catalog == pytest.approx(z, abs=1e-7) and m["class"] == "GALAXY"
    assert "redrock" in m["z_source"]
    # three arms on one 0.8 Å grid, 3600–9824 Å, overlaps merged (7781 = the union of B, R, Z)
    assert spec.wavelength[0] == pytest.approx(3600.0) and spec.wavelength[-1] == pytest.approx(9824.0)
    np.testing.assert_allclose(np.diff(spec.wavelength), 0.8, atol=1e-6)
    assert spec.n_pixels == 7781
    with fits.open(path) as h:
        bw, bf, bi = (np.asarray(h[k].data, float) for k in ("B_WAVELENGTH", "B_FLUX", "B_IVAR"))
        rw, rf, ri = (np.asarray(h[k].data, float) for k in ("R_WAVELENGTH", "R_FLUX", "R_IVAR"))
    # outside the overlap a pixel is the B arm's own; inside it is the ivar-weighted mean of B and R
    k = int(np.searchsorted(spec.wavelength, 4500.0))
    j = int(np.searchsorted(bw, 4500.0))
    assert spec.flux[k] == pytest.approx(bf[0, j], rel=1e-6)
    w0 = 5780.0
    kb, kr, ks = (int(np.argmin(np.abs(w - w0))) for w in (bw, rw, spec.wavelength))
    if bi[0, kb] > 0 and ri[0, kr] > 0:
        expect = (bf[0, kb] * bi[0, kb] + rf[0, kr] * ri[0, kr]) / (bi[0, kb] + ri[0, kr])
        assert spec.flux[ks] == pytest.approx(expect, rel=1e-5)
        assert spec.ivar[ks] == pytest.approx(bi[0, kb] + ri[0, kr], rel=1e-5)
    # the instrumental σ comes from the RESOLUTION matrices: the B arm is coarser than R and Z
    inst = m["instrument"]
    assert inst["fibre_arcsec"] == 1.5
    assert 35 < inst["sigma_inst_kms_per_arm"]["B"] < 60 and 20 < inst["sigma_inst_kms_per_arm"]["Z"] < 35


def test_real_desi_photometry_and_inspect(desi_data_dir):
    path = desi_data_dir / "coadd-4-80613-thru20210324.fits"
    r = _cli("inspect", "--json", str(path))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    # FIBERMAP FLUX_R = 5.947273 nanomaggies -> r = 22.5 - 2.5 log10(5.947273) = 20.564
    assert info["photometry"]["r"] == pytest.approx(20.564, abs=1e-3)
    assert info["survey_name"] == "DESI" and info["z_catalog"] == pytest.approx(0.36874355)


def test_a_redrock_file_is_named_as_a_catalog_and_skipped_in_folders(desi_data_dir):
    rr = desi_data_dir / "redrock-4-80613-thru20210324.fits"
    with pytest.raises(MissingColumnError, match="redrock redshift catalog"):
        read_spectrum(rr)
    listed = [Path(p).name for p in expand_inputs([desi_data_dir])]
    assert "coadd-4-80613-thru20210324.fits" in listed and rr.name not in listed


# ------------------------------------------------------------------------------------------
# multi-target files (our DESI writer, same data model)
# ------------------------------------------------------------------------------------------

@pytest.fixture
def desi_three(tmp_path):
    zs = [0.05, 0.21, 0.34]
    sp = [synthetic_spectrum(z, seed=i) for i, z in enumerate(zs)]
    path = write_desi_coadd(tmp_path / "coadd-sim.fits", [(s.wavelength, s.flux, s.ivar) for s in sp],
                            targetids=[101, 202, 303], z=zs, spectype=["GALAXY"] * 3, ra=[10.0, 20.0, 30.0],
                            dec=[-1.0, 0.0, 1.0])
    return path, zs


def test_multi_target_addressing(desi_three):
    path, zs = desi_three
    assert list_targets(path) == [f"{path}[101]", f"{path}[202]", f"{path}[303]"]
    got = [(ref, s.meta["targetid"], s.z_catalog) for ref, s in read_targets(path)]
    assert got == [(f"{path}[{t}]", t, z) for t, z in zip((101, 202, 303), zs)]
    s = read_spectrum(f"{path}[202]")
    assert s.meta["format"] == "desi-coadd"
    assert s.meta["targetid"] == 202 and s.meta["dec"] == 0.0 and s.meta["target_index"] == 1
    assert read_spectrum(f"{path}[#2]").meta["targetid"] == 303
    assert read_spectrum(path, target=303).z_catalog == zs[2]
    first = read_spectrum(path)  # no address: the first, and a warning says so
    assert first.meta["targetid"] == 101 and any("holds 3 targets" in w for w in first.meta["warnings"])
    # the spectra are not mixed up: each target's flux is its own simulated spectrum
    a, b = read_spectrum(f"{path}[101]"), read_spectrum(f"{path}[303]")
    assert not np.allclose(a.flux[a.good][:500], b.flux[b.good][:500])


@pytest.mark.parametrize("ref, match", [("[999]", "TARGETID 999 is not in the file.*101, 202, 303"),
                                        ("[#7]", "target #7 is not in the file.*#0–#2")])
def test_unknown_target_is_one_line(desi_three, ref, match):
    path, _ = desi_three
    with pytest.raises(TargetNotFoundError, match=match) as err:
        read_spectrum(f"{path}{ref}")
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    r = _cli("inspect", f"{path}{ref}")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "is not in the file" in r.stderr


def test_one_broken_target_does_not_stop_the_others(tmp_path):
    sp = [synthetic_spectrum(z, seed=i) for i, z in enumerate([0.1, 0.2, 0.3])]
    cols = [(s.wavelength, s.flux, s.ivar if i != 1 else np.zeros_like(s.ivar)) for i, s in enumerate(sp)]
    path = write_desi_coadd(tmp_path / "coadd-broken.fits", cols, targetids=[1, 2, 3], z=[0.1, 0.2, 0.3])
    out = dict(read_targets(path))
    assert isinstance(out[f"{path}[2]"], InvalidIvarError)
    assert out[f"{path}[1]"].z_catalog == 0.1 and out[f"{path}[3]"].z_catalog == 0.3
    r = _cli("inspect", "--json", str(path))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [("error" in row) for row in rows] == [False, True, False]
    assert rows[1]["error_type"] == "InvalidIvarError"
    r = _cli("check", "--json", str(path), timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert [x["file"] for x in lines] == [f"{path}[1]", f"{path}[2]", f"{path}[3]"]
    assert "error" in lines[1]
    assert lines[0]["z"] == pytest.approx(0.1, abs=0.002) and lines[2]["z"] == pytest.approx(0.3, abs=0.002)


def test_redshifts_inside_the_file_and_no_answer_at_all(tmp_path):
    s = synthetic_spectrum(0.12, seed=3)
    p = write_desi_coadd(tmp_path / "coadd-in.fits", [(s.wavelength, s.flux, s.ivar)], targetids=[7], z=[0.12],
                         redrock="inside")
    got = read_spectrum(p)
    assert got.z_catalog == 0.12 and "REDSHIFTS HDU" in got.meta["z_source"]
    q = write_desi_coadd(tmp_path / "coadd-none.fits", [(s.wavelength, s.flux, s.ivar)], targetids=[7])
    got = read_spectrum(q)
    assert got.z_catalog is None and any("no redrock" in w for w in got.meta["warnings"])


def test_resolution_matrix_gives_the_instrumental_sigma():
    wave = 3600.0 + 0.8 * np.arange(3000)
    for sig_pix in (1.0, 1.6):
        kms = lsf_sigma_kms(_resolution_block(np.full(wave.size, sig_pix)), wave)
        expect = sig_pix * 0.8 / wave * 299792.458
        np.testing.assert_allclose(kms, expect, rtol=0.01)


# ------------------------------------------------------------------------------------------
# LAMOST (real files in ../shared) and the SDSS white dwarf
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, fmt, z, release", [
    (LAMOST_DR9, "lamost-coadd", -0.0001387, "LAMOST DR9"),
    (LAMOST_DR7, "lamost-image", -6.4e-06, "LAMOST DR7"),
])
def test_real_lamost(path, fmt, z, release):
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared)")
    spec = read_spectrum(path)
    m = spec.meta
    assert m["format"] == fmt and m["survey_name"] == "LAMOST" and m["data_release"] == release
    assert spec.z_catalog == pytest.approx(z) and m["class"] == "STAR"
    assert m["air_or_vacuum"] == "vacuum" and m["instrument"]["fibre_arcsec"] == 3.3
    # the wavelengths are LAMOST's own row/column (log-linear from 3700 Å), not a flux or ivar row
    assert 3699 < spec.wavelength[0] < 3701 and 9090 < spec.wavelength[-1] < 9100
    np.testing.assert_allclose(np.diff(np.log10(spec.wavelength)), 1e-4, rtol=1e-3)
    with fits.open(path) as h:
        if fmt == "lamost-image":
            flux, ivar = np.asarray(h[0].data[0], float), np.asarray(h[0].data[1], float)
        else:
            flux, ivar = np.asarray(h[1].data["FLUX"][0], float), np.asarray(h[1].data["IVAR"][0], float)
    np.testing.assert_allclose(spec.flux, flux, rtol=1e-6)
    good = spec.good
    np.testing.assert_allclose(spec.ivar[good], ivar[good], rtol=1e-6)


def test_lamost_with_all_zero_ivar_is_one_line(tmp_path):
    if not LAMOST_DR7.is_file():
        pytest.skip("../shared LAMOST file not present")
    with fits.open(LAMOST_DR7) as h:
        data = np.array(h[0].data)
        data[1] = 0.0
        h[0].data = data
        h.writeto(tmp_path / "lamost-zero-ivar.fits")
    with pytest.raises(InvalidIvarError, match="inverse variance is zero"):
        read_spectrum(tmp_path / "lamost-zero-ivar.fits")


def test_real_sdss_white_dwarf():
    if not SDSS_WD.is_file():
        pytest.skip("../shared white dwarf not present")
    spec = read_spectrum(SDSS_WD)
    assert spec.meta["format"] == "sdss-spec" and spec.meta["class"] == "STAR"
    assert spec.meta["survey_name"] == "SDSS" and spec.meta["instrument"]["fibre_arcsec"] == 3.0


# ------------------------------------------------------------------------------------------
# SDSS-V spec-lite, and a file without uncertainties
# ------------------------------------------------------------------------------------------

def test_sdss_v_spec_lite(tmp_path):
    """SDSS-V (DR19) BOSS spec-lite: COADD with upper-case columns, SPALL catalog (FIELD, CATALOGID)."""
    s = synthetic_spectrum(0.15, seed=5)
    loglam = np.log10(np.linspace(3600, 10300, 4500))
    flux = np.interp(10 ** loglam, s.wavelength, s.flux)
    coadd = fits.BinTableHDU.from_columns([
        fits.Column("FLUX", "E", array=flux.astype(np.float32)),
        fits.Column("LOGLAM", "E", array=loglam.astype(np.float32)),
        fits.Column("IVAR", "E", array=np.full(loglam.size, 4.0, np.float32)),
        fits.Column("AND_MASK", "J", array=np.zeros(loglam.size, np.int32)),
        fits.Column("WDISP", "E", array=np.ones(loglam.size, np.float32))], name="COADD")
    spall = fits.BinTableHDU.from_columns([
        fits.Column("FIELD", "J", array=[15000]), fits.Column("MJD", "J", array=[59146]),
        fits.Column("CATALOGID", "K", array=[27021597842679140]), fits.Column("Z", "E", array=[0.15]),
        fits.Column("CLASS", "6A", array=["GALAXY"]), fits.Column("RACAT", "D", array=[150.1]),
        fits.Column("DECCAT", "D", array=[2.2])], name="SPALL")
    path = tmp_path / "spec-015000-59146-27021597842679140.fits"
    fits.HDUList([fits.PrimaryHDU(), coadd, spall, fits.BinTableHDU.from_columns(
        [fits.Column("Z", "E", array=[0.15])], name="ZALL")]).writeto(path)
    spec = read_spectrum(path)
    m = spec.meta
    assert m["format"] == "sdss-spec" and m["survey_name"] == "SDSS-V"
    assert spec.z_catalog == pytest.approx(0.15) and m["class"] == "GALAXY" and m["plate"] == 15000
    assert (m["ra"], m["dec"]) == (150.1, 2.2) and m["instrument"]["fibre_arcsec"] == 2.0


def test_noise_is_estimated_when_the_file_has_none(tmp_path):
    """A 1-D image FITS without errors: DER_SNR recovers the injected noise to ~10%, and the χ² of
    the redshift search means something again (the right z beats the others decisively)."""
    rng = np.random.default_rng(4)
    s = synthetic_spectrum(0.08, noise=0.0, seed=4)
    sigma = 0.05 * np.median(np.abs(s.flux))
    loglam = np.log10(s.wavelength)
    hdu = fits.PrimaryHDU((s.flux + rng.normal(0, sigma, s.flux.size)).astype(np.float32))
    hdu.header.update(CRVAL1=loglam[0], CDELT1=float(np.median(np.diff(loglam))), CRPIX1=1, DC_FLAG=1)
    hdu.header["DC-FLAG"] = 1
    path = tmp_path / "noerr.fits"
    hdu.writeto(path)
    spec = read_spectrum(path)
    assert spec.meta["ivar_assumed"] is True and "DER_SNR" in spec.meta["noise_estimated"]
    est = 1 / np.sqrt(np.median(spec.ivar[spec.good]))
    assert est == pytest.approx(sigma, rel=0.1)
    assert r_band_snr(spec) is not None and summary(spec)["noise"].startswith("estimated")
    flat = read_spectrum(path, estimate_noise=False)
    assert np.all(flat.ivar[flat.good] == 1.0) and summary(flat)["median_snr"] is None

    from speclm.tools.redshift_search import find_redshift

    ans = find_redshift(spec, None)
    assert ans.z == pytest.approx(0.08, abs=0.001) and ans.spectype == "GALAXY"
    assert ans.delta_chi2 is not None and ans.delta_chi2 > 25


def test_real_sdss_galaxy_without_uncertainties(ngc3522_fits, tmp_path):
    """The ppxf DR18 file of NGC 3522 saved as a 1-D image without errors (the issue's case)."""
    from speclm.tools.synthetic import write_without_errors

    with fits.open(ngc3522_fits) as h:
        z = float(h["SPECOBJ"].data["Z"][0])
    path = write_without_errors(ngc3522_fits, tmp_path / "ngc3522-noerr.fits")
    spec = read_spectrum(path)
    assert spec.meta["format"] == "fits-image-1d" and spec.meta["noise_estimated"]
    # the estimated S/N is near the file's own (we threw its errors away); measured: 1.51x, since the
    # SDSS coadd's neighbouring pixels are correlated and DER_SNR assumes independent ones
    real = read_spectrum(ngc3522_fits)
    ratio = r_band_snr(spec) / r_band_snr(real)
    assert 0.67 < ratio < 1.8

    from speclm.tools.redshift_search import find_redshift

    ans = find_redshift(spec, None)
    assert ans.spectype == "GALAXY" and abs(ans.z - z) < 0.001 and ans.confident
    assert ans.delta_chi2 > 25


def test_measurements_use_the_readers_instrument(desi_three):
    from speclm.tools.measure import measure_spectrum

    path, zs = desi_three
    spec = read_spectrum(f"{path}[202]")
    m = measure_spectrum(spec, zs[1])
    assert m.photometry is not None and m.photometry["fibre_arcsec"] == 1.5
    if m.velocity_dispersion is not None:
        assert m.velocity_dispersion["instrument_sigma_kms"] == spec.meta["instrument"]["sigma_inst_kms"]


def test_survey_reach_words_the_fibre_and_uses_total_magnitudes():
    from speclm.tools.survey_reach import survey_reach

    out = survey_reach(z=0.1, spectype="GALAXY", magnitudes={"r": 18.5, "g": 19.0, "i": 18.0}, ra=150.0, dec=2.0,
                       fibre_arcsec=1.5)
    mgs = next(s for s in out["surveys"] if s["survey"].startswith("SDSS Main"))
    assert mgs["verdict"] == "maybe" and any("1.5″ fibre" in r for r in mgs["reasons"])
    out = survey_reach(z=0.1, spectype="GALAXY", magnitudes={"r": 18.5}, ra=150.0, dec=2.0, fibre_arcsec=1.5,
                       total_magnitudes={"r": 18.2})
    mgs = next(s for s in out["surveys"] if s["survey"].startswith("SDSS Main"))
    assert mgs["verdict"] == "no" and any("total, the file's catalog" in r for r in mgs["reasons"])


def test_errors_are_spectrum_errors(tmp_path):
    with pytest.raises(SpectrumError):
        read_spectrum(tmp_path / "nothing.fits[12]")
