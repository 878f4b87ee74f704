"""Planners: who chooses a text turn's tool calls. One interface, chosen by ``AgentConfig.planner``.

* ``"rules"`` (default): the rule table of :mod:`speclm.agent.router` picks a route and the fixed
  pipeline runs its tools — no model in the loop (the embedded 135M has no planner adapter yet).
* ``"model"``: a tool-calling chat model on an OpenAI-compatible endpoint (vLLM with
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


def make_planner(cfg) -> OpenAIToolPlanner | None:
    """The configured planner, or None for the rules (AgentConfig validates the combination)."""
    if cfg.planner == "rules":
        return None
    return OpenAIToolPlanner(cfg.openai_base_url, cfg.openai_model, api_key_env=cfg.openai_api_key_env)
