"""The shift ensemble (finetune/shift_ensemble.py): readings at sub-bin phases map back to the spectrum's own z,
their CDFs average into one p(z), and one reading is exactly today's prediction."""
from __future__ import annotations

import math

import numpy as np
import pytest

from speclm.finetune.codec import CodecConfig
from speclm.finetune.predict import RedshiftPredictor
from speclm.finetune.preprocess import PreprocessConfig, preprocess
from speclm.finetune.shift_ensemble import EDGES, cdf_back, check_shifts, quantile, shift_offsets, shifted
from speclm.tools.errors import ConfigError
from speclm.tools.synthetic import synthetic_spectrum


def _peak(z, width=0.0):
    fine = np.zeros(1000)
    i = int(round(z * 1000))
    fine[i - int(width * 1000): i + int(width * 1000) + 1] = 1.0
    return fine


def test_offsets_span_one_bin_symmetrically():
    pre = PreprocessConfig()
    d = math.log(pre.wave_max / pre.wave_min) / pre.n_bins
    assert shift_offsets(1, pre).tolist() == [0.0]
    assert np.allclose(shift_offsets(4, pre) / d, [-0.375, -0.125, 0.125, 0.375])
    assert np.allclose(shift_offsets(5, pre, "forward") / d, [0.0, 0.2, 0.4, 0.6, 0.8])
    with pytest.raises(ConfigError, match="shift mode"):
        shift_offsets(4, pre, "backward")
    with pytest.raises(ConfigError, match="log-wavelength grid"):
        check_shifts(4, PreprocessConfig(grid="linear"))
    with pytest.raises(ConfigError, match="use 1"):
        check_shifts(0, pre)


def test_a_shifted_reading_maps_back_to_the_unshifted_redshift():
    """A reading of the spectrum shifted by s that says z' = 0.300 means z = 1.3 exp(-s) - 1 (sign errors fail)."""
    s = 0.01
    c = cdf_back(0, _peak(0.300), s)
    assert quantile(c, 0.5) == pytest.approx(1.300 * math.exp(-s) - 1.0, abs=6e-4)
    assert quantile(cdf_back(0, _peak(0.300), 0.0), 0.5) == pytest.approx(0.300, abs=6e-4)
    # the mean of two readings that disagree holds both: its quartiles sit on the two answers
    m = np.mean([cdf_back(0, _peak(0.100), 0.0), cdf_back(0, _peak(0.400), 0.0)], axis=0)
    assert quantile(m, 0.25) == pytest.approx(0.100, abs=1e-3) and quantile(m, 0.75) == pytest.approx(0.400, abs=1e-3)
    assert EDGES[0] < 0 < EDGES[-1]


def test_a_blueward_reading_cannot_reach_the_lowest_redshifts_a_forward_one_can():
    """Why forward shifts exist: the model answers z' >= 0, so a reading at s < 0 says at least exp(-s) - 1."""
    s = 0.005
    low = cdf_back(0, _peak(0.0), -s)  # the lowest answer a blueward reading can give
    assert quantile(low, 0.5) > 0.004
    fwd = cdf_back(0, _peak(round((1.002) * math.exp(s) - 1.0, 3)), s)  # a z = 0.002 galaxy read redward
    assert quantile(fwd, 0.5) == pytest.approx(0.002, abs=6e-4)


def test_shifting_the_pixels_is_a_redshift_on_the_model_grid():
    """The same pixels at wavelength * exp(s) preprocess like the galaxy at (1 + z) exp(s) - 1 (noise-free)."""
    pre = PreprocessConfig()
    ll = np.arange(np.log10(3500.0), np.log10(9600.0), 1e-4)
    s = float(shift_offsets(4, pre)[3])
    a = synthetic_spectrum(0.2, lines={"Halpha": 30.0, "OIII5008": 20.0}, noise=0.0, loglam=ll, continuum=(5.0, 0.0))
    b = synthetic_spectrum((1.2) * math.exp(s) - 1, lines={"Halpha": 30.0, "OIII5008": 20.0}, noise=0.0,
                           loglam=ll + s / math.log(10), continuum=(5.0, 0.0))
    # (the builder's line width is fixed in observed Å, a true shift stretches it by exp(s): not bit-equal)
    same = np.abs(preprocess(shifted(a, s), pre) - preprocess(b, pre)).max()
    unshifted = np.abs(preprocess(a, pre) - preprocess(b, pre)).max()
    assert unshifted > 1.0 and same < 0.05 * unshifted, (same, unshifted)


def test_one_reading_is_todays_prediction(tmp_path):
    from speclm.finetune.presets import get_preset
    from speclm.finetune.runtime import ModelRuntime
    from speclm.finetune.shift_ensemble import predict_shifted
    from speclm.finetune.train import train_arrays

    rng = np.random.default_rng(0)
    pre = get_preset("tiny").preprocess
    X, z = rng.uniform(0, 99, (24, pre.n_bins)).round(), rng.uniform(0, 0.5, 24)
    train_arrays(get_preset("tiny", train={"n_eval": 0}), tmp_path / "a", X[:16], z[:16], X[16:], z[16:],
                 train_ids=[f"t{i}" for i in range(16)], val_ids=[f"v{i}" for i in range(8)], progress=False)
    rt = ModelRuntime.load("tiny", str(tmp_path / "a"), dtype="float32")
    p = RedshiftPredictor(rt, pre, CodecConfig(), temperature=0.7, outlier=0.05)
    specs = [synthetic_spectrum(z, seed=i) for i, z in enumerate((0.05, 0.21, 0.37))]
    one = p.predict_spectra(specs)
    ens = predict_shifted(p, specs, 1)
    for a, b in zip(one, ens):
        assert a.z == b.z and a.z_lo == pytest.approx(b.z_lo, abs=2e-4) and a.z_hi == pytest.approx(b.z_hi, abs=2e-4)
        assert a.z_lo99 == pytest.approx(b.z_lo99, abs=2e-4) and a.z_hi99 == pytest.approx(b.z_hi99, abs=2e-4)
    four = predict_shifted(p, specs, 4, batch_size=8)
    assert len(four) == 3 and all(r.z_lo <= r.z <= r.z_hi for r in four)


def test_a_card_with_decoding_shifts_is_honoured_everywhere(tmp_path, capsys):
    """The card's ``decoding`` turns every spectrum entry point into the ensemble; vector inputs are refused."""
    import json

    from speclm.cli import main
    from speclm.finetune.presets import get_preset
    from speclm.finetune.runtime import ModelRuntime
    from speclm.finetune.shift_ensemble import predict_shifted
    from speclm.finetune.train import train_arrays
    from speclm.tools.synthetic import write_synthetic_fits

    rng = np.random.default_rng(1)
    pre = get_preset("tiny").preprocess
    X, z = rng.uniform(0, 99, (24, pre.n_bins)).round(), rng.uniform(0, 0.5, 24)
    ad = tmp_path / "a"
    train_arrays(get_preset("tiny", train={"n_eval": 0}), ad, X[:16], z[:16], X[16:], z[16:],
                 train_ids=[f"t{i}" for i in range(16)], val_ids=[f"v{i}" for i in range(8)], progress=False)
    card = json.loads((ad / "training_card.json").read_text())
    card["decoding"] = {"shifts": 3, "intervals": "nearest"}
    (ad / "training_card.json").write_text(json.dumps(card))
    p = RedshiftPredictor.from_runtime(ModelRuntime.load("tiny", str(ad), dtype="float32"))
    assert p.shifts == 3 and p.shift_intervals == "nearest"
    specs = [synthetic_spectrum(v, seed=i) for i, v in enumerate((0.08, 0.3))]
    a = p.predict_spectra(specs)
    b = predict_shifted(p, specs, 3, intervals="nearest")
    assert [(r.z, r.z_lo, r.z_hi) for r in a] == [(r.z, r.z_lo, r.z_hi) for r in b]
    with pytest.raises(ConfigError, match="sub-bin shifts"):
        p.predict_values(X[:2])
    # the command line reads the files and gives the ensemble's answers
    d = tmp_path / "fits"
    d.mkdir()
    for i, v in enumerate((0.08, 0.3)):
        write_synthetic_fits(d / f"spec-0266-51630-{i + 1:04d}.fits", v, seed=i)
    assert main(["predict", str(d), "--adapter", str(ad), "--base", "tiny", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    from speclm.tools.spectrum import read_spectrum

    want = predict_shifted(p, [read_spectrum(f) for f in sorted(d.iterdir())], 3, intervals="nearest")
    for r, w in zip(rows, want):  # (float32 FITS round trip: the intervals' fourth decimal may move)
        assert r["z"] == pytest.approx(w.z, abs=1e-3) and r["z_lo"] == pytest.approx(w.z_lo, abs=5e-4)
        assert r["z_hi"] == pytest.approx(w.z_hi, abs=5e-4)
    # its calibration is fitted on the ensemble's chosen readings, never on single readings by mistake
    from speclm.evals.redshift import calibrate_temperature

    with pytest.raises(ConfigError, match="reads each spectrum 3 times"):
        calibrate_temperature(str(ad), str(tmp_path / "no-such-dataset"), write=True)
    bad = dict(card, decoding={"shifts": 3, "intervals": "vote"})
    (ad / "training_card.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="decoding.intervals"):
        RedshiftPredictor.from_runtime(ModelRuntime.load("tiny", str(ad), dtype="float32"))
