"""A weight soup of LoRA adapters: one adapter whose update is the weighted mean of theirs.

Why: two adapters trained from related starts on the same data can fail on opposite sides (one
reads faint red galaxies, the other nearby ones); the mean of their weight updates (a "model soup",
Wortsman et al. 2022) often keeps both. peft's ``add_weighted_adapter(combination_type="cat")``
builds it exactly: the A matrices are stacked and the B matrices placed side by side, so the new
adapter has rank r1 + r2 and ``dW = sum_i w_i dW_i`` — no approximation (checked here on every layer).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

from speclm.tools.errors import ConfigError

#: card fields that must agree, or the adapters do not speak the same language
MUST_AGREE = ("base_model", "preprocess", "codec")


def _same(cards: list[dict], key: str) -> bool:
    return all(json.dumps(c.get(key), sort_keys=True) == json.dumps(cards[0].get(key), sort_keys=True) for c in cards)


def soup_adapters(paths: Sequence[str], out: str, weights: Sequence[float] | None = None, *,
                  base: str | None = None, fp16: bool = True) -> dict:
    """Write the weighted mean of LoRA adapters ``paths`` to ``out``; returns its training card.

    ``weights`` default to equal and must be positive and sum to 1 (a mean, not an extrapolation).
    The card is the first adapter's, with ``soup`` (sources, weights, the check), the union of the
    training ids in ``train_ids.txt`` (the evals refuse to score any of them), and the new rank.
    """
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file

    from speclm.finetune.bundle import new_out_dir
    from speclm.finetune.runtime import load_base_model, read_card, read_train_ids, resolve_adapter

    if len(paths) < 2:
        raise ConfigError("a soup needs at least two adapters")
    src = [Path(resolve_adapter(str(p))) for p in paths]
    w = [1.0 / len(src)] * len(src) if weights is None else [float(x) for x in weights]
    if len(w) != len(src):
        raise ConfigError(f"{len(w)} weights for {len(src)} adapters")
    if min(w) <= 0 or abs(sum(w) - 1.0) > 1e-6:
        raise ConfigError(f"soup weights must be positive and sum to 1 (got {w})")
    cards = [read_card(str(p)) for p in src]
    for key in MUST_AGREE:
        if not _same(cards, key):
            raise ConfigError(f"the adapters' {key} differ: a soup needs adapters of one base, preprocessing and codec")
    outp = new_out_dir(out, src)

    model, _, _ = load_base_model(base or cards[0].get("base_model") or "embedded", device="cpu", dtype="float32")
    names = [f"a{i}" for i in range(len(src))]
    model = PeftModel.from_pretrained(model, str(src[0]), adapter_name=names[0])
    for n, p in zip(names[1:], src[1:]):
        model.load_adapter(str(p), adapter_name=n)
    model.add_weighted_adapter(names, w, adapter_name="soup", combination_type="cat")

    worst, layers = 0.0, 0
    for mod in model.modules():
        if hasattr(mod, "lora_A") and "soup" in mod.lora_A:
            dw = lambda k: mod.scaling[k] * (mod.lora_B[k].weight @ mod.lora_A[k].weight)  # noqa: E731
            want = sum(wi * dw(n) for wi, n in zip(w, names))
            scale = float(want.abs().max()) or 1.0
            worst = max(worst, float((dw("soup") - want).abs().max()) / scale)
            layers += 1
    if layers == 0 or worst > 1e-4:
        raise ConfigError(f"the soup's update is not the weighted mean of the adapters' (worst relative error {worst:.1e})")

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, selected_adapters=["soup"])
        d = Path(tmp) / "soup"
        outp.mkdir(parents=True, exist_ok=True)
        tensors = load_file(str(d / "adapter_model.safetensors"))
        dt = torch.float16 if fp16 else torch.float32
        save_file({k: v.to(dt) for k, v in tensors.items()}, str(outp / "adapter_model.safetensors"))
        cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = json.loads((src[0] / "adapter_config.json").read_text()).get("base_model_name_or_path")
    (outp / "adapter_config.json").write_text(json.dumps(cfg, indent=2))

    ids = set().union(*(read_train_ids(p) for p in src))
    (outp / "train_ids.txt").write_text("".join(i + "\n" for i in sorted(ids)))
    card = dict(cards[0])
    card.pop("calibration", None)  # the soup's p(z) is calibrated afresh (speclm eval calibrate --write)
    card["lora"] = dict(card.get("lora") or {}, r=cfg["r"], alpha=cfg["lora_alpha"])
    card["soup"] = {"method": "peft add_weighted_adapter, combination_type=cat: dW = sum_i w_i dW_i",
                    "adapters": [{"path": str(p.resolve()), "weight": wi, "steps": c.get("steps"),
                                  "init_adapter": (c.get("init_adapter") or {}).get("path"),
                                  "dataset": (c.get("dataset") or {}).get("path")} for p, wi, c in zip(src, w, cards)],
                    "layers": layers, "max_rel_error_dW": worst, "dtype": "float16" if fp16 else "float32"}
    card["n_train_including_init"] = len(ids)
    (outp / "training_card.json").write_text(json.dumps(card, indent=2))
    return card
