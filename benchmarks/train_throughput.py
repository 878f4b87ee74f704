"""CPU LoRA training throughput: a plain fp32 loop vs speclm's path, measured in one run.

plain  : fp32 weights, full-sequence logits, HF's built-in loss (labels=...), no autocast.
speclm : the trainer's path: bf16 weights + bf16 autocast where the hardware has native bf16
         (CUDA, AMX/AVX512-BF16 CPUs; fp32 elsewhere, where bf16 is emulated and slower), fp32 LoRA
         weights, logits only for the answer window (train.answer_loss), computed as one GEMM on a
         contiguous slice (runtime.contiguous_head_input; without it the strided slice made matmul
         broadcast the 28M-value head weight per row, a third of the step).
Both train the same LoRA (preset smollm2 shape) on the same batches; steps alternate between the
two so background load affects both alike. Prints tokens/s of each and the ratio.

    python benchmarks/train_throughput.py --base embedded --steps 6 --batch-size 8
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from speclm.finetune.presets import get_preset
from speclm.finetune.runtime import load_base_model
from speclm.finetune.train import _collate, answer_loss, build_examples, make_peft_model, use_bf16_for


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--preset", default="smollm2")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", default=None, help="write results here")
    a = ap.parse_args()
    p = get_preset(a.preset)
    rng = np.random.default_rng(0)
    X = rng.uniform(p.preprocess.clip_min, p.preprocess.clip_max, (a.batch_size * (a.steps + 1), p.preprocess.n_bins)).round()
    z = rng.uniform(0, 0.5, len(X))
    runs = {}
    bf16 = use_bf16_for("auto", "cpu")
    for name, dtype in (("plain_fp32", "float32"), ("speclm", "bfloat16" if bf16 else "float32")):
        model, tok, _ = load_base_model(a.base, dtype=dtype)
        model = make_peft_model(model, p, 0)
        model.train()
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        runs[name] = dict(model=model, opt=opt, tokens=0, secs=0.0)
    ex = build_examples(tok, X, z, p)
    for step in range(a.steps + 1):  # step 0 is warm-up, not timed
        idx = list(range(step * a.batch_size, (step + 1) * a.batch_size))
        ids, labels, mask = _collate(ex, idx, tok.pad_token_id)
        for name, r in runs.items():
            t = time.perf_counter()
            if name == "plain_fp32":
                loss = r["model"](input_ids=ids, attention_mask=mask, labels=labels).loss
            else:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = answer_loss(r["model"], ids, mask, labels)
            loss.backward()
            r["opt"].step()
            r["opt"].zero_grad(set_to_none=True)
            dt = time.perf_counter() - t
            if step:
                r["tokens"] += int(mask.sum())
                r["secs"] += dt
    out = {name: {"tokens_per_s": round(r["tokens"] / r["secs"], 1), "seconds": round(r["secs"], 1)}
           for name, r in runs.items()}
    out["ratio"] = round(out["speclm"]["tokens_per_s"] / out["plain_fp32"]["tokens_per_s"], 2)
    out["tokens_per_example"] = len(ex[0][0])
    out["speclm_uses_bf16"] = bf16
    out["cpu_flags"] = sorted(f for f in open("/proc/cpuinfo").read().split() if f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2"))
    out.update(base=a.base, preset=a.preset, batch_size=a.batch_size, steps=a.steps, threads=torch.get_num_threads())
    print(json.dumps(out, indent=1))
    if a.json:
        open(a.json, "w").write(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
