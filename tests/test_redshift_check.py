"""redshift_check: simulated spectra with known z, the two real SDSS spectra with offset guesses,
featureless / out-of-range / masked / bad inputs, and the `speclm check` CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from speclm.tools import lines as L
from speclm.tools.errors import ConfigError, RedshiftRangeError, TooFewPixelsError, UnknownLineError
from speclm.tools.redshift_check import RedshiftCheckConfig, check_redshift
from speclm.tools.spectrum import Spectrum, read_spectrum

C = 299_792.458
OFFSETS = (-0.01, -0.005, 0.005, 0.01)
EMISSION = (("Halpha", 1.0), ("NII6585", 0.3), ("OIII5008", 0.6), ("Hbeta", 0.3), ("OII3727", 0.5), ("OII3729", 0.6),
            ("SII6718", 0.2))
ABSORPTION = (("CaK", -0.4), ("CaH", -0.35), ("Gband", -0.2), ("Mgb", -0.15), ("NaD", -0.1))


def simulate(z: float, features=(), *, snr: float = 20.0, seed: int = 0, sigma_kms: float = 100.0) -> Spectrum:
    """SDSS-like log-λ grid (1e-4 dex, 3800–9200 Å), sloped continuum, Gaussian features of relative
    amplitude `amp` (positive = emission) at the line list's vacuum wavelengths, Gaussian noise."""
    rng = np.random.default_rng(seed)
    wave = 10 ** np.arange(np.log10(3800.0), np.log10(9200.0), 1e-4)
    cont = 1.0 + 0.3 * (wave / 6000.0 - 1.0)
    flux = cont.copy()
    for name, amp in features:
        line = L.get(name)
        mu = line.observed(z)
        sig = np.hypot(mu * sigma_kms / C, line.sigma_A * (1 + z))
        flux += amp * cont * np.exp(-0.5 * ((wave - mu) / sig) ** 2)
    err = cont / snr
    flux += rng.normal(size=wave.size) * err
    return Spectrum(wave, flux, 1.0 / err**2, np.zeros(wave.size, int), {"z": z, "source": "simulated"})


# ------------------------------------------------------------------ simulated, known z


@pytest.mark.parametrize("z_true,features", [(0.1, EMISSION), (0.3, ABSORPTION), (0.05, EMISSION + ABSORPTION)])
@pytest.mark.parametrize("offset", (-0.01, 0.005))  # all four offsets run on the real spectra below
def test_simulated_offsets_recovered(z_true, features, offset):
    r = check_redshift(simulate(z_true, features), z_true + offset)
    assert r.confident, r.reason
    assert abs(r.z - z_true) < 3e-4  # ~90 km/s: lines pin z far better than the 0.002 requirement
    assert r.z_err is not None and 0 < r.z_err < 2e-4
    assert r.z_input == pytest.approx(z_true + offset)
    assert r.delta_chi2 > 25  # the refined z explains the lines much better than the offset guess
    kinds = {m.kind for m in r.lines}
    assert kinds == {k for k in ("emission", "absorption") if any((a > 0) == (k == "emission") for _, a in features)}


def test_emission_lines_agree_in_reason():
    r = check_redshift(simulate(0.1, EMISSION, snr=40), 0.105)
    assert r.confident and r.n_lines >= 5
    assert "emission lines" in r.reason and "agree within" in r.reason
    strong = [m for m in r.lines if m.dv_km_s is not None]
    assert len(strong) >= 4 and all(abs(m.dv_km_s) < 150 for m in strong)
    # single lines sit within 60 km/s; the [O II] components (3 Å apart, blended at this
    # resolution) each pull toward the pair's centre
    assert all(abs(m.dv_km_s) < 60 for m in strong if not m.name.startswith("OII"))
    halpha = next(m for m in r.lines if m.name == "Halpha")
    assert halpha.observed_A == pytest.approx(L.observed("Halpha", 0.1), abs=1.0)
    assert halpha.amplitude == pytest.approx(1.0, rel=0.3) and halpha.ew_rest_A < 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_featureless_not_confident(seed):
    r = check_redshift(simulate(0.1, (), seed=seed), 0.1)
    assert not r.confident
    assert r.z == 0.1 and r.z_err is None  # keeps the model's z
    if r.n_lines == 0:
        assert "no line above S/N 3" in r.reason and "trust the model" in r.reason


def test_single_line_is_ambiguous():
    # Hα alone: at z ± 0.003 it could be [N II]; the check must refuse to be confident
    r = check_redshift(simulate(0.1, (("Halpha", 1.0),), snr=30), 0.108)
    assert not r.confident
    assert r.z == pytest.approx(0.108)
    assert any(m.name in ("Halpha", "NII6585", "NII6550") for m in r.lines)


def test_no_line_in_range():
    r = check_redshift(simulate(0.1, EMISSION), 2.0)  # every optical line is redwards of 9200 Å
    assert r.n_lines_in_range == 0 and not r.confident and r.z == 2.0
    assert "no line of the list falls" in r.reason


def test_true_z_outside_window_is_not_confident():
    # window 0.1225 ± 0.0225 reaches down to 0.10005: the real lines sit at (or past) its edge
    r = check_redshift(simulate(0.1, EMISSION), 0.1225)
    assert not r.confident and r.z == 0.1225
    assert "edge of the search window" in r.reason or "ambiguous" in r.reason


def test_masked_region_and_gaps():
    s = simulate(0.1, EMISSION)
    s.mask[(s.wavelength > 7000) & (s.wavelength < 7500)] = 1  # hides Hα, [N II], [S II]
    s.ivar[(s.wavelength > 5400) & (s.wavelength < 5600)] = 0  # hides [O III]
    r = check_redshift(s, 0.11)
    assert r.confident and abs(r.z - 0.1) < 3e-4
    assert {m.name for m in r.lines}.isdisjoint({"Halpha", "NII6585", "SII6718", "OIII5008"})


def test_nan_pixels_ignored():
    s = simulate(0.1, EMISSION)
    s.flux[100:200] = np.nan
    r = check_redshift(s, 0.095)
    assert r.confident and abs(r.z - 0.1) < 3e-4


@pytest.mark.parametrize("z0", [-0.5, -0.011, float("nan"), float("inf"), "abc"])
def test_bad_z0(z0):
    with pytest.raises(RedshiftRangeError):
        check_redshift(simulate(0.1, EMISSION), z0)


def test_small_blueshift_is_allowed():
    s = simulate(0.0, EMISSION)
    r = check_redshift(s, -0.005)
    assert r.confident and abs(r.z) < 3e-4


def test_bad_inputs():
    s = simulate(0.1, EMISSION)
    s.ivar[:] = 0
    with pytest.raises(TooFewPixelsError):
        check_redshift(s, 0.1)
    with pytest.raises(UnknownLineError):
        check_redshift(simulate(0.1, EMISSION), 0.1, lines=["Hfoo"])
    with pytest.raises(ConfigError):
        check_redshift(simulate(0.1, EMISSION), 0.1, search_halfwidth=0)
    with pytest.raises(ConfigError):
        RedshiftCheckConfig(step_kms=0.0)


def test_to_dict_is_json():
    d = check_redshift(simulate(0.1, EMISSION), 0.1).to_dict()
    s = json.dumps(d, allow_nan=False)
    back = json.loads(s)
    assert {"z", "z_input", "lines", "confident", "reason", "z_err"} <= set(back)
    assert back["lines"] and {"name", "observed_A", "kind", "snr", "amplitude"} <= set(back["lines"][0])


# ------------------------------------------------------------------ real SDSS spectra (ppxf)


@pytest.fixture(scope="module")
def real_spectra(ppxf_spectra_dir):
    return {n: read_spectrum(ppxf_spectra_dir / f"{n}_SDSS_DR18.fits") for n in ("NGC3522", "NGC3073")}


@pytest.mark.parametrize("name", ["NGC3522", "NGC3073"])
@pytest.mark.parametrize("offset", OFFSETS)
def test_real_offsets_recovered(real_spectra, name, offset):
    s = real_spectra[name]
    z_cat = s.z_catalog
    r = check_redshift(s, z_cat + offset)
    assert r.confident, r.reason
    assert abs(r.z - z_cat) < 0.002
    assert abs(r.z - z_cat) < 3e-4  # measured: 6e-5 (NGC3522), 1.2e-4 (NGC3073)
    assert {"CaK", "CaH"} <= {m.name for m in r.lines}


def test_real_absorption_only(real_spectra):
    # NGC3522 is an early type: Ca H&K, G band, Mg b, Na D are its strong features
    s = real_spectra["NGC3522"]
    r = check_redshift(s, s.z_catalog + 0.01, lines=["CaK", "CaH", "Gband", "Mgb", "NaD"])
    assert r.confident and abs(r.z - s.z_catalog) < 5e-4
    assert all(m.kind == "absorption" for m in r.lines) and r.n_lines >= 4
    assert r.dn4000 is not None and r.dn4000 > 1.6  # old stars: a strong 4000 Å break


def test_real_emission_only(real_spectra):
    s = real_spectra["NGC3073"]
    r = check_redshift(s, s.z_catalog - 0.005, lines=["Halpha", "NII6585", "SII6718", "SII6733", "OIII5008"])
    assert r.confident and abs(r.z - s.z_catalog) < 3e-4
    assert all(m.kind == "emission" for m in r.lines) and r.n_lines >= 4
    assert real_spectra["NGC3073"].meta.get("z") is not None
    assert check_redshift(s, s.z_catalog).dn4000 < check_redshift(real_spectra["NGC3522"], 0.004).dn4000


def test_real_masked_caHK(real_spectra):
    s = real_spectra["NGC3522"]
    masked = Spectrum(s.wavelength, s.flux, s.ivar, s.mask.copy(), dict(s.meta))
    masked.mask[(s.wavelength > 3900) & (s.wavelength < 4020)] = 1
    r = check_redshift(masked, s.z_catalog - 0.005)
    assert r.confident and abs(r.z - s.z_catalog) < 5e-4
    assert not {"CaK", "CaH"} & {m.name for m in r.lines}


# ------------------------------------------------------------------ CLI


def _speclm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speclm.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_json(ngc3073_fits):
    z_cat = read_spectrum(ngc3073_fits).z_catalog
    proc = _speclm("check", str(ngc3073_fits), "--z", f"{z_cat + 0.01:.5f}", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["confident"] is True and abs(out["z"] - z_cat) < 0.002
    assert out["z_input"] == pytest.approx(z_cat + 0.01, abs=1e-5)
    assert out["reason"] and len(out["lines"]) >= 3 and out["lines"][0]["name"]


def test_cli_text_and_errors(ngc3522_fits, tmp_path):
    proc = _speclm("check", str(ngc3522_fits), "--z", "0.009", "--halfwidth", "0.01")
    assert proc.returncode == 0, proc.stderr
    assert "confident" in proc.stdout and "Ca II K" in proc.stdout
    proc = _speclm("check", str(ngc3522_fits), "--z", "-0.5")
    assert proc.returncode == 2 and "negative" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = _speclm("check", str(tmp_path / "nope.fits"), "--z", "0.1")
    assert proc.returncode == 2 and "no such file" in proc.stderr
