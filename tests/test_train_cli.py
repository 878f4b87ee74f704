"""`speclm train` end to end on the tiny preset: SIGKILL mid-run, resume, load back, predict."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from speclm.finetune.datasets import write_dataset
from speclm.tools.spectrum import Spectrum, write_sdss_spec_fits

SPECLM = [sys.executable, "-m", "speclm.cli"]


def _synthetic(n, seed=0):
    """Galaxy-like toy spectra (the one synthetic builder): Hα/[O III]/Hβ/[O II] at a known z."""
    from speclm.tools.synthetic import synthetic_spectrum

    rng = np.random.default_rng(seed)
    loglam = np.arange(3.5794, 3.9645, 1e-4)
    return [synthetic_spectrum(float(rng.uniform(0.01, 0.45)), lines={"Halpha": 20, "OIII5008": 12, "Hbeta": 6, "OII": 8},
                               noise=0.5, seed=seed * 1000 + i, loglam=loglam,
                               meta={"id": f"toy-{seed}-{i}", "source": "synthetic-test"}) for i in range(n)]


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds") / "toy"
    spectra = _synthetic(60)
    split = ["train"] * 48 + ["val"] * 12
    write_dataset(d, spectra, split_of=split, meta={"source": "synthetic-test", "seed": 0})
    return d


def test_train_kill_resume_predict(toy_dataset, tmp_path):
    out = tmp_path / "adapter"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = SPECLM + ["train", "--preset", "tiny", "--dataset", str(toy_dataset), "--out", str(out),
                    "--n-train", "48", "--epochs", "2", "--save-every", "2", "--n-eval", "6"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 480
    while True:
        if time.time() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within 480 s")
        if list((out / "checkpoints").glob("step-*")) if (out / "checkpoints").exists() else []:
            break
        if proc.poll() is not None:
            pytest.fail("training ended before the first checkpoint: " + proc.stdout.read().decode()[-2000:])
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter_config.json").exists(), "the kill came too late to test resume"
    killed_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*"))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming from" in r.stdout + r.stderr
    card = json.loads((out / "training_card.json").read_text())
    assert card["steps"] == 12 and killed_at < 12  # 48 spectra / batch 4 / accum 2 * 2 epochs
    assert card["dataset"]["fingerprint"]
    # the saved adapter loads back and predicts with an interval
    f = tmp_path / "toy.fits"
    s = _synthetic(1, seed=9)[0]
    write_sdss_spec_fits(f, np.log10(s.wavelength), s.flux, s.ivar, z=s.meta["z"])
    r = subprocess.run(SPECLM + ["predict", str(f), "--adapter", str(out), "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["z_lo"] <= d["z"] <= d["z_hi"] and d["z_catalog"] == pytest.approx(s.meta["z"], abs=1e-6)


def test_train_cli_errors(tmp_path):
    r = subprocess.run(SPECLM + ["train", "--preset", "nope", "--dataset", str(tmp_path), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown preset" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(SPECLM + ["predict", str(tmp_path / "missing.fits"), "--adapter", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_data_parallel_two_processes(toy_dataset, tmp_path):
    """The multi-process path (accelerate under torchrun; gloo on CPU) trains and saves one adapter."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "speclm.cli", "train", "--preset", "tiny", "--dataset", str(toy_dataset), "--out", str(out),
           "--n-train", "16", "--epochs", "1", "--n-eval", "4"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((out / "training_card.json").read_text())
    assert card["world_size"] == 2 and card["steps"] == 2  # 16 spectra / (batch 4 x accum 2)
    assert (out / "adapter_model.safetensors").is_file()
