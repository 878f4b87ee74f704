"""speclm.tools.sdss through the real astroquery client against a loopback SkyServer/SAS.

Nothing here touches the real SDSS: every URL is 127.0.0.1 (speclm.tools.sdss_sim, through tests/sdss_server.py).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from sdss_server import Fault, SkyServerSim, sdss_cfg, sdss_objects, sdss_sim  # noqa: F401
from speclm.tools import sdss
from speclm.tools.errors import ConfigError, SDSSError, SDSSNotFound
from speclm.tools.spectrum import read_spectrum

N_GOOD = 24


def _good(objects):
    return [o for o in objects if o.plate < 7000]


def test_selection_sql_has_the_papers_cuts():
    sql = sdss.galaxy_selection_sql(10000)
    for cut in ("TOP 10000", "s.class = 'GALAXY'", "p.type = 3", "s.zWarning = 0", "s.z > 0",
                "s.z < 0.5", "p.dered_i < 18"):
        assert cut in sql
    with pytest.raises(ConfigError):
        sdss.galaxy_selection_sql(0)


def test_query_galaxies_returns_exactly_the_selection(sdss_sim, sdss_cfg, sdss_objects):
    table = sdss.query_galaxies(1000, sdss_cfg)
    names = {f"{r['plate']:04d}-{r['mjd']:05d}-{r['fiberid']:04d}" for r in table}
    assert names == {o.name for o in _good(sdss_objects)}  # the 4 decoys fail one cut each
    for col in ("specobjid", "plate", "mjd", "fiberid", "run2d", "ra", "dec", "z", "z_err",
                "class", "dered_u", "dered_g", "dered_r", "dered_i", "dered_z"):
        assert col in table.colnames
    assert table["specobjid"].dtype == np.uint64  # astroquery's parser, not ours
    assert np.all((table["z"] > 0) & (table["z"] < 0.5) & (table["dered_i"] < 18))
    # astroquery sent it to SkyServer's SQL endpoint for DR16, CSV format
    assert sdss_sim.hits["/dr16/en/tools/search/x_results.aspx"] == 1
    assert sdss_sim.sql_params[0] == {"format": "csv", "searchtool": "SQL"}
    assert len(sdss.query_galaxies(5, sdss_cfg)) == 5  # TOP n honoured


def test_sql_error_and_dead_server_are_sdss_errors(sdss_sim, sdss_cfg):
    with pytest.raises(SDSSError, match="no such table"):
        sdss.query_sql("SELECT x FROM NoSuchTable", sdss_cfg)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = sdss.resolve_config(sdss_cfg, skyserver_url=f"http://127.0.0.1:{port}", retries=1)
    with pytest.raises(SDSSError, match="2 attempts") as err:
        sdss.query_sql("SELECT 1", dead)
    # a message a person reads: the host, the reason in words, no URL path or query string
    msg = str(err.value)
    assert "cannot connect" in msg and "http" not in msg and "SELECT" not in msg and "\n" not in msg


def test_query_retries_a_500(sdss_sim, sdss_cfg):
    path = "/dr16/en/tools/search/x_results.aspx"
    sdss_sim.faults[path] = Fault("500", times=2)
    assert len(sdss.query_galaxies(3, sdss_cfg)) == 3
    assert sdss_sim.hits[path] == 3


def test_config_from_env_and_validation(monkeypatch, tmp_path):
    monkeypatch.setenv(sdss.SKYSERVER_ENV, "http://127.0.0.1:1/")
    monkeypatch.setenv(sdss.SAS_ENV, "http://127.0.0.1:2/sas")
    monkeypatch.setenv(sdss.CACHE_ENV, str(tmp_path))
    cfg = sdss.SDSSConfig()
    assert (cfg.skyserver_url, cfg.sas_url) == ("http://127.0.0.1:1", "http://127.0.0.1:2/sas")
    assert cfg.release_dir == tmp_path / "dr16"
    assert sdss.SDSSConfig(sas_url="http://x/y").sas_url == "http://x/y"  # arg beats env
    for bad in (dict(data_release=3), dict(timeout=0), dict(concurrency=0),
                dict(skyserver_url="ftp://x")):
        with pytest.raises(ConfigError):
            sdss.SDSSConfig(**bad)


def test_fetch_many_gets_every_spectrum_valid(sdss_sim, sdss_cfg, sdss_objects):
    rows = sdss.query_galaxies(1000, sdss_cfg)
    report = sdss.fetch_many(rows, cfg=sdss_cfg, progress=False)
    assert not report.failed and report.n_downloaded == N_GOOD
    by_name = {o.name: o for o in sdss_objects}
    for name, path in report.paths.items():
        spec = read_spectrum(path)
        assert spec.meta["z"] == pytest.approx(by_name[name].z, abs=1e-6)
        assert spec.meta["plate"] == by_name[name].plate
    # BOSS reductions: astroquery's sdss/ path 404s once, the eBOSS path serves it
    boss = next(o for o in sdss_objects if o.run2d.startswith("v"))
    assert sdss_sim.hits[sdss_sim.spec_path(boss)] == 1
    assert sdss_sim.hits[sdss_sim.spec_path(boss).replace("/eboss/", "/sdss/")] == 1
    # a second run downloads nothing
    again = sdss.fetch_many(rows, cfg=sdss_cfg, progress=False)
    assert again.n_cached == N_GOOD and again.n_downloaded == 0
    assert sum(v for k, v in sdss_sim.hits.items() if k.endswith(".fits")) == N_GOOD + N_GOOD // 3


def test_fetch_retries_500_timeout_and_truncation(sdss_sim, sdss_cfg, sdss_objects):
    good = _good(sdss_objects)
    legacy = [o for o in good if o.run2d == "26"]
    faults = [(legacy[0], Fault("500", 2)), (legacy[1], Fault("timeout", 1)),
              (legacy[2], Fault("truncate", 1)), (legacy[3], Fault("html200", 1))]
    for obj, fault in faults:
        sdss_sim.faults[sdss_sim.spec_path(obj)] = fault
    rows = [dict(plate=o.plate, mjd=o.mjd, fiberid=o.fiberid, run2d=o.run2d) for o in good[:12]]
    report = sdss.fetch_many(rows, cfg=sdss_cfg, progress=False)
    assert not report.failed, report.failed
    assert sdss_sim.hits[sdss_sim.spec_path(legacy[0])] == 3
    for obj in legacy[1:4]:
        assert sdss_sim.hits[sdss_sim.spec_path(obj)] == 2
        read_spectrum(report.paths[obj.name])  # the committed file is the good one


def test_permanent_failures_are_recorded_not_raised(sdss_sim, sdss_cfg, sdss_objects):
    legacy = [o for o in _good(sdss_objects) if o.run2d == "26"]
    sdss_sim.faults[sdss_sim.spec_path(legacy[0])] = Fault("500", 99)
    sdss_sim.faults[sdss_sim.spec_path(legacy[1])] = Fault("404", 99)
    rows = [dict(plate=o.plate, mjd=o.mjd, fiberid=o.fiberid, run2d=o.run2d) for o in legacy[:4]]
    report = sdss.fetch_many(rows, cfg=sdss_cfg, progress=False)
    assert set(report.failed) == {legacy[0].name, legacy[1].name}
    assert "4 attempts" in report.failed[legacy[0].name]
    assert "404" in report.failed[legacy[1].name]
    assert sdss_sim.hits[sdss_sim.spec_path(legacy[0])] == sdss_cfg.retries + 1
    assert sdss_sim.hits[sdss_sim.spec_path(legacy[1])] == 1  # a 404 is not retried
    assert len(report.paths) == 2
    assert not sdss.spectrum_path(sdss.SpecKey.from_row(rows[0]), sdss_cfg).exists()
    entries = sdss.Manifest(sdss_cfg.release_dir).entries()
    assert entries[legacy[0].name]["status"] == "failed"


def test_fetch_spectrum_looks_up_run2d_and_404s_cleanly(sdss_sim, sdss_cfg, sdss_objects):
    boss = next(o for o in sdss_objects if o.run2d.startswith("v"))
    path = sdss.fetch_spectrum(boss.plate, boss.mjd, boss.fiberid, cfg=sdss_cfg)
    assert path.name == f"spec-{boss.name}.fits" and read_spectrum(path).meta["fiberid"] == boss.fiberid
    with pytest.raises(SDSSNotFound):
        sdss.fetch_spectrum(266, 51630, 999, cfg=sdss_cfg)


_FETCH_SCRIPT = """
import json, sys
from speclm.tools.sdss import fetch_many
rows = json.load(open(sys.argv[1]))
fetch_many(rows, cache=sys.argv[2], concurrency=2, retries=2, backoff=0.01, progress=False)
"""


def test_killed_fetch_resumes_without_loss_or_duplicates(sdss_sim, sdss_cfg, sdss_objects,
                                                         tmp_path):
    good = _good(sdss_objects)
    rows = [dict(plate=o.plate, mjd=o.mjd, fiberid=o.fiberid, run2d=o.run2d) for o in good]
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    sdss_sim.spec_delay_s = 0.15  # slow enough to kill midway
    spectra_dir = sdss_cfg.release_dir / "spectra"
    env = {**os.environ, **sdss_sim.env()}
    proc = subprocess.Popen([sys.executable, "-c", _FETCH_SCRIPT, str(rows_file),
                             sdss_cfg.cache_dir], env=env)
    deadline = time.time() + 60
    try:
        while len(list(spectra_dir.glob("*/spec-*.fits"))) < 6:
            assert proc.poll() is None, "fetch finished before it could be killed"
            assert time.time() < deadline, "fetch made no progress"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {p.name for p in spectra_dir.glob("*/spec-*.fits")}
    assert 6 <= len(before) < len(good)
    # the state a kill can leave besides that: a stale temp file, and a file renamed into place
    # whose journal line never got written (here: also corrupted, so it must be re-fetched)
    victim = sorted(spectra_dir.glob("*/spec-*.fits"))[0]
    (victim.parent / f".{victim.name}.999999999.1.part").write_bytes(b"half")
    manifest = sdss.Manifest(sdss_cfg.release_dir)
    lines = [l for l in manifest.path.read_text().splitlines()
             if json.loads(l)["key"] not in victim.name]
    manifest.path.write_text("\n".join(lines) + "\n")
    victim.write_bytes(victim.read_bytes()[:5000])

    sdss_sim.spec_delay_s = 0.0
    report = sdss.fetch_many(rows, cfg=sdss_cfg, progress=False)
    assert not report.failed and len(report.paths) == len(good)
    files = sorted(p.name for p in spectra_dir.rglob("*") if p.is_file())
    assert files == sorted(f"spec-{o.name}.fits" for o in good)  # each once, no temp files
    for o in good:
        spec = read_spectrum(report.paths[o.name])
        assert spec.meta["z"] == pytest.approx(o.z, abs=1e-6)
        hits = sdss_sim.hits[sdss_sim.spec_path(o)]
        if f"spec-{o.name}.fits" in before and o.name not in victim.name:
            assert hits == 1, f"{o.name} was downloaded again after the kill"
    entries = sdss.Manifest(sdss_cfg.release_dir).entries()
    assert all(entries[o.name]["status"] == "ok" for o in good)
    assert report.n_downloaded == len(good) - len(before) + 1  # + the corrupted victim
