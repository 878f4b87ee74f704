"""LoRA fine-tuning: spectra-as-text -> "Redshift: z", loss on the answer tokens only.

Why a small hand-written loop instead of HF Trainer: exact resume after a kill needs the data
order, optimiser, scheduler and RNG state saved together at a step boundary, atomically; and the
same loop must run on a 2-core laptop (bf16 autocast on AMX) and on one GPU. Multi-GPU runs go
through ``accelerate launch`` with the shipped FSDP/DeepSpeed configs (see README).
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speclm.finetune.datasets import ids_sha
from speclm.finetune.codec import build_prompt, format_redshift
from speclm.finetune.predict import RedshiftPredictor, encode_example
from speclm.finetune.presets import Preset
from speclm.tools.errors import SpeclmError

CARD = "training_card.json"


class TrainingError(SpeclmError):
    """Training cannot start or continue (bad output dir, overlapping splits, incompatible checkpoint)."""


def assert_disjoint(train_ids: Sequence[str], val_ids: Sequence[str]) -> None:
    """Honest science: a validation spectrum must never be trained on."""
    overlap = set(train_ids) & set(val_ids)
    if overlap:
        raise TrainingError(f"{len(overlap)} spectra are in both train and validation, e.g. {sorted(overlap)[:3]}")


def build_examples(tokenizer, X: np.ndarray, z: np.ndarray, preset: Preset):
    """Tokenized (input_ids, labels) for every spectrum vector and its redshift."""
    out = []
    for x, zz in zip(X, z):
        ids, labels = encode_example(tokenizer, build_prompt(x, preset.codec), format_redshift(zz, preset.codec))
        out.append((ids, labels))
    return out


def _batches(n: int, batch_size: int, epoch: int, seed: int, lengths: Sequence[int]) -> list[list[int]]:
    """Deterministic shuffled, length-grouped micro-batches for one epoch (same seed -> same order)."""
    rng = random.Random(seed * 1000003 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    chunk = batch_size * 32
    grouped = []
    for i in range(0, n, chunk):
        grouped.extend(sorted(order[i : i + chunk], key=lambda j: lengths[j]))
    batches = [grouped[i : i + batch_size] for i in range(0, n, batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(examples, idx, pad_id):
    """Left-padded batch: answers sit at the right end of every row, so logits are only needed
    for the last few positions (``answer_window``), not for the whole vocabulary x sequence."""
    import torch

    L = max(len(examples[i][0]) for i in idx)
    ids = torch.full((len(idx), L), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), L), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), L), dtype=torch.long)
    for r, i in enumerate(idx):
        a, b = examples[i]
        ids[r, L - len(a):] = torch.tensor(a)
        labels[r, L - len(b):] = torch.tensor(b)
        mask[r, L - len(a):] = 1
    return ids, labels, mask


def answer_window(labels) -> int:
    """Positions from the right that hold answer tokens (+1 for the token predicting the first)."""
    import torch

    has = (labels != -100).any(0)
    first = int(torch.nonzero(has)[0]) if has.any() else labels.shape[1] - 1
    return labels.shape[1] - first + 1


def answer_loss(model, ids, mask, labels):
    """Causal-LM cross-entropy on answer tokens only (labels == -100 elsewhere), computing logits
    just for the answer window: the vocabulary projection over every prompt position is most of
    the memory of a 135M model's step and is wasted work when the prompt carries no loss."""
    import torch.nn.functional as F

    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    k = answer_window(labels)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=k).logits
    tgt = labels[:, -k:]
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1),
                           ignore_index=-100)


def _lr_lambda(cfg, total_steps):
    warm = int(cfg.warmup_frac * total_steps)

    def f(step):
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.scheduler == "constant":
            return 1.0
        frac = (step - warm) / max(1, total_steps - warm)
        return max(0.0, 1 - frac) if cfg.scheduler == "linear" else 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    return f


def _accelerator():
    """An accelerate.Accelerator when launched multi-process (accelerate launch / torchrun), else None.

    Single-process runs (CPU laptop, one GPU) keep the plain loop: nothing to wrap, nothing to sync.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=not __import__("torch").cuda.is_available())


def use_bf16_for(setting: str, device: str) -> bool:
    """Resolve TrainConfig.bf16 ('auto'|'yes'|'no') for a device."""
    import torch

    from speclm.finetune.runtime import pick_dtype

    if setting == "yes":
        return True
    if setting == "no":
        return False
    return pick_dtype("auto", device) == torch.bfloat16


def make_peft_model(model, preset: Preset, seed: int):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    lc = LoraConfig(r=preset.lora.r, lora_alpha=preset.lora.alpha, lora_dropout=preset.lora.dropout,
                    target_modules=list(preset.lora.target_modules), task_type="CAUSAL_LM", bias="none",
                    layers_to_transform=list(preset.lora.layers) or None)
    return get_peft_model(model, lc)


# fields that do not change the optimisation: a resumed run may change them
_NON_TRAINING = ("save_every", "eval_every", "n_eval")


def _training_fields(d: dict) -> dict:
    """The parts of a preset that change the optimisation, with fields a checkpoint predates filled
    by their defaults (a run checkpointed before a new TrainConfig field existed behaved like it)."""
    from speclm.finetune.presets import LoraConfig, TrainConfig

    d = json.loads(json.dumps(d))
    d.pop("description", None)
    for sec, cls in (("train", TrainConfig), ("lora", LoraConfig)):
        if isinstance(d.get(sec), dict):
            d[sec] = json.loads(json.dumps(asdict(cls()))) | d[sec]
    for k in _NON_TRAINING:
        d.get("train", {}).pop(k, None)
    return d


def _latest_checkpoint(out: Path) -> Path | None:
    ck = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    ck = [c for c in ck if (c / "state.json").is_file()]
    return ck[-1] if ck else None


def _save_checkpoint(out: Path, step: int, model, opt, sched, state: dict, keep: int = 2) -> None:
    """Atomic: write into a temp dir, then rename; a kill leaves the previous checkpoint intact."""
    import torch
    from peft import get_peft_model_state_dict

    ckdir = out / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    tmp = ckdir / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save({"adapter": get_peft_model_state_dict(model), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "torch_rng": torch.get_rng_state()}, tmp / "state.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    final = ckdir / f"step-{step}"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(ckdir.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class _Run:
    """What the steps of one training run share (model, optimiser, devices, counters)."""

    preset: Preset
    out: Path
    model: Any
    tok: Any
    dev: str
    acc: Any
    rank: int
    world: int
    use_bf16: bool
    warm: dict | None
    train_ids: list
    examples: list = field(default_factory=list)
    per_epoch: int = 1
    total_steps: int = 1
    params: list = field(default_factory=list)
    opt: Any = None
    sched: Any = None
    inner: Any = None
    state: dict = field(default_factory=dict)
    n_trainable: int = 0

    @property
    def main_proc(self) -> bool:
        return self.rank == 0


def _setup(preset: Preset, out: Path, train_ids, val_ids, device: str, runtime) -> _Run:
    """Step 1: devices, the base model with a fresh (or warm-started) LoRA on it."""
    import torch

    from speclm.finetune.runtime import load_base_model, pick_device

    cfg = preset.train
    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)
    acc = _accelerator()  # None unless launched by accelerate/torchrun with WORLD_SIZE > 1
    dev = str(acc.device) if acc else pick_device(device)
    rank, world = (acc.process_index, acc.num_processes) if acc else (0, 1)
    use_bf16 = use_bf16_for(cfg.bf16, dev)
    if acc is not None:
        device = dev
    if runtime is None:
        model, tok, _ = load_base_model(preset.base, device=device, dtype="bfloat16" if use_bf16 else "float32")
    else:
        model, tok = runtime.model, runtime.tokenizer
    model = make_peft_model(model, preset, cfg.seed)
    warm = warm_start(model, preset, cfg.init_adapter) if cfg.init_adapter else None
    train_ids = list(train_ids)
    if warm:
        assert_disjoint(warm["train_ids"], val_ids)
        seen = set(warm["train_ids"])
        train_ids = list(warm["train_ids"]) + [i for i in map(str, train_ids) if i not in seen]
    model.to(dev)
    return _Run(preset=preset, out=out, model=model, tok=tok, dev=dev, acc=acc, rank=rank, world=world,
                use_bf16=use_bf16, warm=warm, train_ids=train_ids,
                n_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))


def _plan(run: _Run, examples: list, max_steps: int | None) -> None:
    """Step 2: the examples (prompt + answer tokens), the step budget, optimiser and schedule."""
    import torch

    cfg = run.preset.train
    run.examples = examples
    run.per_epoch = math.ceil(len(run.examples) / cfg.batch_size)
    run.total_steps = max(1, int(round(cfg.epochs * run.per_epoch)) // cfg.grad_accum)
    if max_steps:
        run.total_steps = min(run.total_steps, max_steps)
    run.params = [p for p in run.model.parameters() if p.requires_grad]
    run.opt = torch.optim.AdamW(run.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    run.sched = torch.optim.lr_scheduler.LambdaLR(run.opt, _lr_lambda(cfg, run.total_steps))
    run.inner = run.model  # the PeftModel (DDP wraps it for the forward/backward only)
    run.state = {"step": 0, "micro": 0, "losses": [], "tokens": 0, "train_seconds": 0.0,
                 "preset": run.preset.to_dict(), "total_steps": run.total_steps}


def _resume(run: _Run, progress: bool) -> None:
    """Step 3: continue from the newest checkpoint of ``out`` (same preset only)."""
    import torch
    from peft import set_peft_model_state_dict

    ck = _latest_checkpoint(run.out)
    if ck is None:
        return
    saved = json.loads((ck / "state.json").read_text())
    if _training_fields(saved["preset"]) != _training_fields(run.preset.to_dict()):
        raise TrainingError(f"checkpoint {ck} was made with a different preset; use a new --out")
    blob = torch.load(ck / "state.pt", map_location=run.dev, weights_only=False)
    set_peft_model_state_dict(run.inner, blob["adapter"])
    run.opt.load_state_dict(blob["opt"])
    run.sched.load_state_dict(blob["sched"])
    torch.set_rng_state(blob["torch_rng"])
    run.state = saved
    if progress:
        print(f"resuming from {ck} (step {run.state['step']}/{run.total_steps})", flush=True)


def _loop(run: _Run, progress: bool, stop_after: int | None) -> None:
    """Step 4: the optimiser steps (loss on the answer only), checkpointing every save_every."""
    import torch
    from tqdm.auto import tqdm

    cfg, state = run.preset.train, run.state
    model, opt = run.model, run.opt
    if run.acc is not None:
        model, opt = run.acc.prepare(model, opt)
    model.train()
    amp_dev = "cuda" if run.dev.startswith("cuda") else "cpu"
    pad = run.tok.pad_token_id
    lengths = [len(e[0]) for e in run.examples]
    bar = tqdm(total=run.total_steps, initial=state["step"], desc="train", unit="step",
               disable=not (progress and run.main_proc))
    t0 = time.time()
    micro_done = state["micro"]
    epoch = micro_done // run.per_epoch
    steps_this_run = 0
    while state["step"] < run.total_steps:
        batches = _batches(len(run.examples), cfg.batch_size, epoch, cfg.seed, lengths)
        start = micro_done - epoch * run.per_epoch
        for bi in range(start, len(batches)):
            shard = batches[bi][run.rank::run.world] or batches[bi][:1]  # each rank takes its share of the batch
            ids, labels, mask = _collate(run.examples, shard, pad)
            ids, labels, mask = ids.to(run.dev), labels.to(run.dev), mask.to(run.dev)
            with torch.autocast(amp_dev, dtype=torch.bfloat16, enabled=run.use_bf16):
                loss = answer_loss(model, ids, mask, labels)
            if run.acc is not None:
                run.acc.backward(loss / cfg.grad_accum)  # DDP all-reduces (averages) LoRA gradients
            else:
                (loss / cfg.grad_accum).backward()
            state["tokens"] += int(mask.sum()) * run.world
            micro_done += 1
            state["micro"] = micro_done
            if micro_done % cfg.grad_accum:
                continue
            torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm)
            opt.step(), run.sched.step(), opt.zero_grad(set_to_none=True)
            state["step"] += 1
            steps_this_run += 1
            state["losses"].append(round(float(loss.detach()), 5))
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}", lr=f"{run.sched.get_last_lr()[0]:.1e}")
            done = state["step"] >= run.total_steps
            stopping = bool(stop_after and steps_this_run >= stop_after)
            if state["step"] % cfg.save_every == 0 or done or stopping:
                state["train_seconds"] += time.time() - t0
                t0 = time.time()
                if run.main_proc:
                    _save_checkpoint(run.out, state["step"], run.inner, opt, run.sched, state)
                if run.acc is not None:
                    run.acc.wait_for_everyone()
            if done or stopping:
                break
        else:
            epoch += 1
            continue
        break
    bar.close()


def _card(run: _Run, n_train: int, n_val: int, val_ids, dataset_info: dict | None) -> dict:
    """Step 5: the training card (what was trained on what, how fast, with which settings)."""
    cfg, state = run.preset.train, run.state
    secs = state["train_seconds"] or 1e-9
    card = {
        "speclm_version": _version(),
        "base_model": run.preset.base,
        "preset": run.preset.to_dict(),
        "preprocess": run.preset.preprocess.to_dict(),
        "codec": run.preset.codec.to_dict(),
        "lora": asdict(run.preset.lora),
        "train": asdict(cfg),
        "seed": cfg.seed,
        "dataset": dataset_info or {},
        "n_train": int(n_train),
        "n_val": int(n_val),
        "train_ids_sha": ids_sha(run.train_ids),
        "val_ids_sha": ids_sha(val_ids),
        "trainable_parameters": int(run.n_trainable),
        "steps": state["step"],
        "planned_steps": int(math.ceil(cfg.epochs * run.per_epoch) // cfg.grad_accum),
        "examples_seen": int(state["micro"]) * cfg.batch_size,
        "tokens_seen": state["tokens"],
        "train_seconds": round(secs, 1),
        "tokens_per_second": round(state["tokens"] / secs, 1),
        "device": run.dev,
        "world_size": run.world,
        "bf16": run.use_bf16,
        "final_loss": float(np.mean(state["losses"][-20:])) if state["losses"] else None,
    }
    if run.warm:
        card["init_adapter"] = ({k: v for k, v in run.warm.items() if k != "train_ids"}
                                | {"n_train_ids": len(run.warm["train_ids"])})
        card["n_train_including_init"] = len(run.train_ids)
    return card


def _validate(run: _Run, card: dict, X_val: np.ndarray, z_val: np.ndarray, z_train: np.ndarray,
              progress: bool) -> None:
    """Step 6: score the first n_eval validation spectra with the new adapter (into the card)."""
    from speclm.finetune.runtime import ModelRuntime

    rt = ModelRuntime(run.inner, run.tok, run.preset.base, run.dev)
    rt.adapters["default"] = type("A", (), {"card": card})()  # the in-memory adapter
    rt.active = "default"
    pred = RedshiftPredictor(rt, run.preset.preprocess, run.preset.codec)
    n = min(run.preset.train.n_eval, len(X_val))
    res = pred.predict_values(X_val[:n], batch_size=16, progress=progress)
    dz = np.array([r.z for r in res]) - z_val[:n]
    card["metrics_val"] = {"n": n, "mae": float(np.mean(np.abs(dz))), "median_abs": float(np.median(np.abs(dz))),
                           "mae_constant_median": float(np.mean(np.abs(np.median(z_train) - z_val[:n])))}


def inherit_domain(card: dict, warm: dict | None, z_train) -> None:
    """A warm-started adapter keeps its init adapter's ``domain`` (the galaxies and z range it answers for) when
    the new training redshifts lie inside it. Why: the domain sets the p(z) floor's range and the out-of-domain
    warnings; a bundle that lost it silently spread the floor over 0-0.5 instead of 0-0.8 (v24, 2026-12-08).
    Outside it (or without a warm start) the card gets no domain and the bundler must write one."""
    dom = (warm or {}).get("domain")
    if not isinstance(dom, dict) or not dom.get("z_max"):
        return
    z = np.asarray(z_train, dtype=float)
    if z.size and np.nanmax(z) >= float(dom["z_max"]):
        print(f"warning: training redshifts reach {np.nanmax(z):.3f}, beyond the init adapter's domain "
              f"z < {dom['z_max']}: the card gets no domain; write one before bundling")
        return
    card["domain"] = dict(dom) | {"inherited_from": warm.get("path")}


def train_arrays(preset: Preset, out_dir: str | os.PathLike, X_train: np.ndarray, z_train: np.ndarray,
                 X_val: np.ndarray, z_val: np.ndarray, *, train_ids: Sequence[str], val_ids: Sequence[str],
                 dataset_info: dict | None = None, resume: bool = True, max_steps: int | None = None,
                 device: str = "auto", progress: bool = True, runtime=None, stop_after: int | None = None) -> dict:
    """Train a LoRA adapter on preprocessed vectors; returns the training card (also written to out_dir).

    The steps: set up the model (:func:`_setup`), plan examples and optimiser (:func:`_plan`),
    resume from a checkpoint (:func:`_resume`), run the optimiser steps (:func:`_loop`), write the
    adapter and its card (:func:`_card`), score validation spectra (:func:`_validate`).
    ``stop_after`` checkpoints and ends the run after that many optimiser steps *without* finishing
    (a graceful stop; the resume tests use it, and a real SIGKILL is tested too).
    """
    def validate(run, card):
        inherit_domain(card, run.warm, z_train)
        if len(X_val) and preset.train.n_eval:
            _validate(run, card, X_val, z_val, z_train, progress)

    return _train(preset, out_dir, lambda tok: build_examples(tok, X_train, z_train, preset), len(X_train),
                  len(X_val), train_ids=train_ids, val_ids=val_ids, dataset_info=dataset_info, resume=resume,
                  max_steps=max_steps, device=device, progress=progress, runtime=runtime, stop_after=stop_after,
                  validate=validate)


def train_pairs(preset: Preset, out_dir: str | os.PathLike, pairs: Sequence[tuple[str, str]], *,
                train_ids: Sequence[str], val_ids: Sequence[str], n_val: int = 0, dataset_info: dict | None = None,
                resume: bool = True, max_steps: int | None = None, device: str = "auto", progress: bool = True,
                runtime=None, stop_after: int | None = None, validate=None) -> dict:
    """Train a LoRA adapter on (prompt, answer) text pairs (loss on the answer only), with the same
    steps, checkpoints, resume and card as :func:`train_arrays`; the embedded planner's adapter is
    trained this way. ``train_ids`` name the requests the pairs come from (checked against ``val_ids``);
    ``validate(run, card)`` may add metrics to the card."""
    return _train(preset, out_dir, lambda tok: [encode_example(tok, p, a) for p, a in pairs], len(pairs), n_val,
                  train_ids=train_ids, val_ids=val_ids, dataset_info=dataset_info, resume=resume,
                  max_steps=max_steps, device=device, progress=progress, runtime=runtime, stop_after=stop_after,
                  validate=validate)


def _train(preset: Preset, out_dir, make_examples, n_train: int, n_val: int, *, train_ids, val_ids, dataset_info,
           resume, max_steps, device, progress, runtime, stop_after, validate) -> dict:
    assert_disjoint(train_ids, val_ids)
    out = Path(out_dir)
    if out.exists() and (out / "adapter_config.json").exists() and not resume:
        raise TrainingError(f"{out} already holds a finished adapter; choose another --out or pass --resume")
    out.mkdir(parents=True, exist_ok=True)
    run = _setup(preset, out, train_ids, val_ids, device, runtime)
    _plan(run, make_examples(run.tok), max_steps)
    if resume:
        _resume(run, progress)
    _loop(run, progress, stop_after)
    if stop_after and run.state["step"] < run.total_steps:
        return {"stopped_at": run.state["step"]}
    # final adapter (unmerged PEFT: adapter_config.json + adapter_model.safetensors, no modules_to_save)
    run.inner.eval()
    if not run.main_proc:
        return {"rank": run.rank}
    run.inner.save_pretrained(str(out))
    card = _card(run, n_train, n_val, val_ids, dataset_info)
    (out / CARD).write_text(json.dumps(card, indent=2))
    (out / "train_ids.txt").write_text("\n".join(map(str, run.train_ids)) + "\n")
    if validate is not None:
        validate(run, card)
        (out / CARD).write_text(json.dumps(card, indent=2))
    if progress:
        print(json.dumps({k: card[k] for k in ("steps", "tokens_per_second", "final_loss")} |
                         {"metrics_val": card.get("metrics_val")}), flush=True)
    return card


def warm_start(model, preset: Preset, path: str) -> dict:
    """Load an existing adapter's LoRA weights into ``model`` (a fresh PeftModel of the same shape).

    Why: continuing from the bundled adapter (on more or different spectra, e.g. a user's own SDSS
    set) skips the long loss plateau a fresh LoRA sits on before it starts reading the spectrum.
    Refuses adapters whose preprocessing, codec or LoRA shape differ, since those weights would be
    read against a different text.
    """
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    from speclm.finetune.runtime import read_card, read_train_ids, resolve_adapter

    src = resolve_adapter(path)
    card = read_card(src)
    for key, mine in (("preprocess", preset.preprocess.to_dict()), ("codec", preset.codec.to_dict())):
        if card.get(key) != mine:
            raise TrainingError(f"--init-adapter {path}: its {key} config differs from preset {preset.name!r}; "
                                f"warm starts need the same text encoding")
    acfg = json.loads((Path(src) / "adapter_config.json").read_text())
    if int(acfg.get("r", -1)) != preset.lora.r or set(acfg.get("target_modules") or []) != set(preset.lora.target_modules):
        raise TrainingError(f"--init-adapter {path}: LoRA r={acfg.get('r')} on {sorted(acfg.get('target_modules') or [])} "
                            f"does not match the preset's r={preset.lora.r} on {sorted(preset.lora.target_modules)}")
    weights = load_peft_weights(src, device="cpu")
    res = set_peft_model_state_dict(model, weights)
    missing = [k for k in getattr(res, "missing_keys", []) if "lora_" in k]
    if missing or getattr(res, "unexpected_keys", []):
        raise TrainingError(f"--init-adapter {path}: weights do not fit this model "
                            f"({len(missing)} LoRA tensors missing, {len(res.unexpected_keys)} unexpected)")
    ids = read_train_ids(src)
    prior = card.get("init_adapter") or {}
    return {"path": str(Path(src).resolve()), "steps": card.get("steps"), "train_ids_sha": ids_sha(ids),
            "base_model": card.get("base_model"), "train_ids": ids, "domain": card.get("domain"),
            # what every adapter up the warm-start chain was trained on, so the card alone can
            # rebuild it (held-out checks) after the intermediate directories are gone
            "datasets": [card.get("dataset") or {}] + list(prior.get("datasets") or [])}


def _version() -> str:
    from speclm import __version__

    return __version__


def init_adapter(preset: Preset, out_dir: str | os.PathLike, *, runtime=None, note: str = "untrained") -> Path:
    """Save a freshly initialised (untrained) LoRA adapter with a training card.

    Why: tests of the agent, UI and evals need an adapter in the right on-disk format with the
    right codec metadata in seconds, without training; the card says plainly that it is untrained.
    """
    from speclm.finetune.runtime import load_base_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if runtime is None:
        model, _, _ = load_base_model(preset.base, dtype="float32")
    else:
        model = runtime.model
    peft_model = make_peft_model(model, preset, preset.train.seed)
    peft_model.save_pretrained(str(out))
    card = {"speclm_version": _version(), "base_model": preset.base, "preset": preset.to_dict(),
            "preprocess": preset.preprocess.to_dict(), "codec": preset.codec.to_dict(),
            "lora": asdict(preset.lora), "seed": preset.train.seed, "note": note, "steps": 0}
    (out / CARD).write_text(json.dumps(card, indent=2))
    if runtime is not None:  # leave the caller's base model unwrapped
        peft_model.unload() if hasattr(peft_model, "unload") else None
    return out
