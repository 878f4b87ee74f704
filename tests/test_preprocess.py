"""Preprocessing: flux-conserving rebinning, masks, grids, config persistence."""
import numpy as np
import pytest

from speclm.finetune.preprocess import PreprocessConfig, preprocess, rebin
from speclm.tools.errors import ConfigError, TooFewPixelsError
from speclm.tools.synthetic import synthetic_spectrum


def _spec(flux=None, n=4000, bad=None):
    """A flat (or the given) spectrum from the one synthetic builder; ``bad`` pixels get ivar 0."""
    s = synthetic_spectrum(0.0, lines={}, continuum=(1.0, 0.0), noise=0.0, ivar=1.0,
                           loglam=np.linspace(np.log10(3700), np.log10(9300), n))
    if flux is not None:
        s.flux = np.asarray(flux, float)
    if bad is not None:
        s.ivar[bad] = 0
    return s


def test_rebin_conserves_flux_of_a_line():
    wave = np.linspace(4000, 5000, 1001)
    flux = np.zeros_like(wave)
    flux[500] = 10.0  # one pixel of width 1 Å: integral 10
    edges = np.linspace(4000.5, 4999.5, 21)
    out, cov = rebin(wave, flux, np.ones_like(wave), edges)
    assert np.sum(out * np.diff(edges)) == pytest.approx(10.0)
    assert np.allclose(cov, 1.0)


def test_bad_pixels_do_not_leak():
    flux = np.ones(4000)
    flux[1000:1100] = 1e6  # garbage flagged bad
    x = preprocess(_spec(flux, bad=slice(1000, 1100)), PreprocessConfig(normalize="none", scale=1.0))
    assert x.max() == pytest.approx(1.0, rel=1e-6)


def test_flat_spectrum_maps_to_scale():
    x = preprocess(_spec(), PreprocessConfig())
    assert x.shape == (64,) and x.dtype == np.float32
    assert np.allclose(x, 25.0)


def test_continuum_divide_removes_tilt():
    wave = np.logspace(np.log10(3700), np.log10(9300), 4000)
    tilted = _spec(flux=(wave / 6000.0) ** 1.5)
    x = preprocess(tilted, PreprocessConfig(continuum="divide", continuum_window=9, scale=50))
    assert np.allclose(x[5:-5], 50.0, rtol=0.02)


def test_log_grid_makes_redshift_a_shift():
    cfg = PreprocessConfig(normalize="none", scale=1.0, clip_max=1e9, n_bins=100)
    e = cfg.bin_edges()
    assert np.allclose(np.diff(np.log(e)), np.diff(np.log(e))[0])


def test_too_few_pixels():
    with pytest.raises(TooFewPixelsError):
        preprocess(_spec(bad=slice(0, 3900)), PreprocessConfig())


def test_config_round_trip_and_validation():
    cfg = PreprocessConfig(n_bins=128, grid="linear")
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.fingerprint() != PreprocessConfig().fingerprint()
    with pytest.raises(ConfigError):
        PreprocessConfig(grid="banana")
    with pytest.raises(ConfigError):
        PreprocessConfig.from_dict({"n_bins": 8, "colour": 1})
