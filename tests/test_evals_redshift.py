"""Redshift evaluation: hand-computed metrics, the kNN baseline, the overlap refusals, and a full
`speclm eval redshift` run with the tiny random model on a 24-spectrum synthetic dataset."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from speclm.evals.baseline import KNNConfig, KNNRedshift
from speclm.evals.metrics import metrics_table, redshift_metrics, sigma_nmad

# ------------------------------------------------------------------------------------- metrics


def test_metrics_hand_computed():
    zt = [0.0, 0.1, 0.2, 0.4]
    zp = [0.1, 0.1, 0.5, 0.3]
    # dz = [0.1, 0, 0.3, -0.1]; dz/(1+z) = [0.1, 0, 0.25, -0.0714286]
    m = redshift_metrics(zt, zp, z_lo=[0.0, 0.05, 0.3, 0.35], z_hi=[0.2, 0.15, 0.6, 0.45], train_median=0.2)
    assert m["n"] == 4 and m["n_parse_fail"] == 0 and m["parse_fail_frac"] == 0
    assert m["mae"] == pytest.approx(0.125)
    assert m["median_abs_dz"] == pytest.approx(0.1)
    assert m["rmse"] == pytest.approx(math.sqrt((0.01 + 0 + 0.09 + 0.01) / 4))
    x = np.array([0.1, 0.0, 0.25, -0.1 / 1.4])
    med = np.median(x)  # (0 + 0.1)/2 = 0.05
    assert med == pytest.approx(0.05)
    # |x - 0.05| = [0.05, 0.05, 0.2, 0.1214]; median = (0.05+0.1214)/2
    assert m["sigma_nmad"] == pytest.approx(1.4826 * (0.05 + (0.05 + 0.1 / 1.4)) / 2)
    assert m["bias_mean"] == pytest.approx(x.mean())
    assert m["bias_median"] == pytest.approx(0.05)
    assert m["outlier_frac_0.15"] == pytest.approx(0.25)  # only 0.25
    assert m["outlier_frac_0.05"] == pytest.approx(0.75)  # 0.1, 0.25, 0.0714
    # coverage: 0.0 in [0,0.2] yes; 0.1 in [.05,.15] yes; 0.2 in [.3,.6] no; 0.4 in [.35,.45] yes
    assert m["coverage_68"] == pytest.approx(0.75)
    # always answering 0.2: |0.2-0|, |0.2-0.1|, 0, |0.2-0.4| -> mean 0.125
    assert m["mae_constant"] == pytest.approx(0.125)


def test_metrics_parse_failures_and_empty():
    m = redshift_metrics([0.1, 0.2, 0.3], [0.1, None, float("nan")], n_parse_fail=1)
    assert m["n"] == 1 and m["n_parse_fail"] == 3
    assert m["parse_fail_frac"] == pytest.approx(0.75)
    assert m["mae"] == 0.0
    assert m["coverage_68"] is None and m["mae_constant"] is None
    empty = redshift_metrics([0.1], [None])
    assert empty["n"] == 0 and empty["mae"] is None and empty["parse_fail_frac"] == 1.0
    with pytest.raises(ValueError):
        redshift_metrics([0.1, 0.2], [0.1])
    assert sigma_nmad([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(1.4826 * 1.0)
    table = metrics_table({"model": m, "other": empty})
    assert "MAE" in table and "parse failures" in table and "75.0%" in table


# ------------------------------------------------------------------------------------- kNN


def _shifted_patterns(n, rng, nbins=32, noise=0.05):
    """A Gaussian bump whose position encodes z: what kNN on binned spectra should learn."""
    z = rng.uniform(0, 0.5, n)
    X = np.exp(-((np.arange(nbins)[None] - (2 + 50 * z[:, None])) ** 2) / 4.0)
    return X + rng.normal(0, noise, X.shape), z


def test_knn_learns_shift_and_cv_chooses():
    rng = np.random.default_rng(1)
    X, z = _shifted_patterns(900, rng)
    knn = KNNRedshift().fit(X[:600], z[:600])
    zp, lo, hi = knn.predict(X[600:])
    mae = np.mean(np.abs(zp - z[600:]))
    const = np.mean(np.abs(np.median(z[:600]) - z[600:]))
    assert mae < 0.02 < const / 5
    assert knn.k in KNNConfig().k_grid and knn.metric in ("standardize", "l2")
    assert len(knn.cv) == len(KNNConfig().k_grid) * 2
    assert np.all(lo <= zp) and np.all(zp <= hi)
    cover = np.mean((lo <= z[600:]) & (z[600:] <= hi))
    assert 0.55 < cover < 0.8  # calibrated on out-of-fold CV errors
    assert knn.halfwidth68 == pytest.approx(hi[5] - zp[5])
    assert knn.describe()["n_train"] == 600


def test_knn_fixed_k_nan_rows_and_errors():
    rng = np.random.default_rng(2)
    X, z = _shifted_patterns(50, rng)
    X[3] = np.nan  # a training row the preprocessing refused: dropped
    knn = KNNRedshift(KNNConfig(k_grid=(1,), metrics=("l2",))).fit(X, z)
    assert knn.k == 1 and knn.cv == [] and knn.n_train == 49
    q = X[[0, 3, 5]]
    zp, lo, hi = knn.predict(q)
    assert zp[0] == pytest.approx(z[0]) and zp[2] == pytest.approx(z[5])  # k=1: itself
    assert math.isnan(zp[1]) and lo[0] == hi[0] == zp[0]
    from speclm.tools.errors import ConfigError

    with pytest.raises(ConfigError):
        KNNRedshift().predict(q)
    with pytest.raises(ConfigError):
        KNNConfig(k_grid=(0,))
    with pytest.raises(ConfigError):
        KNNRedshift().fit(X[:1], z[:1])


# ------------------------------------------------------------------------------------- full run

LINES = {"OII": 3.0, "Hbeta": 1.5, "OIII5008": 2.5, "Halpha": 4.0, "NII6585": 1.0, "CaK": -0.4, "CaH": -0.3}


def synth_spectrum(z, i, rng):
    """An emission-line galaxy-ish spectrum at redshift z (the one synthetic builder), 4000 Å break."""
    from speclm.tools.synthetic import synthetic_spectrum

    return synthetic_spectrum(z, lines=LINES, sigma_A=4.0, continuum=(1.0, 0.0), break_4000=0.3, noise=0.05,
                              ivar=400.0, seed=int(rng.integers(1 << 30)), loglam=np.arange(3.5794, 3.9645, 0.0004),
                              meta={"id": f"syn-{i:03d}", "source": "simulated"})


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A 24-spectrum dataset (16 train / 8 val) and a tiny adapter trained 2 steps on its train split."""
    from speclm.finetune.datasets import open_dataset, write_dataset, zbin_split
    from speclm.finetune.presets import get_preset
    from speclm.finetune.train import train_arrays

    root = tmp_path_factory.mktemp("evalrs")
    rng = np.random.default_rng(0)
    zs = np.linspace(0.02, 0.48, 24)
    spectra = [synth_spectrum(z, i, rng) for i, z in enumerate(zs)]
    split = ["val" if i % 3 == 1 else "train" for i in range(24)]
    ds_path = write_dataset(root / "ds", spectra, split_of=split, meta={"source": "test", "simulated": True})
    ds = open_dataset(ds_path)
    # as `speclm train` does: a z-uniform subset of n_train=12 of the 16 training spectra
    preset = get_preset("tiny", train={"n_eval": 0, "save_every": 100, "n_train": 12})
    sel, _ = zbin_split(ds.z("train"), 12, 0, seed=preset.train.seed)
    Xtr, ztr = ds.features("train", preset.preprocess)[sel], ds.z("train")[sel]
    Xva, zva = ds.features("val", preset.preprocess), ds.z("val")
    adapter = root / "adapter"
    train_arrays(preset, adapter, Xtr, ztr, Xva, zva, train_ids=[ds.ids("train")[i] for i in sel], val_ids=ds.ids("val"),
                 dataset_info={"path": str(ds_path), "fingerprint": ds.fingerprint()}, max_steps=2,
                 device="cpu", progress=False)
    return {"root": root, "ds": ds_path, "adapter": adapter, "spectra": spectra, "split": split, "z_train": ztr}


def test_eval_redshift_cli_end_to_end(tiny_setup, capsys):
    from speclm.cli import main

    out = tiny_setup["root"] / "eval"
    rc = main(["eval", "redshift", "--adapter", str(tiny_setup["adapter"]), "--dataset", str(tiny_setup["ds"]),
               "--split", "val", "--out", str(out), "--unconstrained", "--device", "cpu", "--no-progress",
               "--batch-size", "4"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "MAE" in printed and "kNN" in printed and "spectra/s" in printed
    rep = json.loads((out / "report.json").read_text())
    assert (out / "pred_vs_true.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rep["eval_set"]["n"] == 8 and rep["eval_set"]["split"] == "val"
    assert rep["config"]["base_resolved"] == "tiny"  # from the card
    assert rep["train_set"]["n"] == 12 and rep["train_set"]["match"].startswith("exact: z-uniform")
    m = rep["metrics"]
    assert set(m) >= {"model", "model_greedy", "model_unconstrained", "knn", "constant"}
    bz = rep["breakdown"]["z"]
    assert sum(r["n"] for r in bz) == 8 and all({"model", "knn"} <= set(r) for r in bz)
    for row in rep["predictions"]:
        assert row["z_lo"] <= row["z"] <= row["z_hi"]
        assert {"id", "z_true", "knn_z", "z_unconstrained"} <= set(row)
    # recompute the model MAE from the per-object predictions: the report is self-consistent
    zt = np.array([r["z_true"] for r in rep["predictions"]])
    zp = np.array([r["z"] for r in rep["predictions"]])
    assert m["model"]["mae"] == pytest.approx(np.mean(np.abs(zp - zt)))
    assert m["constant"]["value"] == pytest.approx(np.median(tiny_setup["z_train"]))
    # an untrained random model: parse failures of free generation are counted, not crashed on
    unc = m["model_unconstrained"]
    assert unc["n"] + unc["n_parse_fail"] == 8
    assert rep["timing"]["spectra_per_s"] > 0
    assert any("held-out split" in c for c in rep["overlap_checks"])
    assert rep["eval_set"]["fingerprint"] == rep["adapter"]["dataset"]["fingerprint"]


def test_eval_refuses_training_split_and_copied_spectra(tiny_setup, tmp_path):
    from speclm.evals.redshift import EvalOverlapError, RedshiftEvalConfig, run_redshift_eval
    from speclm.finetune.datasets import write_dataset

    cfg = dict(adapter=str(tiny_setup["adapter"]), out=str(tmp_path / "o"), device="cpu", progress=False)
    with pytest.raises(EvalOverlapError, match="train"):
        run_redshift_eval(RedshiftEvalConfig(dataset=str(tiny_setup["ds"]), split="train", **cfg))
    # the same training spectra under new ids in another dataset: caught by content
    spectra = [s for s, sp in zip(tiny_setup["spectra"], tiny_setup["split"]) if sp == "train"]
    spectra = [spectra[i] for i in np.flatnonzero(np.isin(np.array([sp.meta["z"] for sp in spectra]), tiny_setup["z_train"]))][:3]
    spectra = [dataclasses.replace(s, meta=dict(s.meta, id=f"renamed-{k}")) for k, s in enumerate(spectra)]
    copy = write_dataset(tmp_path / "copy", spectra, split_of=["val"] * 3)
    with pytest.raises(EvalOverlapError, match="identical"):
        run_redshift_eval(RedshiftEvalConfig(dataset=str(copy), split="val", **cfg))
    assert not (tmp_path / "o" / "report.json").exists()


def test_eval_folder_of_fits_skips_files_without_z(tiny_setup, tmp_path, write_sdss_spec_fits, capsys):
    from speclm.cli import main

    folder = tmp_path / "fits"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i, z in enumerate((0.05, 0.15, 0.33)):
        s = synth_spectrum(z, 100 + i, rng)
        write_sdss_spec_fits(folder / f"spec-{i}.fits", np.log10(s.wavelength), s.flux, s.ivar, z,
                             plate=300 + i, fiberid=i + 1)
    s = synth_spectrum(0.2, 200, rng)  # a readable CSV without any catalog redshift
    np.savetxt(folder / "noz.csv", np.column_stack([s.wavelength, s.flux, s.ivar]), delimiter=",",
               header="wavelength,flux,ivar", comments="")
    (folder / "broken.fits").write_bytes(b"not a fits file at all" * 10)
    (folder / "notes.md").write_text("ignored: not a spectrum extension")
    out = tmp_path / "evf"
    rc = main(["eval", "redshift", "--adapter", str(tiny_setup["adapter"]), "--folder", str(folder),
               "--out", str(out), "--device", "cpu", "--no-progress", "--limit", "2"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["eval_set"]["source"] == "folder" and rep["eval_set"]["n_usable"] == 3
    assert rep["eval_set"]["n"] == 2  # --limit
    skipped = {s["id"]: s["reason"] for s in rep["eval_set"]["skipped"]}
    assert set(skipped) == {"broken.fits", "noz.csv"} and "no catalog z" in skipped["noz.csv"]
    assert rep["train_set"]["n"] == 12  # baselines from the card's dataset, the adapter's own subset
    assert {r["id"] for r in rep["predictions"]} <= {"spec-0.fits", "spec-1.fits", "spec-2.fits"}
    assert "kNN" in capsys.readouterr().out


def test_eval_cli_user_errors_are_one_line(tiny_setup, tmp_path, capsys):
    from speclm.cli import main

    rc = main(["eval", "redshift", "--adapter", str(tmp_path / "nope"), "--dataset", str(tiny_setup["ds"]),
               "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error" in err and len(err.strip().splitlines()) == 1
    rc = main(["eval", "redshift", "--adapter", str(tiny_setup["adapter"]), "--dataset", str(tiny_setup["ds"]),
               "--split", "test", "--out", str(tmp_path / "o")])
    assert rc == 2 and "no 'test' split" in capsys.readouterr().err


def test_confidently_wrong_counts_truths_outside_the_99_interval():
    from speclm.evals.metrics import redshift_metrics

    zt = [0.10, 0.20, 0.30, 0.40]
    zp = [0.10, 0.20, 0.30, 0.10]
    lo99, hi99 = [0.09, 0.19, 0.29, 0.09], [0.11, 0.21, 0.31, 0.11]  # the last: narrow and wrong
    lo95, hi95 = [0.095, 0.15, 0.29, 0.0], [0.105, 0.25, 0.31, 0.5]
    m = redshift_metrics(zt, zp, z95=(lo95, hi95), z99=(lo99, hi99))
    assert m["confidently_wrong"] == 0.25 and m["coverage_95"] == 1.0
    wide = redshift_metrics(zt, zp, z99=([0.0] * 4, [0.5] * 4))
    assert wide["confidently_wrong"] == 0.0


def test_breakdown_puts_each_failure_in_its_own_s_n_range_beside_the_knn():
    """A model that fails only below S/N 2 (and a kNN that fails only above S/N 5) shows it in those rows
    and no other; the CLI prints the table."""
    from speclm.evals.redshift import SNR_EDGES, breakdown, breakdown_table

    rng = np.random.default_rng(0)
    n = 400
    zt = rng.uniform(0.0, 0.5, n)
    snr = rng.choice([0.7, 1.5, 3.0, 7.0, 20.0], n)
    zm = np.where(snr < 2, zt + 0.3, zt + 0.001)
    zk = np.where(snr > 5, zt + 0.2, zt - 0.002)
    narrow = lambda z: (z - 0.005, z + 0.005)  # noqa: E731
    model = {"z": zm, "lo": zm - 0.003, "hi": zm + 0.003, "iv95": narrow(zm), "iv99": narrow(zm)}
    knn = {"z": zk, "lo": zk - 0.003, "hi": zk + 0.003, "iv95": narrow(zk), "iv99": narrow(zk)}
    rows = breakdown(snr, zt, SNR_EDGES, model, knn)
    assert [(r["lo"], r["hi"]) for r in rows] == [(0, 1), (1, 2), (2, 5), (5, 10), (10, float("inf"))]
    assert sum(r["n"] for r in rows) == n
    for r in rows:
        low, high = r["hi"] <= 2, r["lo"] >= 5
        assert r["model"]["outlier_frac_0.05"] == (1.0 if low else 0.0)
        assert r["model"]["confidently_wrong"] == (1.0 if low else 0.0)
        assert r["knn"]["outlier_frac_0.05"] == (1.0 if high else 0.0)
    text = breakdown_table(rows, "S/N (r)")
    assert text.splitlines()[1].startswith("0-1") and "100.0%" in text.splitlines()[1]
    assert len(text.splitlines()) == 6


def test_model_p_z_intervals_nest():
    """The 68% interval lies inside the 95%, which lies inside the 99%, on a real p(z)."""
    import numpy as np

    from speclm.finetune.predict import RedshiftPredictor

    pred = RedshiftPredictor.__new__(RedshiftPredictor)
    from speclm.finetune.presets import get_preset

    pred.codec = get_preset("smollm2").codec
    joint = np.zeros(100)
    joint[[20, 21, 35]] = [0.6, 0.3, 0.1]
    p3 = np.full((3, 10), 0.1)
    r = pred._summarise(0, joint, [20, 21, 35], p3, 2, 0)
    assert r.z_lo99 <= r.z_lo95 <= r.z_lo <= r.z <= r.z_hi <= r.z_hi95 <= r.z_hi99
    assert r.z_hi99 >= 0.35  # the third peak's mass is inside the 99% interval


def test_calibration_from_stored_logits_equals_the_one_that_runs_the_model(tiny_setup, tmp_path):
    """benchmarks/pz_logits.py stores an adapter's digit logits on a split once; `eval calibrate --logits`
    must fit exactly what running the model gives, and refuse logits of another split or other weights."""
    from speclm.cli import main
    from speclm.evals.redshift import calibrate_temperature, compute_split_logits, load_split_logits

    ad, ds = str(tiny_setup["adapter"]), str(tiny_setup["ds"])
    f = tmp_path / "logits.npz"
    d = compute_split_logits(ad, ds, "val", out=f, device="cpu", progress=False)
    back = load_split_logits(f, adapter=ad, dataset=ds, split="val")
    assert len(back["z"]) == 8 and np.array_equal(back["z"], d["z"]) and np.isfinite(back["snr"]).all()
    assert all(np.array_equal(back["raw"][k], d["raw"][k]) for k in d["raw"])
    kw = dict(split="val", limit=None, outlier=True, device="cpu", progress=False)
    direct = calibrate_temperature(ad, ds, **kw)
    stored = calibrate_temperature(ad, ds, logits=str(f), **kw)
    for k in ("pz_temperature", "pz_outlier", "coverage_at_T", "coverage_99", "n"):
        assert stored[k] == direct[k]
    with pytest.raises(ValueError, match="another split"):
        load_split_logits(f, split="test")
    with pytest.raises(ValueError, match="another limit"):
        load_split_logits(f, limit=4, seed=0)
    # the CLI: a mismatched file is a one-line error, not a silent fit on the wrong logits
    assert main(["eval", "calibrate", "--adapter", ad, "--dataset", ds, "--limit", "4", "--outlier",
                 "--logits", str(f), "--no-progress"]) == 2
