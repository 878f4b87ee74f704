"""Simulator: determinism, physics sanity, augmentation switches, config validation."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("bagpipes")

from speclm.finetune.simulate import (  # noqa: E402
    MASK_NODATA,
    SKY_LINES_VAC,
    SimConfig,
    draw_parameters,
    simulate_one,
    simulate_spectra,
)
from speclm.tools.errors import ConfigError  # noqa: E402

CLEAN = dict(noise=False, sky_residuals=False, telluric=False, fluxcal_tilt=False, masking=False,
             flux_offset=False)


@pytest.fixture(scope="module")
def batch():
    return simulate_spectra(SimConfig(n=12, seed=11), workers=1, progress=False)


def _find(cfg: SimConfig, want: set[str], z_range=(0.0, 10.0), limit: int = 400, where=lambda p: True) -> int:
    for i in range(limit):
        p = draw_parameters(cfg, i)
        if p["sfh"] in want and z_range[0] <= p["z"] <= z_range[1] and where(p):
            return i
    raise AssertionError(f"no {want} galaxy among the first {limit}")


def test_grid_is_sdss_loglam(batch):
    w = batch[0].wavelength
    assert w.size == 3852
    assert abs(w[0] - 10**3.5794) < 0.01 and abs(w[-1] - 10**3.9645) < 0.05
    assert np.allclose(np.diff(np.log10(w.astype(np.float64))), 1e-4, atol=3e-7)  # float32 storage


def test_meta_and_types(batch):
    s = batch[3]
    assert s.meta["id"] == "sim-11-3" and s.meta["source"] == "simulated"
    for key in ("sfh", "av", "logU", "veldisp", "snr", "log_mass"):
        assert key in s.meta["sim"]
    assert s.flux.dtype == np.float32 and s.ivar.dtype == np.float32
    assert np.isfinite(s.flux).all() and (s.ivar >= 0).all()
    assert 0.0 <= s.meta["z"] <= 0.5


def test_deterministic_and_worker_independent(batch):
    cfg = SimConfig(n=12, seed=11)
    again = simulate_spectra(cfg, workers=2, progress=False)
    for a, b in zip(batch, again):
        assert np.array_equal(a.flux, b.flux) and np.array_equal(a.ivar, b.ivar)
        assert np.array_equal(a.mask, b.mask) and a.meta == b.meta
    # one index alone equals the same index inside the batch
    assert np.array_equal(simulate_one(cfg, 7).flux, batch[7].flux)


def test_different_seed_differs(batch):
    other = simulate_one(SimConfig(n=12, seed=12), 0)
    assert other.meta["z"] != batch[0].meta["z"]
    assert not np.array_equal(other.flux, batch[0].flux)


def test_halpha_at_observed_position():
    cfg = SimConfig(n=400, seed=3, z_max=0.3, **CLEAN)
    i = _find(cfg, {"star-forming"}, (0.05, 0.3))
    s = simulate_one(cfg, i)
    z = s.meta["z"]
    ha = 6564.61 * (1 + z)
    win = np.abs(s.wavelength - ha) < 40
    peak = s.wavelength[win][np.argmax(s.flux[win])]
    assert abs(peak - ha) < 4.0, (peak, ha)
    cont = np.median(s.flux[(np.abs(s.wavelength - ha) > 60) & (np.abs(s.wavelength - ha) < 150)])
    assert s.flux[win].max() > 1.3 * cont  # a real emission line, not a wiggle


def test_simulated_wavelengths_are_vacuum_like_the_reader():
    """bagpipes (BC03 and its nebular lines) tabulates air wavelengths; the simulator converts them
    with the reader's one air->vacuum formula. Without it every simulated galaxy's features sit
    83 km/s blue of its label (measured: median -82.6 km/s), and a model trained on it learns that."""
    from speclm.tools.redshift_search import find_redshift

    cfg = SimConfig(n=8, seed=3, snr_median=30, snr_min=20, **CLEAN)
    dv = []
    for i in range(8):
        s = simulate_one(cfg, i)
        a = find_redshift(s, None)
        if a.confident and a.spectype == "GALAXY":
            dv.append(299_792.458 * (a.z - s.meta["z"]) / (1 + s.meta["z"]))
    assert len(dv) >= 5 and abs(float(np.median(dv))) < 25.0, dv


def test_passive_has_4000A_break():
    cfg = SimConfig(n=400, seed=4, z_max=0.4, **CLEAN)
    i = _find(cfg, {"passive"}, where=lambda p: p["recent_frac"] < 1e-4)
    s = simulate_one(cfg, i)
    rest = s.wavelength / (1 + s.meta["z"])
    d4000 = s.flux[(rest > 4000) & (rest < 4100)].mean() / s.flux[(rest > 3850) & (rest < 3950)].mean()
    assert d4000 > 1.4, d4000
    # and essentially no H-alpha emission
    ha = 6564.61
    core = s.flux[np.abs(rest - ha) < 8].max()
    cont = np.median(s.flux[(np.abs(rest - ha) > 30) & (np.abs(rest - ha) < 80)])
    assert core < 1.3 * cont


def test_clean_switches_remove_noise_and_masks():
    clean = SimConfig(n=5, seed=5, **CLEAN)
    noisy = SimConfig(n=5, seed=5)
    a, b = simulate_one(clean, 2), simulate_one(noisy, 2)
    assert a.meta["z"] == b.meta["z"]  # same galaxy, only the observation differs
    assert (a.ivar > 0).all() and (a.mask == 0).all()
    # clean flux is smooth: tiny pixel-to-pixel scatter compared with the noisy version
    assert np.std(np.diff(a.flux)) < 0.5 * np.std(np.diff(b.flux))


def test_snr_matches_target():
    cfg = SimConfig(n=6, seed=6, sky_residuals=False, masking=False, flux_offset=False)
    for i in range(3):
        s = simulate_one(cfg, i)
        r = (s.wavelength > 5600) & (s.wavelength < 6800)
        snr = np.median(s.flux[r] * np.sqrt(s.ivar[r]))
        assert abs(snr - s.meta["sim"]["snr"]) < 0.25 * s.meta["sim"]["snr"] + 0.5


def test_sky_residuals_at_sky_lines():
    base = dict(noise=False, telluric=False, fluxcal_tilt=False, masking=False, flux_offset=False)
    a = simulate_one(SimConfig(n=3, seed=8, sky_residuals=False, **base), 1)
    b = simulate_one(SimConfig(n=3, seed=8, sky_residuals=True, sky_residual_strength=3.0, **base), 1)
    diff = np.abs(b.flux - a.flux)
    near = np.min(np.abs(a.wavelength[:, None] - SKY_LINES_VAC[None, :]), axis=1) < 4
    assert diff[near].mean() > 20 * diff[~near].mean()
    # sigma is inflated on sky lines (the noise model sees the sky)
    assert np.median(1 / b.ivar[near]) > 2 * np.median(1 / b.ivar[~near])


def test_masking_sets_zero_ivar_and_bits():
    cfg = SimConfig(n=40, seed=9, mask_strength=5.0)
    hits = 0
    for i in range(6):
        s = simulate_one(cfg, i)
        bad = s.mask != 0
        assert (s.ivar[bad] == 0).all()
        assert (s.flux[(s.mask & MASK_NODATA) != 0] == 0).all()
        hits += bad.any()
    assert hits >= 3


def test_fluxcal_tilt_bounded():
    base = dict(noise=False, sky_residuals=False, telluric=False, masking=False, flux_offset=False)
    a = simulate_one(SimConfig(n=2, seed=10, fluxcal_tilt=False, **base), 0)
    b = simulate_one(SimConfig(n=2, seed=10, fluxcal_tilt=True, fluxcal_amplitude=0.15, **base), 0)
    ratio = b.flux / a.flux
    assert np.all(np.abs(ratio - 1) <= 0.15 + 1e-4) and np.ptp(ratio) > 1e-3


def test_passive_fraction_rises_with_z():
    cfg = SimConfig(n=600, seed=1)
    ps = [draw_parameters(cfg, i) for i in range(600)]
    low = np.mean([p["sfh"] in ("passive", "post-starburst") for p in ps if p["z"] < 0.1])
    high = np.mean([p["sfh"] in ("passive", "post-starburst") for p in ps if p["z"] > 0.3])
    assert high > low + 0.2 and high > 0.7


@pytest.mark.parametrize("bad", [dict(n=0), dict(z_min=0.5, z_max=0.2), dict(z_distribution="x"),
                                 dict(snr_min=10, snr_median=5), dict(logu_max=1.0),
                                 dict(fluxcal_amplitude=1.5), dict(passive_frac_low_z=2.0)])
def test_config_validation(bad):
    with pytest.raises(ConfigError):
        SimConfig(**bad)


def test_help_on_every_field():
    assert all(SimConfig.help().values())


def test_agn_lines_on_a_passive_galaxy():
    """agn_lines_prob=1 puts [N II] 6585 and [O III] 5008 emission at (1+z) x rest on a passive galaxy;
    the default (0) leaves the spectrum bit-identical to older datasets."""
    base = SimConfig(n=400, seed=4, z_max=0.3, **CLEAN)
    i = _find(base, {"passive"}, (0.02, 0.3), where=lambda p: p["recent_frac"] < 1e-4)
    agn = SimConfig(n=400, seed=4, z_max=0.3, agn_lines_prob=1.0, agn_ew_max=20.0, **CLEAN)
    a, b = simulate_one(base, i), simulate_one(agn, i)
    assert "agn" in b.meta["sim"] and "agn" not in a.meta["sim"]
    z = a.meta["z"]
    for rest in (6585.27, 5008.24):
        win = np.abs(a.wavelength - rest * (1 + z)) < 6
        assert (b.flux[win] - a.flux[win]).max() > 0.02 * np.median(a.flux[win]), rest
    far = np.abs(a.wavelength - 6000 * (1 + z)) < 30  # no line there: unchanged
    assert np.allclose(a.flux[far], b.flux[far])
    assert np.array_equal(simulate_one(SimConfig(n=400, seed=4, z_max=0.3), i).flux,
                          simulate_one(SimConfig(n=400, seed=4, z_max=0.3, agn_lines_prob=0.0), i).flux)


def _line_flux(s, rest: float, z: float, half: float = 6.0) -> float:
    win = np.abs(s.wavelength - rest * (1 + z)) < half
    side = (np.abs(s.wavelength - rest * (1 + z)) > 15) & (np.abs(s.wavelength - rest * (1 + z)) < 40)
    dw = np.gradient(s.wavelength.astype(np.float64))
    return float(((s.flux[win] - np.median(s.flux[side])) * dw[win]).sum())


def test_hii_galaxy_lines_are_strong_low_metallicity_ones_on_star_forming_galaxies_only():
    """hii_lines_prob=1 gives a star-forming galaxy an HII galaxy's lines: Halpha EW in the drawn range,
    [O III] 5008 > 2 x Hbeta, [N II] 6585 < 0.2 x Halpha; a passive galaxy is left bit-identical."""
    base = SimConfig(n=400, seed=5, z_max=0.25, **CLEAN)
    hii = SimConfig(n=400, seed=5, z_max=0.25, hii_lines_prob=1.0, hii_ew_min=300.0, hii_ew_max=600.0, **CLEAN)
    i = _find(base, {"star-forming"}, (0.02, 0.25))
    a, b = simulate_one(base, i), simulate_one(hii, i)
    info = b.meta["sim"]["hii"]
    assert 300.0 <= info["ew_halpha"] <= 600.0 and "hii" not in a.meta["sim"]
    z = a.meta["z"]
    added = {r: _line_flux(b, r, z) - _line_flux(a, r, z) for r in (6564.61, 4862.68, 5008.24, 6585.27)}
    assert added[5008.24] > 2.0 * added[4862.68] > 0
    assert 0 < added[6585.27] < 0.2 * added[6564.61]
    cont = float(np.median(a.flux[np.abs(a.wavelength - 6564.61 * (1 + z)) < 60]))
    ew_rest = added[6564.61] / cont / (1 + z)
    assert 0.7 * info["ew_halpha"] < ew_rest < 1.3 * info["ew_halpha"], (ew_rest, info)
    j = _find(base, {"passive"}, (0.02, 0.25))
    assert np.array_equal(simulate_one(base, j).flux, simulate_one(hii, j).flux)
    assert "hii" not in simulate_one(hii, j).meta["sim"]
    with pytest.raises(ConfigError, match="hii_ew_min"):
        SimConfig(hii_ew_min=500.0, hii_ew_max=100.0)


def test_continuum_only_twin_is_the_same_galaxy_without_the_lines_under_its_own_ids():
    """id_tag lets a twin set (same seed, hii_lines_prob=0) be merged with its HII set: same z, galaxy and
    continuum S/N, no HII lines, distinct ids; a bad tag is a one-line ConfigError."""
    hii = SimConfig(n=400, seed=5, z_max=0.25, hii_lines_prob=1.0, **CLEAN)
    twin = SimConfig(n=400, seed=5, z_max=0.25, id_tag="c", **CLEAN)
    i = _find(twin, {"star-forming"}, (0.02, 0.25))
    a, b = simulate_one(hii, i), simulate_one(twin, i)
    assert a.meta["z"] == b.meta["z"] and a.meta["sim"]["snr"] == b.meta["sim"]["snr"]
    assert "hii" in a.meta["sim"] and "hii" not in b.meta["sim"]
    assert a.meta["id"] == f"sim-5-{i}" and b.meta["id"] == f"sim-5c-{i}"
    z = a.meta["z"]
    assert _line_flux(a, 5008.24, z) > 5 * abs(_line_flux(b, 5008.24, z))
    with pytest.raises(ConfigError, match="id_tag"):
        SimConfig(id_tag="c-1")


def test_sim_overrides_parse():
    from speclm.finetune.data_cli import parse_sim_overrides

    assert parse_sim_overrides(["snr_max=80", "telluric=false", "agn-lines-prob=0.3"]) == {
        "snr_max": 80.0, "telluric": False, "agn_lines_prob": 0.3}
    for bad, msg in ((["nope=1"], "unknown simulator field"), (["snr_max"], "FIELD=VALUE"),
                     (["snr_max=x"], "not a valid float"), (["noise=maybe"], "not a valid bool")):
        with pytest.raises(ConfigError, match=msg):
            parse_sim_overrides(bad)
