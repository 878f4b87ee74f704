"""AgentConfig: how the assistant is put together (model, adapter policy, memory, backend, narrator).

Its own module so that CLIs can build their options from its fields without importing LangGraph."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError


@dataclass
class AgentConfig(Config):
    """How the assistant is put together (model, adapter policy, memory, backend, tools)."""

    base: str = setting("embedded", "base model: 'embedded' (SmolLM2-135M shipped with speclm), 'tiny' "
                   "(random test model), a Hugging Face id or a local path")
    adapter: str | None = setting("bundled", "LoRA adapter directory, 'bundled', or None (text only)")
    adapter_mode: str = setting("toggle", "'toggle': adapter on only for the spectrum->redshift step (ours); "
                           "'always': adapter on for text too (the paper's setup)")
    checkpoint_db: str = setting("~/.cache/speclm/chat.sqlite", "SQLite file holding conversation threads "
                            "(':memory:' keeps them in RAM)")
    backend: str = setting("local", "'local' (in-process ModelRuntime) or 'openai' (OpenAI-compatible server, e.g. vLLM)")
    openai_base_url: str | None = setting(None, "base URL of the OpenAI-compatible server, e.g. http://localhost:8000/v1")
    openai_model: str | None = setting(None, "model name of the base model on that server")
    openai_api_key_env: str = setting("OPENAI_API_KEY", "environment variable holding the API key ('EMPTY' if unset)")
    max_new_tokens: int = setting(200, "most tokens the LLM writes per text reply")
    cosmology: str = setting("Planck18", "cosmology for distances and times: Planck18, Planck15, WMAP9 or flat")
    sdss: Any = setting(None, "SDSSConfig (or a dict of its fields) for lookups; None = environment defaults")
    openai_adapter_model: str | None = setting(None, "name under which the server serves the LoRA adapter "
                                          "(vLLM --lora-modules NAME=DIR); default: the adapter directory's name")
    planner: str = setting("model", "who plans every turn's tool calls: 'model' (default) — with the local backend the "
                           "embedded model's planner LoRA (planner_adapter) or, with planner_adapter None, the base's "
                           "own chat-template tool support; with the openai backend the endpoint's tool calling — with "
                           "the rules as its fallback; or 'rules' (agent/router.py's table alone). See agent/planner.py")
    planner_adapter: str | None = setting("bundled-planner", "the local planner LoRA: 'bundled-planner' (shipped, "
                                          "trained by `speclm train --preset planner`), a directory, or None to "
                                          "plan through the base model's chat template instead")
    plan_max_steps: int = setting(4, "most planner steps (model answers) per turn before the reply is composed")
    narrator: str = setting("auto", "who words the answers about an object: 'templates' (composed from tool outputs "
                       "only), 'model' (templates, then the LLM rephrases the same facts; its sentences pass "
                       "the claim check and are marked as its own), 'auto' = model for the OpenAI backend, "
                       "templates for the embedded one")
    device: str = setting("auto", "torch device for the local backend")
    eager: bool = setting(False, "load the model when the Assistant is created instead of on first use")

    def __post_init__(self):
        if self.adapter_mode not in ("toggle", "always"):
            raise ConfigError(f"adapter_mode must be 'toggle' or 'always', got {self.adapter_mode!r}")
        if self.planner not in ("rules", "model"):
            raise ConfigError(f"planner must be 'rules' or 'model', got {self.planner!r}")
        if self.planner_adapter in ("", "none", "None"):
            self.planner_adapter = None
        if not 1 <= int(self.plan_max_steps) <= 16:
            raise ConfigError(f"plan_max_steps must be in 1..16, got {self.plan_max_steps}")
        if self.narrator not in ("auto", "templates", "model"):
            raise ConfigError(f"narrator must be 'auto', 'templates' or 'model', got {self.narrator!r}")
        if self.backend not in ("local", "openai"):
            raise ConfigError(f"backend must be 'local' or 'openai', got {self.backend!r}")
        if self.backend == "openai" and not (self.openai_base_url and self.openai_model):
            raise ConfigError("backend 'openai' needs openai_base_url and openai_model")
        if not 1 <= int(self.max_new_tokens) <= 4096:
            raise ConfigError(f"max_new_tokens must be in 1..4096, got {self.max_new_tokens}")
        if self.adapter in ("", "none", "None"):
            self.adapter = None
        from speclm.tools.cosmology import CosmologyConfig

        CosmologyConfig(self.cosmology)  # validates the name (raises UnknownCosmologyError)
