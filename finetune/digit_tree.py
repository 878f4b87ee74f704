"""The model's digit tree — the p(z) of :class:`speclm.finetune.predict.RedshiftPredictor` — on an engine
that returns next-token log-probabilities, for serving at scale (vLLM on GPUs).

The tree is the predictor's: the integer digit (constrained argmax among the ten digit tokens), the
first decimal's ten log-probabilities, the second decimal's on each of the ten first decimals, the third
decimal's on the ``THIRD_DIGIT_LEAVES`` most probable 0.01 leaves. An engine is a function
``step(token_lists) -> (n, 10)``: the ten digit tokens' log-probabilities after each token list. Per
spectrum that is 1 + 1 + 10 + 3 = 15 sequences sharing one prompt, so an engine with prefix caching
(vLLM's ``enable_prefix_caching``) reads the prompt once. :func:`tree_logits` returns the same arrays as
``RedshiftPredictor.raw_logits``, so the p(z), its temperature and its summary are the predictor's own.

* :func:`hf_step`: the runtime's model (full sequences, no cache) — the reference the tests compare
  with the predictor's cached, batched tree, on CPU.
* :class:`VLLMDigits`: vLLM offline inference with the LoRA adapter unmerged (``enable_lora``, a
  ``LoRARequest``), ``allowed_token_ids`` = the digits and ``logprobs_mode="processed_logprobs"``, so
  the ten returned log-probabilities are exactly the digits'. Written for a GPU machine; not run here
  (no GPU was lent to the sessions that wrote it, and vLLM has no CPU wheel on PyPI).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Step = Callable[[Sequence[list[int]]], np.ndarray]


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def tree_logits(step: Step, prompt_ids: Sequence[list[int]], digits: Sequence[int], dot: int,
                leaves: int | None = None) -> dict:
    """``RedshiftPredictor.raw_logits``'s arrays (d0, l1, l2, l3, leaf) from an engine's ``step``."""
    from speclm.finetune.predict import THIRD_DIGIT_LEAVES

    K = leaves or THIRD_DIGIT_LEAVES
    B = len(prompt_ids)
    D = list(digits)
    l0 = np.asarray(step([list(p) for p in prompt_ids]), float)
    d0 = l0.argmax(-1)
    s1 = [list(p) + [D[int(d)], dot] for p, d in zip(prompt_ids, d0)]
    l1 = np.asarray(step(s1), float)  # (B, 10)
    l2 = np.asarray(step([s + [D[k]] for s in s1 for k in range(10)]), float).reshape(B, 10, 10)
    joint = (_softmax(l1)[:, :, None] * _softmax(l2)).reshape(B, 100)
    leaf = np.argsort(-joint, axis=-1, kind="stable")[:, :K]  # most probable first
    l3 = np.asarray(step([s1[b] + [D[int(lf) // 10], D[int(lf) % 10]] for b in range(B) for lf in leaf[b]]),
                    float).reshape(B, K, 10)
    return {"d0": d0, "l1": l1, "l2": l2, "l3": l3, "leaf": leaf}


def hf_step(runtime, digits: Sequence[int]) -> Step:
    """The runtime's model (adapter on) as an engine: full sequences, left-padded, no cache."""
    import torch

    from speclm.finetune.predict import _left_pad

    D = torch.tensor(list(digits))

    def step(token_lists):
        ids, mask = _left_pad([list(t) for t in token_lists], runtime.tokenizer.pad_token_id)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with runtime.adapter_enabled(True), torch.inference_mode():
            out = runtime.model(input_ids=ids.to(runtime.device), attention_mask=mask.to(runtime.device),
                                position_ids=pos.to(runtime.device), logits_to_keep=1)
            return torch.log_softmax(out.logits[:, -1, :].float()[:, D.to(runtime.device)], -1).cpu().numpy()

    return step


def digit_logprobs(logprobs: dict, digits: Sequence[int]) -> np.ndarray:
    """The ten digits' log-probabilities from one position's ``{token_id: Logprob | float}`` (vLLM's
    per-token dict); a digit the engine did not return gets -inf."""
    out = np.full(len(digits), -np.inf)
    for i, t in enumerate(digits):
        v = logprobs.get(t)
        if v is not None:
            out[i] = float(getattr(v, "logprob", v))
    return out


class VLLMDigits:
    """vLLM offline inference of the digit tree, the LoRA adapter unmerged (see the module docstring)."""

    def __init__(self, base: str, adapter_dir: str, digits: Sequence[int], dot: int, *, max_lora_rank: int = 64,
                 gpu_memory_utilization: float = 0.85, dtype: str = "bfloat16"):
        from vllm import LLM, SamplingParams  # noqa: PLC0415 (an optional dependency: GPU machines only)
        from vllm.lora.request import LoRARequest

        self.digits, self.dot = list(digits), dot
        self.llm = LLM(model=base, enable_lora=True, max_lora_rank=max_lora_rank, enable_prefix_caching=True,
                       logprobs_mode="processed_logprobs", max_logprobs=len(self.digits), dtype=dtype,
                       gpu_memory_utilization=gpu_memory_utilization)
        self.lora = LoRARequest("speclm-redshift", 1, adapter_dir)
        self.params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=len(self.digits),
                                     allowed_token_ids=self.digits)

    def step(self, token_lists: Sequence[list[int]]) -> np.ndarray:
        outs = self.llm.generate([{"prompt_token_ids": list(t)} for t in token_lists], self.params,
                                 lora_request=self.lora, use_tqdm=False)
        return np.stack([digit_logprobs(o.outputs[0].logprobs[0], self.digits) for o in outs])

    def raw_logits(self, prompt_ids: Sequence[list[int]]) -> dict:
        return tree_logits(self.step, prompt_ids, self.digits, self.dot)
