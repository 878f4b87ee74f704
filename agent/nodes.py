"""The graph's nodes: route, ingest, predict, check, cosmology, lookup, respond.

Each node reads the state, calls at most one tool (through the LangChain wrappers, so arguments
are schema-checked) and returns a state update. Progress goes out as custom stream events
(``route``, ``tool``, ``prediction``, ``token``, ``error``) through LangGraph's stream writer, so
the UI can show tool calls while a turn runs. A node never raises: a SpeclmError (bad file,
unknown SDSS object, missing model) becomes ``error`` in the state and the graph jumps to
``respond``, which turns it into a normal chat reply — the thread goes on.
"""
from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any, Callable

from langchain_core.messages import AIMessage
from langgraph.config import get_stream_writer

from speclm.agent import compose as composer
from speclm.agent import grounding, replies
from speclm.agent.router import ROUTER_SYSTEM, decide, lines_in_text
from speclm.agent.state import AgentState, jsonable
from speclm.tools.cosmology import DEFAULT_SUMMARY_LINES
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


def _object_from(upd: dict, state) -> dict:
    """The thread's object after a planned turn: a new file from a lookup or a read, and the z it
    is known at (the search's, else SDSS's, else the model's), so follow-ups use it."""
    new: dict = {}
    lk, rd = upd.get("lookup"), upd.get("spectrum_read")
    if lk and lk.get("spectrum_path"):
        new.update(spectrum={"path": lk["spectrum_path"], "name": lk.get("name"), "summary": {}},
                   z=lk.get("z"), z_source="SDSS catalog", spectype=lk.get("obj_class"),
                   prediction=None, check=None, search=None, measure=None)
    elif rd:
        new.update(spectrum=rd, z=None, z_source=None, spectype=None, prediction=None, check=None, search=None,
                   measure=None)
    if upd.get("prediction"):
        new["prediction"] = upd["prediction"]
        if (new["z"] if "z" in new else state.get("z")) is None:
            new.update(z=upd["prediction"].get("z"), z_source="model")
    if upd.get("search"):
        new.update(search=upd["search"], z=upd["search"].get("z"), z_source="search",
                   spectype=upd["search"].get("spectype"))
    return new


class AgentNodes:
    """Node functions bound to one backend, one tool set and one config (see assistant.AgentConfig)."""

    def __init__(self, backend, tools: dict, *, adapter_mode: str = "toggle", max_new_tokens: int = 200,
                 cosmology: str = "Planck18", narrate: bool = False, planner=None, plan_max_steps: int = 4):
        self.backend, self.tools, self.narrate = backend, tools, narrate
        self.planner, self.plan_max_steps = planner, plan_max_steps
        self.adapter_mode, self.max_new_tokens, self.cosmology_name = adapter_mode, max_new_tokens, cosmology

    # -- helpers -----------------------------------------------------------------------------
    def _tool(self, name: str, args: dict) -> tuple[Any, dict]:
        """Invoke a tool, time it, emit a ``tool`` event; returns (output, trace entry)."""
        t0 = time.perf_counter()
        try:
            out = self.tools[name].invoke(args)
        except Exception as exc:
            dt = time.perf_counter() - t0
            entry = {"name": name, "input": jsonable(args), "output": None, "seconds": round(dt, 4),
                     "error": str(exc)}
            _emit({"type": "tool", **entry})
            exc.trace_entry = entry  # so safe() callers could attach it; the node below records it
            raise
        entry = {"name": name, "input": jsonable(args), "output": out,
                 "seconds": round(time.perf_counter() - t0, 4)}
        _emit({"type": "tool", **entry})
        return out, entry

    def _text_adapter(self) -> bool:
        """Adapter state for text generation: off in 'toggle' (ours), on in 'always' (the paper)."""
        return self.adapter_mode == "always"

    # -- route ---------------------------------------------------------------------------------
    def route(self, state: AgentState) -> dict:
        spec = state.get("spectrum")
        d = decide(state.get("text", ""), upload_path=state.get("upload_path"), sdss_id=state.get("sdss_id"),
                   has_spectrum=bool(spec), has_z=state.get("z") is not None)
        route, reason, calls = d.route, d.reason, []
        # uploads (and the UI's SDSS box) keep the fixed spectrum path; the embedded planner also
        # plans text that names an SDSS object ("look up 0266-51630-0461 and predict its redshift")
        fixed_routes = ("spectrum", "lookup") if getattr(self.planner, "name", "") != "embedded" else ("spectrum",)
        if self.planner is not None and d.route not in fixed_routes and not state.get("sdss_id"):
            _emit({"type": "route", "route": "plan", "reason": "the model plans this turn's tool calls"})
            return {"route": "plan", "route_reason": f"planner {self.planner.name} (rules would say: {d.reason})",
                    "llm_calls": [], "z_text": d.z_text, "grounded": False, "rules_route": d.route,
                    "planner_used": self.planner.name}
        if d.labels:
            msgs = [{"role": "system", "content": ROUTER_SYSTEM.format(z=state.get("z"))},
                    {"role": "user", "content": state.get("text", "")}]
            try:
                route = self.backend.choose(msgs, d.labels)
                reason = f"{reason}: {route!r} of {list(d.labels)}"
                calls.append({"purpose": "route", "adapter_on": False})
            except SpeclmError as exc:
                route, reason = "chat", f"{reason}; the model was unavailable ({exc}), defaulting to chat"
        _emit({"type": "route", "route": route, "reason": reason})
        return {"route": route, "route_reason": reason, "llm_calls": calls, "z_text": d.z_text,
                "grounded": route == "chat" and d.grounded and state.get("z") is not None}

    # -- spectrum pipeline -------------------------------------------------------------------------
    @safe("read the spectrum")
    def ingest(self, state: AgentState) -> dict:
        if state.get("upload_path"):
            path = state["upload_path"]
        elif state.get("route") == "lookup":
            path = (state.get("lookup") or {}).get("spectrum_path")
        else:  # "predict the redshift again" on the thread's spectrum
            path = (state.get("spectrum") or {}).get("path")
        out, entry = self._tool("read_spectrum", {"path": str(path)})
        # a new spectrum makes the old prediction / z stale
        return {"spectrum": out, "prediction": None, "check": None, "search": None, "cosmology": None, "z": None,
                "z_source": None, "spectype": None, "tool_trace": [entry], "produced": ["spectrum"]}

    @safe("predict the redshift")
    def predict(self, state: AgentState) -> dict:
        out, entry = self._tool("predict_redshift", {"spectrum_path": state["spectrum"]["path"]})
        _emit({"type": "prediction", **out})
        return {"prediction": out, "z": out["z"], "z_source": "model", "tool_trace": [entry],
                "produced": ["prediction"], "llm_calls": [{"purpose": "predict", "adapter_on": True}]}

    @safe("check the redshift against the spectrum's lines")
    def check(self, state: AgentState) -> dict:
        if state.get("route") in ("spectrum", "lookup"):
            return self._search(state)
        z0 = state.get("z_text")
        if z0 is None:
            z0 = (state.get("prediction") or {}).get("z", state.get("z"))
        args = {"spectrum_path": state["spectrum"]["path"], "z0": float(z0)}
        if state.get("route") in ("spectrum", "lookup"):
            try:  # in the prediction pipeline a failed check must not discard the prediction
                out, entry = self._tool("redshift_check", args)
            except SpeclmError as exc:
                return {"check": None, "notes": [f"The line check could not run: {exc}."],
                        "tool_trace": [getattr(exc, "trace_entry", {"name": "redshift_check", "error": str(exc)})]}
        else:
            out, entry = self._tool("redshift_check", args)
        upd = {"check": out, "tool_trace": [entry], "produced": ["check"]}
        if out.get("confident"):
            upd.update(z=out["z"], z_source="line fit")
        return upd

    def _search(self, state: AgentState) -> dict:
        """The spectrum path's redshift: find_redshift with the model's answer as evidence. Its z is
        the one every later number uses; a failure keeps the model's z and says so."""
        pred = state.get("prediction") or {}
        args = {"spectrum_path": state["spectrum"]["path"]}
        if pred.get("z") is not None:
            args.update(z_model=float(pred["z"]), z_lo=pred.get("z_lo"), z_hi=pred.get("z_hi"),
                        modes=list(pred.get("modes") or []))
        try:
            out, entry = self._tool("find_redshift", args)
        except SpeclmError as exc:
            return {"search": None, "notes": [f"The redshift search could not run: {exc}."],
                    "tool_trace": [getattr(exc, "trace_entry", {"name": "find_redshift", "error": str(exc)})]}
        return {"search": out, "check": out.get("line_check"), "z": out["z"], "z_source": out["z_source"],
                "spectype": out["spectype"], "tool_trace": [entry], "produced": ["search", "check"]}

    @safe("compute the cosmology")
    def cosmology(self, state: AgentState) -> dict:
        z, src = state.get("z_text"), "your message"
        chk = state.get("check") if "check" in (state.get("produced") or []) else None
        if state.get("route") == "check" and chk and chk.get("confident"):
            z, src = chk["z"], "line fit"  # the z this turn's check states, not the one it was given
        elif z is None:
            z, src = state.get("z"), state.get("z_source") or "model"
        lines = list(dict.fromkeys(lines_in_text(state.get("text", "")) + list(DEFAULT_SUMMARY_LINES)))
        out, entry = self._tool("cosmology", {"z": float(z), "cosmology": self.cosmology_name, "lines": lines})
        out["z_source"] = src
        return {"cosmology": out, "tool_trace": [entry], "produced": ["cosmology"]}

    def measure(self, state: AgentState) -> dict:
        """Measure the thread's spectrum at the trusted z (once per z), and the survey reach when
        the message asks about surveys. A failure keeps the turn going without them."""
        z, spec = state.get("z"), state.get("spectrum")
        upd: dict = {"tool_trace": [], "produced": []}
        m = state.get("measure")
        if spec and z is not None and (not m or abs(m.get("z", -9) - z) > 1e-6):
            try:
                m, entry = self._tool("measure_spectrum", {"spectrum_path": spec["path"], "z": float(z),
                                                           "spectype": state.get("spectype") or "GALAXY"})
                upd.update(measure=m)
                upd["tool_trace"].append(entry)
                upd["produced"].append("measure")
            except SpeclmError as exc:
                m = None
                upd.update(measure=None, notes=[f"The spectral measurements could not run: {exc}."])
                upd["tool_trace"].append(getattr(exc, "trace_entry", {"name": "measure_spectrum", "error": str(exc)}))
        elif not spec:
            m = None
        z_h = composer.hypothetical_z(state.get("text", ""))
        if z is not None and z_h is not None and 0 <= z_h <= 20:
            import math

            lines = list(dict.fromkeys(lines_in_text(state.get("text", "")) + list(DEFAULT_SUMMARY_LINES)))
            try:
                now, e1 = self._tool("cosmology", {"z": max(float(z), 1e-4), "cosmology": self.cosmology_name,
                                                   "lines": lines})
                at, e2 = self._tool("cosmology", {"z": float(z_h), "cosmology": self.cosmology_name, "lines": lines})
                dim = 5.0 * math.log10(at["luminosity_distance_mpc"] / now["luminosity_distance_mpc"])
                upd["hypothetical"] = {"now": now, "at": at, "dimming_mag": round(dim, 2),
                                       "z_source": state.get("z_source") or "model"}
                upd["tool_trace"] += [e1, e2]
                upd["produced"].append("hypothetical")
            except Exception as exc:  # noqa: BLE001 -- a what-if that cannot run is said, the turn goes on
                upd["notes"] = [f"The what-if could not run: {exc}."]
        if z is not None and "surveys" in composer.intents(state.get("text", "")):
            phot = (m or {}).get("photometry") or {}
            pos = (m or {}).get("position") or {}
            lk = state.get("lookup") or {}
            ra, dec = pos.get("ra", lk.get("ra")), pos.get("dec", lk.get("dec"))
            args = {"z": max(float(z), 0.0), "spectype": state.get("spectype") or "GALAXY",
                    "magnitudes": {b: phot.get(b) for b in ("g", "r", "i")} if phot else None,
                    "ra": None if ra is None else float(ra) % 360.0, "dec": None if dec is None else float(dec)}
            if phot.get("fibre_arcsec"):
                args["fibre_arcsec"] = float(phot["fibre_arcsec"])
            cat_phot = (m or {}).get("catalog_photometry") or {}
            if any(cat_phot.get(b) is not None for b in ("g", "r")):
                args["total_magnitudes"] = {b: cat_phot[b] for b in ("g", "r") if cat_phot.get(b) is not None}
            try:
                reach, entry = self._tool("survey_reach", args)
                upd.update(surveys=reach)
                upd["tool_trace"].append(entry)
                upd["produced"].append("surveys")
            except Exception as exc:  # validation or table errors: say so, keep going
                upd["notes"] = [f"The survey check could not run: {exc}."]
        return upd

    # -- the planner <-> tools loop (AgentConfig.planner = "model") --------------------------------
    @safe("plan the tool calls")
    def plan(self, state: AgentState) -> dict:
        from speclm.agent.planner import current_file, this_turn

        steps = sum(isinstance(m, AIMessage) for m in this_turn(state.get("messages") or []))
        if steps >= self.plan_max_steps:
            return {"notes": [f"The planner reached its limit of {self.plan_max_steps} steps, so I answer with "
                              "what the tools returned so far."], "messages": [AIMessage(content="", name="planner")]}
        msg = self.planner.plan(state, self.tools)
        if msg.additional_kwargs.get("fallback") and steps == 0:
            # the embedded planner's proposal did not parse or failed the schema: the rules take the turn
            why = msg.additional_kwargs["fallback"]
            route = state.get("rules_route") or "chat"
            _emit({"type": "plan", "step": 1, "tool_calls": [], "fallback": why})
            _emit({"type": "route", "route": route, "reason": f"rules (fallback: {why})"})
            return {"route": route, "plan_fallback": why, "planner_used": "rules (fallback)",
                    "route_reason": f"rules (the planner's proposal was not run: {why})",
                    "grounded": route == "chat" and state.get("z") is not None,
                    "llm_calls": [{"purpose": "plan", "adapter_on": True}]}
        path = current_file(state)
        for c in msg.tool_calls:  # the model need not repeat the file path (this turn's lookup, or the thread's)
            schema = getattr(self.tools.get(c["name"]), "args_schema", None)
            if path and schema is not None and "spectrum_path" in schema.model_fields and "spectrum_path" not in c["args"]:
                c["args"]["spectrum_path"] = path
        _emit({"type": "plan", "step": steps + 1, "tool_calls": [{"name": c["name"], "args": c["args"]}
                                                                  for c in msg.tool_calls]})
        return {"messages": [msg], "llm_calls": [{"purpose": "plan", "adapter_on": self.planner.name == "embedded"}]}

    def planned(self, state: AgentState) -> dict:
        """After the loop: this turn's tool results into the thread's state and the tool trace."""
        from langchain_core.messages import ToolMessage

        from speclm.agent.planner import this_turn, tool_output

        calls, trace, upd, produced = {}, [], {}, []
        key_of = {"cosmology": "cosmology", "measure_spectrum": "measure", "survey_reach": "surveys",
                  "read_spectrum": "spectrum_read",
                  "sdss_lookup": "lookup", "find_redshift": "search", "redshift_check": "check",
                  "predict_redshift": "prediction"}
        for m in this_turn(state.get("messages") or []):
            if isinstance(m, AIMessage):
                calls.update({c["id"]: c for c in m.tool_calls})
            elif isinstance(m, ToolMessage):
                c = calls.get(m.tool_call_id, {"name": m.name, "args": {}})
                out, err = tool_output(m)
                entry = {"name": c["name"], "input": jsonable(c["args"]), "output": out, "seconds": None}
                if err:
                    entry["error"] = err
                trace.append(entry)
                _emit({"type": "tool", **entry, "seconds": 0.0})
                if not err and c["name"] in key_of and isinstance(out, dict):
                    upd[key_of[c["name"]]] = out
                    produced.append(key_of[c["name"]])
        upd.update(_object_from(upd, state))
        upd.pop("spectrum_read", None)
        return {**upd, "tool_trace": trace, "produced": produced, "route": "planned"}

    @safe("look the object up in SDSS")
    def lookup(self, state: AgentState) -> dict:
        ident = state.get("sdss_id") or state.get("text", "")
        out, entry = self._tool("sdss_lookup", {"identifier": str(ident)})
        return {"lookup": out, "tool_trace": [entry], "produced": ["lookup"]}

    # -- the reply -------------------------------------------------------------------------------
    def respond(self, state: AgentState) -> dict:
        route, err = state.get("route") or "chat", state.get("error")
        self._answered = []
        calls: list[dict] = []
        try:
            if err:
                action = {"spectrum": "use that spectrum", "lookup": "look that object up",
                          "cosmology": "compute that", "check": "check the redshift"}.get(route, "answer")
                text = replies.error_reply(action, err)
                if route == "lookup" and state.get("lookup") and "lookup" in (state.get("produced") or []):
                    text = f"SDSS: {state['lookup']['describe']}. " + text
                route = "error"
            elif route == "clarify":
                text = replies.CLARIFY_Z if "no redshift is known" in state.get("route_reason", "") else replies.CLARIFY_OBJECT
            elif route in ("spectrum", "lookup"):
                text = replies.spectrum_reply(spectrum=state.get("spectrum"), pred=state.get("prediction"),
                                              check=state.get("check"), cosmo=state.get("cosmology"),
                                              z=state.get("z"), z_source=state.get("z_source"),
                                              lookup=state.get("lookup") if route == "lookup" else None,
                                              search=state.get("search"))
                if state.get("measure"):
                    text += "\n- " + composer.class_answer(state["measure"], state.get("z"), state.get("z_source"))
                text = "\n".join([text, *("- " + n for n in state.get("notes") or [])])
                if composer.intents(state.get("text", "")):
                    more, answered = self._compose(state)
                    if answered:
                        text += "\n\n" + more + self._narration(state, more, calls)
            elif route == "cosmology":
                c = state["cosmology"]
                text = replies.cosmology_reply(state.get("text", ""), c, z_source=c.get("z_source", "model"),
                                               line_names=lines_in_text(state.get("text", "")))
            elif route == "check":
                text = replies.check_sentence(state["check"], state.get("prediction"))
                if state.get("cosmology"):
                    text += " " + replies.cosmology_sentence(state["cosmology"])
            elif route == "planned":
                text = self._planned_text(state, calls)
            elif state.get("grounded") and state.get("cosmology"):  # follow-up about the current object
                text, answered = self._compose(state)
                if answered:
                    text += self._narration(state, text, calls)
                else:
                    text += " " + replies.grounded_facts(z=state["z"], z_source=state.get("z_source") or "model",
                                                         pred=state.get("prediction"), cosmo=state["cosmology"],
                                                         spectype=state.get("spectype"))
                text = " ".join([text, *(state.get("notes") or [])])
            else:
                text = self._free_chat(state, calls)
        except SpeclmError as exc:
            text = replies.error_reply("answer", str(exc))
            _emit({"type": "error", "message": str(exc)})
            route, err = "error", str(exc)
        # the claim check: every number and name of the reply must be in this turn's facts
        errors = [e.get("error") for e in state.get("tool_trace") or [] if e.get("error")]
        text, dropped = self._grounded(text, state, extra=[err, *(state.get("notes") or []), *errors])
        if route not in ("chat",) or state.get("grounded"):
            self._say(text)  # template replies stream once checked; free chat streamed its kept sentences
        return {"reply": text, "route": route, "attempted_route": state.get("route") or "chat",
                "error": err, "llm_calls": calls, "grounding": {"checked": True, "dropped": dropped},
                "answered": self._answered, "messages": [AIMessage(content=text)]}

    def facts(self, state: AgentState) -> grounding.Facts:
        """Everything this turn's reply may state: tool outputs of the thread, declared constants,
        the line list, the survey table and the user's message."""
        from speclm.tools import lines as line_list
        from speclm.tools.survey_reach import load_surveys

        f = grounding.Facts()
        for key in ("spectrum", "prediction", "search", "check", "cosmology", "lookup", "measure", "surveys",
                    "hypothetical"):
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

    def _planned_text(self, state: AgentState, calls: list) -> str:
        """The reply of a planned turn: each tool result in the house's words, then the planner's own
        words (claim-checked, marked), then notes (errors, the step limit)."""
        from speclm.agent.planner import this_turn

        text = state.get("text", "")
        parts = []
        for e in state.get("tool_trace") or []:
            name, out = e["name"], e.get("output")
            if e.get("error"):
                parts.append(f"The {name} call did not run: {e['error']}.")
            elif name == "cosmology":
                if state.get("z") is not None and abs(out["z"] - state["z"]) < 5e-6 * (1 + state["z"]):
                    src = state.get("z_source") or "model"
                else:
                    src = "your message" if f"{out['z']:g}" in text else "the planner's choice"
                asked = list(e["input"].get("lines") or []) or lines_in_text(text)
                parts.append(replies.cosmology_reply(text, out, z_source=src, line_names=asked))
            elif name == "measure_spectrum":
                parts.append(composer.class_answer(out, out["z"], state.get("z_source")))
            elif name == "survey_reach":
                parts.append(composer.surveys_answer(out))
            elif name == "sdss_lookup":
                parts.append(f"SDSS: {out['describe']}.")
            elif name == "find_redshift":
                parts.append(replies.search_sentence(out, state.get("prediction")))
            elif name == "redshift_check":
                parts.append(replies.check_sentence(out, state.get("prediction")))
            elif name == "predict_redshift":
                parts.append(replies.prediction_sentence(out))
            elif name == "read_spectrum":
                s = out["summary"]
                parts.append(f"Spectrum {out['name']}: {s['n_good']} good pixels, {s['wave_min']:.0f}–{s['wave_max']:.0f} Å.")
        last = next((m for m in reversed(this_turn(state.get("messages") or []))
                     if isinstance(m, AIMessage) and not m.tool_calls), None)
        own = (last.content or "").strip() if last is not None else ""
        if own:
            kept, _ = grounding.keep_grounded(own, self.facts(state))
            if kept:
                parts.append(OWN_WORDS + kept)
        if not parts:
            parts.append(composer.honest_reply(state.get("measure"), state.get("z"), state.get("z_source")))
        return " ".join(parts + list(state.get("notes") or []))

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

