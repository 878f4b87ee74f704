"""Example spectra of the chat: cached simulated FITS and the real SDSS DR18 files from ppxf."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from speclm.tools.spectrum import read_spectrum, write_sdss_spec_fits
from speclm.ui.examples import REAL, SIMULATED, all_examples, sdss_examples, simulated_examples


def test_sdss_examples_are_the_ppxf_files(ppxf_spectra_dir):
    ex = sdss_examples()
    assert [e.kind for e in ex] == [REAL, REAL]
    assert all("real SDSS DR18" in e.label for e in ex)
    for e in ex:
        spec = read_spectrum(e.path)
        assert spec.meta["format"] == "sdss-spec" and e.z_catalog == pytest.approx(spec.z_catalog)
        assert str(ppxf_spectra_dir) in e.path  # read in place, never copied


def test_cached_simulated_examples_are_reused_without_simulating(tmp_path):
    # a cache as the first start leaves it: FITS files plus the index of true redshifts
    wave = np.geomspace(3800, 9200, 2000)
    for i, z in enumerate((0.1, 0.2)):
        write_sdss_spec_fits(tmp_path / f"sim-5-{i}.fits", np.log10(wave), np.ones(2000), np.ones(2000), z)
    (tmp_path / "sim-5.json").write_text(json.dumps({"0": {"z": 0.1, "sfh": "passive"},
                                                     "1": {"z": 0.2, "sfh": None}}))
    ex = simulated_examples(tmp_path, 2, seed=5, create=False)
    assert [e.kind for e in ex] == [SIMULATED, SIMULATED]
    assert ex[0].z_catalog == 0.1 and "passive" in ex[0].label and "simulated" in ex[0].label
    # asking for more than is cached without permission to simulate lists only what exists
    assert len(simulated_examples(tmp_path, 3, seed=5, create=False)) == 2
    assert simulated_examples(tmp_path, 2, seed=6, create=False) == []


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bagpipes") is None, reason="bagpipes not installed")
def test_simulated_examples_are_written_once(tmp_path):
    ex = all_examples(tmp_path, n_simulated=2)
    sims = [e for e in ex if e.kind == SIMULATED]
    assert len(sims) == 2
    for e in sims:
        spec = read_spectrum(e.path)
        assert spec.z_catalog == pytest.approx(e.z_catalog, abs=1e-6)
    mtimes = [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("*.fits"))]
    all_examples(tmp_path, n_simulated=2)
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("*.fits"))] == mtimes
