"""LangChain tool wrappers around speclm.tools (and the model's redshift step), with typed schemas.

Why wrappers here and not in tools/: the tools layer stays free of LangChain (numpy/astropy only);
the agent needs what LangChain tools add — a pydantic argument schema that validates what a node
(or a tool-calling LLM on an OpenAI endpoint) passes in, a name and a description. Every wrapper
returns plain JSON (the ``to_dict()`` of the tool's dataclass, plus its ``describe()`` text where
it has one) so results can go straight into the checkpointed state and into tool events.
Errors are the tools' own SpeclmError subclasses, raised unchanged (the nodes turn them into replies).
"""
from __future__ import annotations

from typing import Callable, Optional

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field, field_validator, model_validator

from speclm.agent.state import jsonable


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


def _read_spectrum(path: str) -> dict:
    from speclm.tools.spectrum import read_spectrum, summary

    spec = read_spectrum(path)
    s = jsonable(summary(spec))
    return {"path": str(path), "name": _name(spec, path), "summary": s}


def _name(spec, path) -> str:
    m = spec.meta
    if m.get("targetid") is not None:
        from pathlib import Path

        return f"{Path(str(m.get('file') or path)).name} TARGETID {m['targetid']}"
    if m.get("plate") and m.get("fiberid"):
        try:
            return f"{int(m['plate']):04d}-{int(m.get('mjd') or 0):05d}-{int(m['fiberid']):04d}"
        except (TypeError, ValueError):
            pass
    from pathlib import Path

    return Path(str(path)).name


def _cosmology(z: float, cosmology: str = "Planck18", lines: list[str] | None = None) -> dict:
    from speclm.tools.cosmology import DEFAULT_SUMMARY_LINES, summarize

    s = summarize(z, cosmology, lines=tuple(lines) if lines else DEFAULT_SUMMARY_LINES)
    d = jsonable(s.to_dict())
    d["describe"] = s.describe()
    return d


def _redshift_check(spectrum_path: str, z0: float, search_halfwidth: float | None = None) -> dict:
    from speclm.tools.redshift_check import check_redshift
    from speclm.tools.spectrum import read_spectrum

    chk = check_redshift(read_spectrum(spectrum_path), z0, search_halfwidth=search_halfwidth)
    d = jsonable(chk.to_dict())
    d["describe"] = chk.describe()
    return d


def _find_redshift(spectrum_path: str, z_model: float | None = None, z_lo: float | None = None,
                   z_hi: float | None = None, modes: list[float] | None = None) -> dict:
    from speclm.tools.redshift_search import find_redshift
    from speclm.tools.spectrum import read_spectrum

    pred = None if z_model is None else {"z": z_model, "z_lo": z_lo, "z_hi": z_hi, "modes": modes or []}
    ans = find_redshift(read_spectrum(spectrum_path), pred)
    d = jsonable(ans.to_dict())
    d["describe"] = ans.describe()
    return d


def _measure(spectrum_path: str, z: float, spectype: str = "GALAXY", cosmology: str = "Planck18") -> dict:
    from speclm.tools.measure import measure_spectrum
    from speclm.tools.spectrum import read_spectrum

    m = measure_spectrum(read_spectrum(spectrum_path), z, spectype, cosmology=cosmology)
    d = jsonable(m.to_dict())
    d["describe"] = m.describe()
    return d


def _survey_reach(z: float, spectype: str = "GALAXY", magnitudes: dict | None = None, ra: float | None = None,
                  dec: float | None = None, fibre_arcsec: float | None = None,
                  total_magnitudes: dict | None = None) -> dict:
    from speclm.tools.survey_reach import survey_reach

    return jsonable(survey_reach(z=z, spectype=spectype, magnitudes=magnitudes, ra=ra, dec=dec,
                                 fibre_arcsec=fibre_arcsec, total_magnitudes=total_magnitudes))


def build_tools(*, predict: Callable | None = None, sdss_cfg=None,
                cosmology: str = "Planck18") -> dict[str, StructuredTool]:
    """The agent's tools by name. ``predict(spectrum) -> dict`` is the model backend's redshift
    step; ``sdss_cfg`` (SDSSConfig or None = environment defaults) is closed over by the lookup."""

    def sdss_lookup(identifier=None, plate=None, mjd=None, fiberid=None, specobjid=None, ra=None,
                    dec=None, radius_arcsec=3.0) -> dict:
        from speclm.tools.sdss_lookup import sdss_lookup as lookup

        res = lookup(plate=plate, mjd=mjd, fiberid=fiberid, specobjid=specobjid, ra=ra, dec=dec,
                     radius_arcsec=radius_arcsec, identifier=identifier, fetch=True, cfg=sdss_cfg)
        d = jsonable(res.to_dict())
        d["describe"] = res.summary()
        return d

    def cosmo(z: float, cosmology: str = cosmology, lines: list[str] | None = None) -> dict:
        return _cosmology(z, cosmology, lines)

    def measure(spectrum_path: str, z: float, spectype: str = "GALAXY") -> dict:
        return _measure(spectrum_path, z, spectype, cosmology)

    table = (  # name, function, argument schema, description (what a tool-calling model reads)
        ("measure_spectrum", measure, MeasureInput,
         "Measure the spectrum at its redshift: emission-line fluxes, EWs and S/N, Dn4000, HδA, "
                        "BPT/WHAN class (passive, star-forming, composite, Seyfert, LINER, broad-line AGN) with "
                        "its evidence, synthetic g/r/i magnitudes, absolute magnitudes, Hα SFR, velocity dispersion."),
        ("survey_reach", _survey_reach, SurveyReachInput,
         "Which spectroscopic and imaging surveys could observe an object (magnitude limits, "
                        "redshift ranges, sky coverage), and why or why not."),
        ("read_spectrum", _read_spectrum, ReadSpectrumInput,
         "Read a spectrum file; returns what was read (pixels, wavelength range, S/N, catalog z)."),
        ("sdss_lookup", sdss_lookup, SDSSLookupInput,
         "Look an object up in SDSS (catalog z, class, magnitudes) and fetch its spectrum."),
        ("cosmology", cosmo, CosmologyInput,
         "Lookback time, ages, distances, velocities and observed line positions at z."),
        ("redshift_check", _redshift_check, RedshiftCheckInput,
         "Test a redshift against the spectrum's own lines; refine it when confident."),
        ("find_redshift", _find_redshift, FindRedshiftInput,
         "The assistant's redshift: galaxy, quasar and star template fits over the whole range "
                        "(candidates from the model's p(z) and a blind scan); spectral type, z, confidence, "
                        "alternatives."),
    )
    tools = {name: StructuredTool.from_function(fn, name=name, args_schema=schema, description=desc)
             for name, fn, schema, desc in table}
    if predict is not None:
        def predict_redshift(spectrum_path: str) -> dict:
            from speclm.tools.spectrum import read_spectrum

            return jsonable(predict(read_spectrum(spectrum_path)))

        tools["predict_redshift"] = StructuredTool.from_function(
            predict_redshift, name="predict_redshift", args_schema=PredictInput,
            description="The fine-tuned LLM reads the spectrum as text (LoRA adapter on) and answers "
                        "'Redshift: z' with a 68% interval from p(z).")
    return tools
