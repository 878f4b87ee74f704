"""The redshift catalog: one row per target, ZWARN bits, resume after SIGINT/SIGKILL equal to an
uninterrupted run, and a 2-worker Dask run equal to the single-process one (tiny model: the numbers
are noise, the mechanics are real)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from speclm.finetune.catalog import COLUMNS, ZWARN_BITS, CatalogConfig, run_catalog
from speclm.tools.spectrum_desi import write_desi_coadd
from speclm.tools.synthetic import synthetic_spectrum, write_synthetic_fits


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory):
    from speclm.finetune.presets import get_preset
    from speclm.finetune.train import init_adapter

    return str(init_adapter(get_preset("tiny"), tmp_path_factory.mktemp("cat_adapter") / "adapter"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cat_inputs")
    zs = [0.05, 0.15, 0.25, 0.35]
    sims = [synthetic_spectrum(z, seed=10 + i) for i, z in enumerate(zs)]
    cols = [(s.wavelength, s.flux, s.ivar) for s in sims]
    cols[2] = (cols[2][0], cols[2][1], np.zeros_like(cols[2][2]))  # one broken target
    write_desi_coadd(d / "coadd-four.fits", cols, targetids=[11, 12, 13, 14], z=zs, ra=[1, 2, 3, 4], dec=[5, 6, 7, 8])
    write_synthetic_fits(d / "spec-a.fits", z=0.12, seed=1)
    write_synthetic_fits(d / "spec-b.fits", z=0.31, seed=2)
    # a 1-D image without errors: its noise is estimated, which ZWARN says
    s = synthetic_spectrum(0.2, seed=3)
    from astropy.io import fits

    hdu = fits.PrimaryHDU(s.flux.astype(np.float32))
    hdu.header.update(CRVAL1=float(np.log10(s.wavelength[0])), CDELT1=float(np.median(np.diff(np.log10(s.wavelength)))),
                      CRPIX1=1)
    hdu.header["DC-FLAG"] = 1
    hdu.writeto(d / "noerr.fits")
    return d


def _cfg(adapter, **kw):
    return CatalogConfig(adapter=adapter, base="tiny", chunk_size=2, progress=False, **kw)


def _read(path) -> Table:
    """The catalog as written: NaN stays NaN (astropy masks NaN floats of FITS tables by default)."""
    path = Path(path)
    return Table.read(path, mask_invalid=False) if path.suffix == ".fits" else Table.read(path)


def _same(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames and len(a) == len(b)
    for c in a.colnames:
        if a[c].dtype.kind == "f":
            np.testing.assert_array_equal(np.asarray(a[c]), np.asarray(b[c]), err_msg=c)
        else:
            assert list(a[c]) == list(b[c]), c


@pytest.fixture(scope="module")
def clean(tiny_adapter, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("cat_clean") / "cat.fits"
    info = run_catalog([inputs], out, _cfg(tiny_adapter))
    return out, info


def test_rows_columns_units_and_zwarn(clean, inputs):
    out, info = clean
    t = _read(out)
    assert t.colnames == list(COLUMNS) and len(t) == 7 and info["n_bad"] == 1
    assert t["RA"].unit == "deg" and t["DEC"].unit == "deg"
    by = {Path(r["TARGET"]).name: r for r in t}
    assert list(by) == ["coadd-four.fits[11]", "coadd-four.fits[12]", "coadd-four.fits[13]", "coadd-four.fits[14]",
                        "noerr.fits", "spec-a.fits", "spec-b.fits"]
    bit = {k: 1 << v[0] for k, v in ZWARN_BITS.items()}
    broken = by["coadd-four.fits[13]"]
    assert broken["ZWARN"] == bit["BAD_TARGET"] and "inverse variance" in broken["ERROR"] and np.isnan(broken["Z"])
    assert by["noerr.fits"]["ZWARN"] & bit["NO_UNCERTAINTIES"]
    assert not by["spec-a.fits"]["ZWARN"] & bit["NO_UNCERTAINTIES"]
    # the search finds the simulated redshifts (the tiny model's z is noise, so the search states the z)
    assert by["coadd-four.fits[12]"]["Z"] == pytest.approx(0.15, abs=0.002)
    assert by["spec-b.fits"]["Z"] == pytest.approx(0.31, abs=0.002)
    assert by["coadd-four.fits[14]"]["TARGETID"] == 14 and by["coadd-four.fits[14]"]["RA"] == 4.0
    assert by["coadd-four.fits[14]"]["Z_CATALOG"] == pytest.approx(0.35)
    # every flagged bit is documented in the header
    assert all(f"ZWBIT{b}" in t.meta for b, _ in ZWARN_BITS.values())


def test_resume_after_an_interruption_equals_the_clean_run(clean, tiny_adapter, inputs, tmp_path):
    out = tmp_path / "cat.fits"
    info = run_catalog([inputs], out, _cfg(tiny_adapter), stop_after_chunks=2)
    assert info["stopped"] and not out.exists()
    partial = out.with_name(out.name + ".partial.jsonl")
    assert len(partial.read_text().splitlines()) == 3  # header + 2 chunks
    with open(partial, "a") as fh:
        fh.write('{"chunk": 3, "rows": [{"TARG')  # killed while writing a line
    info = run_catalog([inputs], out, _cfg(tiny_adapter))
    assert info["n_new"] == 3 and not partial.exists()  # 4 chunks of 2; 2 were done
    _same(_read(out), _read(clean[0]))


def test_sigkill_then_rerun_equals_the_clean_run(clean, tiny_adapter, inputs, tmp_path):
    out = tmp_path / "cat.fits"
    cmd = [sys.executable, "-m", "speclm.cli", "predict", "--refine", str(inputs), "--out", str(out), "--base", "tiny",
           "--adapter", tiny_adapter, "--chunk-size", "2"]
    partial = out.with_name(out.name + ".partial.jsonl")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 180:
        if partial.is_file() and len(partial.read_text().splitlines()) >= 2:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not killed:
        pytest.skip("the run finished before it could be killed")
    assert not out.exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _same(_read(out), _read(clean[0]))


def test_two_dask_workers_equal_one_process(clean, tiny_adapter, inputs, tmp_path):
    pytest.importorskip("dask.distributed")
    out = tmp_path / "cat.parquet"
    info = run_catalog([inputs], out, _cfg(tiny_adapter, workers=2))
    assert info["n_targets"] == 7
    _same(_read(out), _read(clean[0]))


def test_a_partial_file_from_other_inputs_is_refused(tiny_adapter, inputs, tmp_path):
    from speclm.tools.errors import ConfigError

    out = tmp_path / "cat.fits"
    out.with_name(out.name + ".partial.jsonl").write_text('{"fingerprint": "0000"}\n')
    with pytest.raises(ConfigError, match="partial catalog from other inputs"):
        run_catalog([inputs], out, _cfg(tiny_adapter))
