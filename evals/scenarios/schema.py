"""The scenario schema: YAML -> Scenario, validated with the error naming file, scenario, turn and key."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speclm.tools.errors import ConfigError, SpeclmError


SCENARIO_DIR = Path(__file__).parent  # the YAML files sit beside the package modules
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
from speclm.tools.synthetic import PPXF_SPECTRA as PPXF_FILES  # noqa: E402  (name kept for YAML errors)
Z_SOURCES = ("model", "trusted", "check", "cosmology", "lookup")
Z_REFS = ("catalog", "truth", "previous")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
SDSS_TEMPLATE = re.compile(r"\{sdss\[(\d+)\]\.(name|specobjid|z)\}")


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


def where_error(where: str, msg: str) -> ScenarioError:
    return ScenarioError(f"{where}: {msg}")


def parse_fixture(spec: str, where: str = "spectrum") -> tuple[str, Any]:
    """'ppxf:NGC3522' -> ('ppxf', 'NGC3522'), 'synthetic:0.1:3' -> ('synthetic', (0.1, 3)), ..."""
    if not isinstance(spec, str) or ":" not in spec:
        raise where_error(where, f"spectrum must be 'KIND:ARG' (ppxf:, synthetic:, simulated:, file:, bad:), got {spec!r}")
    kind, _, arg = spec.partition(":")
    if kind == "ppxf":
        if arg not in PPXF_FILES:
            raise where_error(where, f"unknown ppxf spectrum {arg!r}; known: {', '.join(PPXF_FILES)}")
        return kind, arg
    if kind == "synthetic":
        parts = arg.split(":")
        try:
            z, seed = float(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except (ValueError, IndexError):
            raise where_error(where, f"synthetic spectrum must be 'synthetic:<z>[:<seed>]', got {spec!r}") from None
        if len(parts) > 2 or not 0.0 <= z <= 0.6:
            raise where_error(where, f"synthetic z must be in [0, 0.6] (lines must stay in the SDSS range), got {spec!r}")
        return kind, (z, seed)
    if kind == "simulated":
        if not arg.isdigit():
            raise where_error(where, f"simulated spectrum must be 'simulated:<seed>' with an integer seed, got {spec!r}")
        return kind, int(arg)
    if kind == "bad":
        if arg not in BAD_KINDS:
            raise where_error(where, f"unknown bad-file kind {arg!r}; known: {', '.join(BAD_KINDS)}")
        return kind, arg
    if kind == "file":
        if not arg:
            raise where_error(where, "file: needs a path")
        return kind, arg
    if kind == "real":
        if not arg or "/" in arg:
            raise where_error(where, f"real: needs a file name of the real SDSS dev set, got {spec!r}")
        return kind, arg
    raise where_error(where, f"unknown spectrum kind {kind!r} in {spec!r}; use ppxf:, synthetic:, simulated:, file: or bad:")


def parse_scenario(data: Any, source: str = "<dict>") -> Scenario:
    """Validate one scenario mapping; every problem is a ScenarioError naming file, scenario and turn."""
    from speclm.evals.scenarios.checks import CHECKS  # checks import the schema's names

    if not isinstance(data, dict):
        raise where_error(source, f"a scenario must be a mapping, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise where_error(source, f"scenario needs a 'name' of lowercase letters, digits, '_' or '-', got {name!r}")
    where = f"{source}: scenario {name!r}"
    unknown = set(data) - SCENARIO_KEYS
    if unknown:
        raise where_error(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(SCENARIO_KEYS)}")
    needs = data.get("needs") or ()
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    for n in needs:
        if n not in NEEDS:
            raise where_error(where, f"unknown need {n!r}; known: {', '.join(NEEDS)}")
    mode = data.get("adapter_mode")
    if mode not in (None, "toggle", "always"):
        raise where_error(where, f"adapter_mode must be 'toggle' or 'always', got {mode!r}")
    if not isinstance(data.get("model_dependent", False), bool):
        raise where_error(where, "model_dependent must be true or false")
    objs = {"n": 4, "seed": 1, **(data.get("sdss_objects") or {})}
    if set(objs) - {"n", "seed"} or not (isinstance(objs["n"], int) and 1 <= objs["n"] <= 100
                                         and isinstance(objs["seed"], int)):
        raise where_error(where, f"sdss_objects must be {{n: 1..100, seed: int}}, got {data.get('sdss_objects')!r}")
    turns_raw = data.get("turns")
    if not isinstance(turns_raw, list) or not turns_raw:
        raise where_error(where, "needs a non-empty list 'turns'")
    turns = []
    for i, t in enumerate(turns_raw, 1):
        tw = f"{where} turn {i}"
        if not isinstance(t, dict):
            raise where_error(tw, f"a turn must be a mapping, got {t!r}")
        unknown = set(t) - TURN_KEYS
        if unknown:
            raise where_error(tw, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TURN_KEYS)}")
        text = t.get("text", "")
        if not isinstance(text, str):
            raise where_error(tw, "text must be a string")
        if not (text.strip() or t.get("spectrum") or t.get("sdss_id")):
            raise where_error(tw, "needs text, a spectrum or an sdss_id")
        if t.get("spectrum") is not None:
            parse_fixture(t["spectrum"], tw)
        sid = t.get("sdss_id")
        if sid is not None and not isinstance(sid, (str, int)):
            raise where_error(tw, "sdss_id must be a string or an integer")
        for s in (text, str(sid or "")):
            for m in SDSS_TEMPLATE.finditer(s):
                if "sdss_server" not in needs:
                    raise where_error(tw, f"{m[0]} needs 'needs: sdss_server'")
                if int(m[1]) >= objs["n"]:
                    raise where_error(tw, f"{m[0]}: the server serves only {objs['n']} objects")
        expect = t.get("expect") or {}
        if not isinstance(expect, dict):
            raise where_error(tw, "expect must be a mapping of check: value")
        for key, value in expect.items():
            if key not in CHECKS:
                raise where_error(tw, f"unknown check {key!r}; known: {', '.join(sorted(CHECKS))}")
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
