"""The one dataset format: round trip, atomic writes, bad dirs, z-uniform splits, folder source, CLI."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speclm.finetune.datasets import (
    assign_splits,
    dataset_from_folder,
    open_dataset,
    write_dataset,
    zbin_split,
)
from speclm.tools.errors import DatasetError
from speclm.tools.spectrum import Spectrum
from speclm.tools.synthetic import synthetic_spectrum


def _fake(n: int, seed: int = 0, npix: int = 400) -> list[Spectrum]:
    """Small spectra from the one synthetic builder (no bagpipes): a continuum, Hα, noise, a few
    masked pixels, varying lengths, and a numpy scalar in the metadata."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = npix + (i % 3)
        s = synthetic_spectrum(float(rng.uniform(0, 0.5)), lines={"Halpha": 20.0}, continuum=(5.0, 0.0), noise=0.3,
                               seed=seed * 1000 + i, loglam=np.linspace(np.log10(3800), np.log10(9200), m), ivar=11.0,
                               meta={"id": f"s{i}", "source": "test", "extra": {"a": np.float32(1.5)}})
        s.mask[5:8] = 4
        out.append(s)
    return out


def test_round_trip(tmp_path):
    specs = _fake(7)
    split = ["train", "train", "val", "test", "", "train", "val"]
    p = write_dataset(tmp_path / "ds", specs, split_of=split, meta={"source": "test", "seed": 3})
    ds = open_dataset(p)
    assert len(ds) == 7 and ds.splits == ["train", "val", "test", ""]
    assert ds.counts() == {"train": 3, "val": 2, "test": 1, "": 1}
    assert ds.meta["counts"]["train"] == 3 and ds.meta["seed"] == 3 and ds.meta["source"] == "test"
    assert "created" in ds.meta and "speclm_version" in ds.meta
    assert ds.ids("val") == ["s2", "s6"]
    assert np.allclose(ds.z("val"), [specs[2].meta["z"], specs[6].meta["z"]])
    back = ds.spectra()
    for a, b in zip(specs, back):
        assert b.wavelength.size == a.wavelength.size
        assert np.allclose(a.flux, b.flux, rtol=1e-6) and np.array_equal(a.mask, b.mask)
        assert b.meta["z"] == pytest.approx(a.meta["z"]) and b.meta["extra"] == {"a": 1.5}
    assert [s.meta["id"] for s in ds.spectra("train")] == ["s0", "s1", "s5"]


def test_fingerprint_tracks_content(tmp_path):
    specs = _fake(4)
    a = open_dataset(write_dataset(tmp_path / "a", specs, split_of=None, meta={}))
    b = open_dataset(write_dataset(tmp_path / "b", specs, split_of=None, meta={}))
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 16
    specs[2].flux[10] += 1.0
    c = open_dataset(write_dataset(tmp_path / "c", specs, split_of=None, meta={}))
    assert c.fingerprint() != a.fingerprint()


def test_no_clobber_and_overwrite(tmp_path):
    p = write_dataset(tmp_path / "ds", _fake(2), split_of=None, meta={})
    with pytest.raises(DatasetError):
        write_dataset(p, _fake(3), split_of=None, meta={})
    assert len(open_dataset(p)) == 2
    write_dataset(p, _fake(3), split_of=None, meta={}, overwrite=True)
    assert len(open_dataset(p)) == 3
    assert [x.name for x in tmp_path.iterdir()] == ["ds"]  # no temp dirs left behind


def test_failed_write_leaves_nothing(tmp_path):
    def boom():
        yield from _fake(2)
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "ds", boom(), split_of=None, meta={})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError):
        write_dataset(tmp_path / "ds2", _fake(3), split_of=["train", "bogus", "val"], meta={})


def test_bad_dataset_dirs(tmp_path):
    with pytest.raises(DatasetError, match="no such"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="missing"):
        open_dataset(tmp_path / "empty")
    p = write_dataset(tmp_path / "ds", _fake(2), split_of=None, meta={})
    (p / "spectra.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(DatasetError, match="corrupt"):
        open_dataset(p)
    p2 = write_dataset(tmp_path / "ds2", _fake(2), split_of=None, meta={})
    (p2 / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="corrupt"):
        open_dataset(p2)


def test_features_cached(tmp_path):
    from speclm.finetune.preprocess import PreprocessConfig, preprocess

    specs = _fake(6)
    ds = open_dataset(write_dataset(tmp_path / "ds", specs, split_of=["train"] * 4 + ["val"] * 2, meta={}))
    cfg = PreprocessConfig(n_bins=32)
    X = ds.features("train", cfg)
    assert X.shape == (4, 32) and X.dtype == np.float32
    assert np.allclose(X[1], preprocess(specs[1], cfg))
    cached = list((tmp_path / "ds" / "features").glob("*.npy"))
    assert len(cached) == 1
    np.save(cached[0], np.zeros((6, 32), np.float32))  # the cache is what is read back
    assert np.all(ds.features("val", cfg) == 0)
    assert ds.features("val", cfg, cache=False).any()
    X2 = ds.features(None, PreprocessConfig(n_bins=16), workers=2)
    assert X2.shape == (6, 16)


def test_zbin_split_disjoint_and_uniform():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.gamma(3, 0.04, 3000), rng.normal(0.35, 0.05, 500)])  # skewed n(z)
    z[::97] = np.nan
    tr, va = zbin_split(z, 1000, 400, n_bins=20, seed=1)
    assert tr.size == 1000 and va.size == 400
    assert np.intersect1d(tr, va).size == 0
    assert np.isfinite(z[tr]).all() and np.isfinite(z[va]).all()
    edges = np.nanquantile(z, np.linspace(0, 1, 21))
    counts = np.histogram(z[tr], bins=edges)[0]
    assert counts.min() >= 45 and counts.max() <= 55  # 1000/20 = 50 per bin
    assert np.array_equal(zbin_split(z, 1000, 400, seed=1)[0], tr)  # deterministic
    with pytest.raises(DatasetError):
        zbin_split(z, 3000, 1000)


def test_zbin_split_small_bins_redistribute():
    z = np.r_[np.zeros(5), np.linspace(0.1, 0.5, 95)]  # ties collapse bins
    tr, va = zbin_split(z, 60, 30, n_bins=10)
    assert tr.size == 60 and va.size == 30 and np.intersect1d(tr, va).size == 0


def test_assign_splits():
    z = np.linspace(0, 0.5, 200)
    z[0] = np.nan
    lab = assign_splits(z, val_frac=0.25, test_frac=0.1)
    assert lab[0] == "" and lab.count("val") == 50 and lab.count("test") == 20
    assert lab.count("train") == 199 - 70


def _sdss_fixture() -> Path | None:
    from speclm.tools.synthetic import ppxf_spectrum

    return ppxf_spectrum("NGC3522")


def test_folder_source_skips_bad_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    w = np.geomspace(3800, 9200, 2000)
    f = 3 + np.sin(w / 300)
    np.savetxt(folder / "good.csv", np.c_[w, f, np.full_like(w, 0.1)], delimiter=",")
    np.save(folder / "good2.npy", np.vstack([w, f]))
    (folder / "empty.fits").write_bytes(b"")
    (folder / "junk.csv").write_text("hello,world\nthis,is\nnot,a spectrum\n")
    (folder / "readme.md").write_text("ignored: not a spectrum extension")
    fix = _sdss_fixture()
    if fix:
        os.symlink(fix, folder / "ngc3522.fits")
    out = dataset_from_folder(folder, tmp_path / "ds", progress=False)
    ds = open_dataset(out)
    assert len(ds) == (3 if fix else 2)
    skipped = {s["file"]: s for s in ds.meta["skipped"]}
    assert set(skipped) == {"empty.fits", "junk.csv"}
    assert skipped["empty.fits"]["error"] == "EmptyFileError" and skipped["empty.fits"]["reason"]
    if fix:
        z = dict(zip(ds.ids(), ds.z()))
        assert 0.003 < z["ngc3522.fits"] < 0.005  # catalog z from the SPECOBJ HDU
    with pytest.raises(DatasetError):
        dataset_from_folder(tmp_path / "missing", tmp_path / "x", progress=False)


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speclm.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})


@pytest.mark.skipif(importlib.util.find_spec("bagpipes") is None, reason="bagpipes not installed")
def test_cli_simulate_info_encode(tmp_path):
    r = _cli("data", "simulate", "--n", "12", "--out", str(tmp_path / "sim"), "--seed", "2",
             "--workers", "1", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "spectra/s" in r.stderr
    ds = open_dataset(tmp_path / "sim")
    assert ds.meta["simulated"] is True and ds.meta["sim_config"]["seed"] == 2
    assert ds.counts() == {"train": 9, "val": 3}
    r = _cli("data", "info", str(tmp_path / "sim"), "--json", "--no-tokens", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["n"] == 12 and info["counts"] == {"train": 9, "val": 3} and info["simulated"]
    assert info["encoding"]["n_encoded"] == 12
    r = _cli("data", "info", str(tmp_path / "sim"), "--no-tokens", cwd=tmp_path)
    assert "redshift" in r.stdout and "#" in r.stdout
    r = _cli("data", "simulate", "--n", "3", "--out", str(tmp_path / "sim"), cwd=tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr
    r = _cli("data", "info", str(tmp_path / "nothing"), cwd=tmp_path)
    assert r.returncode == 2 and "no such dataset" in r.stderr


def test_cli_encode_matches_pipeline(tmp_path):
    from speclm.finetune.codec import build_prompt
    from speclm.finetune.preprocess import preprocess
    from speclm.finetune.presets import get_preset
    from speclm.tools.spectrum import read_spectrum

    w = np.geomspace(3800, 9200, 3000)
    f = 3 + np.exp(-0.5 * ((w - 7000) / 4) ** 2) * 10
    path = tmp_path / "s.csv"
    np.savetxt(path, np.c_[w, f, np.full_like(w, 0.1)], delimiter=",")
    r = _cli("encode", str(path), "--preset", "smollm2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    p = get_preset("smollm2")
    assert r.stdout == build_prompt(preprocess(read_spectrum(path), p.preprocess), p.codec)
    r = _cli("folder-missing-command", cwd=tmp_path)
    assert r.returncode != 0


def test_cli_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    w = np.geomspace(3800, 9200, 2000)
    np.savetxt(folder / "a.csv", np.c_[w, 3 + np.cos(w / 200)], delimiter=",")
    (folder / "b.csv").write_text("garbage\n")
    r = _cli("data", "folder", str(folder), "--out", str(tmp_path / "ds"), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "skipped 1" in r.stderr and "b.csv" in r.stderr
    assert len(open_dataset(tmp_path / "ds")) == 1


def test_merge_keeps_splits_ids_and_provenance(tmp_path):
    from speclm.finetune.datasets import merge_datasets

    a = write_dataset(tmp_path / "a", _fake(4, seed=1), split_of=["train", "val", "train", "test"],
                      meta={"source": "test", "simulated": True})
    b_specs = _fake(3, seed=2)
    for i, s in enumerate(b_specs):
        s.meta["id"] = f"b{i}"
    b = write_dataset(tmp_path / "b", b_specs, split_of=["train", "train", "val"], meta={"source": "test", "simulated": True})
    m = open_dataset(merge_datasets([a, b], tmp_path / "m", progress=False))
    assert len(m) == 7 and m.counts() == {"train": 4, "val": 2, "test": 1}
    assert m.ids("val") == ["s1", "b2"] and m.meta["simulated"] is True
    assert [x["path"] for x in m.meta["inputs"]] == [str(a), str(b)]
    with pytest.raises(DatasetError, match="share spectrum ids"):
        merge_datasets([a, a], tmp_path / "dup", progress=False)
