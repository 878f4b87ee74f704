"""Named recipes (paper fiducial, Table 1 variants, embedded default, tiny) loaded from YAML data.

Why data, not code paths: a Table 1 row differs from the fiducial in one number; writing each as
YAML (``inherit`` + overrides) keeps the grid auditable and lets users add their own preset file
(``--preset path/to/my.yaml``) without touching Python.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from speclm.tools.config import Config, setting
from speclm.finetune.codec import CodecConfig
from speclm.finetune.preprocess import PreprocessConfig
from speclm.tools.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class LoraConfig(Config):
    """LoRA shape; the paper's fiducial is r=8 on q_proj+v_proj."""

    r: int = setting(8, "LoRA rank.")
    alpha: int = setting(16, "LoRA scaling alpha (effective scale alpha/r).")
    dropout: float = setting(0.05, "Dropout on the LoRA branch.")
    target_modules: list = setting(["q_proj", "v_proj"], "Linear layers that get adapters.")
    layers: list = setting([], "Decoder layer indices that get adapters ([] = all). On a CPU, adapting only the upper "
                          "layers also stops back-propagation there, which saves compute.")

    def __post_init__(self):
        if not 1 <= self.r <= 512:
            raise ConfigError(f"lora.r must be in [1, 512], got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError("lora.target_modules must name at least one module")


@dataclass
class TrainConfig(Config):
    """Optimisation settings."""

    lr: float = setting(1e-4, "Peak learning rate (AdamW).")
    epochs: float = setting(2, "Passes over the training set (fractional allowed).")
    n_train: int = setting(3000, "Training spectra drawn from the dataset's train split (0 = all).")
    batch_size: int = setting(4, "Sequences per micro-batch.")
    grad_accum: int = setting(4, "Micro-batches per optimiser step.")
    warmup_frac: float = setting(0.03, "Fraction of steps with linear warm-up.")
    scheduler: str = setting("cosine", "'cosine', 'linear' or 'constant' after warm-up.")
    weight_decay: float = setting(0.0, "AdamW weight decay on LoRA weights.")
    save_every: int = setting(50, "Write a resumable checkpoint every N optimiser steps.")
    eval_every: int = setting(0, "Evaluate MAE on a validation subset every N steps (0 = only at the end).")
    n_eval: int = setting(200, "Validation spectra used for the in-training/final MAE.")
    seed: int = setting(0, "Seed for data order, LoRA init and augmentation.")
    bf16: str = setting("auto", "'auto': bf16 weights + autocast where the hardware does bf16 natively (CUDA, CPUs with "
                   "AMX/AVX512-BF16), fp32 elsewhere (bf16 is emulated and ~6x slower on AVX2-only CPUs); 'yes'; 'no'.")
    max_grad_norm: float = setting(1.0, "Gradient clipping.")
    init_adapter: str = setting("", "Warm start: a LoRA adapter directory (or 'bundled') whose weights initialise this run "
                           "instead of peft's fresh init; it must share this preset's LoRA shape, preprocessing and "
                           "codec. Its training ids count as this run's (overlap checks, train_ids.txt). '' = fresh.")

    def __post_init__(self):
        if not 0 < self.lr < 1:
            raise ConfigError(f"train.lr must be in (0, 1), got {self.lr}")
        if not self.epochs > 0:
            raise ConfigError(f"train.epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
        if self.scheduler not in ("cosine", "linear", "constant"):
            raise ConfigError(f"train.scheduler must be cosine, linear or constant, got {self.scheduler!r}")
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError("train.warmup_frac must be in [0, 1)")
        if isinstance(self.bf16, bool):
            object.__setattr__(self, "bf16", "yes" if self.bf16 else "no")
        if self.bf16 not in ("auto", "yes", "no"):
            raise ConfigError(f"train.bf16 must be auto, yes or no, got {self.bf16!r}")
        if self.save_every < 1:
            raise ConfigError("train.save_every must be >= 1")


@dataclass
class Preset:
    name: str
    description: str
    base: str
    preprocess: PreprocessConfig
    codec: CodecConfig
    lora: LoraConfig
    train: TrainConfig

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "base": self.base,
                "preprocess": self.preprocess.to_dict(), "codec": self.codec.to_dict(),
                "lora": asdict(self.lora), "train": asdict(self.train)}


def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _raw_presets() -> dict[str, dict]:
    raw: dict[str, dict] = {}
    for f in sorted(PRESET_DIR.glob("*.yaml")):
        data = yaml.safe_load(f.read_text()) or {}
        if "base" in data:  # a single-preset file named after the file
            raw[f.stem] = data
        else:
            raw.update(data)
    return raw


def list_presets() -> dict[str, str]:
    return {name: _resolve_raw(name, _raw_presets()).get("description", "") for name in _raw_presets()}


def _resolve_raw(name: str, raw: dict, depth: int = 0) -> dict:
    if name not in raw:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(sorted(raw))}")
    d = dict(raw[name])
    parent = d.pop("inherit", None)
    if parent:
        if depth > 5:
            raise ConfigError(f"preset inheritance too deep at {name!r}")
        d = _merge(_resolve_raw(parent, raw, depth + 1), d)
        d.setdefault("description", f"{parent} with changes")
        if "description" in raw[name]:
            d["description"] = raw[name]["description"]
        else:
            d["description"] = f"{parent} with " + ", ".join(
                f"{sec}.{k}={v}" for sec, kv in raw[name].items() if isinstance(kv, dict) for k, v in kv.items())
    return d


def preset_from_dict(name: str, d: dict) -> Preset:
    def build(cls, key):
        sub = d.get(key) or {}
        known = {f.name for f in fields(cls)}
        bad = set(sub) - known
        if bad:
            raise ConfigError(f"preset {name!r}: unknown {key} fields {sorted(bad)}")
        return cls(**sub)

    if "base" not in d:
        raise ConfigError(f"preset {name!r} has no base model")
    return Preset(name=name, description=d.get("description", ""), base=d["base"],
                  preprocess=build(PreprocessConfig, "preprocess"), codec=build(CodecConfig, "codec"),
                  lora=build(LoraConfig, "lora"), train=build(TrainConfig, "train"))


def get_preset(name: str = "smollm2", **overrides) -> Preset:
    """A preset by name (or a YAML file path), with optional nested overrides {section: {field: value}}."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        raw = _raw_presets()
        data = yaml.safe_load(p.read_text()) or {}
        raw[p.stem] = data
        d = _resolve_raw(p.stem, raw)
        name = p.stem
    else:
        d = _resolve_raw(name, _raw_presets())
    if overrides:
        d = _merge(d, overrides)
    return preset_from_dict(name, d)
