"""Language retention through the real lm-evaluation-harness, on the tiny random model.

What is checked: speclm's task YAML loads offline from the MMLU CSVs and builds lm-eval's MMLU
prompt; the three conditions are scored for real; ``toggle`` (adapter loaded, switched off with
peft's disable_adapter) reproduces ``base`` exactly while ``always`` (a perturbed adapter on)
does not; lm-eval's own ``HFLM(peft=)`` loader gives the same numbers as speclm's runtime.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from speclm.evals import retention as R  # noqa: E402
from speclm.tools.errors import ConfigError  # noqa: E402

LIMIT = 3  # questions per subject: 3 astro + 30 general per condition keeps this file fast


@pytest.fixture(scope="module")
def mmlu_dir() -> Path:
    d = R.default_mmlu_dir()
    if d is None or not d.exists():
        pytest.skip("offline MMLU CSVs not found (set SPECLM_MMLU_DIR or provide ../shared/data/mmlu)")
    return R.resolve_mmlu_dir(d)


@pytest.fixture(scope="module")
def perturbed_adapter(tmp_path_factory) -> Path:
    """An untrained tiny-model LoRA with noise on its weights, so 'adapter on' really changes the model."""
    from speclm.finetune.presets import get_preset
    from speclm.finetune.train import init_adapter

    d = tmp_path_factory.mktemp("adapters")
    raw = init_adapter(get_preset("tiny"), d / "init")
    return R.perturb_adapter(raw, d / "perturbed", scale=0.5, seed=1)


@pytest.fixture(scope="module")
def report(mmlu_dir, perturbed_adapter) -> dict:
    # float32 explicitly: 'auto' is bf16 on AVX512-BF16/AMX CPUs, and the lm-eval loader test below
    # compares against a float32 load, so the two must not depend on which CPU runs the suite
    cfg = R.RetentionConfig(mmlu_dir=str(mmlu_dir), base="tiny", adapter=str(perturbed_adapter),
                            limit=LIMIT, batch_size=16, dtype="float32")
    return R.run_retention(cfg, progress=False)


def test_task_yaml_loads_offline_with_mmlu_prompt(mmlu_dir):
    tm = R.task_manager(mmlu_dir)
    assert {"speclm_astro", "speclm_general"} <= set(tm.all_groups)
    loaded = tm.load(["speclm_astro"])
    task = loaded["tasks"]["speclm_mmlu_astronomy"]
    docs = list(task.test_docs())
    assert len(docs) == 152  # the full MMLU astronomy test split, read from the CSV
    first = docs[0]
    text = task.doc_to_text(first)
    assert text.startswith('What is true for a type-Ia ("type one-a") supernova?\nA. This type occurs in binary systems.')
    assert text.endswith("\nD. This type produces high amounts of X-rays.\nAnswer:")
    assert task.doc_to_choice(first) == ["A", "B", "C", "D"] and task.doc_to_target(first) == 0
    assert len(list(task.fewshot_docs())) == 5  # dev split for few-shot
    general = tm.load(["speclm_general"])["tasks"]
    assert sorted(general) == sorted(f"speclm_mmlu_{s}" for s in R.GENERAL_SUBJECTS)


def test_missing_mmlu_is_a_clear_error(tmp_path):
    with pytest.raises(R.RetentionError, match="no MMLU CSV folders"):
        R.resolve_mmlu_dir(tmp_path)
    (tmp_path / "data" / "test").mkdir(parents=True)
    (tmp_path / "data" / "dev").mkdir()
    with pytest.raises(R.RetentionError, match="astronomy_test.csv"):
        R.resolve_mmlu_dir(tmp_path)


def test_config_validation():
    with pytest.raises(ConfigError):
        R.RetentionConfig(conditions=("base", "sometimes"))
    with pytest.raises(ConfigError):
        R.RetentionConfig(adapter=None, conditions=("always",))
    with pytest.raises(ConfigError):
        R.RetentionConfig(limit=0)


def test_three_conditions_produce_numbers(report):
    conds = report["conditions"]
    assert set(conds) == {"base", "always", "toggle"}
    for c in conds.values():
        assert c["astro"]["n"] == LIMIT and c["general"]["n"] == LIMIT * len(R.GENERAL_SUBJECTS)
        for k in R.SETS:
            assert 0.0 <= c[k]["acc"] <= 1.0 and c[k]["stderr"] is not None
            assert c[k]["mean_logprob_correct"] < 0
    base = conds["base"]
    for k in R.SETS:
        want = 100 * conds["always"][k]["acc"] / base[k]["acc"] if base[k]["acc"] else None
        assert report["retention_pct"]["always"][k] == pytest.approx(want)
    assert report["lm_eval_version"].startswith("0.4")
    assert report["model"]["base"] == "tiny" and report["adapter"]["steps"] == 0


def test_toggle_equals_base_and_always_differs(report):
    base, always, toggle = (report["conditions"][c] for c in ("base", "always", "toggle"))
    for k in R.SETS:
        assert toggle[k]["acc"] == base[k]["acc"]
        assert toggle[k]["mean_logprob_correct"] == pytest.approx(base[k]["mean_logprob_correct"], abs=1e-6)
        for subj, s in toggle[k]["subjects"].items():
            assert s["mean_logprob_correct"] == pytest.approx(base[k]["subjects"][subj]["mean_logprob_correct"], abs=1e-6)
    # the perturbed adapter moves the answer probabilities on both sets
    for k in R.SETS:
        assert abs(always[k]["mean_logprob_correct"] - base[k]["mean_logprob_correct"]) > 1e-3
    assert report["retention_pct"]["toggle"] == {"astro": 100.0, "general": 100.0} or all(
        base[k]["acc"] == 0 for k in R.SETS)


def test_table_text(report):
    text = R.format_table(report)
    for word in ("base", "always", "toggle", "Scientific QA", "General QA", "retained", "AstroBench"):
        assert word in text


def test_lm_eval_loader_matches_runtime(report, mmlu_dir, perturbed_adapter, tmp_path):
    """lm-eval's HFLM(pretrained=PATH, peft=ADAPTER) sees the same model as speclm's runtime."""
    from speclm.finetune.runtime import load_base_model

    model, tok, _ = load_base_model("tiny", dtype="float32")
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    cfg = R.RetentionConfig(mmlu_dir=str(mmlu_dir), base=str(tmp_path / "tiny"), adapter=str(perturbed_adapter),
                            conditions=("always",), limit=LIMIT, batch_size=16, loader="lm-eval", dtype="float32")
    rep = R.run_retention(cfg, base_result=report["conditions"]["base"], progress=False)
    assert rep["base_reused"] and rep["model"]["loader"].startswith("lm-eval")
    got, want = rep["conditions"]["always"], report["conditions"]["always"]
    for k in R.SETS:
        assert got[k]["acc"] == want[k]["acc"]
        assert got[k]["mean_logprob_correct"] == pytest.approx(want[k]["mean_logprob_correct"], abs=1e-4)
    assert set(rep["retention_pct"]) == {"always"}


def test_cli_writes_json(mmlu_dir, perturbed_adapter, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    R.register_eval(parser.add_subparsers())
    out = tmp_path / "ret.json"
    args = parser.parse_args(["retention", "--mmlu", str(mmlu_dir), "--base", "tiny", "--adapter",
                              str(perturbed_adapter), "--conditions", "base,toggle", "--limit", "1",
                              "--out", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "toggle" in printed and "100.0%" in printed
    rep = json.loads(out.read_text())
    assert set(rep["conditions"]) == {"base", "toggle"} and rep["config"]["limit"] == 1
    assert rep["tasks"]["subjects"]["general"] == list(R.GENERAL_SUBJECTS)


def test_cloze_format(mmlu_dir):
    """Cloze groups reuse the same tasks with the answer texts as choices, scored by acc_norm."""
    tm = R.task_manager(mmlu_dir)
    task = tm.load(["speclm_astro_cloze"])["tasks"]["speclm_mmlu_astronomy"]
    doc = next(iter(task.test_docs()))
    assert task.doc_to_text(doc) == 'Question: What is true for a type-Ia ("type one-a") supernova?\nAnswer:'
    assert task.doc_to_choice(doc)[0] == "This type occurs in binary systems."
    cfg = R.RetentionConfig(mmlu_dir=str(mmlu_dir), base="tiny", adapter=None, conditions=("base",),
                            limit=1, batch_size=16, format="cloze")
    rep = R.run_retention(cfg, progress=False)
    b = rep["conditions"]["base"]
    assert b["general"]["metric"] == "acc_norm" and b["general"]["n"] == len(R.GENERAL_SUBJECTS)
    assert rep["tasks"]["format"] == "cloze" and "cloze format (acc_norm)" in R.format_table(rep)
