"""The agent's model backends: one interface over a local ModelRuntime or an OpenAI-compatible server.

Why an interface: the same graph must run on a laptop (the embedded SmolLM2 plus our LoRA, both
in-process) and against a vLLM server started with ``--enable-lora`` (the adapter is then just
another *model name*). Every backend does three things:

* ``chat(messages, adapter_on=..., stream=...)`` — text replies, adapter on or off per call;
* ``predict(spectrum)`` — the spectrum -> redshift step (adapter on), a RedshiftPrediction dict;

The local backend loads lazily (first use) so an Assistant can answer cosmology or clarify turns
even while the model is missing, and it keeps base and adapter failures apart: a missing adapter
only blocks spectrum turns, with a message that says how to get one.
"""
from __future__ import annotations

import os
import threading
from typing import Iterator, Sequence

from speclm.tools.errors import BackendError, SpeclmError

NO_ADAPTER_HINT = ("train one with `speclm train` (the bundled adapter lives in "
                   "speclm/adapters/smollm2-135m-redshift-sim) or pass --adapter PATH")


class LocalBackend:
    """A :class:`speclm.finetune.runtime.ModelRuntime` (shared or loaded on first use)."""

    name = "local"

    def __init__(self, base: str = "embedded", adapter: str | None = "bundled", *, runtime=None,
                 device: str = "auto"):
        self.base, self.adapter, self.device = base, adapter, device
        self._rt = runtime
        self._load_error: str | None = None
        self.adapter_error: str | None = None
        self._predictor = None
        self._predictor_for: str | None = None
        self._init_lock = threading.Lock()
        if runtime is not None:
            self._attach_if_needed()

    # -- loading ----------------------------------------------------------------------------
    def _attach_if_needed(self) -> None:
        from speclm.finetune.runtime import ModelLoadError

        rt = self._rt
        if rt.active is not None or rt.adapters:
            if rt.active is None:
                rt.set_active(next(iter(rt.adapters)))
            return
        if not self.adapter:
            self.adapter_error = f"no LoRA adapter is loaded; {NO_ADAPTER_HINT}"
            return
        try:
            rt.attach(self.adapter)
        except ModelLoadError as exc:
            self.adapter_error = f"the redshift adapter could not be loaded ({exc}); {NO_ADAPTER_HINT}"

    @property
    def runtime(self):
        """The ModelRuntime, loading it on first use; raises ModelLoadError with the reason."""
        from speclm.finetune.runtime import ModelLoadError, ModelRuntime

        with self._init_lock:
            if self._rt is None:
                if self._load_error:
                    raise ModelLoadError(self._load_error)
                try:
                    self._rt = ModelRuntime.load(self.base, None, device=self.device)
                except SpeclmError as exc:
                    self._load_error = f"could not load the base model {self.base!r}: {exc}"
                    raise ModelLoadError(self._load_error) from None
                except Exception as exc:  # transformers/torch raise many types for broken files
                    self._load_error = (f"could not load the base model {self.base!r}: "
                                        f"{type(exc).__name__}: {exc}")
                    raise ModelLoadError(self._load_error) from None
                self._attach_if_needed()
            return self._rt

    @property
    def loaded(self) -> bool:
        return self._rt is not None

    @property
    def has_adapter(self) -> bool:
        return self.runtime.active is not None

    def describe(self) -> str:
        if self._rt is None:
            return f"local {self.base} (not loaded yet)"
        return f"local {self._rt.base} + adapter {self._rt.active or 'none'}"

    # -- the three operations -------------------------------------------------------------------
    def chat(self, messages: Sequence[dict], *, adapter_on: bool = False, max_new_tokens: int = 200,
             stream: bool = False):
        rt = self.runtime
        if adapter_on and rt.active is None:
            raise BackendError(self.adapter_error or f"no LoRA adapter is loaded; {NO_ADAPTER_HINT}")
        return rt.chat(list(messages), adapter_on=adapter_on, max_new_tokens=max_new_tokens,
                       stream=stream)

    def predict(self, spectrum) -> dict:
        from speclm.finetune.predict import RedshiftPredictor

        rt = self.runtime
        if rt.active is None:
            raise BackendError(self.adapter_error or f"no LoRA adapter is loaded; {NO_ADAPTER_HINT}")
        if self._predictor is None or self._predictor_for != rt.active:
            self._predictor = RedshiftPredictor.from_runtime(rt)
            self._predictor_for = rt.active
        pred = self._predictor.predict_spectra([spectrum])[0]
        d = pred.to_dict()
        d.update(adapter=rt.active, backend=self.name, interval=True,
                 untrained=rt.active_card.get("steps", 1) == 0)
        return d



class OpenAIBackend:
    """An OpenAI-compatible endpoint, e.g. ``vllm serve BASE --enable-lora --lora-modules NAME=DIR``.

    Text goes to ``model`` (the base) or ``adapter_model`` (the LoRA, by name); spectra go to
    ``/v1/completions`` with the exact training prompt, built from the adapter's training card
    (read from a local copy of the adapter directory, ``adapter``), because the server only sees
    text. The endpoint returns no p(z), so predictions carry ``interval: False`` and z_lo = z_hi = z.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, adapter_model: str | None, *, adapter: str | None = "bundled",
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0):
        import openai

        self.base_url, self.model, self.adapter_model = base_url, model, adapter_model
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                    timeout=timeout, max_retries=1)
        self._openai = openai
        self.adapter_error: str | None = None
        self.card: dict = {}
        if not adapter_model:
            self.adapter_error = "no adapter model name is configured for the OpenAI endpoint (openai_adapter_model)"
        if adapter:
            from speclm.finetune.runtime import ModelLoadError, read_card, resolve_adapter

            try:
                self.card = read_card(resolve_adapter(adapter))
            except ModelLoadError as exc:
                self.adapter_error = self.adapter_error or (
                    f"the adapter's training card is needed to build spectrum prompts ({exc}); {NO_ADAPTER_HINT}")
            if adapter and not self.card and not self.adapter_error:
                self.adapter_error = f"{adapter} has no training_card.json; cannot know its codec"
        elif not self.adapter_error:
            self.adapter_error = "no adapter directory configured: the spectrum prompt format is unknown"

    loaded = True

    @property
    def has_adapter(self) -> bool:
        return self.adapter_error is None

    def describe(self) -> str:
        return f"OpenAI-compatible {self.base_url} (text: {self.model}, spectra: {self.adapter_model})"

    def _fail(self, exc: Exception) -> BackendError:
        return BackendError(f"the model endpoint {self.base_url} failed: {type(exc).__name__}: {exc}")

    def chat(self, messages: Sequence[dict], *, adapter_on: bool = False, max_new_tokens: int = 200,
             stream: bool = False):
        if adapter_on and self.adapter_model is None:
            raise BackendError(self.adapter_error or "no adapter model configured")
        model = self.adapter_model if adapter_on else self.model
        try:
            resp = self.client.chat.completions.create(model=model, messages=list(messages),
                                                       max_tokens=max_new_tokens, temperature=0.0,
                                                       stream=stream)
        except self._openai.OpenAIError as exc:
            raise self._fail(exc) from None
        if not stream:
            return (resp.choices[0].message.content or "").strip()

        def pieces() -> Iterator[str]:
            try:
                for chunk in resp:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            except self._openai.OpenAIError as exc:
                raise self._fail(exc) from None

        return pieces()

    def predict(self, spectrum) -> dict:
        from speclm.finetune.codec import CodecConfig, DecodeError, parse_redshift
        from speclm.finetune.predict import spectrum_prompt
        from speclm.finetune.preprocess import PreprocessConfig

        if self.adapter_error:
            raise BackendError(self.adapter_error)
        pre = PreprocessConfig.from_dict(self.card["preprocess"])
        codec = CodecConfig.from_dict(self.card["codec"])
        prompt = spectrum_prompt(spectrum, pre, codec)
        try:
            resp = self.client.completions.create(model=self.adapter_model, prompt=prompt, temperature=0.0,
                                                  max_tokens=codec.z_int_digits + codec.z_decimals + 3)
        except self._openai.OpenAIError as exc:
            raise self._fail(exc) from None
        text = resp.choices[0].text or ""
        try:
            z = parse_redshift(text, codec)
        except DecodeError as exc:
            raise BackendError(f"the endpoint's answer is not a redshift: {exc}") from None
        z = round(z, codec.z_decimals)
        return dict(z=z, z_lo=z, z_hi=z, z_mean=z, z_mode=z, z_greedy=z, text=codec.answer_prefix + text.strip(),
                    parse_failed=False, adapter=self.adapter_model, backend=self.name, interval=False,
                    untrained=self.card.get("steps", 1) == 0)

