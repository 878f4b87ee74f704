"""The Table 1 grid runner on the tiny model: real training, MAE, retention; resumable.

A 2-cell grid (learning rate 1e-3 vs 3e-3) on a small hand-made dataset trains both cells, writes
the Markdown table, JSON and plot; a second invocation skips finished cells; a cell whose training
was stopped after one step continues from its checkpoint. The paper grid's layout and dry run are
checked without training.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from speclm.evals import ablation as A
from speclm.finetune.presets import get_preset
from speclm.tools.errors import ConfigError


def _spectra(n: int, seed: int = 0):
    """Smooth continuum + Hα and [OIII] emission at (1+z); no bagpipes needed."""
    from speclm.tools.spectrum import Spectrum

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w = np.geomspace(3800, 9200, 300)
        z = float(rng.uniform(0, 0.5))
        f = (5 + 20 * np.exp(-0.5 * ((w - 6564.6 * (1 + z)) / 4) ** 2)
             + 10 * np.exp(-0.5 * ((w - 5008.2 * (1 + z)) / 4) ** 2) + rng.normal(0, 0.3, w.size))
        out.append(Spectrum(w, f, np.full(w.size, 11.0), np.zeros(w.size, np.int32),
                            {"z": z, "id": f"s{i}", "source": "test"}))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from speclm.finetune.datasets import write_dataset

    d = tmp_path_factory.mktemp("abl") / "ds"
    write_dataset(d, _spectra(28), split_of=["train"] * 20 + ["val"] * 8)
    return d


@pytest.fixture(scope="module")
def preset_yaml(tmp_path_factory) -> Path:
    """tiny, but checkpointing every step so a stopped cell has something to resume from."""
    p = tmp_path_factory.mktemp("presets") / "tinyckpt.yaml"
    p.write_text("inherit: tiny\ntrain: {save_every: 1}\n")
    return p


def _mmlu_or_none():
    from speclm.evals.retention import default_mmlu_dir

    d = default_mmlu_dir()
    return str(d) if d and d.exists() else None


def test_paper_grid_layout_and_dry_run(capsys):
    preset = get_preset("paper")
    spec = A.GRIDS["paper"]
    sections = A.grid_sections(preset, spec)
    assert list(sections) == ["lr", "r", "epochs", "n_train"]
    assert [c.lr for c in sections["lr"]] == [1e-5, 1e-4, 1e-3]
    assert [c.r for c in sections["r"]] == [4, 8, 16] and {c.lr for c in sections["r"]} == {1e-4}
    cells = A.grid_cells(preset, spec)
    assert len(cells) == 9 and cells[0].name == "lr1e-4_r8_ep2_n3000"  # fiducial once, first
    p16 = A.cell_preset(preset, next(c for c in cells if c.r == 16), spec.n_val)
    assert (p16.lora.r, p16.lora.alpha, p16.train.lr, p16.train.n_eval) == (16, 32, 1e-4, 2000)
    cfg = A.AblationConfig(preset="paper", dataset="DS", out="OUT", grid="paper")
    res = A.run_ablation(cfg, dry_run=True)
    out = capsys.readouterr().out
    assert res["dry_run"] and len(res["commands"]) == 10
    assert "--cells lr1e-5_r8_ep2_n3000" in out and "(fiducial)" in out and "--device cuda" in out
    with pytest.raises(A.AblationError, match="unknown cells"):
        A.run_ablation(A.AblationConfig(preset="paper", grid="paper", cells=("nope",)), dry_run=True)
    with pytest.raises(ConfigError):
        A.AblationConfig(grid="huge")


def test_markdown_in_paper_layout(tmp_path):
    """Table from hand-written cell results: sections, columns, fiducial bold, missing cells dashed."""
    preset = get_preset("paper")
    spec = A.GRIDS["paper"]
    for c in A.grid_cells(preset, spec)[:3]:
        A._write_json(tmp_path / "cells" / c.name / A.RESULT, {
            "mae": 0.043 if c.lr == 1e-4 else 0.1, "retention": {"astro_pct": 85.2, "general_pct": 89.4,
                                                                  "astro_logp": -1.25, "general_logp": -1.0}})
    A._write_json(tmp_path / "retention_base.json", {"key": {}, "base": {
        "astro": {"acc": 0.5, "n": 152, "mean_logprob_correct": -1.0},
        "general": {"acc": 0.4, "n": 3028, "mean_logprob_correct": -1.1}}})
    summary = A.collect(tmp_path, preset, spec, A.AblationConfig(preset="paper", grid="paper", out=str(tmp_path)))
    md = (tmp_path / "ablation.md").read_text()
    assert "| Learning Rate | LoRA Rank | Training size | Epochs | Redshift MAE | Scientific QA | General QA |" in md
    for title in ("Varying Learning Rate (rank = 8, epochs = 2, samples = 3,000)",
                  "Varying LoRA Rank (rate = 10^-4, epochs = 2, samples = 3,000)",
                  "Varying Number of Epochs", "Varying Training Size"):
        assert title in md
    assert "| **10^-4** | **8** | **3,000** | **2** | **0.043** | **85.2%** | **89.4%** | **-0.250** | **+0.100** |" in md
    assert "| 10^-4 | 8 | 750 | 2 | — | — | — | — | — |" in md
    assert summary["plot"] and Path(summary["plot"]).stat().st_size > 1000


def test_tiny_grid_runs_resumes_and_skips(dataset, preset_yaml, tmp_path, capsys):
    from speclm.finetune.train import train_arrays

    mmlu = _mmlu_or_none()
    out = tmp_path / "grid"
    cfg = A.AblationConfig(preset=str(preset_yaml), dataset=str(dataset), out=str(out), grid="tiny",
                           retention=mmlu is not None, mmlu_dir=mmlu, batch_size=16)
    preset = get_preset(str(preset_yaml))
    cells = A.grid_cells(preset, cfg.spec)
    assert [c.name for c in cells] == ["lr1e-3_r4_ep1_n16", "lr3e-3_r4_ep1_n16"]

    # a "killed" second cell: one optimiser step done and checkpointed, no adapter yet
    data = A.GridData(dataset, preset, cfg.spec.n_val)
    p2 = A.cell_preset(preset, cells[1], cfg.spec.n_val)
    X, z, ids = data.train_subset(16, p2.train.seed)
    cdir = out / "cells" / cells[1].name
    assert train_arrays(p2, cdir, X, z, data.Xv, data.zv, train_ids=ids, val_ids=data.iv.tolist(),
                        progress=False, stop_after=1) == {"stopped_at": 1}
    assert not (cdir / "adapter_config.json").exists()
    capsys.readouterr()

    s1 = A.run_ablation(cfg)
    log = capsys.readouterr().out
    assert s1["ran"] == {c.name: True for c in cells}
    assert f"resuming from {cdir / 'checkpoints' / 'step-1'}" in log
    for c in cells:
        r = json.loads((out / "cells" / c.name / A.RESULT).read_text())
        assert r["train"]["steps"] == 2 and np.isfinite(r["mae"]) and r["n_val"] == 4
        assert r["preset"]["train"]["lr"] == c.lr and r["preset"]["train"]["n_train"] == 16
        if mmlu:
            assert r["retention"]["n_general"] == 10 and 0 <= r["retention"]["general_acc"] <= 1
            assert "astro_pct" in r["retention"]  # None when the base scored 0 on its 1 question
    md = (out / "ablation.md").read_text()
    assert "Varying Learning Rate (rank = 4, epochs = 1, samples = 16)" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ("10^-3" in ln)]
    assert len(rows) == 2 and rows[1].startswith("| 3×10^-3 | 4 | 16 | 1 | ")
    for ln in rows:  # every column filled: MAE a number, retention a % (or n/a if the base scored 0)
        cols = [c.strip("* ") for c in ln.strip("|").split("|")]
        float(cols[4])
        assert "—" not in cols or not mmlu
    js = json.loads((out / "ablation.json").read_text())
    assert set(js["cells"]) == {c.name for c in cells} and js["fiducial"] == cells[0].name
    if mmlu:
        assert (out / "ablation.png").is_file() and (out / "retention_base.json").is_file()

    mtimes = {c.name: (out / "cells" / c.name / A.RESULT).stat().st_mtime_ns for c in cells}
    s2 = A.run_ablation(cfg)
    assert s2["ran"] == {c.name: False for c in cells}
    assert "done already, skipped" in capsys.readouterr().out
    assert mtimes == {c.name: (out / "cells" / c.name / A.RESULT).stat().st_mtime_ns for c in cells}


def test_cli_dry_run_and_small_dataset_error(dataset, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    A.register_eval(parser.add_subparsers())
    args = parser.parse_args(["ablation", "--preset", "smollm2", "--dataset", str(dataset), "--out",
                              str(tmp_path / "o"), "--grid", "cpu", "--dry-run"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "lr1e-3_r16_ep1_n1600" in out and "estimated" in out
    args = parser.parse_args(["ablation", "--preset", "smollm2", "--dataset", str(dataset), "--out",
                              str(tmp_path / "o"), "--grid", "cpu", "--no-retention", "--cells", "lr1e-3_r16_ep1_n1600"])
    with pytest.raises(A.AblationError, match="wants 1600 training spectra"):
        args.func(args)
