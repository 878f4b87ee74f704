"""The checks a turn's ``expect`` may use (CHECKS): each validates its value at load time and evaluates a TurnContext."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from speclm.evals.scenarios.schema import FAIL, PASS, SKIP, Z_REFS, Z_SOURCES, where_error


# ------------------------------------------------------------------------------------------------
# Checks: validate(value, where) at load time, evaluate(value, ctx) -> (status, detail) per turn
# ------------------------------------------------------------------------------------------------

@dataclass
class TurnContext:
    """What a check may look at: the turn's result plus the thread around it."""

    result: Any  # speclm.agent.state.TurnResult
    adapter_mode: str
    prev_z: float | None  # the thread's trusted z before this turn
    z_after: float | None  # ... and after it
    truth: float | None  # true z of the thread's current object (fixture / served object)
    catalog: float | None  # catalog z of the thread's current object (file / SDSS)
    upload_name: str | None
    n_messages: int
    measured_class: str | None = None  # the measurement tool's class of the thread's object
    invented: list = field(default_factory=list)  # ungrounded claims of the reply (grounding.check_reply)


@dataclass(frozen=True)
class Check:
    validate: Callable[[Any, str], None]
    evaluate: Callable[[Any, TurnContext], Any]  # (status, detail) or [(label, status, detail), ...]
    help: str


def _is_bool(v, where):
    if not isinstance(v, bool):
        raise where_error(where, f"must be true or false, got {v!r}")


def _strs(v, where):
    vals = [v] if isinstance(v, str) else v
    if not isinstance(vals, list) or not vals or not all(isinstance(s, str) and s for s in vals):
        raise where_error(where, f"must be a string or a list of strings, got {v!r}")
    return vals


def _routes(v, where):
    from speclm.agent.state import ROUTES

    for r in _strs(v, where):
        if r not in ROUTES:
            raise where_error(where, f"unknown route {r!r}; routes: {', '.join(ROUTES)}")


def _ok(cond: bool, detail: str) -> tuple[str, str]:
    return (PASS if cond else FAIL), detail


def _tool_names(ctx) -> list[str]:
    return [t.get("name") for t in ctx.result.tool_trace]


def shorten(s: str, n: int = 90) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


# -- reply_contains_tool: the reply quotes a tool's number exactly as agent/replies.py formats it
def _tool_formatters() -> dict[str, Callable[[float], str]]:
    from speclm.agent import replies

    three, four, five = (lambda x: f"{x:.3f}"), (lambda x: f"{x:.4f}"), (lambda x: f"{x:.5f}")
    return {
        "cosmology.lookback_gyr": replies.fmt_gyr,
        "cosmology.age_at_z_gyr": lambda x: f"{x:.2f} Gyr",
        "cosmology.luminosity_distance_mpc": replies._mpc,
        "cosmology.comoving_distance_mpc": replies._mpc,
        "cosmology.recession_velocity_km_s": lambda x: f"{x:,.0f} km/s",
        "prediction.z": three, "prediction.z_lo": four, "prediction.z_hi": four,
        "check.z": five, "lookup.z": five,
    }


_LINE_KEY = re.compile(r"^cosmology\.lines\.([A-Za-z0-9_\[\]]+)\.observed_A$")


def _validate_tool_keys(v, where):
    from speclm.tools import lines as line_list

    known = set(_tool_formatters()) | {"z"}
    names = {l.name for l in line_list.LINES}
    for k in _strs(v, where):
        m = _LINE_KEY.match(k)
        if m and m[1] not in names:
            raise where_error(where, f"unknown line {m[1]!r} in {k!r}")
        if not m and k not in known:
            raise where_error(where, f"unknown tool value {k!r}; known: {', '.join(sorted(known))}, "
                              "cosmology.lines.<Line>.observed_A")


def _tool_text(key: str, r) -> tuple[str | None, str]:
    """(the string the reply must contain, or None if the tool did not run; a description)."""
    from speclm.agent import replies

    if key == "z":
        if r.z is None:
            return None, "the thread has no redshift"
        return replies.fmt_z(r.z, r.z_source), f"z={r.z} ({r.z_source})"
    head, _, rest = key.partition(".")
    out = getattr(r, head, None)
    if not out:
        return None, f"the {head} tool produced nothing this turn"
    m = _LINE_KEY.match(key)
    if m:
        line = next((l for l in out.get("lines", []) if l["name"] == m[1]), None)
        if line is None:
            return None, f"the cosmology tool returned no line {m[1]}"
        return f"{line['observed_A']:.1f} Å", f"{key}={line['observed_A']:.3f}"
    value = out.get(rest)
    if value is None:
        return None, f"{key} is missing from the tool output"
    return _tool_formatters()[key](value), f"{key}={value:.6g}"


def _eval_tool_keys(v, ctx):
    misses, found = [], []
    for key in _strs(v, "reply_contains_tool"):
        want, desc = _tool_text(key, ctx.result)
        if want is None:
            misses.append(desc)
        elif want not in ctx.result.reply:
            misses.append(f"reply lacks {want!r} ({desc})")
        else:
            found.append(want)
    return (FAIL, "; ".join(misses)) if misses else (PASS, "reply quotes " + ", ".join(repr(f) for f in found))


# -- z_within: a redshift of this turn vs a reference, absolute tolerance (or relative to 1+z)
def _validate_z(v, where):
    items = v if isinstance(v, list) else [v]
    for d in items:
        if not isinstance(d, dict):
            raise where_error(where, f"must be a mapping {{z, of, tol, rel, when}} or a list of them, got {d!r}")
        unknown = set(d) - {"z", "of", "tol", "rel", "when"}
        if unknown:
            raise where_error(where, f"unknown key(s) {sorted(unknown)}; allowed: z, of, tol, rel, when")
        if d.get("z", "trusted") not in Z_SOURCES:
            raise where_error(where, f"z must be one of {', '.join(Z_SOURCES)}, got {d.get('z')!r}")
        of = d.get("of", "catalog")
        if not (of in Z_REFS or (isinstance(of, (int, float)) and not isinstance(of, bool))):
            raise where_error(where, f"of must be one of {', '.join(Z_REFS)} or a number, got {of!r}")
        tol = d.get("tol")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
            raise where_error(where, f"tol must be a number in [0, 1), got {tol!r}")
        if "rel" in d:
            _is_bool(d["rel"], where + " rel")
        if d.get("when") not in (None, "confident"):
            raise where_error(where, f"when must be 'confident' (evaluate only after a confident line fit), got {d.get('when')!r}")


def _z_of(src: str, ctx) -> float | None:
    r = ctx.result
    return {"model": (r.prediction or {}).get("z"), "trusted": ctx.z_after,
            "check": (r.check or {}).get("z"), "cosmology": (r.cosmology or {}).get("z"),
            "lookup": (r.lookup or {}).get("z")}[src]


def _eval_one_z(d: dict, ctx) -> tuple[str, str]:
    src, of, tol = d.get("z", "trusted"), d.get("of", "catalog"), float(d["tol"])
    check = ctx.result.check or {}
    if d.get("when") == "confident" and not check.get("confident"):
        why = check.get("reason") or "no line check this turn"
        return SKIP, f"line check not confident ({shorten(why, 60)})"
    z = _z_of(src, ctx)
    ref = {"catalog": ctx.catalog, "truth": ctx.truth, "previous": ctx.prev_z}.get(of, of)
    if z is None:
        return FAIL, f"no {src} redshift this turn"
    if ref is None:
        return FAIL, f"no {of} redshift to compare with"
    lim = tol * (1 + float(ref)) if d.get("rel") else tol
    diff = abs(float(z) - float(ref))
    label = of if isinstance(of, str) else "given"
    return _ok(diff <= lim, f"{src} z={z:.5f} vs {label} {float(ref):.5f}: |Δz|={diff:.2g} "
                            f"{'<=' if diff <= lim else '>'} {lim:.2g}")


def _eval_z(v, ctx) -> list[tuple[str, str, str]]:
    """One row per comparison, named like ``z_within:model~catalog``."""
    rows = []
    for d in (v if isinstance(v, list) else [v]):
        of = d.get("of", "catalog")
        label = f"{d.get('z', 'trusted')}~{of if isinstance(of, str) else format(of, 'g')}"
        rows.append((label + ("|confident" if d.get("when") else ""), *_eval_one_z(d, ctx)))
    return rows


def _eval_adapter(v, ctx):
    want = (ctx.adapter_mode == "always") if v == "text" else v
    calls = ", ".join(f"{c.get('purpose')}:{'on' if c.get('adapter_on') else 'off'}" for c in ctx.result.llm_calls)
    how = f" ({ctx.adapter_mode} mode, text)" if v == "text" else ""
    return _ok(ctx.result.adapter_on == want,
               f"adapter_on={ctx.result.adapter_on}, expected {want}{how}; calls [{calls}]")


def _validate_adapter(v, where):
    if v != "text" and not isinstance(v, bool):
        raise where_error(where, f"must be true, false or 'text' (as the run's adapter mode prescribes for text), got {v!r}")


def _eval_error(v, ctx):
    r = ctx.result
    failed = bool(r.error) and r.route == "error"
    detail = f"route={r.route}, error={shorten(r.error or 'None', 70)}"
    return _ok(failed == v, detail)


def _lower_in(s: str, text: str) -> bool:
    return s.lower() in text.lower()


def _eval_contains(v, ctx):
    missing = [s for s in _strs(v, "") if not _lower_in(s, ctx.result.reply)]
    if missing:
        return FAIL, f"missing {missing} in: {shorten(ctx.result.reply, 80)}"
    return PASS, f"reply has {_strs(v, '')}"


def _num(where):
    def v(x, w):
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise where_error(w, f"must be a non-negative integer, got {x!r}")
    return v


def _validate_regex(v, where):
    try:
        re.compile(v)
    except (re.error, TypeError) as exc:
        raise where_error(where, f"not a valid regular expression: {exc}") from None


CHECKS: dict[str, Check] = {
    "route": Check(_routes, lambda v, c: _ok(c.result.route in _strs(v, ""),
                                             f"route={c.result.route} ({shorten(c.result.route_reason, 70)})"),
                   "the turn's final route (one name or a list of accepted names)"),
    "attempted_route": Check(_routes, lambda v, c: _ok(c.result.attempted_route in _strs(v, ""),
                                                       f"attempted_route={c.result.attempted_route}"),
                             "the route the router chose (before a failure turned it into 'error')"),
    "error": Check(_is_bool, _eval_error, "true: the turn failed gracefully (route 'error' + message); "
                                          "false: no error"),
    "plan": Check(lambda v, w: v == [] or _strs(v, w),
                  lambda v, c: _ok([x["name"] for x in c.result.plan] == (v or []),
                                   f"planned {[x['name'] for x in c.result.plan]} by {c.result.planner or '-'}"),
                  "the exact sequence of calls the planner made this turn ([] = none)"),
    "planner": Check(_strs, lambda v, c: _ok(c.result.planner in _strs(v, "") or (not c.result.plan and not c.result.planner),
                                             f"planned by {c.result.planner or '-'}"),
                     "who planned the turn's first calls: embedded, rules, rules (fallback), openai, chat-template"),
    "no_tools": Check(_is_bool, lambda v, c: _ok((not c.result.tool_trace) == v, f"tools {_tool_names(c)}"),
                      "true: no tool ran this turn"),
    "tools": Check(_strs, lambda v, c: _ok(_tool_names(c) == _strs(v, ""), f"tools {_tool_names(c)}"),
                   "the exact sequence of tools that ran"),
    "tools_include": Check(_strs, lambda v, c: _ok(all(t in _tool_names(c) for t in _strs(v, "")),
                                                   f"tools {_tool_names(c)}"),
                           "these tools ran (among others)"),
    "no_llm": Check(_is_bool, lambda v, c: _ok((not [x for x in c.result.llm_calls if x.get("purpose") != "plan"]) == v,
                                               f"llm calls {[x.get('purpose') for x in c.result.llm_calls]}"),
                    "true: the language model wrote none of the reply (the planner may have chosen the tools; "
                    "the tools and the templates answered)"),
    "adapter_on": Check(_validate_adapter, _eval_adapter,
                        "whether the LoRA adapter was on for any LLM call; 'text' = off in toggle, on in always"),
    "reply_contains": Check(_strs, lambda v, c: _eval_contains(v, c),
                            "case-insensitive substrings the reply must contain"),
    "reply_not_contains": Check(_strs, lambda v, c: _ok(not any(_lower_in(s, c.result.reply) for s in _strs(v, "")),
                                                        f"found {[s for s in _strs(v, '') if _lower_in(s, c.result.reply)]}"),
                                "case-insensitive substrings the reply must not contain"),
    "reply_matches": Check(_validate_regex, lambda v, c: _ok(re.search(v, c.result.reply) is not None,
                                                             f"/{v}/ on: {shorten(c.result.reply, 70)}"),
                           "a regular expression the reply must match"),
    "reply_contains_tool": Check(_validate_tool_keys, _eval_tool_keys,
                                 "tool values (tool.field) the reply must quote, formatted as agent/replies.py does"),
    "reply_names_file": Check(_is_bool, lambda v, c: _ok(bool(c.upload_name) and (c.upload_name in c.result.reply) == v,
                                                         f"file {c.upload_name!r}"),
                              "true: the reply names the uploaded file (a useful error message)"),
    "z_within": Check(_validate_z, _eval_z, "{z: model|trusted|check|cosmology|lookup, of: catalog|truth|previous|"
                                            "<number>, tol: abs, rel: tol*(1+z_ref), when: confident}"),
    "z_source": Check(_strs, lambda v, c: _ok(c.result.z_source in _strs(v, ""), f"z_source={c.result.z_source}"),
                      "where the thread's z came from: model, line fit, ..."),
    "z_unchanged": Check(_is_bool, lambda v, c: _ok((c.prev_z == c.z_after) == v,
                                                    f"z before {c.prev_z}, after {c.z_after}"),
                         "true: the thread's redshift is the same after the turn (a failure kept the object)"),
    "check_confident": Check(_is_bool, lambda v, c: _ok(bool((c.result.check or {}).get("confident")) == v,
                                                        f"check: {shorten((c.result.check or {}).get('reason', 'none'), 70)}"),
                             "whether the line check was confident this turn"),
    "class_in": Check(_strs, lambda v, c: _ok(bool(c.measured_class) and c.measured_class in _strs(v, "")
                                             and c.measured_class.lower() in c.result.reply.lower(),
                                             f"measured class {c.measured_class!r}"),
                      "the measurement tool's class is one of these and the reply names it"),
    "no_invented_claims": Check(_is_bool, lambda v, c: _ok((not c.invented) == v,
                                                           f"ungrounded: {[x['text'] for x in c.invented][:6]}"),
                                "true: every number, class, object type and survey/catalog name of the reply "
                                "is in the turn's tool outputs (agent.grounding.check_reply)"),
    "messages": Check(_num("messages"), lambda v, c: _ok(c.n_messages == v, f"{c.n_messages} messages in the thread"),
                      "number of messages in the thread after the turn (user + assistant)"),
}
