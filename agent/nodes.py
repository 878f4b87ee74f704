"""The graph's two nodes besides the ToolNode: ``plan`` and ``respond``.

``plan`` first takes in what the last tool step returned (each tool's ``absorb`` from the registry
updates the thread's object: z, measurements, ...; the trace and the per-turn call list grow), then
asks the planner for the next call(s). ``respond`` words the turn from this turn's calls (each
tool's ``render``), the composer's answers to what the message asked, the planner's own words and the
notes, and passes everything through the claim check. Progress goes out as custom stream events
(``plan``, ``route``, ``tool``, ``prediction``, ``token``, ``error``) through LangGraph's stream writer,
so the UI can show tool calls while a turn runs. A node never raises: a failure becomes ``error`` in
the state and a one-line reply — the thread goes on.
"""
from __future__ import annotations

import functools
import logging
import re
from typing import Callable

from langchain_core.messages import AIMessage
from langgraph.config import get_stream_writer

from speclm.agent import compose as composer
from speclm.agent import grounding, replies
from speclm.agent.state import AgentState, jsonable
from speclm.tools.errors import SpeclmError

log = logging.getLogger(__name__)
OWN_WORDS = "(The language model's own words, not from a tool; sentences with unverified numbers or names removed.) "
HISTORY_TURNS = 6  # messages of history the chat model sees (the small model's context is short)


class ClaimFilter:
    """Streaming claim check for the model's free text: only complete sentences with no ungrounded
    number or name are passed on (so no token event shows what the reply drops)."""

    def __init__(self, facts: grounding.Facts):
        self.facts, self.buf = facts, ""

    def _ok(self, s: str) -> str:
        s = s.strip()
        return s + " " if s and not grounding.check_sentence(s, self.facts) else ""

    def feed(self, piece: str) -> str:
        self.buf += piece
        parts = grounding.sentences(self.buf)
        if len(parts) <= 1 or not re.search(r"[.!?]\s|\n", self.buf):
            return ""
        *done, self.buf = parts
        return "".join(self._ok(s) for s in done)

    def flush(self) -> str:
        s, self.buf = self.buf, ""
        return self._ok(s).strip()


def _emit(event: dict) -> None:
    try:
        get_stream_writer()(event)
    except Exception:  # outside a graph run (unit tests of a node): nothing to stream to
        pass


def safe(action: str) -> Callable:
    """Decorator: a node's failure becomes ``error`` (+ an error event), never an exception."""

    def wrap(fn):
        @functools.wraps(fn)
        def node(self, state: AgentState) -> dict:
            try:
                return fn(self, state)
            except SpeclmError as exc:
                msg, err = str(exc), exc
            except Exception as exc:  # a bug must not end the conversation either
                log.exception("agent node %s failed", fn.__name__)
                msg, err = f"internal error in {fn.__name__}: {type(exc).__name__}: {exc}", exc
            _emit({"type": "error", "message": msg})
            upd = {"error": msg, "route_reason": f"{state.get('route_reason', '')}; failed to {action}"}
            entry = getattr(err, "trace_entry", None)
            if entry:
                upd["tool_trace"] = [entry]
            return upd

        return node

    return wrap


class AgentNodes:
    """The plan and respond nodes, bound to one backend, one tool set, one planner and one config."""

    def __init__(self, backend, tools: dict, *, adapter_mode: str = "toggle", max_new_tokens: int = 200,
                 cosmology: str = "Planck18", narrate: bool = False, planner=None, plan_max_steps: int = 4):
        from speclm.agent.planner import RulesPlanner

        self.backend, self.tools, self.narrate = backend, tools, narrate
        self.planner, self.plan_max_steps = planner or RulesPlanner(), plan_max_steps
        self.adapter_mode, self.max_new_tokens, self.cosmology_name = adapter_mode, max_new_tokens, cosmology

    def _text_adapter(self) -> bool:
        """Adapter state for text generation: off in 'toggle' (ours), on in 'always' (the paper)."""
        return self.adapter_mode == "always"

    # -- the loop: take in the last tool step, then ask the planner ----------------------------------
    def absorb(self, state: AgentState) -> dict:
        """The last tool step's results into the thread's state (the registry's ``absorb`` of each tool)."""
        from langchain_core.messages import ToolMessage

        from speclm.agent.planner import this_turn, tool_output
        from speclm.agent.registry import REGISTRY

        msgs = this_turn(state.get("messages") or [])
        last_ai = max((i for i, m in enumerate(msgs) if isinstance(m, AIMessage)), default=-1)
        if last_ai < 0 or not msgs[last_ai].tool_calls:
            return {}
        calls = {c["id"]: c for c in msgs[last_ai].tool_calls}
        planned_by = msgs[last_ai].additional_kwargs.get("planned_by", self.planner.name)
        view, upd = dict(state), {}
        trace, turn_calls, produced, notes = [], [], [], []
        for m in msgs[last_ai + 1:]:
            if not isinstance(m, ToolMessage):
                continue
            c = calls.get(m.tool_call_id, {"name": m.name, "args": {}})
            out, err = tool_output(m)
            if isinstance(out, dict) and isinstance(out.get("error"), str) and not err:
                err = out["error"]  # a composite tool reports a failed required step as its result
            rec = {"name": c["name"], "args": jsonable(c["args"]), "planned_by": planned_by, "error": err}
            spec = REGISTRY.get(c["name"])
            if c["name"] == "analyze_spectrum":
                steps = out.get("steps") if isinstance(out, dict) else None
                trace += list(steps or [])
                if err and not steps:
                    trace.append({"name": "analyze_spectrum", "input": jsonable(c["args"]), "output": None,
                                  "seconds": None, "error": err})
                if err and isinstance(out, dict) and out.get("lookup"):
                    upd["lookup"] = out["lookup"]
                    produced.append("lookup")
            else:
                entry = {"name": c["name"], "input": jsonable(c["args"]), "output": out, "seconds": None}
                if err:
                    entry["error"] = err
                trace.append(entry)
                _emit({"type": "tool", **entry, "seconds": 0.0})
            if err or spec is None or not isinstance(out, dict):
                turn_calls.append(rec)
                continue
            u = spec.absorb(out, c["args"], view)
            view.update(u)
            upd.update(u)
            produced += [k for k in u if k in spec.state_keys and u[k] is not None]
            notes += list(out.get("notes") or []) if c["name"] == "analyze_spectrum" else []
            turn_calls.append({**rec, "output": out})
        if "cosmology_at" in upd and upd.get("cosmology_at") and view.get("cosmology"):
            upd["hypothetical"] = self._what_if(view["cosmology"], upd["cosmology_at"], view)
            produced.append("hypothetical")
        # the model read a spectrum (adapter on) in every successful prediction step of this tool step
        llm = [{"purpose": "predict", "adapter_on": True} for e in trace
               if e.get("name") == "predict_redshift" and not e.get("error")]
        return {**upd, "tool_trace": trace, "calls": turn_calls, "produced": produced, "notes": notes,
                "llm_calls": llm}

    @staticmethod
    def _what_if(now: dict, at: dict, view: dict) -> dict:
        """The object at its own z beside the cosmology at another z (a what-if): the distance dimming."""
        import math

        dim = 5.0 * math.log10(at["luminosity_distance_mpc"] / now["luminosity_distance_mpc"]) if (
            now.get("luminosity_distance_mpc") and at.get("luminosity_distance_mpc")) else None
        return {"now": now, "at": at, "dimming_mag": None if dim is None else round(dim, 2),
                "z_source": view.get("z_source") or "model"}

    @safe("plan the tool calls")
    def plan(self, state: AgentState) -> dict:
        from speclm.agent.planner import fill_implicit, this_turn

        upd = self.absorb(state)
        view = {**state, **{k: v for k, v in upd.items() if k not in ("tool_trace", "calls", "produced", "notes",
                                                                      "messages")}}
        view["messages"] = state.get("messages") or []
        failed = next((c for c in upd.get("calls") or [] if c["name"] == "analyze_spectrum" and c.get("error")), None)
        if failed:  # the spectrum could not be read or the model could not run: that is the answer
            _emit({"type": "error", "message": failed["error"]})
            return {**upd, "error": failed["error"], "messages": [AIMessage(content="", name="planner")]}
        steps = sum(isinstance(m, AIMessage) for m in this_turn(view["messages"]))
        if steps >= self.plan_max_steps:
            note = (f"The planner reached its limit of {self.plan_max_steps} steps, so I answer with what the tools "
                    "returned so far.")
            return {**upd, "notes": list(upd.get("notes") or []) + [note],
                    "messages": [AIMessage(content="", name="planner")]}
        msg = self.planner.plan(view, self.tools)
        for c in msg.tool_calls:
            c["args"] = fill_implicit(c["name"], c["args"], view)
        by = msg.additional_kwargs.get("planned_by", self.planner.name)
        fb = msg.additional_kwargs.get("fallback")
        if steps == 0:
            route = self._route_of(msg)
            _emit({"type": "route", "route": route, "reason": f"{by}: " + ", ".join(c["name"] for c in msg.tool_calls)
                   if msg.tool_calls else f"{by}: no tool call"})
            upd.update(route=route, attempted_route=route, planner_used=by, plan_fallback=fb,
                       route_reason=msg.additional_kwargs.get("reason") or by)
            if msg.additional_kwargs.get("clarify"):
                upd["clarify"] = msg.content
        _emit({"type": "plan", "step": steps + 1, "planned_by": by, "fallback": fb,
               "tool_calls": [{"name": c["name"], "args": c["args"]} for c in msg.tool_calls]})
        model = by.split(" ")[0] not in ("rules",)
        # adapter_on is the redshift LoRA's state; the planner's own LoRA is recorded apart
        upd["llm_calls"] = list(upd.get("llm_calls") or []) + (
            [{"purpose": "plan", "adapter_on": False, "planner": by}] if model or fb else [])
        return {**upd, "messages": [msg]}

    @staticmethod
    def _route_of(msg: AIMessage) -> str:  # noqa: D102
        from speclm.agent.registry import REGISTRY

        if not msg.tool_calls:
            return "clarify" if msg.additional_kwargs.get("clarify") else "chat"
        c = msg.tool_calls[0]
        if c["name"] == "analyze_spectrum" and c["args"].get("sdss_id"):
            return "lookup"
        spec = REGISTRY.get(c["name"])
        return spec.route if spec else "chat"

    # -- the reply -------------------------------------------------------------------------------
    def respond(self, state: AgentState) -> dict:
        route, err = state.get("route") or "chat", state.get("error")
        made = state.get("calls") or []
        if not err and made and all(c.get("error") for c in made):
            err = made[0]["error"]  # every call of the turn failed: the reply is that one-line error
        self._answered = []
        calls: list[dict] = []
        try:
            if err:
                action = {"spectrum": "use that spectrum", "lookup": "look that object up", "cosmology": "compute that",
                          "check": "check that redshift"}.get(route, "answer")
                text = replies.error_reply(action, err)
                lk = state.get("lookup")
                if route == "lookup" and lk and "lookup" in (state.get("produced") or []):
                    text = f"SDSS: {lk['describe']}. " + text
                route = "error"
            elif state.get("calls"):
                text = self._planned_text(state, calls)
            elif state.get("clarify"):
                text = state["clarify"]
            else:
                text = self._free_chat(state, calls)
        except SpeclmError as exc:
            text = replies.error_reply("answer", str(exc))
            _emit({"type": "error", "message": str(exc)})
            route, err = "error", str(exc)
        # the claim check: every number and name of the reply must be in this turn's facts
        errors = [e.get("error") for e in state.get("tool_trace") or [] if e.get("error")]
        text, dropped = self._grounded(text, state, extra=[err, *(state.get("notes") or []), *errors])
        if state.get("calls") or route in ("error", "clarify"):
            self._say(text)  # composed replies stream once checked; free chat streamed its kept sentences
        return {"reply": text, "route": route, "attempted_route": state.get("attempted_route") or route,
                "error": err, "llm_calls": calls, "grounding": {"checked": True, "dropped": dropped},
                "answered": self._answered, "messages": [AIMessage(content=text)]}

    def _planned_text(self, state: AgentState, calls: list) -> str:
        """This turn's calls in the house's words (the registry's renderers), the composer's answers to
        what the message asked, the planner's own words (claim-checked, marked), then the notes."""
        from speclm.agent.planner import this_turn
        from speclm.agent.registry import REGISTRY

        text = state.get("text", "")
        done = [c for c in state.get("calls") or []]
        names = {c["name"] for c in done if not c.get("error")}
        covered: set[str] = set()
        composed = ""
        asked = composer.intents(text)
        if asked and names & {"analyze_spectrum", "measure_spectrum", "survey_reach", "cosmology"}:
            more, answered = self._compose(state)
            if answered:
                composed = more + self._narration(state, more, calls)
                if set(answered) - {"surveys", "hypothetical"}:
                    covered.add("measure_spectrum")
                if "surveys" in answered:
                    covered.add("survey_reach")
                if "hypothetical" in answered:
                    covered.add("cosmology")
        parts = []
        for c in done:
            if c.get("error"):
                parts.append(f"The {c['name']} call did not run: {c['error']}.")
            elif c["name"] not in covered and c["name"] in REGISTRY:
                parts.append(REGISTRY[c["name"]].render(c["output"], c["args"], state))
        if composed:
            if "analyze_spectrum" in names:
                parts.append("\n" + composed)
            else:
                parts.insert(0, composed)
        last = next((m for m in reversed(this_turn(state.get("messages") or []))
                     if isinstance(m, AIMessage) and not m.tool_calls), None)
        own = (last.content or "").strip() if last is not None else ""
        if own:
            kept, _ = grounding.keep_grounded(own, self.facts(state))
            if kept:
                parts.append(OWN_WORDS + kept)
        if not parts:
            parts.append(composer.honest_reply(state.get("measure"), state.get("z"), state.get("z_source")))
        notes = [n for n in state.get("notes") or [] if not any(n in p for p in parts)]
        return "\n".join(p for p in parts if p) + ("\n" + "\n".join("- " + n for n in notes) if notes else "")

    def facts(self, state: AgentState) -> grounding.Facts:
        """Everything this turn's reply may state: tool outputs of the thread, declared constants,
        the line list, the survey table and the user's message."""
        from speclm.tools import lines as line_list
        from speclm.tools.survey_reach import load_surveys

        f = grounding.Facts()
        for key in ("spectrum", "prediction", "search", "check", "cosmology", "cosmology_at", "lookup", "measure",
                    "surveys", "hypothetical"):
            if state.get(key):
                f.add(state[key])
        f.add(replies.METHOD)
        f.add(replies.derived_facts(state))
        f.add([{"name": l.name, "display": l.display, "rest_A": l.rest_A} for l in line_list.LINES])
        f.add([{"name": s.name, "reference": s.reference, "status": s.status} for s in load_surveys()])
        f.add(state.get("text", ""))
        f.add(self.cosmology_name)
        f.add([replies.CLARIFY_OBJECT, replies.CLARIFY_Z])  # fixed help texts with their examples
        f.decides = {"spectype": state.get("spectype"), "class": (state.get("measure") or {}).get("summary_class")}
        return f

    def _grounded(self, text: str, state: AgentState, extra=()) -> tuple[str, list]:
        """The claim check; ``extra``: error messages and notes of this turn (a tool's words too)."""
        kept, dropped = grounding.keep_grounded(text, self.facts(state).add([x for x in extra if x]))
        if dropped:
            log.warning("claim check dropped %d sentence(s): %s", len(dropped), dropped)
        if not kept.strip():
            kept = composer.honest_reply(state.get("measure"), state.get("z"), state.get("z_source"))
        return kept, dropped

    def _compose(self, state: AgentState) -> tuple[str, list]:
        text, answered = composer.compose(state.get("text", ""), measure=state.get("measure"),
                                          reach=state.get("surveys"), cosmo=state.get("cosmology"),
                                          z=state.get("z"), z_source=state.get("z_source"),
                                          spectype=state.get("spectype"),
                                          hypothetical=state.get("hypothetical") if "hypothetical" in (
                                              state.get("produced") or []) else None,
                                          spectrum=state.get("spectrum"))
        self._answered = answered
        return text, answered

    def _say(self, text: str) -> None:
        _emit({"type": "token", "text": text})

    def _history(self, state: AgentState) -> list[dict]:
        msgs = []
        plain = [m for m in state.get("messages") or [] if m.type in ("human", "ai", "system")
                 and getattr(m, "name", None) != "planner" and str(m.content).strip()]
        for m in plain[-HISTORY_TURNS:]:
            role = {"human": "user", "ai": "assistant", "system": "system"}[m.type]
            msgs.append({"role": role, "content": str(m.content)})
        return msgs

    def _stream_llm(self, msgs: list[dict], calls: list, purpose: str, filt: replies.SentenceFilter | None) -> str:
        on = self._text_adapter()
        calls.append({"purpose": purpose, "adapter_on": on})
        out = []
        for piece in self.backend.chat(msgs, adapter_on=on, max_new_tokens=self.max_new_tokens, stream=True):
            shown = filt.feed(piece) if filt else piece
            if shown:
                out.append(shown)
                _emit({"type": "token", "text": shown})
        if filt:
            tail = filt.flush()
            if tail:
                out.append(tail)
                _emit({"type": "token", "text": tail})
        return "".join(out).strip()

    def _narration(self, state: AgentState, facts_text: str, calls: list) -> str:
        """With a capable model (narrate=True): the LLM answers from the same facts; only its
        sentences that pass the claim check are kept, marked as its own words."""
        if not self.narrate:
            return ""
        system = ("You are an astronomy assistant. Answer the user's question in two to four sentences using ONLY "
                  "these measured facts; do not add numbers, names or object types that are not in them.\n"
                  f"FACTS: {facts_text}")
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": state.get("text", "")}]
        kept = self._stream_llm(msgs, calls, "narrate", ClaimFilter(self.facts(state)))
        return ("\n\n" + OWN_WORDS + kept) if kept else ""

    def _free_chat(self, state: AgentState, calls: list) -> str:
        """The model's own words, sentence by sentence through the claim check; marked as its own."""
        system = ("You are speclm, an assistant that reads galaxy spectra and answers astronomy questions "
                  "concisely. To get a redshift, the user attaches a spectrum or gives an SDSS identifier.")
        msgs = [{"role": "system", "content": system}] + self._history(state)
        self._say(OWN_WORDS)
        raw = self._stream_llm(msgs, calls, "chat", ClaimFilter(self.facts(state)))
        if not raw:
            text = composer.honest_reply(state.get("measure"), state.get("z"), state.get("z_source"))
            self._say(text)
            return text
        return OWN_WORDS + raw

