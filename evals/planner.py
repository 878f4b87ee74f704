"""`speclm eval planner`: the embedded planner on held-out phrasings, with the rules beside it.

The held-out requests (``evals/planner_heldout.yaml``) are written by hand; before scoring, their
texts are checked against the adapter's own training requests (read from the dataset named in its
card, or regenerated from the card's seed and size), so a phrasing the planner was trained on
cannot be counted. Each request is planned step by step as in the agent: the planner reads the
object, the message and the calls so far with their results (the YAML's ``output`` where a next
call needs it), and writes one call or ``done``. A request is right only if every call — tool and
arguments — and the final ``done`` are right, all proposed by the model (a proposal that does not
parse or fails the tool's schema counts as a fallback, and wrong).

Arguments are compared after normalisation: numbers to a relative 1e-6, line names through the
line list, ``spectype`` case-blind, free-text identifiers blind to case and spaces, and an SDSS
identifier string as the object the lookup's own parser reads in it (``{"identifier": "SDSS
0266-51630-0461"}`` names plate 266, MJD 51630, fiber 461: the same call); arguments at their schema
default (cosmology Planck18, a 3" cone) may be left out or written.

One plan equivalence, from the tools' definitions: ``analyze_spectrum`` of an SDSS object runs that
object's ``sdss_lookup`` itself (agent/registry.py ``analyze_tool``), so an ``sdss_lookup`` of the
same object just before the analysis adds nothing: [lookup X, analyze X] and [analyze X] are the same
plan, whichever one the expected plan writes (:func:`canonical_plan`). A second, likewise: the analysis
runs ``measure_spectrum`` (the file, its z, its spectype) and ``cosmology`` (its z, the default cosmology,
no named lines) itself, so a ``measure_spectrum`` or a plain ``cosmology`` right after an analysis, at the
z and spectype the analysis found, repeats a call already made (the same tool, the same arguments, the
same output): [analyze, measure at its z] and [analyze] are the same plan, whichever one is expected.
A cosmology with a named cosmology or lines, or at another z, is not a repeat.

The rules (agent/router.py) plan no sequence and no arguments, so their column is the first tool
only: the route's first tool (lookup -> sdss_lookup, check -> redshift_check, cosmology ->
cosmology, an object question -> measure_spectrum or survey_reach, chat -> no call).
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

from speclm.agent.planner_data import WRITTEN

HELDOUT = Path(__file__).resolve().parent / "planner_heldout.yaml"
#: the held-out sets by name (``speclm eval planner --held-out NAME``), in the order they were written:
#: "first" and "fresh" were read while generator v2 was designed (development sets for planner v3);
#: "third" was kept unseen until v3's evaluation, whose failures then shaped generator v3; "fourth"
#: was kept unseen until v4's final evaluation, whose failures then shaped generator v4; "fifth" was
#: written by someone who never read the generator, and kept unseen until v5's final evaluation, whose
#: failures then shaped generator v5; "sixth" likewise, unseen until v6's final evaluation; "seventh"
#: (2026-12-06, the registry's tools incl. analyze_spectrum, attached files) written by a helper that
#: never read the rules, the generator or the earlier sets, unseen until planner v7's final evaluation, whose
#: failures shaped generator v7; "eighth" written the same way, unseen until planner v8's final evaluation,
#: whose failures shaped generator v8; "ninth" likewise, unseen until planner v9's final evaluation;
#: "fifteenth" (2026-12-07) written by a helper from the tool card and the labelling conventions only,
#: unseen until planner v11's evaluation (the rule that chose v11 used "seventh"-"eleventh");
#: "sixteenth" (2026-12-07 06:30 UTC) written the same way after the conventions page settled SDSS
#: analyses; six texts equal to a training request or an earlier set's were reworded before any scoring
#: "seventeenth" (2026-12-07 08:45 UTC) written the same way after the conventions page said that a call the
#: attached file's analysis already made may be written or left out
#: "eighteenth" (2026-12-07 09:16 UTC) written the same way, scored once after the driving-code fixes that
#: followed the seventeenth's misses
#: "nineteenth" (2026-12-07 12:05 UTC) written the same way, for planner v12's final evaluation; fifteen texts
#: close to a training request (or equal to an earlier set's) were reworded before any scoring
HELD_OUT_SETS = {"first": HELDOUT, "fresh": HELDOUT.with_name("planner_heldout_fresh.yaml"),
                 "seventh": HELDOUT.with_name("planner_heldout_seventh.yaml"),
                 "eighth": HELDOUT.with_name("planner_heldout_eighth.yaml"),
                 "ninth": HELDOUT.with_name("planner_heldout_ninth.yaml"),
                 "tenth": HELDOUT.with_name("planner_heldout_tenth.yaml"),
                 "eleventh": HELDOUT.with_name("planner_heldout_eleventh.yaml"),
                 "third": HELDOUT.with_name("planner_heldout_third.yaml"),
                 "fourth": HELDOUT.with_name("planner_heldout_fourth.yaml"),
                 "fifth": HELDOUT.with_name("planner_heldout_fifth.yaml"),
                 "sixth": HELDOUT.with_name("planner_heldout_sixth.yaml"),
                 "nineteenth": HELDOUT.with_name("planner_heldout_nineteenth.yaml")}
#: sets once held out and, after their evaluation, retired into the planner's training requests (they
#: live with the hand-written requests, :data:`speclm.agent.planner_data.WRITTEN`); still scorable by
#: name, to reproduce the numbers they gave while unseen: "twelfth", "thirteenth", "fourteenth" (planner
#: v10's held-out sets, trained on from generator v10 / planner v11), "fifteenth" - "eighteenth" (scored with
#: planner v10/v11, trained on from generator v11 / planner v12)
RETIRED_SETS = {k: WRITTEN / f"heldout_{k}.yaml" for k in ("twelfth", "thirteenth", "fourteenth", "fifteenth",
                                                             "sixteenth", "seventeenth", "eighteenth")}
DEFAULTS = {"cosmology": "Planck18", "radius_arcsec": 3.0}


def load_held_out(path: str | Path = HELDOUT) -> list[dict]:
    """A held-out YAML by path, or by its name in :data:`HELD_OUT_SETS` (or :data:`RETIRED_SETS`)."""
    path = HELD_OUT_SETS.get(str(path)) or RETIRED_SETS.get(str(path)) or path
    items = yaml.safe_load(Path(path).read_text()) or []
    for i, it in enumerate(items):
        if "text" not in it or "plan" not in it:
            raise ValueError(f"{path}: item {i} needs text and plan")
    return items


def dataset_items(path: str | Path, split: str = "val") -> list[dict]:
    """A planner dataset's split as scoring items (its requests' context lines are kept as written)."""
    from speclm.agent.planner_data import read_split

    return [{"text": r["text"], "context_line": r["context"], "context": _parse_context(r["context"]), "plan": r["plan"]}
            for r in read_split(path, split)]


def _parse_context(line: str) -> dict | None:
    """The context dict back from a dataset's context line (so the rules can be scored on it too)."""
    import re

    from speclm.agent.plan_text import ATTACHED

    attached = line.endswith(ATTACHED)
    body = line[: -len(ATTACHED)] if attached else line
    if body.strip() == "Object: none.":
        return {"attached": True} if attached else None
    m = re.match(r"Object: (?:z=([-\d.]+)(?: \(([^)]*)\))?, )?(?:(GALAXY|QSO|STAR), )?(spectrum loaded|no spectrum)\.", body)
    if not m:
        return None
    ctx = {"z": float(m.group(1)) if m.group(1) else None, "z_source": m.group(2), "spectype": m.group(3),
           "has_spectrum": m.group(4) == "spectrum loaded"}
    if attached:
        ctx["attached"] = True
    return ctx


def held_out_texts(path: str | Path = HELDOUT) -> list[str]:
    return [it["text"] for it in load_held_out(path)]


def _dataset_requests(info: dict) -> list[dict]:
    from speclm.agent.planner_data import generate, read_split

    p = Path(info.get("path") or "/nonexistent")
    if (p / "train.jsonl").is_file():
        return read_split(p, "train") + read_split(p, "val")
    if info.get("n") is not None and info.get("seed") is not None:
        from speclm.agent.planner_data import GENERATOR_VERSION

        version = int(info.get("generator_version", 1))
        if version == GENERATOR_VERSION:
            return generate(int(info["n"]), int(info["seed"]))
        return legacy_generate(int(info["n"]), int(info["seed"]), version)
    raise ValueError("the card names no readable planner dataset and no (n, seed) to regenerate it")


#: where each earlier generator version lives: (commit, layout). Versions 1-5 (planners v1-v6) are the
#: stacked generator of finetune/planner_data.py at fe6ea40; 6 (planner v7) is agent/planner_data.py with
#: agent/planner_phrases.py at 087b29a, 7 (planner v8) at 5bacb2d, 8 (v9) at e61ff2c, 9 (v10, with the
#: hand-written requests of agent/planner_written/ at that commit) at 5f2703d. Their requests are regenerated from the
#: repository's history.
LEGACY_GENERATORS = {**{v: ("fe6ea40", "finetune") for v in range(1, 6)}, 6: ("087b29a", "agent"),
                     7: ("5bacb2d", "agent"), 8: ("e61ff2c", "agent"), 9: ("5f2703d", "agent")}


@functools.lru_cache(maxsize=4)
def _legacy_module(commit: str, layout: str):
    """An old generator module, built from the repository's history (:mod:`speclm.evals.history`)."""
    import tempfile

    from speclm.evals.history import files_at, module_at

    # generators from v9 on read the hand-written requests beside them: those of that commit
    home = Path(tempfile.mkdtemp(prefix=f"speclm-planner-{commit}-"))
    files_at(commit, f"{layout}/planner_written", home)

    def module(name: str, path: str):
        try:
            return module_at(commit, path, name, file=home / path)
        except ValueError as exc:
            raise ValueError(f"an earlier planner generator lives in commit {commit}: {exc}") from None

    deps = ({"speclm.finetune.plan_text": "finetune/plan_text.py"} if layout == "finetune" else
            {"speclm.agent.plan_text": "agent/plan_text.py", "speclm.agent.planner_phrases": "agent/planner_phrases.py"})
    saved = {k: sys.modules.get(k) for k in deps}
    try:
        for k, path in deps.items():
            sys.modules[k] = module(k.rsplit(".", 1)[1], path)
        return module("planner_data", f"{layout}/planner_data.py")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def legacy_generate(n: int, seed: int, version: int) -> list[dict]:
    """The requests an earlier generator version gave for (n, seed): the earlier planners' training data."""
    if version not in LEGACY_GENERATORS:
        raise ValueError(f"planner generator version {version} is unknown (have {sorted(LEGACY_GENERATORS)} and the "
                         "current one)")
    commit, layout = LEGACY_GENERATORS[version]
    mod = _legacy_module(commit, layout)
    return mod.generate(n, seed, version) if layout == "finetune" else mod.generate(n, seed)


def training_requests(adapter_dir: str | Path, _depth: int = 0) -> list[dict]:
    """The requests an adapter was trained on (and those of the adapters it was warm-started from):
    its dataset's splits, or all ``generate(n, seed, version)`` requests when the dataset is not on
    disk. The warm-start chain comes from the card's ``init_adapter.datasets`` where recorded, else
    from the init adapter's own card."""
    from speclm.finetune.runtime import read_card, resolve_adapter

    here = Path(resolve_adapter(str(adapter_dir))).resolve()
    card = read_card(here)
    try:
        out = _dataset_requests(card.get("dataset") or {})
    except ValueError as exc:
        raise ValueError(f"{adapter_dir}: {exc}") from None
    init = card.get("init_adapter") or {}
    if "datasets" in init:
        for info in init["datasets"]:
            out += _dataset_requests(info)
    elif init.get("path") and Path(init["path"]).resolve() != here and _depth < 5:
        try:
            out += training_requests(init["path"], _depth + 1)
        except Exception:  # the warm start's directory is gone: its data are generate(n, seed) too
            pass
    return out


def _context(ctx: dict | None) -> str:
    from speclm.agent.plan_text import context_line

    ctx = ctx or {}
    return context_line(ctx.get("z"), ctx.get("z_source"), ctx.get("spectype"), bool(ctx.get("has_spectrum")),
                        bool(ctx.get("attached")))


def _norm_value(k, v):
    from speclm.tools import lines

    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if k == "lines" and isinstance(v, list):
        out = []
        for n in v:
            try:
                out.append(lines.get(str(n)).name)
            except Exception:
                out.append(f"?{n}")
        return sorted(out)
    if isinstance(v, str):
        return "".join(v.split()).lower()
    return v


def _same_lines(got: list, want: list, tol_A: float = 3.0) -> bool:
    """The same spectral features: each list's lines, resolved by the line list, pair off within
    ``tol_A`` Å of rest wavelength — "[O II]" read as the doublet's blend (OII, 3728.5 Å) or as its blue
    member (OII3727) is the same feature to whoever asked where it falls; an unknown name matches nothing."""
    from speclm.tools import lines

    def rest(names):
        out = []
        for n in names:
            try:
                out.append(lines.get(str(n)).rest_A)
            except Exception:
                return None
        return sorted(set(out))

    a, b = rest(got), rest(want)
    return a is not None and b is not None and len(a) == len(b) and all(abs(x - y) <= tol_A for x, y in zip(a, b))


def _lookup_key(args: dict) -> dict:
    """sdss_lookup arguments as the object they name: an identifier string is read by the lookup's
    own parser (so "SDSS 0266-51630-0461" names plate 266, MJD 51630, fiber 461)."""
    from speclm.tools.sdss_lookup import parse_sdss_identifier

    a = dict(args)
    if isinstance(a.get("identifier"), str) and len(a) == 1:
        try:
            ident = parse_sdss_identifier(a["identifier"])
        except Exception:
            return a
        return {k: v for k, v in (("plate", ident.plate), ("mjd", ident.mjd), ("fiberid", ident.fiberid),
                                  ("specobjid", ident.specobjid), ("ra", ident.ra), ("dec", ident.dec))
                if v is not None}
    return a


def args_match(got: dict, want: dict, tool: str | None = None) -> bool:
    """Same arguments after normalisation (module docstring); spectrum_path is never compared."""
    if tool == "sdss_lookup":
        got, want = _lookup_key(got), _lookup_key(want)
    if tool == "analyze_spectrum":  # an SDSS object however it is written: the object the parser reads
        got = {**got, "sdss_id": _lookup_key({"identifier": got["sdss_id"]})} if got.get("sdss_id") else got
        want = {**want, "sdss_id": _lookup_key({"identifier": want["sdss_id"]})} if want.get("sdss_id") else want
    def meaningful(a: dict) -> dict:  # a default may be left out or written, on either side
        return {k: v for k, v in a.items() if k != "spectrum_path" and not (k in DEFAULTS and v == DEFAULTS[k])}

    g, w = meaningful(got), meaningful(want)
    if set(g) != set(w):
        return False
    for k in w:
        if k == "lines" and isinstance(g[k], list) and isinstance(w[k], list):
            if not _same_lines(g[k], w[k]):
                return False
            continue
        a, b = _norm_value(k, g[k]), _norm_value(k, w[k])
        if isinstance(a, float) and isinstance(b, float):
            if abs(a - b) > 1e-6 * max(1.0, abs(b)):
                return False
        elif a != b:
            return False
    return True


def _same_object(lookup_args: dict, sdss_id) -> bool:
    """Does this ``sdss_lookup`` name the object an analysis's ``sdss_id`` names?"""
    if not sdss_id:
        return False
    a, b = _lookup_key(lookup_args), _lookup_key({"identifier": str(sdss_id)})
    keys = ("plate", "mjd", "fiberid", "specobjid", "ra", "dec")
    def norm(d):
        try:
            return {k: (round(float(d[k]), 6) if k in ("ra", "dec") else int(d[k])) for k in keys if d.get(k) is not None}
        except (TypeError, ValueError):
            return None

    na, nb = norm(a), norm(b)
    return bool(na) and na == nb


def _repeats_analysis(name: str, args: dict, analysis_out: dict | None) -> bool:
    """Is (name, args) one of the calls an analysis that found ``analysis_out`` already made — its
    ``measure_spectrum`` or its plain ``cosmology`` at the z (and spectype) it found?"""
    if not analysis_out or analysis_out.get("z") is None:
        return False
    from speclm.agent.planner import _same_z

    if not _same_z(args.get("z"), analysis_out["z"]):
        return False
    if name == "measure_spectrum":
        typ = str(args.get("spectype") or "GALAXY").upper()
        return set(args) <= {"z", "spectype"} and typ == str(analysis_out.get("spectype") or "GALAXY").upper()
    if name == "cosmology":
        extra = {k: v for k, v in args.items() if k != "z" and v not in (None, [], "")}
        return not extra or (set(extra) == {"cosmology"} and str(extra["cosmology"]).lower() == DEFAULTS["cosmology"].lower())
    return False


def _kept(calls: list, outputs: list | None = None) -> list[bool]:
    """For each (name, args): False for an ``sdss_lookup`` followed at once by the analysis of the same
    object, and for a call that repeats one the analysis just before it made (module docstring: the
    analysis runs those itself). ``outputs[i]``: what call i returned (an analysis' z and spectype)."""
    outputs = list(outputs or [None] * len(calls))
    kept, last = [], None  # last: the output of the analysis the calls since then follow
    for i, (name, args) in enumerate(calls):
        args = args or {}
        if name == "sdss_lookup" and i + 1 < len(calls) and calls[i + 1][0] == "analyze_spectrum" \
                and _same_object(args, (calls[i + 1][1] or {}).get("sdss_id")):
            kept.append(False)
            continue
        if name in ("measure_spectrum", "cosmology") and _repeats_analysis(name, args, last):
            kept.append(False)
            continue
        kept.append(True)
        last = outputs[i] if name == "analyze_spectrum" else (last if name in ("cosmology", "measure_spectrum",
                                                                              "survey_reach") else None)
    return kept


def canonical_plan(calls: list, outputs: list | None = None) -> list:
    """The plan without the calls its analyses make themselves (:func:`_kept`)."""
    return [c for c, kept in zip(calls, _kept(calls, outputs)) if kept]


@functools.lru_cache(maxsize=1)
def _tools() -> dict:
    from speclm.agent.registry import build_tools

    return build_tools(predict=lambda s: {})


def _schema_problem(name: str, args: dict) -> str | None:
    from speclm.agent.planner import validate_call

    return validate_call(name, args, _tools(), {"spectrum": {"path": "held-out.fits"}})


def score_planner(propose, items: list[dict]) -> dict:
    """Plan every item step by step with ``propose(context, text, done) -> raw text``; per-item rows
    and the totals."""
    from speclm.agent.plan_text import parse_step, result_summary

    rows, step_secs = [], []
    for it in items:
        ctx, text = it.get("context_line") or _context(it.get("context")), it["text"]
        calls = [(c["name"], c.get("args") or {}) for c in it["plan"]]
        plan = [c for c, kept in zip(it["plan"], _kept(calls, [c.get("output") for c in it["plan"]])) if kept]
        done, row = [], {"text": text, "want": [(c["name"], c.get("args") or {}) for c in plan], "got": [],
                         "first_tool": False, "tools": False, "args": False, "right": False, "fallback": False}
        ok_tools, ok_args, extra = True, True, 0
        k = 0
        while k <= len(plan):
            t0 = time.perf_counter()
            raw = propose(ctx, text, done)
            step_secs.append(time.perf_counter() - t0)
            got = parse_step(raw)
            want = plan[k] if k < len(plan) else None
            if got and got[0] == "sdss_lookup" and want and want["name"] == "analyze_spectrum" and not extra and \
                    _same_object(got[1], (want.get("args") or {}).get("sdss_id")):
                extra = 1  # the lookup the analysis runs anyway, written before it: the same plan
                row["got"].append(("sdss_lookup", got[1]))
                done.append(("sdss_lookup", got[1], result_summary("sdss_lookup", None)))
                continue
            prev = plan[k - 1] if k else None
            if got and got[0] in ("measure_spectrum", "cosmology") and prev and prev["name"] == "analyze_spectrum" \
                    and extra < 2 and not (want and want["name"] == got[0]) \
                    and _repeats_analysis(got[0], got[1], prev.get("output")):
                extra += 1  # a call the analysis just made, repeated: the same plan
                row["got"].append((got[0], got[1]))
                done.append((got[0], got[1], result_summary(got[0], None)))
                continue
            if got is None or (got[0] is not None and _schema_problem(got[0], got[1])):
                row["fallback"] = True
                row["got"].append(("?", raw.strip()[:80]))
                ok_tools = False
                break
            row["got"].append((got[0] or "done", got[1]))
            if k == 0:
                row["first_tool"] = got[0] == (want["name"] if want else None)
            if got[0] != (want["name"] if want else None):
                ok_tools = False
                break
            if want is None:
                break
            if not args_match(got[1], want.get("args") or {}, want["name"]):
                ok_args = False
            done.append((want["name"], want.get("args") or {},
                         want.get("result") or result_summary(want["name"], want.get("output"))))
            k += 1
        row["tools"] = ok_tools
        row["args"] = ok_tools and ok_args
        row["right"] = row["args"] and not row["fallback"]
        rows.append(row)
    n = len(rows)
    return {"n": n, "rows": rows,
            "first_tool": sum(r["first_tool"] for r in rows) / n,
            "tools": sum(r["tools"] for r in rows) / n,
            "right": sum(r["right"] for r in rows) / n,
            "args_given_tools": (sum(r["args"] for r in rows) / max(1, sum(r["tools"] for r in rows))),
            "fallback": sum(r["fallback"] for r in rows) / n,
            "step_seconds_median": statistics.median(step_secs) if step_secs else None,
            "steps": len(step_secs)}


def _state(it: dict) -> dict:
    """A thread state standing for a held-out item's context (the object, a loaded file, an attachment)."""
    from langchain_core.messages import HumanMessage

    ctx = it.get("context") or {}
    st = {"text": it["text"], "messages": [HumanMessage(content=it["text"] or "[spectrum attached]")],
          "z": ctx.get("z"), "z_source": ctx.get("z_source"), "spectype": ctx.get("spectype")}
    if ctx.get("has_spectrum"):
        st["spectrum"] = {"path": "held-out.fits", "name": "held-out", "summary": {}}
    if ctx.get("attached"):
        st["upload_path"] = "attached.fits"
    return st


def _fake_output(name: str, want: dict | None, st: dict) -> dict:
    """What a tool 'returned' in scoring: the item's recorded output, else values the next step may read."""
    if want and want.get("name") == name and want.get("output"):
        return dict(want["output"])
    z = st.get("z") if st.get("z") is not None else 0.1
    if name in ("analyze_spectrum", "find_redshift", "predict_redshift", "redshift_check"):
        return {"z": z, "spectype": st.get("spectype") or "GALAXY"}
    if name == "sdss_lookup":
        return {"z": z, "obj_class": "GALAXY"}
    return {}


def score_agent_planner(planner, items: list[dict], max_steps: int = 4) -> dict:
    """Drive the agent's own planner object (``plan(state, tools)``: the rules, or the default — the
    embedded planner with the rules as its fallback) through every item, feeding back tool results,
    and compare its whole plan with the expected one. Counts the turns the fallback planned."""
    import uuid

    from langchain_core.messages import ToolMessage

    tools = _tools()
    rows, step_secs = [], []
    for it in items:
        st, got, by, outs = _state(it), [], [], []
        want = [(c["name"], c.get("args") or {}) for c in it["plan"]]
        for _ in range(max_steps):
            t0 = time.perf_counter()
            msg = planner.plan(st, tools)
            step_secs.append(time.perf_counter() - t0)
            by.append(msg.additional_kwargs.get("planned_by", getattr(planner, "name", "?")))
            if not msg.tool_calls:
                break
            st["messages"] = list(st["messages"]) + [msg]
            for c in msg.tool_calls:
                c["id"] = c.get("id") or f"call_{uuid.uuid4().hex[:8]}"
                exp = it["plan"][len(got)] if len(got) < len(it["plan"]) else None
                implicit = ("spectrum_path", "path") if c["name"] == "analyze_spectrum" else ("spectrum_path",)
                got.append((c["name"], {k: v for k, v in c["args"].items() if k not in implicit}))
                out = _fake_output(c["name"], exp, st)
                outs.append(out)
                st["messages"].append(ToolMessage(content=json.dumps(out), tool_call_id=c["id"], name=c["name"]))
                if out.get("z") is not None:
                    st["z"] = out["z"]
                    st["spectype"] = out.get("spectype") or out.get("obj_class") or st.get("spectype")
        cg, cw = canonical_plan(got, outs), canonical_plan(want, [c.get("output") for c in it["plan"]])
        names_ok = [g[0] for g in cg] == [w[0] for w in cw]
        args_ok = names_ok and all(args_match(g[1], w[1], w[0]) for g, w in zip(cg, cw))
        fb = any(str(b).endswith("(fallback)") for b in by)
        rows.append({"text": it["text"], "want": want, "got": got, "planned_by": by, "first_tool":
                     (got[0][0] if got else None) == (want[0][0] if want else None), "tools": names_ok,
                     "args": args_ok, "right": args_ok, "fallback": fb})
    n = len(rows)
    return {"n": n, "rows": rows, "first_tool": sum(r["first_tool"] for r in rows) / n,
            "tools": sum(r["tools"] for r in rows) / n, "right": sum(r["right"] for r in rows) / n,
            "args_given_tools": sum(r["args"] for r in rows) / max(1, sum(r["tools"] for r in rows)),
            "fallback": sum(r["fallback"] for r in rows) / n,
            "step_seconds_median": statistics.median(step_secs) if step_secs else None, "steps": len(step_secs)}


def score_rules(items: list[dict]) -> dict:
    """The rules planner (agent/router.py's table emitting calls) on the same items, whole plans."""
    from speclm.agent.planner import RulesPlanner

    return score_agent_planner(RulesPlanner(), items)


def table(model: dict | None, rules: dict, default: dict | None = None) -> str:
    """Markdown: the embedded planner alone, the default configuration (it, with the rules' fallback)
    and the rules planner, on the same requests."""
    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}%"

    m, d, r = model or {}, default or {}, rules
    keys = [("requests", "n"), ("first tool right", "first_tool"), ("every tool right (sequence + done)", "tools"),
            ("arguments right (given the tools)", "args_given_tools"), ("**whole plan right**", "right"),
            ("turns planned by the fallback (rules)", "fallback")]
    out = ["| metric | embedded planner alone | default (embedded + rules fallback) | rules |", "|---|---|---|---|"]
    for label, k in keys:
        cell = (lambda x: str(x.get(k)) if k == "n" and x else pct(x.get(k)))
        out.append(f"| {label} | {cell(m)} | {cell(d)} | {cell(r) if k != 'fallback' else '—'} |")
    med = lambda x: f"{x['step_seconds_median']:.2f}" if x and x.get("step_seconds_median") else "—"  # noqa: E731
    out.append(f"| median seconds per planning step | {med(m)} | {med(d)} | {med(r)} |")
    return "\n".join(out)


def register_eval(esub) -> None:
    p = esub.add_parser("planner", help="the embedded planner's tool choice and arguments on held-out phrasings",
                        description=__doc__.split("\n\n")[0] + " Prints a Markdown table; --json writes every row.")
    p.add_argument("--adapter", default="bundled-planner", help="planner adapter directory (default: the bundled one)")
    p.add_argument("--base", default="embedded", help="base model (default: embedded)")
    p.add_argument("--held-out", default="first",
                   help=f"held-out set: a name ({', '.join(HELD_OUT_SETS)}; retired into training: {', '.join(RETIRED_SETS)}) "
                        "or a YAML path (default: first, "
                        "evals/planner_heldout.yaml)")
    p.add_argument("--dataset", default=None, help="score this planner dataset's val split (synthetic requests) "
                   "instead of the held-out phrasings, e.g. to choose between adapters without touching them")
    p.add_argument("--rules-only", action="store_true", help="score the rules only (no model)")
    p.add_argument("--default-only", action="store_true",
                   help="score the default configuration only (the embedded planner with the rules' fallback): "
                        "a third of the time, for measuring a change to the driving code on burned sets")
    p.add_argument("--json", default=None, help="write the per-request rows and totals to this JSON file")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from speclm.agent.planner_data import assert_not_in

    if args.default_only and args.dataset:
        raise SystemExit("--default-only scores held-out sets, not a dataset's val split")

    items = dataset_items(args.dataset) if args.dataset else load_held_out(args.held_out)
    rules = score_rules(items)
    model = default = None
    if not args.rules_only:
        from tqdm.auto import tqdm

        from speclm.agent.llm import LocalBackend
        from speclm.agent.planner import EmbeddedPlanner

        if not args.dataset:
            assert_not_in([it["text"] for it in items], training_requests(args.adapter))
        from speclm.agent.planner import FallbackPlanner

        planner = EmbeddedPlanner(LocalBackend(args.base, None, device=args.device), args.adapter)
        bar = tqdm(total=len(items), desc="planner", unit="request", file=sys.stderr)

        def propose(ctx, text, done):
            out = planner.propose(ctx, text, done)
            if not done:
                bar.update(1)
            return out

        model = None if args.default_only else score_planner(propose, items)
        bar.close()
        default = None if args.dataset else score_agent_planner(FallbackPlanner(planner), items)
    if args.default_only:
        print(f"default configuration, whole plan right: {round(default['right'] * default['n'])}/{default['n']} "
              f"= {100 * default['right']:.1f}%; turns planned by the fallback: {100 * default['fallback']:.1f}%")
        for r in default["rows"]:
            if not r["right"]:
                print(f"  wrong: {r['text']!r}: want {r['want']}, got {r['got']} ({', '.join(map(str, r['planned_by']))})")
    else:
        print(table(model, rules, default if not args.rules_only else None))
    if model:
        wrong = [r for r in model["rows"] if not r["right"]]
        for r in wrong:
            print(f"  wrong: {r['text']!r}: want {r['want']}, got {r['got']}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model, "default": default, "rules": rules,
                                               "adapter": args.adapter}, indent=1,
                                              default=str))
    return 0
