"""The p(z) calibration pieces that need no model: per-spectrum temperatures, the S/N table, the
monotone fit, and the r-band S/N every entry point measures the same way."""
from __future__ import annotations

import numpy as np
import pytest

from speclm.evals.redshift import _non_increasing
from speclm.finetune.codec import CodecConfig
from speclm.finetune.predict import RedshiftPredictor, _check_snr_table
from speclm.tools.errors import ConfigError
from speclm.tools.spectrum import r_band_snr
from speclm.tools.synthetic import synthetic_spectrum


class _Pred(RedshiftPredictor):
    """The predictor's arithmetic without a model (summarise_raw and temperature_for only)."""

    def __init__(self, T=0.5, table=None):
        self.codec, self.temperature = CodecConfig(), T
        self.snr_temperature = _check_snr_table(table) if table else None


def _raw(B=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"d0": np.zeros(B, int), "l1": rng.normal(0, 3, (B, 10)), "l2": rng.normal(0, 3, (B, 10, 10)),
            "l3": rng.normal(0, 3, (B, 10)), "leaf": rng.integers(0, 100, B)}


def test_per_spectrum_temperatures_equal_one_at_a_time():
    p, raw = _Pred(), _raw()
    Ts = [0.3, 0.7, 1.0, 2.0]
    batch = p.summarise_raw(raw, Ts)
    for i, T in enumerate(Ts):
        one = p.summarise_raw({k: v[i : i + 1] for k, v in raw.items()}, T)[0]
        assert (batch[i].z_lo, batch[i].z, batch[i].z_hi) == (one.z_lo, one.z, one.z_hi)
    # a smaller T never widens the interval; the point estimate is the raw model's whatever T
    sharp, soft = p.summarise_raw(raw, 0.2), p.summarise_raw(raw, 3.0)
    assert all(a.z_hi - a.z_lo <= b.z_hi - b.z_lo + 1e-12 and a.z == b.z for a, b in zip(sharp, soft))
    assert any(a.z_hi - a.z_lo < b.z_hi - b.z_lo for a, b in zip(sharp, soft))


def test_temperature_follows_the_snr_table():
    p = _Pred(T=0.55, table={"snr": [5.0, 20.0, 40.0], "T": [0.8, 0.5, 0.3]})
    assert p.temperature_for(None) == 0.55 and p.temperature_for(float("nan")) == 0.55  # unknown S/N: global T
    assert p.temperature_for(2.0) == pytest.approx(0.8) and p.temperature_for(500.0) == pytest.approx(0.3)
    assert p.temperature_for(20.0) == pytest.approx(0.5)
    assert 0.5 < p.temperature_for(10.0) < 0.8  # interpolated in log S/N
    assert p.temperature_for(10.0) == pytest.approx(0.8 + (0.5 - 0.8) * np.log(2) / np.log(4))
    for bad in ({"snr": [5.0, 4.0], "T": [0.5, 0.4]}, {"snr": [5.0], "T": [0.5, 0.4]}, {"snr": [5.0], "T": [40.0]},
                {"T": [0.5]}):
        with pytest.raises(ConfigError, match="pz_temperature_snr"):
            _check_snr_table(bad)


def test_monotone_fit_pools_violators():
    assert _non_increasing([0.8, 0.6, 0.4], [1, 1, 1]) == [0.8, 0.6, 0.4]
    assert _non_increasing([0.5, 0.7, 0.3], [1, 1, 2]) == pytest.approx([0.6, 0.6, 0.3])
    assert _non_increasing([0.2, 0.4, 0.6], [1, 1, 1]) == pytest.approx([0.4, 0.4, 0.4])


def test_r_band_snr_measures_the_noise_level():
    lo = synthetic_spectrum(0.05, noise=1.0, seed=1)
    hi = synthetic_spectrum(0.05, noise=0.1, seed=1)
    s_lo, s_hi = r_band_snr(lo), r_band_snr(hi)
    assert 5 < s_lo < 12 and s_hi == pytest.approx(10 * s_lo, rel=0.1)
    hi.meta["ivar_assumed"] = True  # a file without errors has no S/N to speak of
    assert r_band_snr(hi) is None
    cut = synthetic_spectrum(0.05, seed=1)
    cut.ivar[(cut.wavelength > 5500) & (cut.wavelength < 7000)] = 0
    assert r_band_snr(cut) is None


def test_digit_mass_is_centred_on_the_digit_the_codec_rounds_to():
    """The codec writes f"{z:.3f}" (rounding), so an answer "0.021" stands for 0.0205 <= z < 0.0215:
    p(z) all on that answer gives median 0.021 and an interval centred on it, inside that bin (the
    old [0.021, 0.022) placement put every quantile 0.0005 high)."""
    p = _Pred(T=1.0)
    big = 40.0
    l1, l2, l3 = np.zeros((1, 10)), np.zeros((1, 10, 10)), np.zeros((1, 10))
    l1[0, 0], l2[0, 0, 2], l3[0, 1] = big, big, big
    r = p.summarise_raw({"d0": np.zeros(1, int), "l1": l1, "l2": l2, "l3": l3, "leaf": np.array([2])}, 1.0)[0]
    assert r.z == 0.021 and r.z_mode == 0.021
    assert 0.0205 <= r.z_lo < 0.021 < r.z_hi <= 0.0215
    assert abs((r.z_lo + r.z_hi) / 2 - 0.021) < 1e-4
    # and a p(z) split evenly between two neighbouring answers has its median between them
    l3[0, 1], l3[0, 2] = big, big
    r2 = p.summarise_raw({"d0": np.zeros(1, int), "l1": l1, "l2": l2, "l3": l3, "leaf": np.array([2])}, 1.0)[0]
    assert 0.0205 < r2.z_lo < 0.0215 < r2.z_hi < 0.0225


def test_a_p_z_split_over_two_leaves_keeps_its_third_digit_on_both():
    """z = 0.0298 vs 0.0302: the model splits its mass over the leaves 0.02x and 0.03x, each sure of
    its third digit (0.029 / 0.030). Both leaves are expanded, so the 68% interval stays ~0.002 wide
    around 0.0295-0.030; spreading the second leaf evenly over 0.030-0.039 (one expanded leaf, as
    before issue 10's fix) made it ~0.007 wide and its upper end ~0.036."""
    p = _Pred(T=1.0)
    big = 40.0
    l1, l2 = np.zeros((1, 10)), np.zeros((1, 10, 10))
    l1[0, 0] = big
    l2[0, 0, 2], l2[0, 0, 3] = big + 0.3, big  # leaf 0.02x a little more probable than 0.03x
    l3 = np.full((1, 3, 10), 0.0)
    l3[0, 0, 9], l3[0, 1, 0] = big, big  # 0.029 on leaf 2, 0.030 on leaf 3
    leaf = np.array([[2, 3, 4]])
    r = p.summarise_raw({"d0": np.zeros(1, int), "l1": l1, "l2": l2, "l3": l3, "leaf": leaf}, 1.0)[0]
    assert r.z_mode == 0.029 and r.z in (0.029, 0.030)
    assert 0.0285 <= r.z_lo < 0.0295 and 0.0295 < r.z_hi <= 0.0305
    # the same logits with only the first leaf expanded: the second leaf's mass smeared over 0.01
    one = p.summarise_raw({"d0": np.zeros(1, int), "l1": l1, "l2": l2, "l3": l3[:, 0], "leaf": leaf[:, 0]}, 1.0)[0]
    assert one.z_hi > 0.033 and (one.z_hi - one.z_lo) > 2 * (r.z_hi - r.z_lo)


def _peaked(z_peaks, sharp=30.0):
    """Digit logits of a p(z) with all its mass at one 0.001 answer per row (d0 = 0)."""
    B = len(z_peaks)
    l1, l2, l3 = np.zeros((B, 10)), np.zeros((B, 10, 10)), np.zeros((B, 1, 10))
    leaf = np.zeros((B, 1), int)
    for b, z in enumerate(z_peaks):
        k = int(round(z * 1000))
        l1[b, k // 100] = l2[b, :, (k // 10) % 10] = l3[b, 0, k % 10] = sharp
        leaf[b, 0] = k // 10
    return {"d0": np.zeros(B, int), "l1": l1, "l2": l2, "l3": l3, "leaf": leaf}


def test_outlier_weight_puts_mass_where_the_digits_put_none():
    p = _Pred(T=1.0)
    p.domain_z_max = 0.8
    raw = _peaked([0.4])
    narrow, = p.summarise_raw(raw, 1.0)
    wide, = p.summarise_raw(raw, 1.0, 0.5)
    assert narrow.z == wide.z == pytest.approx(0.4)  # the answer stays the model's
    assert narrow.z_hi99 - narrow.z_lo99 < 0.002  # a confident p(z): a catastrophe at 0.02 would be outside
    assert wide.z_lo99 < 0.02 and wide.z_hi99 > 0.75  # half its mass spread over 0-0.8
    assert wide.z_hi99 <= 0.8006  # never beyond the model's domain
    assert narrow.z_lo <= 0.4 <= narrow.z_hi and wide.z_lo < narrow.z_lo
    assert sum(wide.pz) == pytest.approx(1.0)


def test_outlier_table_and_its_validation():
    p = _Pred()
    p.outlier, p.snr_outlier = 0.01, _check_snr_table({"snr": [1.0, 10.0], "w": [0.3, 0.0]}, "w", (0.0, 0.99))
    assert p.outlier_for(None) == 0.01 and p.outlier_for(0.5) == pytest.approx(0.3) and p.outlier_for(50.0) == 0.0
    assert p.outlier_for(np.sqrt(10.0)) == pytest.approx(0.15)
    with pytest.raises(ConfigError, match="pz_outlier_snr"):
        _check_snr_table({"snr": [1.0], "w": [1.5]}, "w", (0.0, 0.99))


def test_fitted_outlier_weight_covers_catastrophes_and_is_zero_without_them():
    from speclm.evals.redshift import fit_outlier

    p = _Pred(T=1.0)
    p.domain_z_max = 0.8
    rng = np.random.default_rng(1)
    z = rng.uniform(0.05, 0.75, 200)
    right = fit_outlier(p, _peaked(z, sharp=30.0), z, t_grid=(0.5, 1.0, 2.0))  # the model's peaks are where the truths are
    assert right["w"] == 0.0 and right["coverage_99"] >= 0.99
    peaks = z.copy()
    peaks[:40] = rng.uniform(0.05, 0.75, 40)  # 20% catastrophes: confident answers far from the truth
    wrong = fit_outlier(p, _peaked(peaks, sharp=30.0), z, t_grid=(0.5, 1.0, 2.0))
    assert wrong["coverage_99_at_w0"] < 0.9 and wrong["coverage_99"] >= 0.99 and wrong["w"] >= 0.05


def test_conservative_tail_target_covers_the_rare_catastrophe_a_calibrated_one_leaves_out():
    """`--tail`: a 99% interval fitted to hold 99% of truths may leave a 1-in-200 catastrophe outside
    (confidently wrong); a higher tail target must put enough floor mass to hold it."""
    from speclm.evals.redshift import fit_outlier

    p = _Pred(T=1.0)
    p.domain_z_max = 0.8
    rng = np.random.default_rng(2)
    z = rng.uniform(0.05, 0.75, 200)
    peaks = z.copy()
    peaks[0] = 0.065 if z[0] > 0.3 else 0.7  # one confident catastrophe in 200 (0.5%)
    raw = _peaked(peaks, sharp=30.0)
    calibrated = fit_outlier(p, raw, z, t_grid=(0.5, 1.0, 2.0))
    assert calibrated["w"] == 0.0 and calibrated["coverage_99"] == pytest.approx(0.995)
    conservative = fit_outlier(p, raw, z, t_grid=(0.5, 1.0, 2.0), target99=0.999)
    assert conservative["w"] > 0 and conservative["coverage_99"] == 1.0
    res, = p.summarise_raw({k: v[:1] for k, v in raw.items()}, conservative["T"], conservative["w"])
    assert res.z_lo99 <= z[0] <= res.z_hi99 and res.z == pytest.approx(peaks[0])  # the answer itself unchanged


def test_local_floor_reaches_just_below_a_low_answer_where_a_uniform_one_cannot():
    """A near miss at low z (truth 0.026, answer 0.033): a uniform floor holds w * z / z_max below the truth, so the
    99% interval still starts above it; a floor half beside the answer (its p(z) broadened by sigma = 0.01) covers it."""
    from speclm.evals.redshift import fit_outlier

    p = _Pred(T=1.0)
    p.domain_z_max = 0.8
    raw = _peaked([0.033], sharp=30.0)
    uniform, = p.summarise_raw(raw, 1.0, 0.05)
    assert uniform.z_lo99 > 0.026 and uniform.z_hi99 > 0.5  # wide upward, not downward
    p.floor_local, p.floor_sigma = 0.5, 0.01
    local, = p.summarise_raw(raw, 1.0, 0.05)
    assert local.z_lo99 < 0.026 < 0.033 == pytest.approx(local.z) and local.z_hi99 > 0.1
    assert sum(local.pz) == pytest.approx(1.0)
    # the fit: near misses just below sharp low-z answers need a smaller weight with the local floor
    rng = np.random.default_rng(3)
    z = rng.uniform(0.02, 0.09, 300)
    peaks = z.copy()
    peaks[:6] = z[:6] + 0.008  # 2% near misses, 0.008 above the truth
    r = _peaked(peaks, sharp=30.0)
    p.floor_local = 0.0
    w_uniform = fit_outlier(p, r, z, t_grid=(0.5, 1.0, 2.0))
    p.floor_local = 0.5
    w_local = fit_outlier(p, r, z, t_grid=(0.5, 1.0, 2.0))
    assert w_local["coverage_99"] >= 0.99 and w_local["w"] < w_uniform["w"]
    with pytest.raises(ConfigError, match="floor"):
        RedshiftPredictor.__init__(_Pred(), None, None, CodecConfig(), floor_local=1.5)
