"""The decision rules that choose what ships (benchmarks/adapter_rule.py, benchmarks/calibration_rule.py):
each clause must turn a verdict when its condition breaks."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _m(mae, out05, nmad=0.003, n=540, wrong=2):
    return {"mae": mae, "outlier_frac_0.05": out05, "sigma_nmad": nmad, "n": n, "confidently_wrong": wrong / n,
            "n_wrong": wrong}


def _sets(**over):
    base = {s: _m(0.006, 0.02) for s in ("lowz", "boss", "bgs", "uni")}
    base["lrg"], base["hii"] = _m(0.011, 0.02, n=270), _m(0.09, 0.32, n=270, wrong=3)
    base.update(over)
    return base


def test_adapter_rule_clauses():
    rule = _load("adapter_rule")
    ref = _sets()
    better = _sets(**{s: _m(0.005, 0.02) for s in ("lowz", "boss", "bgs", "uni")}, hii=_m(0.03, 0.1, n=270, wrong=1))
    assert all(ok for ok, _ in rule.judge(better, ref).values())
    # one more catastrophe share than a point on one set: (a) fails there only
    v = rule.judge({**better, "lowz": _m(0.005, 0.035)}, ref)
    assert not v["a_lowz"][0] and v["a_boss"][0]
    # one catastrophe's MAE allowance (0.3/n) holds, two do not
    assert rule.judge({**better, "uni": _m(1.10 * 0.006 + 0.3 / 540, 0.02)}, ref)["a_uni"][0]
    assert not rule.judge({**better, "uni": _m(1.10 * 0.006 + 0.6 / 540, 0.02)}, ref)["a_uni"][0]
    # more confidently wrong answers in sum: (c) fails although every MAE is lower
    v = rule.judge({**better, "bgs": _m(0.005, 0.02, wrong=5)}, ref)
    assert not v["c_sum"][0] and v["a_bgs"][0]
    assert not rule.judge({**better, "lrg": _m(0.02, 0.11, n=270)}, ref)["b_lrg"][0]
    assert not rule.judge({**better, "hii": _m(0.03, 0.1, n=270, wrong=9)}, ref)["hii"][0]  # 3.3% > 3%


def _score(n, cov68, wrong, width, rng):
    in68 = np.zeros(n, bool)
    in68[: round(cov68 * n)] = True
    w = np.zeros(n, bool)
    w[:wrong] = True
    return {"n": n, "in68": rng.permutation(in68), "in95": np.ones(n, bool), "wrong": w, "w68": np.full(n, width),
            "w99": np.full(n, 3 * width), "snr": np.full(n, 6.0)}


def test_calibration_rule_clauses():
    rule = _load("calibration_rule")
    rng = np.random.default_rng(0)
    ref = {s: _score(500, 0.68, 3, 0.005, rng) for s in "abc"}
    good = {s: _score(500, 0.68, 1, 0.0055, rng) for s in "abc"}
    assert rule.judge(ref, good)["passes"]
    assert not rule.judge(ref, {**good, "a": _score(500, 0.68, 8, 0.0055, rng)})["clauses"]["1_fewer_confidently_wrong"]
    v = rule.judge(ref, {**good, "b": _score(500, 0.52, 1, 0.0055, rng)})
    assert not v["clauses"]["2_each_set_68_in_55_80"]
    v = rule.judge(ref, {s: _score(500, 0.75, 1, 0.0055, rng) for s in "abc"})
    assert v["clauses"]["2_each_set_68_in_55_80"] and not v["clauses"]["3_pooled_68_in_64_72"]
    assert not rule.judge(ref, {s: _score(500, 0.68, 1, 0.0065, rng) for s in "abc"})["clauses"]["4_width_snr5_le_1.25x"]
