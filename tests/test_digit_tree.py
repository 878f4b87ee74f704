"""The digit tree on a log-probability engine (the vLLM path's logic) gives the predictor's own p(z):
run here with the runtime's model as the engine (full sequences, no cache) against the predictor's
cached, batched tree, on the bundled adapter."""
from __future__ import annotations

import numpy as np
import pytest

from speclm.finetune.digit_tree import digit_logprobs, hf_step, tree_logits


def test_digit_logprobs_reads_vllms_per_token_dicts():
    class Lp:  # vLLM's Logprob carries .logprob (and rank, decoded_token)
        def __init__(self, v):
            self.logprob = v

    got = digit_logprobs({15: Lp(-0.1), 16: -2.5, 99: Lp(-0.01)}, [15, 16, 17])
    assert got[0] == pytest.approx(-0.1) and got[1] == pytest.approx(-2.5) and got[2] == -np.inf


@pytest.fixture(scope="module")
def predictor():
    from speclm.finetune.predict import RedshiftPredictor
    from speclm.finetune.runtime import ModelRuntime, resolve_adapter

    # float32: the two trees round the same way, so they can be compared tightly
    return RedshiftPredictor.from_runtime(ModelRuntime.load("embedded", adapter=resolve_adapter("bundled"),
                                                            device="cpu", dtype="float32"))


def test_the_engine_tree_equals_the_predictors_tree(predictor, ngc3522_fits, ngc3073_fits):
    from speclm.finetune.predict import spectrum_prompt
    from speclm.tools.spectrum import read_spectrum

    specs = [read_spectrum(p) for p in (ngc3522_fits, ngc3073_fits)]  # two real SDSS galaxies (ppxf's)
    prompts = [spectrum_prompt(s, predictor.pre, predictor.codec) for s in specs]
    ref = predictor.raw_logits(prompts)
    ids = [predictor.rt.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    got = tree_logits(hf_step(predictor.rt, predictor.digits), ids, predictor.digits, predictor.dot)
    assert list(got["d0"]) == list(ref["d0"])
    sm = lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)
    for k in ("l1", "l2", "l3"):
        assert np.abs(sm(got[k]) - sm(ref[k])).max() < 1e-3, k
    a, b = predictor.summarise_raw(ref, 1.0), predictor.summarise_raw(got, 1.0)
    for x, y, s in zip(a, b, specs):
        assert x.z == y.z and x.z_lo == y.z_lo and abs(y.z - s.z_catalog) < 0.02, (x.z, y.z, s.z_catalog)


def test_the_vllm_engine_without_vllm_is_one_line(tmp_path):
    from speclm.finetune.catalog import CatalogConfig, run_catalog
    from speclm.tools.errors import ConfigError
    from speclm.tools.synthetic import write_synthetic_fits

    write_synthetic_fits(tmp_path / "spec-a.fits", z=0.1, seed=1)
    with pytest.raises(ConfigError, match="needs vLLM"):
        run_catalog([tmp_path], tmp_path / "cat.fits", CatalogConfig(engine="vllm", progress=False))
    with pytest.raises(ConfigError, match="engine must be"):
        CatalogConfig(engine="onnx")


def test_the_catalogs_fast_reading_is_the_same_model(ngc3522_fits, ngc3073_fits):
    """The catalog's model (LoRA merged, eager attention, the prompt's head read once and kept, only the
    digits' rows of the output layer) gives the same digit logits (bit-identical on AVX512 CPUs, within
    1e-4 everywhere) as reading every prompt whole
    through the full vocabulary, and really reads fewer tokens."""
    from speclm.finetune.catalog import _predictor
    from speclm.finetune.predict import spectrum_prompt
    from speclm.tools.spectrum import read_spectrum
    from speclm.tools.synthetic import synthetic_spectrum

    pred = _predictor("bundled", "", "cpu", True, "auto")
    assert pred.rt.model.config._attn_implementation == "eager"
    specs = [read_spectrum(p) for p in (ngc3522_fits, ngc3073_fits)] + [synthetic_spectrum(z, seed=i) for i, z in
                                                                      enumerate((0.05, 0.21, 0.38))]
    prompts = [spectrum_prompt(s, pred.pre, pred.codec) for s in specs]
    emb = pred.rt.model.get_input_embeddings()
    fed = []
    hook = emb.register_forward_pre_hook(lambda m, a: fed.append(a[0].numel()))
    try:
        pred.raw_logits(prompts[:2])  # fills the head's cache
        fed.clear()
        fast = pred.raw_logits(prompts)
        n_fast = sum(fed)
        kept, pred.prefix_cache, pred._head_ids = pred.prefix_cache, None, []
        fed.clear()
        whole = pred.raw_logits(prompts)
        n_whole = sum(fed)
    finally:
        pred.prefix_cache, pred._head_ids = kept, None
        hook.remove()
    for k in ("d0", "l1", "l2", "l3", "leaf"):
        # bit-identical on AVX512 CPUs; on an AVX2-only CPU the ten-row digit head and the full vocabulary's
        # matmul are blocked differently, and logits differ by up to ~2e-5 (seen on AMD Zen 3)
        np.testing.assert_allclose(fast[k], whole[k], rtol=0, atol=1e-4, err_msg=k)
        assert (np.argmax(fast[k], axis=-1) == np.argmax(whole[k], axis=-1)).all(), k
    head = len(pred.rt.tokenizer(pred.codec.prompt_prefix, add_special_tokens=False)["input_ids"])
    assert n_whole - n_fast == head * len(prompts)
    zs = [p.z for p in pred.summarise_raw(fast, 1.0)]
    assert abs(zs[0] - specs[0].z_catalog) < 0.02 and abs(zs[1] - specs[1].z_catalog) < 0.02
