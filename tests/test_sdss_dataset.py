"""speclm.finetune.sdss_dataset: the paper's SDSS selection -> dataset, against a loopback SDSS."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sdss_server import Fault, SimObject, SkyServerSim, make_objects
from speclm.finetune.datasets import open_dataset
from speclm.finetune.sdss_dataset import build_sdss_dataset
from speclm.tools.errors import ConfigError, DatasetError

N_GOOD = 24


@pytest.fixture
def sim():
    objs = make_objects(N_GOOD, seed=3, n_decoys=4)
    # one well-formed file read_spectrum rejects, one the SAS never serves
    objs.append(SimObject(plate=6000, mjd=56000, fiberid=1, z=0.25, ra=180, dec=0,
                          defect="zero_ivar"))
    objs.append(SimObject(plate=6000, mjd=56000, fiberid=2, z=0.3, ra=181, dec=0))
    with SkyServerSim(objs) as server:
        server.faults[server.spec_path(objs[-1])] = Fault("404", 99)
        yield server


def _check_dataset(path, n_train, n_val, n_bins):
    ds = open_dataset(path)
    assert ds.counts() == {"train": n_train, "val": n_val}
    train, val = set(ds.ids("train")), set(ds.ids("val"))
    assert len(train) == n_train and len(val) == n_val and not train & val
    meta = ds.meta
    assert meta["source"] == "sdss" and meta["data_release"] == 16 and meta["seed"] == 0
    assert "p.dered_i < 18" in meta["selection"] and "s.zWarning = 0" in meta["selection"]
    c = meta["sdss_counts"]
    assert (c["candidates"], c["fetch_failed"], c["unreadable"], c["usable"]) == \
        (N_GOOD + 2, 1, 1, N_GOOD)
    assert {(s["id"], s["stage"]) for s in meta["skipped"]} == {("6000-56000-0001", "read"),
                                                                ("6000-56000-0002", "fetch")}
    # z-uniform: equal counts in each equal-frequency bin of the usable pool (z ~ U(0.01, 0.5))
    z_train = ds.z("train")
    assert np.all((z_train > 0) & (z_train < 0.5))
    spec = next(ds.iter_spectra("val"))
    assert spec.meta["source"] == "sdss" and spec.meta["class"] == "GALAXY"
    assert spec.meta["dered_i"] < 18
    return ds


def test_build_in_process(sim, tmp_path):
    kw = dict(n_candidates=100, n_train=12, n_val=6, n_bins=3, cache=tmp_path / "cache",
              skyserver_url=sim.skyserver_url, sas_url=sim.sas_url, backoff=0.01, retries=1,
              progress=False)
    summary = build_sdss_dataset(tmp_path / "ds", **kw)
    assert summary["train"] == 12 and summary["val"] == 6
    ds = _check_dataset(tmp_path / "ds", 12, 6, 3)
    pool_z = np.sort([o.z for o in sim.objects if o.plate < 6000])
    edges = np.quantile(pool_z, np.linspace(0, 1, 4))
    counts, _ = np.histogram(ds.z("train"), bins=edges)
    assert counts.tolist() == [4] * 3
    # a rerun reuses the cached query and spectra: no new SkyServer query, no new download
    n_sql, n_fits = len(sim.sql_log), sum(v for k, v in sim.hits.items() if k.endswith(".fits"))
    build_sdss_dataset(tmp_path / "ds2", **kw)
    assert len(sim.sql_log) == n_sql
    new_fits = sum(v for k, v in sim.hits.items() if k.endswith(".fits")) - n_fits
    assert new_fits == 1  # only the never-served file is tried again
    assert sorted(open_dataset(tmp_path / "ds2").ids("train")) == sorted(ds.ids("train"))
    with pytest.raises(DatasetError, match="already exists"):
        build_sdss_dataset(tmp_path / "ds", **kw)


def test_too_few_usable_spectra_is_a_clear_error(tmp_path):
    objs = make_objects(4, seed=5) + [SimObject(plate=6000, mjd=56000, fiberid=1, z=0.25, ra=180,
                                                dec=0, defect="zero_ivar")]
    with SkyServerSim(objs) as small:
        with pytest.raises(DatasetError, match="only 4 usable spectra of 5"):
            build_sdss_dataset(tmp_path / "ds", n_candidates=10, n_train=3, n_val=2,
                               cache=tmp_path / "c", skyserver_url=small.skyserver_url,
                               sas_url=small.sas_url, retries=0, progress=False)
    with pytest.raises(ConfigError):
        build_sdss_dataset(tmp_path / "ds", n_candidates=10, n_train=30, n_val=20)


def test_cli_end_to_end(sim, tmp_path):
    env = {**os.environ, **sim.env(), "SPECLM_SDSS_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "speclm.cli", "data", "sdss", "--out", str(tmp_path / "ds"),
           "--candidates", "100", "--n-train", "12", "--n-val", "6", "--n-bins", "3",
           "--retries", "1", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 12 train + 6 val SDSS spectra" in proc.stderr
    _check_dataset(tmp_path / "ds", 12, 6, 3)
    # user errors are one line, exit 2
    bad = cmd[:7] + ["--candidates", "10", "--n-train", "30", "--no-progress"]
    proc = subprocess.run(bad, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
