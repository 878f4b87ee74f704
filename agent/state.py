"""What the agent remembers per conversation thread, and what one turn returns.

Why everything here is plain JSON (dicts, floats, strings): the state is written to a SQLite
checkpointer after every node, so a conversation survives a restart; numpy scalars or a
``Spectrum`` object would either fail to serialise or tie the checkpoint to a library version.
The spectrum itself is therefore kept as a *path* plus its summary and re-read when needed.

Two kinds of keys:
* persistent (the thread's memory): ``messages``, ``spectrum``, ``prediction``, ``check``,
  ``cosmology``, ``lookup``, ``z``, ``z_source``;
* per turn (reset by the input of every turn): ``text``, ``upload_path``, ``sdss_id``, ``route``,
  ``error``, ``reply``, ``adapter_on`` and the lists ``tool_trace``, ``produced``, ``llm_calls``
  (a ``None`` update empties them, a list update appends).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, TypedDict

from langgraph.graph.message import add_messages

from speclm.tools.json_safe import jsonable  # noqa: F401  (re-exported: the agent's one sanitiser)

ROUTES = ("spectrum", "lookup", "cosmology", "check", "chat", "clarify", "error")


def turn_list(old: list | None, new: list | None) -> list:
    """Reducer for per-turn lists: ``None`` resets (start of a turn), a list appends."""
    if new is None:
        return []
    return list(old or []) + list(new)


class AgentState(TypedDict, total=False):
    # persistent memory of the thread
    messages: Annotated[list, add_messages]
    spectrum: dict | None  # {"path", "name", "summary"}
    prediction: dict | None  # RedshiftPrediction.to_dict() (+ "backend")
    check: dict | None  # RedshiftCheck.to_dict()
    search: dict | None  # RedshiftAnswer.to_dict(): the stated (spectral type, z) of the spectrum path
    cosmology: dict | None  # CosmologySummary.to_dict()
    measure: dict | None  # Measurements.to_dict() at the trusted z (class, lines, photometry)
    surveys: dict | None  # survey_reach() output for the current object
    hypothetical: dict | None  # a what-if: the cosmology tool at a z the user named, beside the object's own
    cosmology_at: dict | None  # this turn's cosmology at a z other than the object's
    lookup: dict | None  # LookupResult.to_dict()
    z: float | None  # the redshift we currently trust
    z_source: str | None  # "template fit (galaxy|qso|star)" | "line fit" | "model" | "SDSS catalog" | "user"
    spectype: str | None  # GALAXY / QSO / STAR from the redshift search
    # per turn
    text: str
    upload_path: str | None
    sdss_id: str | None
    route: str
    route_reason: str
    attempted_route: str  # the route the router chose (``route`` becomes "error" when a step failed)
    z_text: float | None  # a redshift written in the message ("lookback time at z = 0.3")
    grounded: bool  # chat that starts from the stored z (follow-up questions)
    error: str | None
    reply: str
    adapter_on: bool
    tool_trace: Annotated[list, turn_list]
    produced: Annotated[list, turn_list]
    llm_calls: Annotated[list, turn_list]
    notes: Annotated[list, turn_list]  # sentences appended to the reply (e.g. a check that could not run)
    grounding: dict | None  # the claim check of this turn's reply: {"checked", "dropped": [...]}
    answered: list  # the question intents the composed reply answered
    planner_used: str  # who chose this turn's first calls: "embedded", "rules", "rules (fallback)", ...
    plan_fallback: str | None  # why the model planner's proposal was not run (then the rules took the turn)
    calls: Annotated[list, turn_list]  # this turn's planned calls: {name, args, output, error, planned_by}
    clarify: str | None  # the planner's clarifying question (no call could answer the message)


def turn_input(text: str, upload_path: str | None, sdss_id: str | None) -> dict:
    """The state update that starts a turn: the user's message plus reset per-turn keys."""
    content = text or ""
    if upload_path and not content.strip():
        content = "[spectrum attached]"
    return {
        "messages": [{"role": "user", "content": content}],
        "text": text or "", "upload_path": upload_path, "sdss_id": sdss_id,
        "route": "", "attempted_route": "", "route_reason": "", "z_text": None, "grounded": False, "error": None, "reply": "", "adapter_on": False,
        "tool_trace": None, "produced": None, "llm_calls": None, "notes": None, "grounding": None, "answered": [],
        "planner_used": "", "plan_fallback": None, "calls": None, "clarify": None, "cosmology_at": None,
    }


@dataclass
class TurnResult:
    """What one turn produced. ``prediction``/``check``/``cosmology``/``spectrum_summary`` are set
    only when this turn computed them (the thread's current values are in ``Assistant.state``).

    route: "spectrum" | "lookup" | "cosmology" | "check" | "chat" | "clarify" | "error"
    adapter_on: whether the LoRA adapter was on for any LLM call of this turn.
    """

    reply: str
    route: str
    prediction: dict | None = None
    check: dict | None = None
    cosmology: dict | None = None
    search: dict | None = None
    measure: dict | None = None
    surveys: dict | None = None
    grounding: dict | None = None
    answered: list[str] = field(default_factory=list)
    planner: str = ""  # who chose this turn's first calls: "embedded", "rules", "rules (fallback)", "openai", ...
    plan: list[dict] = field(default_factory=list)  # this turn's calls: {name, args, planned_by, error}
    spectrum_summary: dict | None = None
    tool_trace: list[dict] = field(default_factory=list)
    error: str | None = None
    adapter_on: bool = False
    # additions beyond the UI contract
    lookup: dict | None = None
    z: float | None = None
    z_source: str | None = None
    spectype: str | None = None
    attempted_route: str | None = None
    route_reason: str = ""
    llm_calls: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    thread_id: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
