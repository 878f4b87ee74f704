"""Scripted agent evaluations: multi-turn conversations in YAML, run against the real graph.

Why scenarios and not unit tests of nodes: what a user meets is a *conversation* — upload a
spectrum, ask a follow-up, upload a broken file, ask something off-topic. Each scenario here is
one such conversation, played through :class:`speclm.agent.assistant.Assistant` (the same object
the UI and the demo use) in a fresh thread with its own SQLite checkpoint, and every turn's
``TurnResult`` is checked against declarative expectations. The suite ships as package data
(``evals/scenarios/*.yaml``); ``speclm eval agent`` runs it and exits 1 if any check fails, so CI
can use it.

Scenario file (one mapping, a list of them, or ``{scenarios: [...]}``)::

    name: followup_cosmology            # unique, [a-z0-9_-]
    description: why this conversation matters
    model_dependent: false              # true: the checks measure model quality (z accuracy)
    needs: [sdss_server]                # the runner starts the loopback SDSS server (tests/sdss_server.py)
    sdss_objects: {n: 4, seed: 1}       # what that server serves (default n=4, seed=1)
    adapter_mode: toggle                # optional: pin the mode instead of the run's --adapter-mode
    turns:
      - text: "Here is a galaxy spectrum. What is its redshift?"
        spectrum: ppxf:NGC3522          # see FIXTURES below
        sdss_id: "{sdss[0].name}"       # optional; {sdss[i].name|specobjid|z} -> served object i
        expect: {route: spectrum, ...}  # see CHECKS below

Spectrum fixtures (written into a temp directory by the runner):

* ``ppxf:NGC3522`` / ``ppxf:NGC3073`` — real SDSS DR18 spectra shipped in the ppxf wheel; truth z = the file's
  SPECOBJ Z. Scenario is SKIPPED when ppxf is not installed.
* ``synthetic:<z>[:<seed>]`` — an SDSS-layout FITS with Gaussian emission/absorption lines at z
  (the demo's ``synthetic_spectrum``); truth z = z.
* ``simulated:<seed>`` — spectrum 0 of ``finetune.simulate`` with that seed (bagpipes; the adapter's
  training distribution, ~1 min to build on a CPU), exported with ``write_sdss_spec_fits``.
* ``file:<path>`` — any spectrum file (relative to the scenario file); truth = its catalog z.
* ``bad:<kind>`` — a broken file: empty, truncated, image, junk, binary, missing.

Redshift tolerance (``z_within``) is a per-check setting. The shipped choices: the *model's* z is
checked against the catalog with ``tol: 0.05`` (absolute; the bundled 135M adapter's typical
error on SDSS-like spectra is a few 0.01, and a random adapter is far outside it), and the *trusted*
z (the one the thread uses after the line check) within ``0.002`` of the catalog, evaluated only
``when: confident`` — a confident line fit pins z to ~1e-4, so 0.002 leaves room only for an
honest fit, not for a wrong line identification. Scenarios that measure model quality say
``model_dependent: true``; ``--ignore-model-dependent`` keeps their failures out of the exit code
(for smoke runs with the random ``tiny`` model).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speclm.tools.errors import ConfigError, SpeclmError

SCENARIO_DIR = Path(__file__).parent / "scenarios"
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


class ScenarioError(ConfigError):
    """A scenario file is malformed (unknown key, bad check value, unknown fixture)."""


class FixtureUnavailable(SpeclmError):
    """A fixture the scenario needs cannot be made here (no ppxf, no loopback server): SKIP."""


# ------------------------------------------------------------------------------------------------
# Scenario model + validation
# ------------------------------------------------------------------------------------------------

SCENARIO_KEYS = {"name", "description", "turns", "needs", "model_dependent", "adapter_mode", "sdss_objects"}
TURN_KEYS = {"text", "spectrum", "sdss_id", "expect"}
NEEDS = ("sdss_server",)
BAD_KINDS = ("empty", "truncated", "image", "junk", "binary", "missing")
PPXF_FILES = {"NGC3522": "NGC3522_SDSS_DR18.fits", "NGC3073": "NGC3073_SDSS_DR18.fits"}
Z_SOURCES = ("model", "trusted", "check", "cosmology", "lookup")
Z_REFS = ("catalog", "truth", "previous")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SDSS_TMPL = re.compile(r"\{sdss\[(\d+)\]\.(name|specobjid|z)\}")


@dataclass
class Turn:
    """One user message: text and/or a spectrum fixture and/or an SDSS identifier, plus checks."""

    text: str = ""
    spectrum: str | None = None
    sdss_id: str | None = None
    expect: dict = field(default_factory=dict)


@dataclass
class Scenario:
    """One conversation; see the module docstring for the YAML form."""

    name: str
    turns: list[Turn]
    description: str = ""
    needs: tuple[str, ...] = ()
    model_dependent: bool = False
    adapter_mode: str | None = None
    sdss_objects: dict = field(default_factory=lambda: {"n": 4, "seed": 1})
    source: str = ""


def _err(where: str, msg: str) -> ScenarioError:
    return ScenarioError(f"{where}: {msg}")


def parse_fixture(spec: str, where: str = "spectrum") -> tuple[str, Any]:
    """'ppxf:NGC3522' -> ('ppxf', 'NGC3522'), 'synthetic:0.1:3' -> ('synthetic', (0.1, 3)), ..."""
    if not isinstance(spec, str) or ":" not in spec:
        raise _err(where, f"spectrum must be 'KIND:ARG' (ppxf:, synthetic:, simulated:, file:, bad:), got {spec!r}")
    kind, _, arg = spec.partition(":")
    if kind == "ppxf":
        if arg not in PPXF_FILES:
            raise _err(where, f"unknown ppxf spectrum {arg!r}; known: {', '.join(PPXF_FILES)}")
        return kind, arg
    if kind == "synthetic":
        parts = arg.split(":")
        try:
            z, seed = float(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except (ValueError, IndexError):
            raise _err(where, f"synthetic spectrum must be 'synthetic:<z>[:<seed>]', got {spec!r}") from None
        if len(parts) > 2 or not 0.0 <= z <= 0.6:
            raise _err(where, f"synthetic z must be in [0, 0.6] (lines must stay in the SDSS range), got {spec!r}")
        return kind, (z, seed)
    if kind == "simulated":
        if not arg.isdigit():
            raise _err(where, f"simulated spectrum must be 'simulated:<seed>' with an integer seed, got {spec!r}")
        return kind, int(arg)
    if kind == "bad":
        if arg not in BAD_KINDS:
            raise _err(where, f"unknown bad-file kind {arg!r}; known: {', '.join(BAD_KINDS)}")
        return kind, arg
    if kind == "file":
        if not arg:
            raise _err(where, "file: needs a path")
        return kind, arg
    if kind == "real":
        if not arg or "/" in arg:
            raise _err(where, f"real: needs a file name of the real SDSS dev set, got {spec!r}")
        return kind, arg
    raise _err(where, f"unknown spectrum kind {kind!r} in {spec!r}; use ppxf:, synthetic:, simulated:, file: or bad:")


def parse_scenario(data: Any, source: str = "<dict>") -> Scenario:
    """Validate one scenario mapping; every problem is a ScenarioError naming file, scenario and turn."""
    if not isinstance(data, dict):
        raise _err(source, f"a scenario must be a mapping, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _err(source, f"scenario needs a 'name' of lowercase letters, digits, '_' or '-', got {name!r}")
    where = f"{source}: scenario {name!r}"
    unknown = set(data) - SCENARIO_KEYS
    if unknown:
        raise _err(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(SCENARIO_KEYS)}")
    needs = data.get("needs") or ()
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    for n in needs:
        if n not in NEEDS:
            raise _err(where, f"unknown need {n!r}; known: {', '.join(NEEDS)}")
    mode = data.get("adapter_mode")
    if mode not in (None, "toggle", "always"):
        raise _err(where, f"adapter_mode must be 'toggle' or 'always', got {mode!r}")
    if not isinstance(data.get("model_dependent", False), bool):
        raise _err(where, "model_dependent must be true or false")
    objs = {"n": 4, "seed": 1, **(data.get("sdss_objects") or {})}
    if set(objs) - {"n", "seed"} or not (isinstance(objs["n"], int) and 1 <= objs["n"] <= 100
                                         and isinstance(objs["seed"], int)):
        raise _err(where, f"sdss_objects must be {{n: 1..100, seed: int}}, got {data.get('sdss_objects')!r}")
    turns_raw = data.get("turns")
    if not isinstance(turns_raw, list) or not turns_raw:
        raise _err(where, "needs a non-empty list 'turns'")
    turns = []
    for i, t in enumerate(turns_raw, 1):
        tw = f"{where} turn {i}"
        if not isinstance(t, dict):
            raise _err(tw, f"a turn must be a mapping, got {t!r}")
        unknown = set(t) - TURN_KEYS
        if unknown:
            raise _err(tw, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TURN_KEYS)}")
        text = t.get("text", "")
        if not isinstance(text, str):
            raise _err(tw, "text must be a string")
        if not (text.strip() or t.get("spectrum") or t.get("sdss_id")):
            raise _err(tw, "needs text, a spectrum or an sdss_id")
        if t.get("spectrum") is not None:
            parse_fixture(t["spectrum"], tw)
        sid = t.get("sdss_id")
        if sid is not None and not isinstance(sid, (str, int)):
            raise _err(tw, "sdss_id must be a string or an integer")
        for s in (text, str(sid or "")):
            for m in _SDSS_TMPL.finditer(s):
                if "sdss_server" not in needs:
                    raise _err(tw, f"{m[0]} needs 'needs: sdss_server'")
                if int(m[1]) >= objs["n"]:
                    raise _err(tw, f"{m[0]}: the server serves only {objs['n']} objects")
        expect = t.get("expect") or {}
        if not isinstance(expect, dict):
            raise _err(tw, "expect must be a mapping of check: value")
        for key, value in expect.items():
            if key not in CHECKS:
                raise _err(tw, f"unknown check {key!r}; known: {', '.join(sorted(CHECKS))}")
            CHECKS[key].validate(value, f"{tw} check {key!r}")
        turns.append(Turn(text=text, spectrum=t.get("spectrum"), sdss_id=None if sid is None else str(sid),
                          expect=dict(expect)))
    return Scenario(name=name, turns=turns, description=str(data.get("description", "")).strip(),
                    needs=needs, model_dependent=bool(data.get("model_dependent", False)), adapter_mode=mode,
                    sdss_objects=objs, source=source)


def load_scenarios(path: str | os.PathLike | None = None) -> list[Scenario]:
    """All scenarios of a YAML file or of every ``*.yaml`` in a directory (default: the bundled suite)."""
    import yaml

    p = Path(path).expanduser() if path else SCENARIO_DIR
    if p.is_dir():
        files = sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml"))
        if not files:
            raise ScenarioError(f"{p}: no *.yaml scenario files")
    elif p.is_file():
        files = [p]
    else:
        raise ScenarioError(f"scenario path {p} does not exist")
    out: list[Scenario] = []
    seen: dict[str, str] = {}
    for f in files:
        try:
            data = yaml.safe_load(f.read_text())
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{f}: not valid YAML: {exc}") from None
        if isinstance(data, dict) and "scenarios" in data and "name" not in data:
            data = data["scenarios"]
        items = data if isinstance(data, list) else [data]
        for item in items:
            sc = parse_scenario(item, str(f))
            if sc.name in seen:
                raise ScenarioError(f"{f}: scenario name {sc.name!r} is also used in {seen[sc.name]}")
            seen[sc.name] = str(f)
            out.append(sc)
    return out


def select(scenarios: list[Scenario], only=(), exclude=()) -> list[Scenario]:
    """Keep ``only`` (if given) minus ``exclude``; unknown names are a user error."""
    names = {s.name for s in scenarios}
    for n in (*only, *exclude):
        if n not in names:
            raise ScenarioError(f"no scenario named {n!r}; known: {', '.join(sorted(names))}")
    return [s for s in scenarios if (not only or s.name in only) and s.name not in exclude]


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
        raise _err(where, f"must be true or false, got {v!r}")


def _strs(v, where):
    vals = [v] if isinstance(v, str) else v
    if not isinstance(vals, list) or not vals or not all(isinstance(s, str) and s for s in vals):
        raise _err(where, f"must be a string or a list of strings, got {v!r}")
    return vals


def _routes(v, where):
    from speclm.agent.state import ROUTES

    for r in _strs(v, where):
        if r not in ROUTES:
            raise _err(where, f"unknown route {r!r}; routes: {', '.join(ROUTES)}")


def _ok(cond: bool, detail: str) -> tuple[str, str]:
    return (PASS if cond else FAIL), detail


def _tool_names(ctx) -> list[str]:
    return [t.get("name") for t in ctx.result.tool_trace]


def _short(s: str, n: int = 90) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


# -- reply_contains_tool: the reply quotes a tool's number exactly as agent/replies.py formats it
def _tool_formatters() -> dict[str, Callable[[float], str]]:
    from speclm.agent import replies

    three, five = (lambda x: f"{x:.3f}"), (lambda x: f"{x:.5f}")
    return {
        "cosmology.lookback_gyr": replies.fmt_gyr,
        "cosmology.age_at_z_gyr": lambda x: f"{x:.2f} Gyr",
        "cosmology.luminosity_distance_mpc": replies._mpc,
        "cosmology.comoving_distance_mpc": replies._mpc,
        "cosmology.recession_velocity_km_s": lambda x: f"{x:,.0f} km/s",
        "prediction.z": three, "prediction.z_lo": three, "prediction.z_hi": three,
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
            raise _err(where, f"unknown line {m[1]!r} in {k!r}")
        if not m and k not in known:
            raise _err(where, f"unknown tool value {k!r}; known: {', '.join(sorted(known))}, "
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
            raise _err(where, f"must be a mapping {{z, of, tol, rel, when}} or a list of them, got {d!r}")
        unknown = set(d) - {"z", "of", "tol", "rel", "when"}
        if unknown:
            raise _err(where, f"unknown key(s) {sorted(unknown)}; allowed: z, of, tol, rel, when")
        if d.get("z", "trusted") not in Z_SOURCES:
            raise _err(where, f"z must be one of {', '.join(Z_SOURCES)}, got {d.get('z')!r}")
        of = d.get("of", "catalog")
        if not (of in Z_REFS or (isinstance(of, (int, float)) and not isinstance(of, bool))):
            raise _err(where, f"of must be one of {', '.join(Z_REFS)} or a number, got {of!r}")
        tol = d.get("tol")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
            raise _err(where, f"tol must be a number in [0, 1), got {tol!r}")
        if "rel" in d:
            _is_bool(d["rel"], where + " rel")
        if d.get("when") not in (None, "confident"):
            raise _err(where, f"when must be 'confident' (evaluate only after a confident line fit), got {d.get('when')!r}")


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
        return SKIP, f"line check not confident ({_short(why, 60)})"
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
        raise _err(where, f"must be true, false or 'text' (as the run's adapter mode prescribes for text), got {v!r}")


def _eval_error(v, ctx):
    r = ctx.result
    failed = bool(r.error) and r.route == "error"
    detail = f"route={r.route}, error={_short(r.error or 'None', 70)}"
    return _ok(failed == v, detail)


def _lower_in(s: str, text: str) -> bool:
    return s.lower() in text.lower()


def _eval_contains(v, ctx):
    missing = [s for s in _strs(v, "") if not _lower_in(s, ctx.result.reply)]
    if missing:
        return FAIL, f"missing {missing} in: {_short(ctx.result.reply, 80)}"
    return PASS, f"reply has {_strs(v, '')}"


def _num(where):
    def v(x, w):
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise _err(w, f"must be a non-negative integer, got {x!r}")
    return v


def _validate_regex(v, where):
    try:
        re.compile(v)
    except (re.error, TypeError) as exc:
        raise _err(where, f"not a valid regular expression: {exc}") from None


CHECKS: dict[str, Check] = {
    "route": Check(_routes, lambda v, c: _ok(c.result.route in _strs(v, ""),
                                             f"route={c.result.route} ({_short(c.result.route_reason, 70)})"),
                   "the turn's final route (one name or a list of accepted names)"),
    "attempted_route": Check(_routes, lambda v, c: _ok(c.result.attempted_route in _strs(v, ""),
                                                       f"attempted_route={c.result.attempted_route}"),
                             "the route the router chose (before a failure turned it into 'error')"),
    "error": Check(_is_bool, _eval_error, "true: the turn failed gracefully (route 'error' + message); "
                                          "false: no error"),
    "no_tools": Check(_is_bool, lambda v, c: _ok((not c.result.tool_trace) == v, f"tools {_tool_names(c)}"),
                      "true: no tool ran this turn"),
    "tools": Check(_strs, lambda v, c: _ok(_tool_names(c) == _strs(v, ""), f"tools {_tool_names(c)}"),
                   "the exact sequence of tools that ran"),
    "tools_include": Check(_strs, lambda v, c: _ok(all(t in _tool_names(c) for t in _strs(v, "")),
                                                   f"tools {_tool_names(c)}"),
                           "these tools ran (among others)"),
    "no_llm": Check(_is_bool, lambda v, c: _ok((not c.result.llm_calls) == v,
                                               f"llm calls {[x.get('purpose') for x in c.result.llm_calls]}"),
                    "true: the language model was not called (rules + tools answered)"),
    "adapter_on": Check(_validate_adapter, _eval_adapter,
                        "whether the LoRA adapter was on for any LLM call; 'text' = off in toggle, on in always"),
    "reply_contains": Check(_strs, lambda v, c: _eval_contains(v, c),
                            "case-insensitive substrings the reply must contain"),
    "reply_not_contains": Check(_strs, lambda v, c: _ok(not any(_lower_in(s, c.result.reply) for s in _strs(v, "")),
                                                        f"found {[s for s in _strs(v, '') if _lower_in(s, c.result.reply)]}"),
                                "case-insensitive substrings the reply must not contain"),
    "reply_matches": Check(_validate_regex, lambda v, c: _ok(re.search(v, c.result.reply) is not None,
                                                             f"/{v}/ on: {_short(c.result.reply, 70)}"),
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
                                                        f"check: {_short((c.result.check or {}).get('reason', 'none'), 70)}"),
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


# ------------------------------------------------------------------------------------------------
# Fixtures: spectrum files and the loopback SDSS server
# ------------------------------------------------------------------------------------------------

class Fixtures:
    """Writes fixture spectra into ``root`` (cached per spec; bad files fresh each time)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, tuple[Path, float | None]] = {}
        self._n = 0

    def get(self, spec: str, base_dir: Path | None = None) -> tuple[Path, float | None]:
        """(path, true z or None) for a fixture spec."""
        kind, arg = parse_fixture(spec)
        if kind != "bad" and spec in self._cache:
            return self._cache[spec]
        if kind == "ppxf":
            found = importlib.util.find_spec("ppxf")
            if found is None or not found.submodule_search_locations:
                raise FixtureUnavailable("ppxf is not installed (pip install ppxf): no real SDSS spectra")
            path = Path(next(iter(found.submodule_search_locations))) / "spectra" / PPXF_FILES[arg]
            out = (path, self._catalog_z(path))
        elif kind == "synthetic":
            from speclm.agent.cli import synthetic_spectrum

            z, seed = arg
            out = (synthetic_spectrum(self.root / f"spec-synthetic-z{z:g}-s{seed}.fits", z=z, seed=seed), z)
        elif kind == "simulated":
            out = self._simulated(arg)
        elif kind == "real":
            root = Path(os.environ.get("SPECLM_REAL_DEV", "../shared/data/sdss_real_dev")) / "fits"
            path = root / arg
            if not path.is_file():
                raise FixtureUnavailable(f"real SDSS spectrum {path} is not here (set SPECLM_REAL_DEV)")
            out = (path, self._catalog_z(path))
        elif kind == "file":
            path = Path(arg).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            out = (path, self._catalog_z(path) if path.is_file() else None)
        else:
            self._n += 1
            out = (self._bad(arg, self.root / f"bad{self._n}"), None)
        if kind != "bad":
            self._cache[spec] = out
        return out

    @staticmethod
    def _catalog_z(path: Path) -> float | None:
        from speclm.tools.spectrum import read_spectrum

        return read_spectrum(path).z_catalog

    def _simulated(self, seed: int) -> tuple[Path, float]:
        import numpy as np
        from speclm.finetune.simulate import SimConfig, simulate_one
        from speclm.tools.spectrum import write_sdss_spec_fits

        try:
            s = simulate_one(SimConfig(n=1, seed=seed), 0)
        except ImportError as exc:  # bagpipes (the simulator's stellar-population models) is optional
            raise FixtureUnavailable(f"simulated spectra need bagpipes ({exc})") from None
        path = write_sdss_spec_fits(self.root / f"spec-simulated-s{seed}.fits", np.log10(s.wavelength), s.flux,
                                    s.ivar, s.meta["z"], and_mask=np.asarray(s.mask, np.int32) if s.mask is not None
                                    else None)
        return path, float(s.meta["z"])

    @staticmethod
    def _bad(kind: str, d: Path) -> Path:
        """One broken file per kind (the same defects tests/conftest.py's bad_inputs makes)."""
        import numpy as np

        d.mkdir(parents=True, exist_ok=True)
        if kind == "missing":
            return d / "does_not_exist.fits"
        if kind == "empty":
            p = d / "empty.fits"
            p.touch()
            return p
        if kind == "truncated":
            from speclm.agent.cli import synthetic_spectrum

            p = synthetic_spectrum(d / "truncated.fits", z=0.1)
            data = p.read_bytes()
            p.write_bytes(data[: int(len(data) * 0.6)])
            return p
        if kind == "image":
            from astropy.io import fits

            p = d / "image.fits"
            fits.PrimaryHDU(np.random.default_rng(0).normal(size=(64, 48)).astype("f4")).writeto(p)
            return p
        if kind == "junk":
            wave = np.geomspace(3800.0, 9200.0, 600)
            rows = ["wavelength,flux"] + [f"{w},{1.0}" if i % 3 == 0 else "n/a,--see notes--"
                                          for i, w in enumerate(wave)]
            p = d / "junk.csv"
            p.write_text("\n".join(rows) + "\n")
            return p
        p = d / "mystery.dat"  # binary
        p.write_bytes(bytes(range(256)) * 8)
        return p


def _sdss_sim_module():
    """tests/sdss_server.py (the loopback SkyServer + SAS), loaded by path from the source checkout.

    Why not a copy: one fake SDSS for tests and evals. ``$SPECLM_SDSS_SIM`` may point at the file."""
    if "sdss_server" in sys.modules:
        return sys.modules["sdss_server"]
    path = Path(os.environ.get("SPECLM_SDSS_SIM") or Path(__file__).resolve().parents[1] / "tests" / "sdss_server.py")
    if not path.is_file():
        raise FixtureUnavailable(f"the loopback SDSS server ({path}) is not here; it ships with the source "
                                 "checkout (set $SPECLM_SDSS_SIM to tests/sdss_server.py)")
    spec = importlib.util.spec_from_file_location("sdss_server", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sdss_server"] = mod  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(mod)
    except Exception:
        sys.modules.pop("sdss_server", None)
        raise
    return mod


def _fill(s: str | None, objects: list) -> str | None:
    if s is None:
        return None
    return _SDSS_TMPL.sub(lambda m: str(getattr(objects[int(m[1])], m[2])), s)


# ------------------------------------------------------------------------------------------------
# Runner
# ------------------------------------------------------------------------------------------------

def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class AgentEvalConfig:
    """How `speclm eval agent` runs the suite."""

    base: str = _f("embedded", "base model: embedded, tiny, a Hugging Face id or a path")
    adapter: str | None = _f("bundled", "LoRA adapter directory, 'bundled', or None")
    adapter_mode: str = _f("toggle", "toggle (adapter only for spectrum->z) or always (the paper's setup)")
    scenarios: str | None = _f(None, "scenario YAML file or directory (default: the bundled suite)")
    only: tuple = _f((), "run only these scenario names")
    exclude: tuple = _f((), "skip these scenario names")
    out: str | None = _f("agent_eval.json", "JSON report path (None: do not write)")
    max_new_tokens: int = _f(120, "most tokens per free-text reply")
    device: str = _f("auto", "torch device")
    cosmology: str = _f("Planck18", "cosmology the agent uses")
    ignore_model_dependent: bool = _f(False, "failures of model_dependent scenarios do not fail the run")

    def __post_init__(self):
        if self.adapter_mode not in ("toggle", "always"):
            raise ConfigError(f"adapter_mode must be 'toggle' or 'always', got {self.adapter_mode!r}")
        if self.adapter in ("", "none", "None"):
            self.adapter = None
        self.only, self.exclude = tuple(self.only), tuple(self.exclude)
        if not 1 <= int(self.max_new_tokens) <= 4096:
            raise ConfigError(f"max_new_tokens must be in 1..4096, got {self.max_new_tokens}")


def _row(sc: Scenario, turn: int, check: str, status: str, detail: str) -> dict:
    return {"scenario": sc.name, "turn": turn, "check": check, "status": status, "detail": detail,
            "model_dependent": sc.model_dependent}


def run_scenario(sc: Scenario, cfg: AgentEvalConfig, runtime, fixtures: Fixtures, work: Path) -> dict:
    """Play one scenario in a fresh thread + checkpoint db; returns its record (turns and check rows)."""
    from speclm.agent.assistant import AgentConfig, Assistant

    mode = sc.adapter_mode or cfg.adapter_mode
    rec = {"name": sc.name, "description": sc.description, "source": sc.source, "adapter_mode": mode,
           "model_dependent": sc.model_dependent, "turns": [], "checks": [], "status": PASS}
    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            objects, sdss_cfg = [], None
            if "sdss_server" in sc.needs:
                sim_mod = _sdss_sim_module()
                objects = sim_mod.make_objects(sc.sdss_objects["n"], seed=sc.sdss_objects["seed"])
                sim = stack.enter_context(sim_mod.SkyServerSim(objects))
                sdss_cfg = {"skyserver_url": sim.skyserver_url, "sas_url": sim.sas_url,
                            "cache_dir": str(work / "sdss-cache"), "timeout": 20.0, "retries": 1, "backoff": 0.01}
            a = stack.enter_context(Assistant(AgentConfig(
                base=cfg.base, adapter=cfg.adapter, adapter_mode=mode, checkpoint_db=str(work / "chat.sqlite"),
                max_new_tokens=cfg.max_new_tokens, cosmology=cfg.cosmology, sdss=sdss_cfg, device=cfg.device),
                runtime=runtime))
            tid = a.new_thread_id()
            truth = catalog = None
            base_dir = Path(sc.source).parent if sc.source and Path(sc.source).is_file() else None
            for i, turn in enumerate(sc.turns, 1):
                path = z_fix = None
                if turn.spectrum:
                    path, z_fix = fixtures.get(turn.spectrum, base_dir)
                text, sid = _fill(turn.text, objects), _fill(turn.sdss_id, objects)
                prev_z = a.state(tid)["z"]
                r = a.turn(tid, text, spectrum_path=path, sdss_id=sid)
                st = a.state(tid)
                if not r.error:  # a failed turn leaves the thread's object as it was
                    if path is not None:
                        truth, catalog = z_fix, (r.spectrum_summary or {}).get("z_catalog")
                    elif r.lookup:
                        obj = next((o for o in objects if o.name == r.lookup.get("name")), None)
                        truth, catalog = (obj.z if obj else None), r.lookup.get("z")
                from speclm.agent.grounding import check_reply

                values = a.graph.get_state({"configurable": {"thread_id": tid}}).values
                ctx = TurnContext(result=r, adapter_mode=mode, prev_z=prev_z, z_after=st["z"], truth=truth,
                                  catalog=catalog, upload_name=Path(path).name if path else None,
                                  n_messages=st["n_messages"],
                                  measured_class=(values.get("measure") or {}).get("summary_class"),
                                  invented=check_reply(r.reply, a.nodes.facts(values).add([r.error] if r.error else [])))
                rows = []
                for key, value in turn.expect.items():
                    try:
                        out = CHECKS[key].evaluate(value, ctx)
                    except Exception as exc:  # noqa: BLE001 - a check that cannot be evaluated is a failed check
                        out = (FAIL, f"check crashed: {type(exc).__name__}: {exc}")
                    for label, status, detail in (out if isinstance(out, list) else [("", *out)]):
                        rows.append(_row(sc, i, f"{key}:{label}" if label else key, status, detail))
                rec["checks"] += rows
                rec["turns"].append({"turn": i, "text": text, "spectrum": turn.spectrum, "sdss_id": sid,
                                     "result": r.to_dict(), "truth_z": truth, "catalog_z": catalog})
        except FixtureUnavailable as exc:
            rec["checks"].append(_row(sc, len(rec["turns"]) + 1, "fixture", SKIP, str(exc)))
            rec["status"] = SKIP
        except ScenarioError:
            raise
        except Exception as exc:  # noqa: BLE001 - the runner failed on this scenario: report, go on
            rec["checks"].append(_row(sc, len(rec["turns"]) + 1, "runner", FAIL, f"{type(exc).__name__}: {exc}"))
    statuses = {c["status"] for c in rec["checks"]}
    if FAIL in statuses:
        rec["status"] = FAIL
    elif rec["status"] != SKIP and statuses == {SKIP}:
        rec["status"] = SKIP
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


def load_runtime(cfg: AgentEvalConfig):
    """One ModelRuntime for the whole suite (base + adapter), shared by every scenario's Assistant."""
    from speclm.finetune.runtime import ModelRuntime

    return ModelRuntime.load(cfg.base, cfg.adapter, device=cfg.device)


def run_suite(scenarios: list[Scenario], cfg: AgentEvalConfig, *, runtime=None, progress: bool = True) -> dict:
    """Run scenarios (each in a fresh thread and temp checkpoint db); returns the JSON-able report."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    rt = runtime if runtime is not None else load_runtime(cfg)
    records = []
    with tempfile.TemporaryDirectory(prefix="speclm-agent-eval-") as tmp:
        fixtures = Fixtures(Path(tmp) / "fixtures")
        for sc in tqdm(scenarios, desc="agent scenarios", unit="scenario", disable=not progress):
            records.append(run_scenario(sc, cfg, rt, fixtures, Path(tmp) / sc.name))
    counted = [r for r in records if not (cfg.ignore_model_dependent and r["model_dependent"])]
    checks = [c for r in records for c in r["checks"]]
    summary = {
        "scenarios": len(records),
        **{k.lower(): sum(r["status"] == k for r in records) for k in (PASS, FAIL, SKIP)},
        "checks": len(checks), **{f"checks_{k.lower()}": sum(c["status"] == k for c in checks) for k in (PASS, FAIL, SKIP)},
        "model_dependent_failed": sum(r["status"] == FAIL and r["model_dependent"] for r in records),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    cfg_d = asdict(cfg)
    cfg_d["runtime"] = f"{getattr(rt, 'base', '?')} + adapter {getattr(rt, 'active', None) or 'none'}"
    return {"suite": "speclm agent scenarios", "config": cfg_d, "summary": summary,
            "ok": all(r["status"] != FAIL for r in counted), "scenarios": records, "checks": checks}


def format_table(report: dict, width: int = 72) -> str:
    """Plain-text table: scenario | turn | check | result | detail, then a summary line."""
    rows = [("scenario", "turn", "check", "result", "detail")]
    for c in report["checks"]:
        res = c["status"] + ("*" if c["model_dependent"] and c["status"] == FAIL else "")
        rows.append((c["scenario"], str(c["turn"]), c["check"], res, _short(c["detail"], width)))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(r[i].ljust(w[i]) for i in range(4)) + "  " + r[4])
        if j == 0:
            lines.append("  ".join("-" * w[i] for i in range(4)) + "  " + "-" * 6)
    s = report["summary"]
    lines.append("")
    for r in report["scenarios"]:
        lines.append(f"{r['status']:<4}  {r['name']}{' (model-dependent)' if r['model_dependent'] else ''}"
                     f"  [{len(r['turns'])} turns, {r['seconds']:.1f} s]")
    lines.append(f"\n{s['pass']} passed, {s['fail']} failed, {s['skip']} skipped of {s['scenarios']} scenarios "
                 f"({s['checks_pass']}/{s['checks']} checks passed, {s['checks_skip']} skipped; {s['seconds']:.0f} s)"
                 + ("; * = model-dependent" if s["model_dependent_failed"] else ""))
    return "\n".join(lines)


def write_report(report: dict, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)

    def default(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return str(o)

    p.write_text(json.dumps(report, indent=2, default=default))
    return p


# ------------------------------------------------------------------------------------------------
# CLI: speclm eval agent
# ------------------------------------------------------------------------------------------------

def _names(s: str | None) -> tuple:
    return tuple(n.strip() for n in (s or "").split(",") if n.strip())


def register_eval(esub) -> None:
    """Add ``speclm eval agent`` to the ``speclm eval`` subcommand group."""
    p = esub.add_parser(
        "agent", help="scripted multi-turn agent scenarios (YAML) against the real graph",
        description="Play each scenario (evals/scenarios/*.yaml) through the Assistant in a fresh thread, check "
                    "every turn (route, tools, reply quoting tool numbers, z within tolerance, graceful errors), "
                    "print a pass/fail table and write JSON. Exit 0 if all pass, 1 if any check fails, 2 on "
                    "user errors (bad scenario file, missing model).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", default="embedded", help="base model: embedded, tiny, HF id or path")
    p.add_argument("--adapter", default="bundled", help="LoRA adapter directory, 'bundled' or 'none'")
    p.add_argument("--adapter-mode", choices=("toggle", "always"), default="toggle",
                   help="toggle: adapter only for the spectrum->z step; always: on for text too (paper)")
    p.add_argument("--scenarios", metavar="DIR_OR_FILE", default=None,
                   help="scenario YAML file or directory (default: the bundled suite)")
    p.add_argument("--only", metavar="NAME,...", default=None, help="run only these scenarios")
    p.add_argument("--exclude", metavar="NAME,...", default=None, help="skip these scenarios")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--out", metavar="FILE.json", default="agent_eval.json", help="JSON report")
    p.add_argument("--max-new-tokens", type=int, default=120, help="most tokens per free-text reply")
    p.add_argument("--device", default="auto")
    p.add_argument("--ignore-model-dependent", action="store_true",
                   help="failures of model_dependent scenarios (z accuracy) do not fail the run (smoke tests "
                        "with the random 'tiny' model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_agent)


def _cmd_agent(args) -> int:
    cfg = AgentEvalConfig(base=args.base, adapter=args.adapter, adapter_mode=args.adapter_mode,
                          scenarios=args.scenarios, only=_names(args.only), exclude=_names(args.exclude),
                          out=args.out, max_new_tokens=args.max_new_tokens, device=args.device,
                          ignore_model_dependent=args.ignore_model_dependent)
    scenarios = select(load_scenarios(cfg.scenarios), cfg.only, cfg.exclude)
    if args.list:
        for s in scenarios:
            print(f"{s.name:<28} {len(s.turns)} turns{'  model-dependent' if s.model_dependent else ''}"
                  f"{'  needs ' + ','.join(s.needs) if s.needs else ''}  {_short(s.description, 80)}")
        return 0
    if not scenarios:
        raise ScenarioError("no scenarios selected")
    report = run_suite(scenarios, cfg, progress=not args.no_progress)
    print(format_table(report))
    if cfg.out:
        print(f"wrote {write_report(report, cfg.out)}")
    return 0 if report["ok"] else 1
