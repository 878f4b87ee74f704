"""Training on the tiny random Llama: answer-only loss, exact resume, adapter save/load/toggle."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from speclm.finetune.codec import build_prompt, format_redshift
from speclm.finetune.predict import RedshiftPredictor, encode_example
from speclm.finetune.presets import get_preset
from speclm.finetune.runtime import ModelRuntime, load_tokenizer
from speclm.finetune.train import TrainingError, _collate, answer_loss, assert_disjoint, train_arrays


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny")


def _data(n=48, bins=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 99, (n, bins)).round()
    z = rng.uniform(0, 0.5, n)
    return X, z, [f"t{seed}-{i}" for i in range(n)]


def test_prompt_tokens_carry_no_loss(tok):
    p = get_preset("tiny")
    prompt = build_prompt(np.arange(16), p.codec)
    ids, labels = encode_example(tok, prompt, format_redshift(0.315, p.codec))
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert all(l == -100 for l in labels[:n_prompt])
    answer = [l for l in labels if l != -100]
    assert tok.decode(answer[:-1]) == "0.315" and answer[-1] == tok.eos_token_id


def test_answer_loss_ignores_prompt(tok):
    """Changing the prompt's *labels* cannot change the loss; changing answer labels does."""
    p = get_preset("tiny")
    X, z, _ = _data(4)
    ex = [encode_example(tok, build_prompt(x, p.codec), format_redshift(zz, p.codec)) for x, zz in zip(X, z)]
    ids, labels, mask = _collate(ex, [0, 1, 2, 3], tok.pad_token_id)
    from speclm.finetune.runtime import load_base_model

    model, _, _ = load_base_model("tiny", dtype="float32")
    l1 = answer_loss(model, ids, mask, labels)
    # full-vocabulary reference loss over the same answer tokens
    logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                            ignore_index=-100)
    assert float(l1) == pytest.approx(float(ref), rel=1e-4)
    assert int((labels != -100).sum()) == 4 * 6  # "0.ddd" = 5 digit/dot tokens + EOS per example


def test_disjoint_assertion():
    with pytest.raises(TrainingError):
        assert_disjoint(["a", "b"], ["b", "c"])


def test_train_resume_and_adapter_roundtrip(tmp_path):
    p = get_preset("tiny", train={"n_eval": 8})
    X, z, ids = _data(40)
    out = tmp_path / "run"
    # stop after 3 of 5 optimiser steps (a kill at a step boundary), then resume
    r = train_arrays(p, out, X[:32], z[:32], X[32:], z[32:], train_ids=ids[:32], val_ids=ids[32:],
                     stop_after=3, progress=False)
    assert r == {"stopped_at": 3}
    ck = sorted((out / "checkpoints").iterdir())
    assert ck and not (out / "adapter_config.json").exists()
    card = train_arrays(p, out, X[:32], z[:32], X[32:], z[32:], train_ids=ids[:32], val_ids=ids[32:], progress=False)
    # uninterrupted reference run: identical losses and weights
    ref = train_arrays(p, tmp_path / "ref", X[:32], z[:32], X[32:], z[32:], train_ids=ids[:32], val_ids=ids[32:],
                       progress=False)
    a = json.loads((out / "checkpoints" / "step-4" / "state.json").read_text())["losses"]
    b = json.loads((tmp_path / "ref" / "checkpoints" / "step-4" / "state.json").read_text())["losses"]
    assert a == pytest.approx(b, rel=1e-5)
    assert card["steps"] == ref["steps"] == 4
    from safetensors.torch import load_file

    wa, wb = load_file(out / "adapter_model.safetensors"), load_file(tmp_path / "ref" / "adapter_model.safetensors")
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert not cfg.get("modules_to_save")
    for key in ("preprocess", "codec", "base_model", "seed", "train_ids_sha", "metrics_val"):
        assert key in card

    # load back on a fresh base, toggle on/off, detach
    rt = ModelRuntime.load("tiny", adapter=str(out))
    pred = RedshiftPredictor.from_runtime(rt)
    prompt = build_prompt(X[33], p.codec)
    ids_t = rt.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with rt.adapter_enabled(True), torch.inference_mode():
        on = rt.model(input_ids=ids_t).logits[0, -1]
    with rt.adapter_enabled(False), torch.inference_mode():
        off = rt.model(input_ids=ids_t).logits[0, -1]
    assert not torch.allclose(on, off)
    res = pred.predict_values(X[32:35])
    assert all(0 <= r.z_lo <= r.z <= r.z_hi < 10 for r in res)
    assert abs(sum(res[0].pz) - 1) < 1e-4
    name = rt.active
    rt.detach(name)
    with pytest.raises(Exception):
        with rt.adapter_enabled(True):
            pass


def test_refuses_changed_preset_on_resume(tmp_path):
    X, z, ids = _data(40)
    p = get_preset("tiny", train={"n_eval": 0})
    train_arrays(p, tmp_path, X[:32], z[:32], X[32:], z[32:], train_ids=ids[:32], val_ids=ids[32:],
                 stop_after=1, progress=False)
    p2 = get_preset("tiny", train={"n_eval": 0, "lr": 5e-4})
    with pytest.raises(TrainingError):
        train_arrays(p2, tmp_path, X[:32], z[:32], X[32:], z[32:], train_ids=ids[:32], val_ids=ids[32:],
                     progress=False)


def test_warm_start_from_adapter(tmp_path):
    """--init-adapter: a 0-step-LR run from an adapter keeps its weights; its train ids count as ours."""
    from safetensors.torch import load_file

    X, z, ids = _data(40)
    p = get_preset("tiny", train={"n_eval": 0})
    train_arrays(p, tmp_path / "a", X[:16], z[:16], X[32:], z[32:], train_ids=ids[:16], val_ids=ids[32:], progress=False)
    wa = load_file(tmp_path / "a" / "adapter_model.safetensors")
    # fresh init differs from the trained weights; a warm start begins exactly at them
    from speclm.finetune.runtime import load_base_model
    from speclm.finetune.train import make_peft_model, warm_start

    m, _, _ = load_base_model("tiny", dtype="float32")
    m = make_peft_model(m, p, 0)
    info = warm_start(m, p, str(tmp_path / "a"))
    sd = {k: v for k, v in m.state_dict().items() if "lora_" in k}
    assert len(sd) == len(wa) and info["train_ids"] == ids[:16]
    for k, v in wa.items():
        match = [kk for kk in sd if kk.replace(".default", "") == k]
        assert match and torch.equal(sd[match[0]], v), k

    pw = get_preset("tiny", train={"n_eval": 0, "init_adapter": str(tmp_path / "a")})
    card = train_arrays(pw, tmp_path / "b", X[16:32], z[16:32], X[32:], z[32:], train_ids=ids[16:32],
                        val_ids=ids[32:], progress=False)
    assert card["init_adapter"]["n_train_ids"] == 16 and card["n_train_including_init"] == 32
    assert (tmp_path / "b" / "train_ids.txt").read_text().split() == ids[:32]
    assert "domain" not in card  # the init adapter had none
    # an init adapter's domain is kept when the new redshifts lie inside it, dropped when they do not
    ca = json.loads((tmp_path / "a" / "training_card.json").read_text())
    ca["domain"] = {"spectype": "GALAXY", "z_max": float(z[16:32].max()) + 0.01, "why": "test"}
    (tmp_path / "a" / "training_card.json").write_text(json.dumps(ca))
    card = train_arrays(pw, tmp_path / "d", X[16:32], z[16:32], X[32:], z[32:], train_ids=ids[16:32],
                        val_ids=ids[32:], progress=False)
    assert card["domain"]["z_max"] == ca["domain"]["z_max"] and card["domain"]["inherited_from"].endswith("a")
    ca["domain"]["z_max"] = float(z[16:32].max()) - 0.01
    (tmp_path / "a" / "training_card.json").write_text(json.dumps(ca))
    card = train_arrays(pw, tmp_path / "e", X[16:32], z[16:32], X[32:], z[32:], train_ids=ids[16:32],
                        val_ids=ids[32:], progress=False)
    assert "domain" not in card
    # the warm start's training spectra may not be validated on
    with pytest.raises(TrainingError, match="both train and validation"):
        train_arrays(pw, tmp_path / "c", X[16:32], z[16:32], X[:8], z[:8], train_ids=ids[16:32],
                     val_ids=ids[:8], progress=False)
    # a different LoRA shape or codec is refused with a specific message
    with pytest.raises(TrainingError, match="LoRA r="):
        warm_start(make_peft_model(load_base_model("tiny", dtype="float32")[0], get_preset("tiny", lora={"r": 2, "alpha": 4}), 0),
                   get_preset("tiny", lora={"r": 2, "alpha": 4}), str(tmp_path / "a"))
    p_codec = get_preset("tiny", preprocess={"n_bins": 8, "continuum_window": 3})
    with pytest.raises(TrainingError, match="preprocess config differs"):
        warm_start(make_peft_model(load_base_model("tiny", dtype="float32")[0], p_codec, 0), p_codec, str(tmp_path / "a"))


def test_resume_checkpoint_that_predates_a_new_field(tmp_path):
    """A checkpoint written before TrainConfig grew a field (saved preset lacks it) still resumes."""
    X, z, ids = _data(40)
    p = get_preset("tiny", train={"n_eval": 0})
    train_arrays(p, tmp_path, X[:32], z[:32], X[32:], z[32:], train_ids=ids[:32], val_ids=ids[32:],
                 stop_after=1, progress=False)
    st = next((tmp_path / "checkpoints").glob("step-*")) / "state.json"
    saved = json.loads(st.read_text())
    del saved["preset"]["train"]["init_adapter"]
    st.write_text(json.dumps(saved))
    card = train_arrays(p, tmp_path, X[:32], z[:32], X[32:], z[32:], train_ids=ids[:32], val_ids=ids[32:],
                        progress=False)
    assert card["steps"] == 4


def test_lm_head_gets_a_contiguous_answer_window():
    """The answer-window slice reaches the LM head contiguous (one GEMM, no broadcast weight copy)
    and gives the same logits as slicing the full output."""
    from speclm.finetune.runtime import load_base_model

    model, _, _ = load_base_model("tiny", dtype="float32")
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous()))
    ids = torch.randint(5, 100, (3, 20))
    with torch.no_grad():
        part = model(input_ids=ids, logits_to_keep=4).logits
        full = model(input_ids=ids).logits
    assert seen == [True, True]
    assert torch.allclose(part, full[:, -4:], atol=1e-5)


def _delta_w(d):
    """Every LoRA layer's update scale * B @ A, read from an adapter directory's files (not through peft)."""
    from safetensors.torch import load_file

    cfg = json.loads((d / "adapter_config.json").read_text())
    t = load_file(d / "adapter_model.safetensors")
    scale = cfg["lora_alpha"] / cfg["r"]
    return {k.replace(".lora_A.weight", ""): scale * (t[k.replace("lora_A", "lora_B")].float() @ t[k].float())
            for k in t if k.endswith("lora_A.weight")}


def test_soup_is_the_weighted_mean_of_the_adapters_updates(tmp_path):
    """`speclm soup`: dW of the soup = sum w_i dW_i on every layer, read back from the files; ids are the union."""
    from speclm.finetune.soup import soup_adapters
    from speclm.tools.errors import ConfigError

    X, z, ids = _data(48)
    p = get_preset("tiny", train={"n_eval": 0})
    train_arrays(p, tmp_path / "a", X[:16], z[:16], X[32:], z[32:], train_ids=ids[:16], val_ids=ids[32:], progress=False)
    train_arrays(p, tmp_path / "b", X[16:32], z[16:32], X[32:], z[32:], train_ids=ids[16:32], val_ids=ids[32:],
                 progress=False)
    da, db = _delta_w(tmp_path / "a"), _delta_w(tmp_path / "b")
    assert max(float((da[k] - db[k]).abs().max()) for k in da) > 1e-4  # two different adapters
    from speclm.cli import main

    assert main(["soup", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "s"),
                 "--weights", "0.25", "0.75", "--fp32"]) == 0
    card = json.loads((tmp_path / "s" / "training_card.json").read_text())
    ds = _delta_w(tmp_path / "s")
    assert set(ds) == set(da) and card["lora"]["r"] == 2 * p.lora.r
    for k in da:
        want = 0.25 * da[k] + 0.75 * db[k]
        assert torch.allclose(ds[k], want, atol=1e-6 * float(want.abs().max()) + 1e-9), k
    assert sorted((tmp_path / "s" / "train_ids.txt").read_text().split()) == sorted(ids[:32])
    assert "calibration" not in card and [a["weight"] for a in card["soup"]["adapters"]] == [0.25, 0.75]
    # the soup loads and predicts like any adapter
    rt = ModelRuntime.load("tiny", str(tmp_path / "s"))
    assert len(RedshiftPredictor.from_runtime(rt).predict_values(X[32:34])) == 2
    with pytest.raises(ConfigError, match="not an empty directory"):  # never overwrites a user's folder
        soup_adapters([tmp_path / "a", tmp_path / "b"], tmp_path / "s")
    assert torch.allclose(_delta_w(tmp_path / "s")[k], ds[k])
    with pytest.raises(ConfigError, match="sum to 1"):
        soup_adapters([tmp_path / "a", tmp_path / "b"], tmp_path / "t", [0.5, 0.6])
    p8 = get_preset("tiny", preprocess={"n_bins": 8, "continuum_window": 3}, train={"n_eval": 0})
    train_arrays(p8, tmp_path / "c", X[:16, :8], z[:16], X[32:, :8], z[32:], train_ids=ids[:16], val_ids=ids[32:],
                 progress=False)
    with pytest.raises(ConfigError, match="preprocess differ"):
        soup_adapters([tmp_path / "a", tmp_path / "c"], tmp_path / "t")


def test_bundle_casts_to_fp16_and_requires_a_domain(tmp_path):
    """`speclm bundle`: float16 weights within fp16 precision of the run's, train ids carried, calibration
    dropped, and the domain required: from the card, or --domain-z-max; refused when training z reach past it."""
    from safetensors.torch import load_file

    from speclm.cli import main
    from speclm.finetune.bundle import bundle_adapter
    from speclm.finetune.datasets import write_dataset
    from speclm.tools.errors import ConfigError
    from speclm.tools.synthetic import synthetic_spectrum

    X, z, ids = _data(40)
    p = get_preset("tiny", train={"n_eval": 0})
    train_arrays(p, tmp_path / "a", X[:16], z[:16], X[32:], z[32:], train_ids=ids[:16], val_ids=ids[32:], progress=False)
    card_path = tmp_path / "a" / "training_card.json"
    ca = json.loads(card_path.read_text())
    assert "domain" not in ca
    # no domain anywhere: refused, and nothing is written
    with pytest.raises(ConfigError, match="no domain"):
        bundle_adapter(str(tmp_path / "a"), str(tmp_path / "b0"))
    assert not (tmp_path / "b0").exists()
    # a training dataset still on this machine whose redshifts reach past the declared domain: refused
    specs = [synthetic_spectrum(zz, lines={"Halpha": 20.0}, continuum=(5.0, 0.0), noise=0.3, seed=i,
                                meta={"id": f"d{i}", "source": "test"}) for i, zz in enumerate([0.1, 0.3, 0.62])]
    ds = write_dataset(tmp_path / "ds", specs, split_of=["train"] * 3, meta={"source": "test"})
    ca["dataset"] = {"path": str(ds)}
    ca["calibration"] = {"pz_temperature": 0.9}
    card_path.write_text(json.dumps(ca))
    with pytest.raises(ConfigError, match="up to 0.620"):
        bundle_adapter(str(tmp_path / "a"), str(tmp_path / "b1"), domain_z_max=0.5)
    assert main(["bundle", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--domain-z-max", "0.8",
                 "--domain-why", "test"]) == 0
    cb = json.loads((tmp_path / "b" / "training_card.json").read_text())
    assert cb["domain"] == {"spectype": "GALAXY", "z_max": 0.8, "why": "test"}
    assert "calibration" not in cb and cb["bundle"]["calibration_dropped"]
    assert abs(cb["bundle"]["training_z_max"] - 0.62) < 1e-9
    wa, wb = load_file(tmp_path / "a" / "adapter_model.safetensors"), load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert set(wa) == set(wb) and all(v.dtype == torch.float16 for v in wb.values())
    for k in wa:
        a = wa[k].float()
        assert float((wb[k].float() - a).abs().max()) <= 1e-3 * float(a.abs().max()) + 1e-8, k
    assert 0 < cb["bundle"]["max_rel_error"] < 1e-3
    assert (tmp_path / "b" / "train_ids.txt").read_text() == (tmp_path / "a" / "train_ids.txt").read_text()
    # the bundle's domain is read by the predictor, and the card's domain is used when no flag is given
    rt = ModelRuntime.load("tiny", str(tmp_path / "b"))
    assert RedshiftPredictor.from_runtime(rt).domain_z_max == 0.8
    assert bundle_adapter(str(tmp_path / "b"), str(tmp_path / "c"))["domain"]["z_max"] == 0.8
    with pytest.raises(ConfigError, match="not an empty directory"):
        bundle_adapter(str(tmp_path / "a"), str(tmp_path / "b"), domain_z_max=0.8)
    with pytest.raises(ConfigError, match="must lie in"):
        bundle_adapter(str(tmp_path / "a"), str(tmp_path / "b2"), domain_z_max=12.0)
    with pytest.raises(ConfigError, match="not a finished adapter run"):
        bundle_adapter(str(tmp_path / "ds"), str(tmp_path / "b3"), domain_z_max=0.8)
