"""Planners: who chooses a text turn's tool calls. One interface, chosen by ``AgentConfig.planner``.

* ``"rules"`` (default): the rule table of :mod:`speclm.agent.router` picks a route and the fixed
  pipeline runs its tools — no model in the loop. Also the fallback of the embedded planner when
  its proposal does not parse or fails the tool's schema.
* ``"model"`` with the local backend: :class:`EmbeddedPlanner` — the embedded SmolLM2-135M with its
  planner LoRA (a second adapter on the same base, next to the redshift adapter; trained by
  ``speclm train --preset planner`` on ``speclm data planner`` requests) reads one planning step
  in the compact format of :mod:`speclm.finetune.plan_text` and writes one call or ``done``.
  With ``planner_adapter=None`` and a base whose chat template renders tools (Llama-3.1, Qwen2.5,
  Hermes), :class:`ChatTemplatePlanner` uses that template's tool support instead.
* ``"model"`` with the OpenAI backend: a tool-calling chat model on an OpenAI-compatible endpoint (vLLM with
  Llama-3.1-8B-Instruct and its tool-call parser, or anything speaking the OpenAI tools API) sees
  the tools' JSON schemas and the thread's object, and answers with ``tool_calls``. The graph runs
  them through LangGraph's ToolNode (schema-validated; a bad argument or a tool error comes back as
  an error ToolMessage the planner can react to) and asks again, up to ``plan_max_steps``; then the
  reply is composed from the tool outputs and the planner's own words pass the claim check.

A spectrum upload or an SDSS identifier always takes the fixed spectrum path, whatever the planner:
its guarantees (the model's redshift, the search, the measurements) do not depend on a model's plan.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from typing import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from speclm.tools.errors import BackendError

PLANNER_SYSTEM = (
    "You are the planner of speclm, an assistant for galaxy spectra. Call the tools you need to answer the "
    "user's message, one or several (in sequence if one needs another's result); when the tool results "
    "answer it, reply in one or two sentences without numbers (the numbers are quoted from the tools). "
    "{context}")


def object_context(state: dict) -> str:
    """What the planner must know about the thread's object (so it can fill z or the spectrum path)."""
    parts = []
    if state.get("z") is not None:
        parts.append(f"The current object has redshift z = {state['z']:.6g} ({state.get('z_source') or 'model'})"
                     + (f", spectral type {state['spectype']}" if state.get("spectype") else "") + ".")
    spec = state.get("spectrum") or {}
    if spec.get("path"):
        parts.append(f"Its spectrum file is {spec['path']}.")
    return " ".join(parts) or "No object is loaded in this conversation yet."


def this_turn(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages since the last user message (this turn's planner and tool messages)."""
    idx = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    return list(messages[idx + 1:])


class OpenAIToolPlanner:
    """Tool calls from an OpenAI-compatible chat endpoint (``tools=``, ``tool_choice="auto"``)."""

    name = "model"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0):
        import openai

        self.model = model
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                    timeout=timeout, max_retries=1)
        self._openai = openai

    def plan(self, state: dict, tools: dict) -> AIMessage:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        msgs = [{"role": "system", "content": PLANNER_SYSTEM.format(context=object_context(state))},
                {"role": "user", "content": state.get("text", "")}]
        for m in this_turn(state.get("messages") or []):
            if isinstance(m, AIMessage):
                msgs.append({"role": "assistant", "content": m.content or "",
                             "tool_calls": [{"id": c["id"], "type": "function",
                                             "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
                                            for c in m.tool_calls] or None})
            elif isinstance(m, ToolMessage):
                msgs.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": str(m.content)[:4000]})
        for m in msgs:
            if m.get("tool_calls") is None:
                m.pop("tool_calls", None)
        try:
            resp = self.client.chat.completions.create(
                model=self.model, messages=msgs, tools=[convert_to_openai_tool(t) for t in tools.values()],
                tool_choice="auto", temperature=0.0)
        except self._openai.OpenAIError as exc:
            raise BackendError(f"the planner endpoint failed: {type(exc).__name__}: {exc}") from None
        msg = resp.choices[0].message
        calls = []
        for c in msg.tool_calls or []:
            try:
                args = json.loads(c.function.arguments or "{}")
            except json.JSONDecodeError:
                args = {"__unparsed__": c.function.arguments}
            calls.append({"name": c.function.name, "args": args if isinstance(args, dict) else {"value": args},
                          "id": c.id or f"call_{uuid.uuid4().hex[:8]}"})
        return AIMessage(content=msg.content or "", tool_calls=calls, name="planner")


def tool_output(m) -> tuple[object, str | None]:
    """(output, error) of a ToolMessage: ToolNode stores dict results as JSON, failures as text."""
    if getattr(m, "status", "success") == "error":
        return None, " ".join(str(m.content).split())[:300]
    try:
        return json.loads(m.content) if isinstance(m.content, str) else m.content, None
    except (TypeError, ValueError):
        return m.content, None


def current_file(state: dict) -> str | None:
    """The spectrum file a call should use: this turn's lookup download or file read, else the thread's."""
    path = None
    for m in this_turn(state.get("messages") or []):
        if isinstance(m, ToolMessage) and m.name in ("sdss_lookup", "read_spectrum"):
            out, err = tool_output(m)
            if not err and isinstance(out, dict):
                path = out.get("spectrum_path") or out.get("path") or path
    return path or (state.get("spectrum") or {}).get("path")


def turn_steps(messages: Sequence[BaseMessage]) -> list[tuple[str, dict, str]]:
    """This turn's calls so far as (name, args, one-line result) for the compact planner format."""
    from speclm.finetune.plan_text import result_summary

    calls, done = {}, []
    for m in this_turn(messages):
        if isinstance(m, AIMessage):
            calls.update({c["id"]: c for c in m.tool_calls})
        elif isinstance(m, ToolMessage):
            c = calls.get(m.tool_call_id, {"name": m.name, "args": {}})
            out, err = tool_output(m)
            done.append((c["name"], c["args"], result_summary(c["name"], out, err)))
    return done


def state_context(state: dict) -> str:
    """The thread's object as the compact planner reads it."""
    from speclm.finetune.plan_text import context_line

    return context_line(state.get("z"), state.get("z_source"), state.get("spectype"),
                        bool((state.get("spectrum") or {}).get("path")))


class EmbeddedPlanner:
    """The embedded model's planner LoRA: one compact planning step in, one call (or ``done``) out.

    ``propose`` is the raw step (used by ``speclm eval planner``); ``plan`` is the graph's interface.
    A proposal that does not parse, names no tool of the table, or fails the tool's argument schema
    is not run: ``plan`` marks it (``fallback``) and the turn goes to the rules instead."""

    name = "embedded"

    def __init__(self, backend, adapter: str = "bundled-planner"):
        self.backend, self.adapter = backend, adapter
        self._name: str | None = None

    def _attached(self):
        """The runtime with this planner's adapter attached (once, under a name of its own)."""
        import hashlib

        from speclm.finetune.runtime import ModelLoadError, resolve_adapter

        rt = self.backend.runtime
        if self._name is None:
            try:
                path = resolve_adapter(self.adapter)
            except ModelLoadError as exc:
                raise BackendError(f"the planner adapter could not be loaded: {exc}") from None
            name = "planner_" + hashlib.sha1(path.encode()).hexdigest()[:8]
            if name not in rt.adapters:
                prev = rt.active
                try:
                    rt.attach(path, name)
                except ModelLoadError as exc:
                    raise BackendError(f"the planner adapter could not be loaded: {exc}") from None
                finally:
                    if prev is not None:
                        rt.set_active(prev)
            self._name = name
        return rt

    def propose(self, context: str, text: str, done: Sequence[tuple[str, dict, str]] = ()) -> str:
        from speclm.finetune.plan_text import step_prompt

        rt = self._attached()
        return rt.complete(step_prompt(context, text, done), adapter=self._name, max_new_tokens=72)

    def plan(self, state: dict, tools: dict) -> AIMessage:
        from speclm.finetune.plan_text import parse_step

        raw = self.propose(state_context(state), state.get("text", ""), turn_steps(state.get("messages") or []))
        got = parse_step(raw)
        problem = None
        if got is None:
            problem = f"the planner wrote {raw.strip()[:80]!r}, which is not a call"
        elif got[0] is not None:
            problem = validate_call(got[0], got[1], tools, state)
        if problem:
            return AIMessage(content="", name="planner", additional_kwargs={"fallback": problem, "raw": raw})
        if got[0] is None:
            return AIMessage(content="", name="planner", additional_kwargs={"raw": raw})
        return AIMessage(content="", name="planner", additional_kwargs={"raw": raw},
                         tool_calls=[{"name": got[0], "args": got[1], "id": f"call_{uuid.uuid4().hex[:8]}"}])


def validate_call(name: str, args: dict, tools: dict, state: dict) -> str | None:
    """None when the tool exists and its schema accepts ``args`` (with the thread's file filled in)."""
    tool = tools.get(name)
    if tool is None:
        return f"there is no tool {name!r} here"
    schema = getattr(tool, "args_schema", None)
    if schema is None:
        return None
    a = dict(args)
    if "spectrum_path" in schema.model_fields and "spectrum_path" not in a:
        a["spectrum_path"] = current_file(state)
        if not a["spectrum_path"]:
            return f"{name} needs a spectrum, and none is loaded"
    try:
        schema.model_validate(a)
    except Exception as exc:  # pydantic.ValidationError
        return f"{name} arguments rejected: {' '.join(str(exc).split())[:160]}"
    return None


_JSON_CALL = re.compile(r"\{.*\}", re.S)


def parse_template_calls(text: str) -> list[dict]:
    """Tool calls in what a chat-template model wrote: Hermes/Qwen ``<tool_call>{...}</tool_call>``
    blocks, or bare JSON objects (Llama-3.1: ``{"name": ..., "parameters": {...}}``), one per line."""
    blocks = re.findall(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", text, re.S)
    if not blocks:
        t = re.sub(r"<\|python_tag\|>", "", text).strip()
        blocks = [ln for ln in (t.splitlines() if t.count("\n") and t.lstrip().startswith("{") else [t])
                  if _JSON_CALL.search(ln)]
        blocks = [_JSON_CALL.search(b).group(0) for b in blocks]
    calls = []
    for b in blocks:
        try:
            d = json.loads(b)
        except json.JSONDecodeError:
            continue
        if isinstance(d, dict) and isinstance(d.get("name"), str):
            args = d.get("arguments", d.get("parameters", {}))
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    args = {"__unparsed__": args}
            calls.append({"name": d["name"], "args": args if isinstance(args, dict) else {},
                          "id": f"call_{uuid.uuid4().hex[:8]}"})
    return calls


class ChatTemplatePlanner:
    """A local Hugging Face chat model planning through its own chat template's tool support
    (``apply_chat_template(messages, tools=...)``): Llama-3.1, Qwen2.5, Hermes and the like."""

    name = "chat-template"

    def __init__(self, backend, max_new_tokens: int = 256):
        self.backend, self.max_new_tokens = backend, max_new_tokens

    def render(self, state: dict, tools: dict) -> str:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        tok = self.backend.runtime.tokenizer
        if "tools" not in (tok.chat_template or ""):
            raise BackendError("this base model's chat template has no tool support; use the planner adapter "
                               "(planner_adapter='bundled-planner') or planner 'rules'")
        msgs = [{"role": "system", "content": PLANNER_SYSTEM.format(context=object_context(state))},
                {"role": "user", "content": state.get("text", "")}]
        for m in this_turn(state.get("messages") or []):
            if isinstance(m, AIMessage) and m.tool_calls:
                msgs.append({"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": c["name"], "arguments": c["args"]}} for c in m.tool_calls]})
            elif isinstance(m, ToolMessage):
                msgs.append({"role": "tool", "content": str(m.content)[:2000]})
        return tok.apply_chat_template(msgs, tools=[convert_to_openai_tool(t) for t in tools.values()],
                                       add_generation_prompt=True, tokenize=False)

    def plan(self, state: dict, tools: dict) -> AIMessage:
        rt = self.backend.runtime
        raw = rt.complete(self.render(state, tools), adapter=None, max_new_tokens=self.max_new_tokens, stop="")
        calls = parse_template_calls(raw)
        return AIMessage(content="" if calls else raw.strip(), tool_calls=calls, name="planner")


def make_planner(cfg, backend=None):
    """The configured planner, or None for the rules (AgentConfig validates the combination)."""
    if cfg.planner == "rules":
        return None
    if cfg.backend == "openai":
        return OpenAIToolPlanner(cfg.openai_base_url, cfg.openai_model, api_key_env=cfg.openai_api_key_env)
    if cfg.planner_adapter:
        return EmbeddedPlanner(backend, cfg.planner_adapter)
    return ChatTemplatePlanner(backend)
