"""The Table 1 grid: what learning rate, LoRA rank, epochs and training size trade for language.

Each *cell* is the fiducial recipe with one knob changed (the paper's layout: one section per
knob, the fiducial row repeated in every section but trained once). A cell trains a LoRA adapter
with :func:`speclm.finetune.train.train_arrays` into ``OUT/cells/<name>/``, takes the redshift MAE
on the validation split from the training card, and scores language retention with the adapter
on (the paper's setting) through :mod:`speclm.evals.retention`; the base model is scored once
per grid. Results go to ``ablation.md`` (Table 1 layout), ``ablation.json`` and ``ablation.png``
(MAE vs retention).

Resumable on purpose -- a grid is hours on a laptop and a GPU job may be pre-empted: a cell with
``result.json`` is skipped, a finished adapter is only re-evaluated, and a killed training run
continues from its last checkpoint (the trainer's atomic checkpoints).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from speclm.tools.config import Config
from speclm.evals.metrics import json_default as _json_default

from speclm.tools.errors import ConfigError, SpeclmError

AXES = ("lr", "r", "epochs", "n_train")
SECTION_TITLES = {"lr": "Varying Learning Rate", "r": "Varying LoRA Rank",
                  "epochs": "Varying Number of Epochs", "n_train": "Varying Training Size"}
COLUMNS = ("Learning Rate", "LoRA Rank", "Training size", "Epochs", "Redshift MAE", "Scientific QA", "General QA")
EXTRA_COLUMNS = ("Δ log p sci.", "Δ log p gen.")
RESULT = "result.json"

# Rates measured on this project's 2-core CPU (AVX512-BF16, bf16 autocast), embedded SmolLM2-135M,
# used only for the printed time estimate; finished cells replace the training rate with their own
# tokens/s. train: benchmarks/train_throughput.py, 2 threads alone (298 tokens/s; ~170 with one
# thread while a second job has the other core, which is how the cpu grid ran). predict: 4.7
# spectra/s (`speclm eval redshift --limit 96`). MMLU: ~0.3 s per letter-format question
# (lm-eval loglikelihood, 4 requests of ~120 tokens, batch 8), while other jobs shared the CPU.
CPU_RATES = {"train_tokens_per_s": 170.0, "predict_s_per_spectrum": 0.21, "mmlu_s_per_question": 0.3}


class AblationError(SpeclmError):
    """The grid cannot run (dataset too small, unknown cell name, bad output directory)."""


@dataclass(frozen=True)
class Cell:
    """One row of Table 1: the four knobs that vary (everything else is the fiducial preset)."""

    lr: float
    r: int
    epochs: float
    n_train: int

    @property
    def name(self) -> str:
        return f"lr{_short(self.lr)}_r{self.r}_ep{self.epochs:g}_n{self.n_train}"

    def value(self, axis: str):
        return getattr(self, axis)


def _short(x: float) -> str:
    m, e = f"{x:e}".split("e")
    m = f"{float(m):g}"
    return f"{m}e{int(e)}"


@dataclass
class GridSpec:
    """A grid: fiducial values (None = the preset's own) and the values tried along each knob."""

    name: str
    description: str
    axes: dict = field(metadata={"help": "{axis: [values]} for axes in lr, r, epochs, n_train; one section per axis."})
    fiducial: dict = field(default_factory=dict, metadata={"help": "Overrides of the preset's fiducial knob values."})
    n_val: int = field(default=200, metadata={"help": "Validation spectra for the MAE."})
    retention_limit: int | None = field(default=None, metadata={"help": "MMLU questions per subject (None = all)."})

    def __post_init__(self):
        bad = (set(self.axes) | set(self.fiducial)) - set(AXES)
        if bad:
            raise ConfigError(f"grid {self.name!r}: unknown axes {sorted(bad)}; known {AXES}")
        if not self.axes:
            raise ConfigError(f"grid {self.name!r} varies nothing")


GRIDS = {
    "paper": GridSpec(
        "paper", "Table 1 of the paper (plus training size): lr 1e-5/1e-4/1e-3, rank 4/8/16, epochs 1/2/3, "
                 "750/1500/3000 spectra around the preset's fiducial; MAE on 2000 val spectra, full MMLU sets.",
        axes={"lr": [1e-5, 1e-4, 1e-3], "r": [4, 8, 16], "epochs": [1, 2, 3], "n_train": [750, 1500, 3000]},
        n_val=2000, retention_limit=None),
    "cpu": GridSpec(
        "cpu", "CPU-sized grid for the embedded SmolLM2-135M (smollm2 preset): fiducial lr 1e-3, rank 16, "
               "1 epoch, 1600 spectra; one knob changed per cell (lr 1e-4/3e-3, rank 4, 2 epochs, 800 "
               "spectra) = 6 cells; MAE on 200 val spectra, MMLU retention on the first 20 questions per subject.",
        axes={"lr": [1e-4, 1e-3, 3e-3], "r": [4, 16], "epochs": [1, 2], "n_train": [800, 1600]},
        fiducial={"lr": 1e-3, "r": 16, "epochs": 1, "n_train": 1600}, n_val=200, retention_limit=20),
    "tiny": GridSpec(
        "tiny", "Two cells on the tiny random model (tests and smoke runs): lr 1e-3 vs 3e-3.",
        axes={"lr": [1e-3, 3e-3]}, fiducial={"n_train": 16, "epochs": 1}, n_val=4, retention_limit=1),
}


# ----------------------------------------------------------------------------------- the grid

def fiducial_cell(preset, grid: GridSpec) -> Cell:
    f = {"lr": preset.train.lr, "r": preset.lora.r, "epochs": preset.train.epochs, "n_train": preset.train.n_train}
    f.update({k: v for k, v in grid.fiducial.items() if v is not None})
    return Cell(lr=float(f["lr"]), r=int(f["r"]), epochs=float(f["epochs"]), n_train=int(f["n_train"]))


def grid_sections(preset, grid: GridSpec) -> dict[str, list[Cell]]:
    """{axis: cells in row order}; the fiducial value is always one of the rows (as in Table 1)."""
    fid = fiducial_cell(preset, grid)
    out = {}
    for axis in AXES:
        if axis not in grid.axes:
            continue
        values = sorted(set(grid.axes[axis]) | {fid.value(axis)})
        out[axis] = [Cell(**{**fid.__dict__, axis: type(fid.value(axis))(v)}) for v in values]
    return out


def grid_cells(preset, grid: GridSpec) -> list[Cell]:
    """Distinct cells, fiducial first (it is shared by every section)."""
    fid = fiducial_cell(preset, grid)
    seen = {fid.name: fid}
    for cells in grid_sections(preset, grid).values():
        for c in cells:
            seen.setdefault(c.name, c)
    return list(seen.values())


def cell_preset(preset, cell: Cell, n_val: int):
    """The fiducial preset with this cell's knobs; alpha keeps the preset's alpha/r ratio."""
    from speclm.finetune.presets import preset_from_dict

    d = preset.to_dict()
    ratio = preset.lora.alpha / preset.lora.r
    d["lora"] = d["lora"] | {"r": cell.r, "alpha": max(1, int(round(ratio * cell.r)))}
    d["train"] = d["train"] | {"lr": cell.lr, "epochs": cell.epochs, "n_train": cell.n_train, "n_eval": n_val}
    return preset_from_dict(f"{preset.name}:{cell.name}", d)


# ------------------------------------------------------------------------------------ the data

class GridData:
    """Preprocessed train/val arrays of one dataset, loaded once and shared by every cell."""

    def __init__(self, path: str | os.PathLike, preset, n_val: int):
        from speclm.finetune.datasets import open_dataset

        self.ds = open_dataset(path)
        cfg = preset.preprocess
        parts = {}
        for split in ("train", "val"):
            if split not in self.ds.splits:
                raise AblationError(f"{path}: dataset has no {split!r} split (splits: {self.ds.splits})")
            X = self.ds.features(split, cfg, progress=True)
            z = self.ds.z(split)
            ids = np.asarray(self.ds.ids(split), dtype=object)
            ok = np.isfinite(z) & ~np.isnan(X).any(axis=1)
            parts[split] = (X[ok], z[ok], ids[ok])
        self.X, self.z, self.ids = parts["train"]
        Xv, zv, iv = parts["val"]
        self.Xv, self.zv, self.iv = Xv[:n_val], zv[:n_val], iv[:n_val]
        if len(self.zv) == 0:
            raise AblationError(f"{path}: no usable validation spectra")
        self.info = {"path": str(Path(path).resolve()), "fingerprint": self.ds.fingerprint(),
                     "n_train_available": int(len(self.z)), "n_val": int(len(self.zv))}

    def train_subset(self, n: int, seed: int):
        """n training spectra drawn uniformly across redshift bins (paper §3.1), deterministic."""
        from speclm.finetune.datasets import zbin_split

        if n > len(self.z):
            raise AblationError(f"cell wants {n} training spectra but the dataset has {len(self.z)} usable "
                                f"ones in its train split; use a bigger dataset or a smaller grid")
        idx, _ = zbin_split(self.z, n, 0, seed=seed)
        return self.X[idx], self.z[idx], self.ids[idx].tolist()


# ------------------------------------------------------------------------------------ running

@dataclass
class AblationConfig(Config):
    preset: str = field(default="smollm2", metadata={"help": "Fiducial preset name or YAML path."})
    dataset: str = field(default="", metadata={"help": "speclm dataset directory (needs train and val splits)."})
    out: str = field(default="", metadata={"help": "Output directory, resumable (cells/<name>/ per cell, ablation.md/json/png)."})
    grid: str = field(default="cpu", metadata={"help": "cpu, paper or tiny."})
    cells: tuple = field(default=(), metadata={"help": "Run only these cell names (default: all)."})
    retention: bool = field(default=True, metadata={"help": "Score MMLU retention per cell (--no-retention: MAE only)."})
    limit_retention: int | None = field(default=None, metadata={"help": "Override the grid's MMLU limit."})
    n_val: int | None = field(default=None, metadata={"help": "Override the grid's validation size."})
    mmlu_dir: str | None = field(default=None, metadata={"help": "MMLU CSV folder (see eval retention)."})
    retention_format: str = field(default="letter", metadata={"help": "MMLU prompt: letter (A-D) or cloze."})
    device: str = field(default="auto", metadata={"help": "Training/eval device."})
    batch_size: int = field(default=8, metadata={"help": "lm-eval batch size."})

    def __post_init__(self):
        if self.grid not in GRIDS:
            raise ConfigError(f"unknown grid {self.grid!r}; known: {', '.join(GRIDS)}")
        self.cells = tuple(self.cells)
        if self.limit_retention is not None and self.limit_retention < 1:
            raise ConfigError("--limit-retention must be >= 1")
        if self.n_val is not None and self.n_val < 1:
            raise ConfigError("--n-val must be >= 1")

    @property
    def spec(self) -> GridSpec:
        g = GRIDS[self.grid]
        return GridSpec(g.name, g.description, g.axes, g.fiducial,
                        self.n_val or g.n_val,
                        self.limit_retention if self.limit_retention is not None else g.retention_limit)


def selected_cells(preset, cfg: AblationConfig) -> list[Cell]:
    cells = grid_cells(preset, cfg.spec)
    if not cfg.cells:
        return cells
    by = {c.name: c for c in cells}
    unknown = [n for n in cfg.cells if n not in by]
    if unknown:
        raise AblationError(f"unknown cells {unknown}; this grid has: {', '.join(by)}")
    return [by[n] for n in cfg.cells]


def _tokens_per_example(preset) -> float | None:
    """Prompt+answer tokens of one training example for this preset (None if no tokenizer offline)."""
    if preset.base not in ("embedded", "smollm2", "default", "tiny") and not Path(preset.base).exists():
        return None  # a hub id: loading its tokenizer would reach for the network
    try:
        from speclm.finetune.codec import build_prompt, format_redshift
        from speclm.finetune.predict import encode_example
        from speclm.finetune.runtime import load_tokenizer

        tok = load_tokenizer(preset.base)
    except Exception:  # a hub base without network: no estimate, not an error
        return None
    try:  # a one-digit value is valid in every codec (fixed widths pad it, so the count is exact)
        x = np.full(preset.preprocess.n_bins, 5.0)
        ids, _ = encode_example(tok, build_prompt(x, preset.codec), format_redshift(0.123, preset.codec))
    except SpeclmError:
        return None
    return float(len(ids))


def estimate(preset, cells: Sequence[Cell], spec: GridSpec, out: Path, retention: bool, fmt: str = "letter") -> dict:
    """Rough wall time per cell from measured rates (this box's CPU, or finished cells' own tokens/s)."""
    tpe = _tokens_per_example(preset)
    rate, source = CPU_RATES["train_tokens_per_s"], "CPU_RATES (2-core CPU, embedded model)"
    done = [json.loads(p.read_text()) for p in sorted((out / "cells").glob(f"*/{RESULT}"))] if out.exists() else []
    measured = [d["train"]["tokens_per_second"] for d in done if d.get("train", {}).get("tokens_per_second")]
    if measured:
        rate, source = float(np.median(measured)), f"median of {len(measured)} finished cells"
    elif preset.base not in ("embedded", "smollm2", "default", "tiny"):
        return {"per_cell_s": None, "total_s": None, "source": "no rate known for this base; see README GPU commands"}
    n_q = (spec.retention_limit or 300) * 11 * (4 if fmt == "cloze" else 1) if retention else 0
    per = {}
    for c in cells:
        if (out / "cells" / c.name / RESULT).is_file():
            per[c.name] = 0.0
            continue
        train_s = (c.n_train * c.epochs * tpe / rate) if tpe else float("nan")
        per[c.name] = train_s + spec.n_val * CPU_RATES["predict_s_per_spectrum"] + n_q * CPU_RATES["mmlu_s_per_question"]
    base_s = n_q * CPU_RATES["mmlu_s_per_question"] if retention and not (out / "retention_base.json").is_file() else 0
    return {"per_cell_s": per, "base_retention_s": base_s, "total_s": sum(per.values()) + base_s,
            "tokens_per_example": tpe, "train_tokens_per_s": rate, "source": source}


def _hms(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "unknown"
    h, m = divmod(int(round(s / 60)), 60)
    return f"{h}h{m:02d}m" if h else f"{m}m"


def gpu_commands(cfg: AblationConfig, cells: Sequence[Cell]) -> list[str]:
    """One command per cell, so a GPU cluster can run cells as independent jobs into one OUT."""
    base = (f"speclm eval ablation --preset {cfg.preset} --dataset {cfg.dataset} --out {cfg.out} "
            f"--grid {cfg.grid} --device cuda")
    if cfg.limit_retention is not None:
        base += f" --limit-retention {cfg.limit_retention}"
    return [f"{base} --cells {c.name}" for c in cells] + [f"{base} --report-only   # collect the table"]


def _retention_base(preset, spec: GridSpec, cfg: AblationConfig, out: Path, say) -> dict | None:
    """Base-model MMLU scores for this grid, cached in OUT/retention_base.json."""
    from speclm.evals.retention import RetentionConfig, resolve_mmlu_dir, run_retention

    mmlu = str(resolve_mmlu_dir(cfg.mmlu_dir))
    key = {"base": preset.base, "limit": spec.retention_limit, "mmlu_dir": mmlu, "format": cfg.retention_format}
    f = out / "retention_base.json"
    if f.is_file():
        saved = json.loads(f.read_text())
        if saved.get("key") == key:
            return saved["base"]
    say(f"[ablation] scoring the base model {preset.base} on MMLU (once per grid)")
    rep = run_retention(RetentionConfig(mmlu_dir=mmlu, base=preset.base, adapter=None, conditions=("base",),
                                        limit=spec.retention_limit, device=cfg.device, batch_size=cfg.batch_size,
                                        format=cfg.retention_format),
                        progress=False)
    _write_json(f, {"key": key, "base": rep["conditions"]["base"], "lm_eval_version": rep["lm_eval_version"]})
    return rep["conditions"]["base"]


def run_cell(cell: Cell, preset, data: GridData, spec: GridSpec, cfg: AblationConfig, out: Path,
             base_ret: dict | None, say) -> dict:
    """Train (or resume, or reuse) one cell's adapter, then score it; writes cells/<name>/result.json."""
    from speclm.finetune.train import CARD, train_arrays

    cdir = out / "cells" / cell.name
    p = cell_preset(preset, cell, spec.n_val)
    res_f = cdir / RESULT
    if res_f.is_file():
        prev = json.loads(res_f.read_text())
        if prev.get("preset") == p.to_dict() and (prev.get("retention") is not None or not cfg.retention):
            say(f"[ablation] {cell.name}: done already, skipped")
            return prev | {"skipped": True}
    card_f = cdir / CARD
    card = json.loads(card_f.read_text()) if card_f.is_file() else {}
    t0 = time.time()
    if card.get("preset") == p.to_dict() and card.get("metrics_val") and (cdir / "adapter_config.json").is_file():
        say(f"[ablation] {cell.name}: adapter already trained, evaluating")
    else:
        say(f"[ablation] {cell.name}: training (lr {cell.lr:g}, r {cell.r}, {cell.epochs:g} epochs, "
            f"{cell.n_train} spectra) -> {cdir}")
        X, z, ids = data.train_subset(cell.n_train, p.train.seed)
        card = train_arrays(p, cdir, X, z, data.Xv, data.zv, train_ids=ids, val_ids=data.iv.tolist(),
                            dataset_info=data.info, resume=True, device=cfg.device, progress=True)
    mv = card.get("metrics_val") or {}
    retention = None
    if cfg.retention:
        from speclm.evals.retention import RetentionConfig, run_retention

        rep = run_retention(RetentionConfig(mmlu_dir=cfg.mmlu_dir, base=p.base, adapter=str(cdir),
                                            conditions=("always",), limit=spec.retention_limit,
                                            device=cfg.device, batch_size=cfg.batch_size,
                                            format=cfg.retention_format),
                            base_result=base_ret, progress=False)
        a = rep["conditions"]["always"]
        retention = {"astro_acc": a["astro"]["acc"], "general_acc": a["general"]["acc"],
                     "astro_pct": rep["retention_pct"]["always"]["astro"],
                     "general_pct": rep["retention_pct"]["always"]["general"],
                     "n_astro": a["astro"]["n"], "n_general": a["general"]["n"],
                     "astro_stderr": a["astro"]["stderr"], "general_stderr": a["general"]["stderr"],
                     "astro_logp": a["astro"].get("mean_logprob_correct"),
                     "general_logp": a["general"].get("mean_logprob_correct")}
    result = {"cell": cell.__dict__ | {"name": cell.name}, "preset": p.to_dict(),
              "mae": mv.get("mae"), "median_abs": mv.get("median_abs"), "n_val": mv.get("n"),
              "mae_constant_median": mv.get("mae_constant_median"),
              "train": {k: card.get(k) for k in ("steps", "train_seconds", "tokens_per_second", "final_loss",
                                                 "trainable_parameters", "n_train")},
              "retention": retention, "eval_seconds": round(time.time() - t0, 1),
              "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    _write_json(res_f, result)
    pct = lambda v: "n/a (base scored 0)" if v is None else f"{v:.1f}%"  # noqa: E731
    say(f"[ablation] {cell.name}: MAE {result['mae']:.4f}" + (
        f", astro {pct(retention['astro_pct'])}, general {pct(retention['general_pct'])}" if retention else ""))
    return result


def run_ablation(cfg: AblationConfig, *, dry_run: bool = False, report_only: bool = False,
                 progress: bool = True) -> dict:
    """Run (or resume, or just describe) a grid; returns the summary also written to ablation.json."""
    from speclm.finetune.presets import get_preset

    say = print if progress else (lambda *a, **k: None)
    preset = get_preset(cfg.preset)
    spec = cfg.spec
    cells = selected_cells(preset, cfg)
    out = Path(cfg.out).expanduser()
    est = estimate(preset, cells, spec, out, cfg.retention, cfg.retention_format)
    say(f"[ablation] grid {spec.name} around preset {preset.name} (base {preset.base}): {len(cells)} cells; "
        f"estimated {_hms(est.get('total_s'))} ({est['source']})")
    if dry_run:
        fid = fiducial_cell(preset, spec)
        for c in cells:
            mark = " (fiducial)" if c == fid else ""
            say(f"  {c.name:28s} lr={c.lr:g} r={c.r} epochs={c.epochs:g} n_train={c.n_train}"
                f"  ~{_hms((est.get('per_cell_s') or {}).get(c.name))}{mark}")
        say("commands (one job per cell, e.g. one GPU each; all write into the same --out):")
        for cmd in gpu_commands(cfg, cells):
            say(f"  {cmd}")
        return {"dry_run": True, "cells": [c.name for c in cells], "estimate": est,
                "commands": gpu_commands(cfg, cells)}
    if not cfg.out:
        raise AblationError("--out DIR is required")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    base_ret = None
    if not report_only:
        if not cfg.dataset:
            raise AblationError("--dataset DIR is required")
        base_ret = _retention_base(preset, spec, cfg, out, say) if cfg.retention else None
        data = None
        for i, c in enumerate(cells):
            if data is None and not (out / "cells" / c.name / RESULT).is_file():
                data = GridData(cfg.dataset, preset, spec.n_val)
            say(f"[ablation] cell {i + 1}/{len(cells)}: {c.name}")
            results[c.name] = run_cell(c, preset, data, spec, cfg, out, base_ret, say)
    summary = collect(out, preset, spec, cfg)
    say(f"[ablation] wrote {out / 'ablation.md'}, {out / 'ablation.json'}" +
        (f", {out / 'ablation.png'}" if summary.get("plot") else ""))
    summary["ran"] = {k: not v.get("skipped") for k, v in results.items()}
    return summary


# ------------------------------------------------------------------------------------ reporting

def collect(out: Path, preset, spec: GridSpec, cfg: AblationConfig) -> dict:
    """Read every finished cell under OUT and write ablation.md / .json / .png."""
    sections = grid_sections(preset, spec)
    fid = fiducial_cell(preset, spec)
    done = {}
    for c in grid_cells(preset, spec):
        f = out / "cells" / c.name / RESULT
        if f.is_file():
            done[c.name] = json.loads(f.read_text())
    bf = out / "retention_base.json"
    base = json.loads(bf.read_text())["base"] if bf.is_file() else None
    md = markdown_table(preset, spec, sections, fid, done, base, cfg)
    (out / "ablation.md").write_text(md)
    plot = plot_tradeoff(done, fid, out / "ablation.png")
    summary = {"kind": "speclm-ablation", "grid": spec.__dict__, "preset": preset.to_dict(),
               "fiducial": fid.name, "dataset": cfg.dataset,
               "sections": {a: [c.name for c in cs] for a, cs in sections.items()},
               "cells": done, "base_retention": base, "plot": str(plot) if plot else None,
               "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    _write_json(out / "ablation.json", summary)
    return summary


def _lr_text(lr: float) -> str:
    m, e = f"{lr:e}".split("e")
    m = float(m)
    return f"10^{int(e)}" if abs(m - 1) < 1e-9 else f"{m:g}×10^{int(e)}"


def markdown_table(preset, spec, sections, fid: Cell, done: dict, base: dict | None, cfg) -> str:
    def pct(r, k):
        if not r or r.get("retention") is None:
            return "—"
        v = r["retention"].get(k)
        return "n/a" if v is None else f"{v:.1f}%"  # n/a: the base model scored 0 on that set

    def dlogp(r, key):
        v = (r or {}).get("retention") or {}
        lp, b = v.get(f"{key}_logp"), ((base or {}).get(key) or {}).get("mean_logprob_correct")
        return "—" if lp is None or b is None else f"{lp - b:+.3f}"

    lines = [f"# Table 1 re-measured: preset `{preset.name}` ({preset.base}), grid `{spec.name}`", "",
             f"Dataset: `{cfg.dataset}`. Redshift MAE on the first {spec.n_val} validation spectra "
             "(constrained decoding, from each cell's training card). Scientific QA = MMLU astronomy, General QA = "
             "10 MMLU subjects (philosophy, prehistory, world_religions, high_school_geography, "
             "high_school_macroeconomics, sociology, elementary_mathematics, high_school_biology, marketing, "
             "nutrition), each as % of the base model's accuracy with the adapter always on (the paper's setting); "
             "the paper's AstroBench answer keys are not public. MMLU questions per subject: "
             f"{spec.retention_limit or 'all'}. Fiducial rows in **bold**; — = not run yet; n/a = base accuracy 0.", "",
             "Δ log p = change of the mean log-probability of the correct letter (renormalised over A-D) against "
             "the base model, in nats: 0 = unchanged. It moves even where accuracy does not, but for a model at "
             "chance a rise usually means a flatter (less confidently wrong) letter distribution, not more "
             "knowledge (uniform = ln 1/4 = -1.386): read it beside the accuracy columns.", "",
             "| " + " | ".join(COLUMNS + EXTRA_COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + len(EXTRA_COLUMNS))]
    fixed = {"lr": lambda c: f"rate = {_lr_text(c.lr)}", "r": lambda c: f"rank = {c.r}",
             "epochs": lambda c: f"epochs = {c.epochs:g}", "n_train": lambda c: f"samples = {c.n_train:,}"}
    for axis, cells in sections.items():
        others = ", ".join(fixed[a](fid) for a in AXES if a != axis)
        lines.append(f"| *{SECTION_TITLES[axis]} ({others})* |" + " |" * (len(COLUMNS) + len(EXTRA_COLUMNS) - 1))
        for c in cells:
            r = done.get(c.name)
            mae = "—" if not r or r.get("mae") is None else f"{r['mae']:.3f}"
            row = [_lr_text(c.lr), str(c.r), f"{c.n_train:,}", f"{c.epochs:g}", mae,
                   pct(r, "astro_pct"), pct(r, "general_pct"), dlogp(r, "astro"), dlogp(r, "general")]
            if c == fid:
                row = [f"**{v}**" for v in row]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if base:
        lines.append(f"Base model accuracy: MMLU astronomy {base['astro']['acc']:.3f} (n={base['astro']['n']}), "
                     f"general {base['general']['acc']:.3f} (n={base['general']['n']}).")
    return "\n".join(lines) + "\n"


def plot_tradeoff(done: dict, fid: Cell, path: Path) -> Path | None:
    """MAE (x, lower is better) against % retained (y, higher is better), one point per cell and QA set."""
    pts = [(n, r) for n, r in done.items() if r.get("mae") is not None and r.get("retention")]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for key, label, marker in (("astro_pct", "Scientific QA (MMLU astronomy)", "o"),
                               ("general_pct", "General QA (10 MMLU subjects)", "s")):
        xs = [r["mae"] for _, r in pts]
        ys = [r["retention"][key] for _, r in pts]
        ax.scatter(xs, ys, marker=marker, label=label, alpha=0.8)
    for n, r in pts:
        ax.annotate(n + (" (fiducial)" if n == fid.name else ""), (r["mae"], r["retention"]["general_pct"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(100, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("redshift MAE (validation)  — lower is better")
    ax.set_ylabel("% of base model accuracy retained — higher is better")
    ax.set_title("Spectroscopy vs language: the Table 1 trade-off")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)




# ------------------------------------------------------------------------------------------- CLI

def register_eval(eval_subparsers) -> None:
    """Add ``speclm eval ablation`` to the ``speclm eval`` subcommand group."""
    p = eval_subparsers.add_parser(
        "ablation", help="the Table 1 grid: lr / rank / epochs / training size vs MAE and retention",
        description=__doc__.split("\n\n")[0] + " Grids: " + "; ".join(f"{k}: {g.description}" for k, g in GRIDS.items()))
    AblationConfig.add_arguments(p, ("preset", "dataset", "out", "grid", "retention", "limit_retention", "n_val",
                                     "retention_format", "device", "batch_size"))
    p.add_argument("--cells", default="", help="comma list of cell names to run (default all; see --dry-run)")
    p.add_argument("--mmlu", default=None, help="MMLU CSV folder (default as for eval retention)")
    p.add_argument("--dry-run", action="store_true", help="print cells, time estimate and per-cell commands; run nothing")
    p.add_argument("--report-only", action="store_true", help="only rebuild ablation.md/json/png from finished cells")
    p.set_defaults(func=_cmd_ablation)


def _cmd_ablation(args) -> int:
    cfg = AblationConfig.from_args(args, cells=tuple(c.strip() for c in args.cells.split(",") if c.strip()),
                                   mmlu_dir=args.mmlu)
    run_ablation(cfg, dry_run=args.dry_run, report_only=args.report_only)
    if not args.dry_run:
        print((Path(cfg.out) / "ablation.md").read_text())
    return 0
