"""The embedded planner's text format: one planning step as a prompt, one tool call (or ``done``) as the answer.

Why a compact format of our own and not the chat template's tool block: SmolLM2's chat template has
no tool support, and the tools' JSON schemas are ~1,500 tokens, ten times the rest of a step; a
LoRA trained on this format learns the tools, so the prompt only names them. Training data
(:mod:`speclm.agent.planner_data`) and inference (:class:`speclm.agent.planner.EmbeddedPlanner`)
both go through :func:`step_prompt` and :func:`parse_step`, so the two cannot drift.

A step::

    speclm planner. Tools: sdss_lookup, cosmology, ... .
    Object: z=0.0521 (sdss), GALAXY, spectrum loaded.
    User: how far is it, and where would Hβ land?
    Calls:
    1. sdss_lookup {"plate": 266, "mjd": 51630, "fiberid": 461} -> ok: z=0.0521 GALAXY
    Next:

and its answer `` cosmology {"z": 0.0521, "lines": ["Hbeta"]}`` or `` done``. ``spectrum_path`` is never
written by the planner: the agent fills it with the file of this turn's lookup, or the thread's. A
message that comes with a file says so in the object line (``Attached: a spectrum file.``); the
planner then calls ``analyze_spectrum {}`` and the agent fills in the attached file's path.

The tool names and the read-back lines come from the one registry (:mod:`speclm.agent.registry`).
"""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

from speclm.agent.registry import REGISTRY, TOOL_NAMES

DONE = "done"
HEADER = "speclm planner. Tools: " + ", ".join(TOOL_NAMES) + "."
ATTACHED = " Attached: a spectrum file."


def context_line(z: float | None = None, z_source: str | None = None, spectype: str | None = None,
                 has_spectrum: bool = False, attached: bool = False) -> str:
    """What the planner knows about the thread's object (and whether this message brings a file), in one line."""
    if z is None and not has_spectrum:
        return "Object: none." + (ATTACHED if attached else "")
    parts = []
    if z is not None:
        parts.append(f"z={format_number(z)}" + (f" ({z_source})" if z_source else ""))
    if spectype:
        parts.append(spectype)
    parts.append("spectrum loaded" if has_spectrum else "no spectrum")
    return "Object: " + ", ".join(parts) + "." + (ATTACHED if attached else "")


def format_number(x: float) -> str:
    """A number as the planner reads and writes it: the shortest text that reads back as the same
    float, no exponent (RA/Dec keep all their decimals: 151.1446 stays 151.1446)."""
    if isinstance(x, int):
        return str(x)
    s = repr(float(x))
    if "e" in s or "E" in s:
        s = f"{x:.12f}".rstrip("0").rstrip(".")
    return s[:-2] if s.endswith(".0") else s


def format_call(name: str, args: dict) -> str:
    """``name {json}`` with the implicit arguments (the registry's, e.g. spectrum_path) left out."""
    implicit = ("spectrum_path",) + (REGISTRY[name].implicit if name in REGISTRY else ())
    a = {k: v for k, v in args.items() if k not in implicit and v is not None}
    return f"{name} {json.dumps(a, ensure_ascii=False)}" if a else f"{name} {{}}"


#: where one request ends and the next begins in a message that asks for several things: "then"
#: (", then", "and then", "; then"), "after that", "afterwards", ";", "plus" or a spaced "+", "vs" before "at /
#: if / in / for / assuming / using / with" (a quantity at two redshifts or in two cosmologies), ", and also", a comma or a question mark followed by
#: "and"/"also" and a new question or verb, a bare "and" before a wh-question ("is it passive and how
#: far is it"). Any other bare " and " (lists: "Hα and [N II]"; one idiom: "look it up
#: and measure its z") and a second sentence (often an elaboration: "… a star? the template says so")
#: are not split — unless that sentence opens with a word that starts a new request ("Separately,", "In
#: addition,", "Also,", "Oh and", "Second,", "Meanwhile", "Finally"); a numbered list ("1) … 2) …") is split.
_PART_BREAK = re.compile(
    r"(?:[.?!]\s+(?:and\s+|oh\s+and\s+)?(?:separately|in\s+addition|additionally|secondly|second|meanwhile|besides|"
    r"one\s+more\s+thing|also|plus|finally|after\s+that|afterwards|then)(?=[\s,:])[,:]?\s*|,?\s+and\s+(?=(?:tell|give|show)\s+me\b)|(?:^|\s)\(?[1-4]\)\s+|\s+and\s+(?=(?:what|what's|whats|how|where|which|when|who)\s)|\?\s+(?:if\s+so,?\s+)?(?=(?:what|what's|"
    r"whats|how|where|which|when|who)\s)|,?\s+(?:and\s+)?(?:then|after\s+that|afterwards)\s+|;\s*|,?\s+(?:plus|\+)\s+|"
    r"\s+(?:vs\.?|versus)\s+(?=(?:at|if|in|for|assuming|using|with)\b)|[,?]\s+and\s+also\s+|[,?]\s+(?:and|also)\s+(?=(?:what|what's|"
    r"whats|how|where|when|which|who|is|are|does|do|did|can|could|would|will|give|show|tell|compute|calculate|"
    r"check|test|rerun|redo|re-run|run|measure|list|look|plot|find|get|estimate|summari[sz]e|describe)\b))", re.I)
_LEAD = re.compile(r"^(?:\(?[1-4]\)\s*)?(?:and|also|then|plus)?\b[\s,]*(?:(?:once|when|after)\s+(?:that'?s|that\s+is|"
                   r"you'?ve|you\s+have|it'?s)\s+(?:done|finished|been\s+done)(?:\s+that)?\b[\s,]*)?", re.I)
_FILLER = {"pls", "please", "plz", "thanks", "thx", "ty", "thank", "you", "ok", "okay", "cheers"}


def request_parts(text: str) -> list[str]:
    """A message split into the requests it makes, in order (one part for a single request). Each part
    is planned as a message of its own (:class:`speclm.agent.planner.EmbeddedPlanner`); a piece that is
    only a courtesy ("pls", "thanks") stays with the part before it."""
    parts: list[str] = []
    for piece in _PART_BREAK.split(" ".join(str(text or "").split())):
        piece = _LEAD.sub("", piece.strip(" ,.;")).strip(" ,.;")
        if not piece:
            continue
        if parts and all(w.strip("!?.,").lower() in _FILLER for w in piece.split()):
            parts[-1] = f"{parts[-1]} {piece}"
        else:
            parts.append(piece)
    return parts or [str(text or "")]


def step_prompt(context: str, user_text: str, done_steps: Sequence[tuple[str, dict, str]] = ()) -> str:
    """The prompt of one planning step: header, object, user message, the calls made so far
    (each with a one-line result summary), then ``Next:``."""
    lines = [HEADER, context, "User: " + " ".join(str(user_text).split())]
    if done_steps:
        lines.append("Calls:")
        for i, (name, args, result) in enumerate(done_steps, 1):
            lines.append(f"{i}. {format_call(name, args)} -> {result}")
    lines.append("Next:")
    return "\n".join(lines)


def step_answer(name: str | None, args: dict | None = None) -> str:
    """The answer a step is trained on: `` <call>`` or `` done``."""
    return " " + (DONE if name is None else format_call(name, args or {}))


_CALL = re.compile(r"^\s*([a-z_]+)\s*(\{.*\})?\s*$", re.S)


_STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def _plain_number(chunk: str) -> str:
    chunk = re.sub(r"(?<![\d.\w])0+(\d)", r"\1", chunk)
    return re.sub(r"([:\[,]\s*)\+(?=[\d.])", r"\1", chunk)


def _strip_leading_zeros(js: str) -> str:
    """``0266`` -> ``266`` and ``+2.21`` -> ``2.21`` outside string literals (JSON forbids leading
    zeros and plus signs; a plate number written as in its identifier is still that plate, a
    declination written with its sign is still that declination)."""
    out, last = [], 0
    for m in _STRING.finditer(js):
        out.append(_plain_number(js[last:m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_plain_number(js[last:]))
    return "".join(out)


def parse_step(text: str) -> tuple[str | None, dict] | None:
    """``(name, args)`` for a call, ``(None, {})`` for done, ``None`` for text that is neither
    (an unknown tool name or arguments that are not a JSON object)."""
    t = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    if t == DONE:
        return None, {}
    m = _CALL.match(t)
    if not m or m.group(1) not in TOOL_NAMES:
        return None
    raw = _strip_leading_zeros(m.group(2) or "{}")
    try:
        args = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return (m.group(1), args) if isinstance(args, dict) else None


def result_summary(name: str, output: Any = None, error: str | None = None) -> str:
    """What the planner reads back from a tool: ``ok`` plus the values a next call may need (the
    registry's ``summary`` of that tool)."""
    if name not in REGISTRY:
        return "error: " + " ".join(str(error).split())[:80] if error else "ok"
    return REGISTRY[name].result_line(output, error)
