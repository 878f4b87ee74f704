"""benchmarks/desi_line_check.py: the line test of the DESI S/N 0.7 target's catalog redshift must reject an
[OIII] reading that lacks its 4959 line, and must *not* reject one that has it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from speclm.tools.synthetic import synthetic_spectrum

ROOT = Path(__file__).resolve().parents[1]


def _mod():
    spec = importlib.util.spec_from_file_location("desi_line_check", ROOT / "benchmarks" / "desi_line_check.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def _line_spectrum(names_amps, z=0.0073, seed=0):
    ll = np.arange(np.log10(3600.0), np.log10(9800.0), 2.5e-5)  # ~0.3 Å pixels near 5000 Å, like DESI's 0.8 Å grid
    return synthetic_spectrum(z, lines=names_amps, sigma_A=1.5, continuum=(0.07, 0.0), noise=0.1, seed=seed,
                              loglam=ll)


def test_oiii_reading_with_its_4959_line_passes_without_it_fails():
    m = _mod()
    real = _line_spectrum({"OIII5008": 1.5, "OIII4960": 1.5 / 2.98})
    t = m.fit_profiles(real.wavelength, real.flux, real.ivar)["[OIII]4959 test"]
    assert abs(t["fitted_amplitude"] - t["required_amplitude"]) < 0.1 and t["delta_chi2"] < 10, t
    lone = _line_spectrum({"OIII5008": 1.5})
    t = m.fit_profiles(lone.wavelength, lone.flux, lone.ivar)["[OIII]4959 test"]
    assert t["fitted_amplitude"] < 0.1 and t["delta_chi2"] > 50, t


def test_desi_target_catalog_z_fails_its_own_lines(desi_data_dir, tmp_path):
    """The real coadd: one line at ~5044 Å; [OIII] 4959 absent where z = 0.0073 needs it; the asymmetric
    (Lyα-like) profile fits better than the [OII] doublet or one Gaussian."""
    import json

    m = _mod()
    assert m.main(["--folder", str(desi_data_dir), "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "report.json").read_text())
    p = r["profiles"]
    assert abs(r["redrock"]["Z"] - 0.00727) < 1e-4 and abs(p["peak_A"] - 5044) < 3
    assert p["[OIII]4959 test"]["delta_chi2"] > 50
    assert p["skewed Gaussian (Lyα-like)"]["chi2"] + 20 < p["[OII] doublet"]["chi2"] < p["single Gaussian"]["chi2"]
    assert abs(p["z_if"]["Lyα"] - 3.149) < 0.005 and abs(p["z_if"]["[OII]3727"] - 0.353) < 0.002
    assert abs(r["expected_lines"]["catalog z (redrock)"]["lines"]["Hα"]["sigma"]) < 3
    assert (tmp_path / "desi_line_check.png").stat().st_size > 10_000
