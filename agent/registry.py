"""The one tool registry: every tool the planner can call, declared once.

Each :class:`ToolSpec` holds what the rest of the agent needs to know about a tool:

* ``schema`` and ``description`` — what a tool-calling model (and the ToolNode's validation) reads;
* ``run`` — the implementation (built over a :class:`ToolContext`: the model backend, SDSS settings,
  the cosmology);
* ``absorb`` — the thread-state update its output makes (which keys it sets: the object's z, the
  measurements, ...);
* ``render`` — the house's words for its output in a reply (every number from the output, so the
  claim check can trace it);
* ``summary`` — the one line the embedded planner reads back after the call (values a next call needs);
* ``phrases`` — the planner-data generator's vocabulary for requests this tool answers
  (:mod:`speclm.agent.planner_phrases`).

The rules planner, the planner's text format and its training data, the planner eval's expected
tools, the UI's trace and the scenarios all read :data:`REGISTRY` / :data:`TOOL_NAMES`; adding a tool
is one entry here, its renderer and its tests.

``analyze_spectrum`` is the composite the design card's upload path became: read → the model's
p(z) → the redshift search (galaxy/QSO/star templates, the model's answer as evidence) →
cosmology → measurements, in one call, so an upload always gets the model's redshift and the search
whichever planner planned the turn.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pydantic import BaseModel, Field, field_validator, model_validator

from speclm.tools.json_safe import jsonable


# -- argument schemas ------------------------------------------------------------------------------
class AnalyzeInput(BaseModel):
    """A spectrum to analyse: the attached file (filled in by the agent), a path, or an SDSS object."""

    path: Optional[str] = Field(None, description="spectrum file; default: the file attached to this message, "
                                "else the conversation's spectrum")
    sdss_id: Optional[str] = Field(None, description="an SDSS object instead of a file: plate-mjd-fiber "
                                   "(0266-51630-0461), a specObjID or 'RA 179.5 Dec -0.5'")


class ReadSpectrumInput(BaseModel):
    """A spectrum file to read through speclm's one reader."""

    path: str = Field(description="path of a spectrum file (SDSS spec FITS, FITS table, CSV/TXT, NPY/NPZ)")


class SDSSLookupInput(BaseModel):
    """One SDSS object: an identifier string, or plate/mjd/fiberid, or specobjid, or ra/dec."""

    identifier: Optional[str] = Field(None, description="free text: 0266-51630-0001, a specObjID, "
                                      "'RA 179.5 Dec -0.5', 'SDSS J120000.00+010000.0'")
    plate: Optional[int] = Field(None, ge=1, le=99999, description="SDSS plate number")
    mjd: Optional[int] = Field(None, ge=50000, le=99999, description="MJD of the plate's observation")
    fiberid: Optional[int] = Field(None, ge=1, le=1000, description="fiber number on the plate")
    specobjid: Optional[int] = Field(None, gt=0, description="SDSS specObjID (64-bit)")
    ra: Optional[float] = Field(None, ge=0, lt=360, description="right ascension, degrees")
    dec: Optional[float] = Field(None, ge=-90, le=90, description="declination, degrees")
    radius_arcsec: float = Field(3.0, gt=0, le=600, description="cone radius for coordinate lookups")

    @model_validator(mode="after")
    def _one_way(self):
        if not (self.identifier or self.specobjid or (self.plate and self.fiberid)
                or (self.ra is not None and self.dec is not None)):
            raise ValueError("give identifier, specobjid, plate+fiberid, or ra+dec")
        return self


class CosmologyInput(BaseModel):
    """A redshift to translate into times, distances, velocities and line positions."""

    z: float = Field(ge=0, le=20, description="redshift")
    cosmology: str = Field("Planck18", description="Planck18, Planck15, WMAP9 or 'flat'")
    lines: Optional[list[str]] = Field(None, description="line names for observed positions "
                                       "(e.g. ['Halpha', 'OIII5008']); default: the usual optical set")

    @field_validator("cosmology")
    @classmethod
    def _known_cosmology(cls, v):
        """Only a cosmology the tool has (Planck18, Planck15, WMAP9, flat): a planner's 'APO3500' is
        refused here, so the proposal is not run."""
        from speclm.tools.cosmology import CosmologyConfig

        return CosmologyConfig(name=v).name if v is not None else v

    @field_validator("lines")
    @classmethod
    def _known_lines(cls, v):
        """Only names the line list knows: a planner's 'CIII1549' or 'QSO' is refused here, with the
        list of known names, instead of failing inside the tool."""
        from speclm.tools.errors import UnknownLineError
        from speclm.tools.lines import LINES, get

        bad = []
        for n in v or []:
            try:
                get(n)
            except UnknownLineError:
                bad.append(n)
        if bad:
            raise ValueError(f"unknown line names {bad}; known: {', '.join(l.name for l in LINES)}")
        return v


class RedshiftCheckInput(BaseModel):
    """A spectrum file and a redshift estimate to test against its lines."""

    spectrum_path: str = Field(description="path of the spectrum file")
    z0: float = Field(ge=-0.01, le=20, description="redshift estimate to check (e.g. the model's)")
    search_halfwidth: Optional[float] = Field(None, gt=0, le=0.5,
                                              description="window half-width in units of (1+z0)")


class FindRedshiftInput(BaseModel):
    """A spectrum file, and optionally the model's answer, for the assistant's redshift procedure."""

    spectrum_path: str = Field(description="path of the spectrum file")
    z_model: Optional[float] = Field(None, ge=0, le=20, description="the model's redshift (median of p(z))")
    z_lo: Optional[float] = Field(None, ge=0, le=20, description="lower end of the model's 68% interval")
    z_hi: Optional[float] = Field(None, ge=0, le=20, description="upper end of the model's 68% interval")
    modes: Optional[list[float]] = Field(None, description="peaks of the model's p(z), tried as candidates")


class MeasureInput(BaseModel):
    """A spectrum file and the trusted redshift at which to measure its lines, indices and class."""

    spectrum_path: str = Field(description="path of the spectrum file")
    z: float = Field(ge=-0.01, le=7.5, description="the trusted redshift (the search's or the line fit's)")
    spectype: str = Field("GALAXY", pattern="^(GALAXY|QSO|STAR)$", description="GALAXY, QSO or STAR")


class SurveyReachInput(BaseModel):
    """An object's redshift, type, magnitudes and position, to test against the survey table."""

    z: float = Field(ge=0, le=20, description="redshift")
    spectype: str = Field("GALAXY", pattern="^(GALAXY|QSO|STAR)$", description="GALAXY, QSO or STAR")
    magnitudes: Optional[dict[str, Optional[float]]] = Field(
        None, description="AB magnitudes by SDSS band, e.g. {'g': 18.1, 'r': 17.4, 'i': 17.0}")
    ra: Optional[float] = Field(None, ge=0, lt=360, description="right ascension, degrees")
    dec: Optional[float] = Field(None, ge=-90, le=90, description="declination, degrees")
    fibre_arcsec: Optional[float] = Field(None, gt=0, le=10, description="fibre diameter of the magnitudes, arcsec")
    total_magnitudes: Optional[dict[str, Optional[float]]] = Field(
        None, description="total AB magnitudes from the file's own catalog (DESI FIBERMAP), by band")


class PredictInput(BaseModel):
    """A spectrum file for the fine-tuned model to read (adapter on)."""

    spectrum_path: str = Field(description="path of the spectrum file")


# -- what the tools run over -----------------------------------------------------------------------
@dataclass
class ToolContext:
    """What the tool implementations close over: the model's redshift step (``predict(spectrum) ->
    dict``; None = no model), the SDSS settings, the cosmology name, and a sink for sub-step events
    (``emit(event)``: the composite tool reports each step it runs)."""

    predict: Callable | None = None
    sdss_cfg: Any = None
    cosmology: str = "Planck18"
    emit: Callable[[dict], None] = lambda ev: None


def _num(x) -> str:
    from speclm.agent.plan_text import format_number

    return format_number(x)


# -- implementations -------------------------------------------------------------------------------
def _name(spec, path) -> str:
    from pathlib import Path

    m = spec.meta
    if m.get("targetid") is not None:
        return f"{Path(str(m.get('file') or path)).name} TARGETID {m['targetid']}"
    if m.get("plate") and m.get("fiberid"):
        try:
            return f"{int(m['plate']):04d}-{int(m.get('mjd') or 0):05d}-{int(m['fiberid']):04d}"
        except (TypeError, ValueError):
            pass
    return Path(str(path)).name


def read_spectrum_tool(ctx: ToolContext, path: str) -> dict:
    from speclm.tools.spectrum import read_spectrum, summary

    spec = read_spectrum(path)
    return {"path": str(path), "name": _name(spec, path), "summary": jsonable(summary(spec))}


def sdss_lookup_tool(ctx: ToolContext, identifier=None, plate=None, mjd=None, fiberid=None, specobjid=None,
                     ra=None, dec=None, radius_arcsec=3.0) -> dict:
    from speclm.tools.sdss_lookup import sdss_lookup

    res = sdss_lookup(plate=plate, mjd=mjd, fiberid=fiberid, specobjid=specobjid, ra=ra, dec=dec,
                      radius_arcsec=radius_arcsec, identifier=identifier, fetch=True, cfg=ctx.sdss_cfg)
    d = jsonable(res.to_dict())
    d["describe"] = res.summary()
    return d


def cosmology_tool(ctx: ToolContext, z: float, cosmology: str | None = None, lines: list[str] | None = None) -> dict:
    from speclm.tools.cosmology import DEFAULT_SUMMARY_LINES, summarize

    wanted = tuple(dict.fromkeys(list(lines or []) + list(DEFAULT_SUMMARY_LINES)))
    s = summarize(z, cosmology or ctx.cosmology, lines=wanted)
    d = jsonable(s.to_dict())
    d["describe"] = s.describe()
    d["asked_lines"] = list(lines or [])
    return d


def redshift_check_tool(ctx: ToolContext, spectrum_path: str, z0: float, search_halfwidth: float | None = None) -> dict:
    from speclm.tools.redshift_check import check_redshift
    from speclm.tools.spectrum import read_spectrum

    chk = check_redshift(read_spectrum(spectrum_path), z0, search_halfwidth=search_halfwidth)
    d = jsonable(chk.to_dict())
    d["describe"] = chk.describe()
    return d


def find_redshift_tool(ctx: ToolContext, spectrum_path: str, z_model: float | None = None, z_lo: float | None = None,
                       z_hi: float | None = None, modes: list[float] | None = None) -> dict:
    from speclm.tools.redshift_search import find_redshift
    from speclm.tools.spectrum import read_spectrum

    pred = None if z_model is None else {"z": z_model, "z_lo": z_lo, "z_hi": z_hi, "modes": modes or []}
    ans = find_redshift(read_spectrum(spectrum_path), pred)
    d = jsonable(ans.to_dict())
    d["describe"] = ans.describe()
    return d


@functools.lru_cache(maxsize=64)
def _measure_cached(path: str, mtime: float, z: float, spectype: str, cosmology: str) -> str:
    from speclm.tools.measure import measure_spectrum
    from speclm.tools.spectrum import read_spectrum

    m = measure_spectrum(read_spectrum(path), z, spectype, cosmology=cosmology)
    d = jsonable(m.to_dict())
    d["describe"] = m.describe()
    return json.dumps(d)


def measure_tool(ctx: ToolContext, spectrum_path: str, z: float, spectype: str = "GALAXY") -> dict:
    """Measurements at z (cached per file, z, type and cosmology: a follow-up that asks again is free)."""
    base = str(spectrum_path).split("[")[0]
    try:
        mtime = os.path.getmtime(base)
    except OSError:
        mtime = -1.0
    return json.loads(_measure_cached(str(spectrum_path), mtime, round(float(z), 7), spectype, ctx.cosmology))


def survey_reach_tool(ctx: ToolContext, z: float, spectype: str = "GALAXY", magnitudes: dict | None = None,
                      ra: float | None = None, dec: float | None = None, fibre_arcsec: float | None = None,
                      total_magnitudes: dict | None = None) -> dict:
    from speclm.tools.survey_reach import survey_reach

    return jsonable(survey_reach(z=z, spectype=spectype, magnitudes=magnitudes, ra=ra, dec=dec,
                                 fibre_arcsec=fibre_arcsec, total_magnitudes=total_magnitudes))


def predict_tool(ctx: ToolContext, spectrum_path: str) -> dict:
    from speclm.tools.errors import BackendError
    from speclm.tools.spectrum import read_spectrum

    if ctx.predict is None:
        raise BackendError("no redshift model is configured")
    return jsonable(ctx.predict(read_spectrum(spectrum_path)))


def _step(ctx: ToolContext, steps: list, name: str, fn: Callable, args: dict, *, required: bool):
    """One step of the composite tool: run, time, report; a failed optional step becomes a note."""
    import time

    from speclm.tools.errors import SpeclmError

    t0 = time.perf_counter()
    try:
        out = fn(ctx, **args)
        entry = {"name": name, "input": jsonable(args), "output": out, "seconds": round(time.perf_counter() - t0, 4)}
        steps.append(entry)
        ctx.emit({"type": "tool", **entry})
        if name == "predict_redshift":
            ctx.emit({"type": "prediction", **out})
        return out, None
    except SpeclmError as exc:
        entry = {"name": name, "input": jsonable(args), "output": None,
                 "seconds": round(time.perf_counter() - t0, 4), "error": str(exc)}
        steps.append(entry)
        ctx.emit({"type": "tool", **entry})
        if required:
            raise
        return None, str(exc)


ANALYSIS_NOTES = {"find_redshift": "The redshift search could not run: {}.",
                  "measure_spectrum": "The spectral measurements could not run: {}."}


def analyze_tool(ctx: ToolContext, path: str | None = None, sdss_id: str | None = None) -> dict:
    """read (or look up and fetch) → the model's p(z) → the search → cosmology → measurements."""
    from speclm.tools.errors import SpeclmError

    steps: list[dict] = []
    notes: list[str] = []
    lookup = None
    try:
        if sdss_id and not path:
            lookup, _ = _step(ctx, steps, "sdss_lookup", sdss_lookup_tool, {"identifier": str(sdss_id)}, required=True)
            path = lookup.get("spectrum_path")
            if not path:
                from speclm.tools.errors import SDSSError

                raise SDSSError(f"SDSS has no spectrum file for {lookup.get('describe') or sdss_id}")
        if not path:
            from speclm.tools.errors import SpectrumReadError

            raise SpectrumReadError("no spectrum: attach a file or give an SDSS identifier")
        spectrum, _ = _step(ctx, steps, "read_spectrum", read_spectrum_tool, {"path": str(path)}, required=True)
        pred, _ = _step(ctx, steps, "predict_redshift", predict_tool, {"spectrum_path": str(path)}, required=True)
    except SpeclmError as exc:  # a result, not a raise: the steps that ran stay in the trace
        return {"error": str(exc), "steps": steps, "lookup": lookup, "sdss_id": sdss_id}
    args = {"spectrum_path": str(path), "z_model": float(pred["z"]), "z_lo": pred.get("z_lo"),
            "z_hi": pred.get("z_hi"), "modes": list(pred.get("modes") or [])}
    search, err = _step(ctx, steps, "find_redshift", find_redshift_tool, args, required=False)
    if err:
        notes.append(ANALYSIS_NOTES["find_redshift"].format(err))
    if search:
        z, z_source, spectype = search["z"], search["z_source"], search["spectype"]
    elif lookup and lookup.get("z") is not None:
        z, z_source, spectype = lookup["z"], "SDSS catalog", lookup.get("obj_class")
    else:
        z, z_source, spectype = pred["z"], "model", None
    cosmo, _ = _step(ctx, steps, "cosmology", cosmology_tool, {"z": max(float(z), 0.0)}, required=False)
    if cosmo:
        cosmo["z_source"] = z_source
    measure, err = _step(ctx, steps, "measure_spectrum", measure_tool,
                         {"spectrum_path": str(path), "z": float(z), "spectype": spectype or "GALAXY"}, required=False)
    if err:
        notes.append(ANALYSIS_NOTES["measure_spectrum"].format(err))
    return {"spectrum": spectrum, "prediction": pred, "search": search,
            "check": (search or {}).get("line_check"), "cosmology": cosmo, "measure": measure, "lookup": lookup,
            "z": z, "z_source": z_source, "spectype": spectype, "notes": notes, "steps": steps,
            "sdss_id": sdss_id}


# -- state updates ---------------------------------------------------------------------------------
NEW_OBJECT = {"prediction": None, "check": None, "search": None, "measure": None, "surveys": None,
              "cosmology": None, "lookup": None, "z": None, "z_source": None, "spectype": None}


def _absorb_analysis(out: dict, args: dict, state: dict) -> dict:
    keys = ("spectrum", "prediction", "search", "check", "cosmology", "measure", "lookup", "z", "z_source", "spectype")
    return {**NEW_OBJECT, **{k: out.get(k) for k in keys}}


def _absorb_lookup(out: dict, args: dict, state: dict) -> dict:
    upd = {"lookup": out}
    if out.get("spectrum_path"):
        upd.update(NEW_OBJECT, lookup=out, spectrum={"path": out["spectrum_path"], "name": out.get("name"), "summary": {}},
                   z=out.get("z"), z_source="SDSS catalog", spectype=out.get("obj_class"))
    return upd


def _absorb_read(out: dict, args: dict, state: dict) -> dict:
    return {**NEW_OBJECT, "spectrum": out}


def _absorb_predict(out: dict, args: dict, state: dict) -> dict:
    upd = {"prediction": out}
    if state.get("z") is None:
        upd.update(z=out.get("z"), z_source="model")
    return upd


def _absorb_search(out: dict, args: dict, state: dict) -> dict:
    return {"search": out, "check": out.get("line_check"), "z": out["z"], "z_source": out["z_source"],
            "spectype": out["spectype"]}


def _absorb_check(out: dict, args: dict, state: dict) -> dict:
    upd = {"check": out}
    if out.get("confident"):
        upd.update(z=out["z"], z_source="line fit")
    return upd


def _same_z(a, b) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) <= 5e-6 * (1 + abs(float(b)))


def _absorb_cosmology(out: dict, args: dict, state: dict) -> dict:
    """At the object's z (or with no object) it is the object's cosmology; at another z it is this
    turn's answer only (``cosmology_at``), and the object's stays."""
    if state.get("z") is None or _same_z(out.get("z"), state.get("z")) or not state.get("cosmology"):
        out = dict(out, z_source=state.get("z_source") if _same_z(out.get("z"), state.get("z")) else None)
        return {"cosmology": out, "cosmology_at": None}
    return {"cosmology_at": out}


def _absorb_measure(out: dict, args: dict, state: dict) -> dict:
    return {"measure": out}


def _absorb_surveys(out: dict, args: dict, state: dict) -> dict:
    return {"surveys": out}


# -- renderers: the reply's words for each output ----------------------------------------------------
def _render_analysis(out: dict, args: dict, st: dict) -> str:
    from speclm.agent import compose, replies

    text = replies.spectrum_reply(spectrum=out.get("spectrum"), pred=out.get("prediction"), check=out.get("check"),
                                  cosmo=out.get("cosmology"), z=out.get("z"), z_source=out.get("z_source"),
                                  lookup=out.get("lookup"), search=out.get("search"))
    if out.get("measure"):
        text += "\n- " + compose.class_answer(out["measure"], out["z"], out.get("z_source"))
    return "\n".join([text, *("- " + n for n in out.get("notes") or [])])


def _render_lookup(out: dict, args: dict, st: dict) -> str:
    return f"SDSS: {out['describe']}."


def _render_read(out: dict, args: dict, st: dict) -> str:
    s = out["summary"]
    return f"Spectrum {out['name']}: {s['n_good']} good pixels, {s['wave_min']:.0f}–{s['wave_max']:.0f} Å."


def _render_predict(out: dict, args: dict, st: dict) -> str:
    from speclm.agent import replies

    return replies.prediction_sentence(out)


def _render_search(out: dict, args: dict, st: dict) -> str:
    from speclm.agent import replies

    return replies.search_sentence(out, st.get("prediction"))


def _render_check(out: dict, args: dict, st: dict) -> str:
    from speclm.agent import replies

    return replies.check_sentence(out, st.get("prediction"))


def _render_cosmology(out: dict, args: dict, st: dict) -> str:
    from speclm.agent import compose, replies
    from speclm.agent.router import lines_in_text

    text = st.get("text", "")
    h = st.get("hypothetical")
    if h and _same_z(h["at"]["z"], out["z"]):
        return compose.hypothetical_answer(h, st.get("spectrum"))
    if _same_z(out["z"], st.get("z")):
        src = st.get("z_source") or "model"
    else:
        src = "your message" if f"{out['z']:g}" in text or _num(out["z"]) in text else "the planner's choice"
    asked = list(args.get("lines") or []) or lines_in_text(text)
    return replies.cosmology_reply(text, out, z_source=src, line_names=asked)


def _render_measure(out: dict, args: dict, st: dict) -> str:
    from speclm.agent import compose

    return compose.class_answer(out, out["z"], st.get("z_source"))


def _render_surveys(out: dict, args: dict, st: dict) -> str:
    from speclm.agent import compose

    return compose.surveys_answer(out)


# -- what the planner reads back ------------------------------------------------------------------------
def _z_type(z, typ) -> str:
    return " ".join(p for p in (f"z={_num(z)}" if isinstance(z, (int, float)) else "", typ or "") if p)


def _sum_analysis(out: dict) -> str:
    return _z_type(out.get("z"), out.get("spectype"))


def _sum_lookup(out: dict) -> str:
    return _z_type(out.get("z"), out.get("obj_class"))


def _sum_predict(out: dict) -> str:
    return _z_type(out.get("z"), None)


def _sum_search(out: dict) -> str:
    return _z_type(out.get("z"), out.get("spectype"))


def _sum_check(out: dict) -> str:
    return _z_type(out.get("z"), None)


def _sum_measure(out: dict) -> str:
    cls = out.get("summary_class")
    return cls if isinstance(cls, str) else ""


def _sum_none(out: dict) -> str:
    return ""


# -- the registry ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolSpec:
    """One tool, declared once (module docstring)."""

    name: str
    schema: type
    description: str
    run: Callable  # (ctx, **args) -> dict
    absorb: Callable  # (output, args, state) -> state update
    render: Callable  # (output, args, state after absorb) -> reply text
    summary: Callable  # (output) -> what the planner reads after "ok: "
    state_keys: tuple[str, ...] = ()  # the thread-state keys ``absorb`` may set (documentation + tests)
    implicit: tuple[str, ...] = field(default=("spectrum_path",))  # arguments the agent fills, never the planner
    needs_spectrum: bool = False  # needs the thread's (or this turn's) spectrum file
    route: str = "chat"  # the kind of turn it makes when it is the turn's first call (TurnResult.route)

    @property
    def phrases(self) -> dict[str, list[str]]:
        """The planner-data generator's vocabulary for this tool (:mod:`speclm.agent.planner_phrases`)."""
        from speclm.agent.planner_phrases import PHRASES

        return PHRASES.get(self.name, {})

    def result_line(self, output: Any = None, error: str | None = None) -> str:
        """``ok: …`` or ``error: …``: the planner's read-back of one call."""
        if not error and isinstance(output, dict) and isinstance(output.get("error"), str):
            error = output["error"]
        if error:
            return "error: " + " ".join(str(error).split())[:80]
        s = self.summary(output if isinstance(output, dict) else {})
        return "ok" + (f": {s}" if s else "")


REGISTRY: dict[str, ToolSpec] = {s.name: s for s in (
    ToolSpec("analyze_spectrum", AnalyzeInput,
             "Analyse a spectrum: the attached file (default), a path, or an SDSS object (sdss_id): the fine-tuned "
             "model's redshift with p(z), the template redshift search (galaxy, quasar, star), cosmology and the "
             "line measurements. Call it for every newly attached spectrum.",
             analyze_tool, _absorb_analysis, _render_analysis, _sum_analysis,
             state_keys=("spectrum", "prediction", "search", "check", "cosmology", "measure", "lookup", "z",
                         "z_source", "spectype"), implicit=("path",), route="spectrum"),
    ToolSpec("sdss_lookup", SDSSLookupInput,
             "Look an object up in SDSS (catalog z, class, magnitudes) and fetch its spectrum.",
             sdss_lookup_tool, _absorb_lookup, _render_lookup, _sum_lookup,
             state_keys=("lookup", "spectrum", "z", "z_source", "spectype"), implicit=(), route="lookup"),
    ToolSpec("cosmology", CosmologyInput,
             "Lookback time, ages, distances, velocities and observed line positions at z.",
             cosmology_tool, _absorb_cosmology, _render_cosmology, _sum_none,
             state_keys=("cosmology", "cosmology_at"), implicit=(), route="cosmology"),
    ToolSpec("measure_spectrum", MeasureInput,
             "Measure the spectrum at its redshift: emission-line fluxes, EWs and S/N, Dn4000, HδA, BPT/WHAN class "
             "(passive, star-forming, composite, Seyfert, LINER, broad-line AGN) with its evidence, synthetic g/r/i "
             "magnitudes, absolute magnitudes, Hα SFR, velocity dispersion.",
             measure_tool, _absorb_measure, _render_measure, _sum_measure,
             state_keys=("measure",), needs_spectrum=True),
    ToolSpec("survey_reach", SurveyReachInput,
             "Which spectroscopic and imaging surveys could observe an object (magnitude limits, redshift ranges, "
             "sky coverage), and why or why not.",
             survey_reach_tool, _absorb_surveys, _render_surveys, _sum_none, state_keys=("surveys",), implicit=()),
    ToolSpec("predict_redshift", PredictInput,
             "The fine-tuned LLM reads the spectrum as text (LoRA adapter on) and answers 'Redshift: z' with a 68% "
             "interval from p(z).",
             predict_tool, _absorb_predict, _render_predict, _sum_predict,
             state_keys=("prediction", "z", "z_source"), needs_spectrum=True, route="spectrum"),
    ToolSpec("find_redshift", FindRedshiftInput,
             "The assistant's redshift: galaxy, quasar and star template fits over the whole range (candidates from "
             "the model's p(z) and a blind scan); spectral type, z, confidence, alternatives.",
             find_redshift_tool, _absorb_search, _render_search, _sum_search,
             state_keys=("search", "check", "z", "z_source", "spectype"), needs_spectrum=True, route="spectrum"),
    ToolSpec("redshift_check", RedshiftCheckInput,
             "Test a redshift against the spectrum's own lines; refine it when confident.",
             redshift_check_tool, _absorb_check, _render_check, _sum_check,
             state_keys=("check", "z", "z_source"), needs_spectrum=True, route="check"),
    ToolSpec("read_spectrum", ReadSpectrumInput,
             "Read a spectrum file; returns what was read (pixels, wavelength range, S/N, catalog z).",
             read_spectrum_tool, _absorb_read, _render_read, _sum_none, state_keys=("spectrum",), implicit=(),
             route="spectrum"),
)}
TOOL_NAMES: tuple[str, ...] = tuple(REGISTRY)


def build_tools(ctx: ToolContext | None = None, **kw) -> dict:
    """LangChain StructuredTools over the registry (schema-validated when the ToolNode runs them).
    ``build_tools(ToolContext(...))`` or ``build_tools(predict=..., sdss_cfg=..., cosmology=...)``."""
    from langchain_core.tools import StructuredTool

    ctx = ctx or ToolContext(**kw)
    out = {}
    for spec in REGISTRY.values():
        fn = functools.partial(spec.run, ctx)
        functools.update_wrapper(fn, spec.run)
        out[spec.name] = StructuredTool.from_function(fn, name=spec.name, args_schema=spec.schema,
                                                      description=spec.description)
    return out
