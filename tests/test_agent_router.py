"""speclm.agent routing rules, tool schemas and reply formatting (no model: milliseconds)."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from speclm.agent import replies
from speclm.agent.registry import (CosmologyInput, RedshiftCheckInput, SDSSLookupInput, build_tools)
from speclm.agent.router import decide, lines_in_text, z_from_text

FOLLOWUP = ("What type of galaxy is expected at the redshift you just predicted? "
            "Which surveys could observe it?")


@pytest.mark.parametrize("text, kw, route", [
    # attachments and identifiers win over everything
    ("what is this?", dict(upload_path="/x/spec.fits"), "spectrum"),
    ("", dict(upload_path="/x/spec.fits", has_z=True), "spectrum"),
    ("anything", dict(sdss_id="0266-51630-0001"), "lookup"),
    ("Look up 0266-51630-0001 please", {}, "lookup"),
    ("spec-0266-51630-0001.fits", dict(has_z=True), "lookup"),
    ("RA 179.5 Dec -0.5", {}, "lookup"),
    ("specObjID 299489677444933632", {}, "lookup"),
    ("fetch plate 266", {}, "lookup"),  # malformed: the lookup node replies with the parse error
    # references to an object we do not have
    ("what about this one?", {}, "clarify"),
    ("what about this one?", dict(has_spectrum=True, has_z=True), "clarify"),
    ("What is the redshift of this galaxy?", {}, "clarify"),
    ("predict the redshift", {}, "clarify"),
    ("predict the redshift again", dict(has_spectrum=True, has_z=True), "spectrum"),
    ("What is the lookback time?", {}, "clarify"),
    ("can you check it", {}, "clarify"),
    # cosmology with the thread's z or a z in the text
    ("What is the lookback time?", dict(has_spectrum=True, has_z=True), "cosmology"),
    ("How far away is it?", dict(has_z=True), "cosmology"),
    ("how fast is it receding?", dict(has_z=True), "cosmology"),
    ("Where does Hα land?", dict(has_z=True), "cosmology"),
    ("lookback time at z = 0.3", {}, "cosmology"),
    ("what's the luminosity distance for redshift 1.2", {}, "cosmology"),
    # line check
    ("Can you verify that redshift with the lines?", dict(has_spectrum=True, has_z=True), "check"),
    # follow-ups and chat
    (FOLLOWUP, dict(has_spectrum=True, has_z=True), "chat"),
    ("hello", dict(has_spectrum=True, has_z=True), "chat"),
    ("What is a quasar?", {}, "chat"),
])
def test_routing_table(text, kw, route):
    d = decide(text, **kw)
    assert d.route == route, d.reason


def test_followup_is_grounded_and_unclear_text_is_free_chat():
    assert decide(FOLLOWUP, has_spectrum=True, has_z=True).grounded
    d = decide("and what would you make of that in context", has_spectrum=True, has_z=True)
    assert d.route == "chat" and not d.grounded  # no tool: the rules planner calls nothing


def test_z_and_lines_in_text():
    assert decide("lookback time at z=0.3").z_text == pytest.approx(0.3)
    assert z_from_text("redshift of 1.25?") == pytest.approx(1.25)
    assert z_from_text("no number here") is None
    assert lines_in_text("where do Hα, [O III] 5007 and Na D land?") == ["Halpha", "OIII5008", "NaD"]
    assert lines_in_text("H-beta and the 4000 Å break") == ["Hbeta", "D4000"]
    assert lines_in_text("hello there, what kind of galaxy") == []


def test_tool_schemas_validate():
    tools = build_tools()
    assert set(tools) == {"analyze_spectrum", "read_spectrum", "sdss_lookup", "cosmology", "redshift_check",
                          "find_redshift", "measure_spectrum", "survey_reach", "predict_redshift"}
    assert "predict_redshift" in build_tools(predict=lambda s: {})
    schema = tools["cosmology"].args_schema.model_json_schema()
    assert schema["properties"]["z"]["maximum"] == 20 and "z" in schema["required"]
    json.dumps({n: t.args_schema.model_json_schema() for n, t in tools.items()})
    with pytest.raises(ValidationError):
        CosmologyInput(z=-1)
    with pytest.raises(ValidationError):
        SDSSLookupInput(plate=266)  # plate without fiber
    with pytest.raises(ValidationError):
        SDSSLookupInput(ra=10.0)
    with pytest.raises(ValidationError):
        RedshiftCheckInput(spectrum_path="x", z0=-0.5)
    assert SDSSLookupInput(identifier="0266-51630-0001").radius_arcsec == 3.0
    with pytest.raises(ValidationError):  # the wrapper validates before calling the tool
        tools["cosmology"].invoke({"z": "far"})


def test_cosmology_tool_output_is_json_and_quotable():
    out = build_tools()["cosmology"].invoke({"z": 0.315, "lines": ["Halpha"]})
    json.dumps(out)
    assert 3.5 < out["lookback_gyr"] < 4.0 and out["lines"][0]["name"] == "Halpha"
    text = replies.cosmology_reply("what is the lookback time and where does Hα land?", out,
                                   z_source="model", line_names=["Halpha"])
    assert replies.fmt_gyr(out["lookback_gyr"]) in text
    assert f"{out['lines'][0]['observed_A']:.1f} Å" in text


def test_qualitative_filter_drops_numeric_claims():
    llm = ("This is likely a massive elliptical galaxy. Its lookback time is about 3.8 billion years. "
           "It recedes at 84,000 km/s. Surveys such as SDSS, DESI and Euclid could observe it.")
    out = replies.qualitative_only(llm)
    assert "elliptical" in out and "Euclid" in out and "3.8" not in out and "84,000" not in out
    f = replies.SentenceFilter()
    streamed = "".join(f.feed(llm[i:i + 7]) for i in range(0, len(llm), 7)) + f.flush()
    assert streamed.split() == out.split()


@pytest.mark.parametrize("text", ["How old are its stars, roughly?", "Summarize this object in two sentences for a paper.",
                                  "What would its spectrum look like if it were at z = 1?"])
def test_age_summary_and_what_if_are_answered_from_the_measurements(text):
    """Not the lookback time ("how old" is a cosmology word), not a refusal: the grounded follow-up."""
    from speclm.agent.router import decide

    d = decide(text, has_spectrum=True, has_z=True)
    assert d.route == "chat" and d.grounded, d


def test_what_if_answer_comes_from_two_cosmology_calls():
    from speclm.agent.compose import compose, hypothetical_z
    from speclm.tools.cosmology import summarize

    assert hypothetical_z("What would its spectrum look like if it were at z = 1?") == 1.0
    assert hypothetical_z("What is its redshift?") is None
    now, at = (summarize(z, "Planck18", lines=["Halpha", "OII"]).to_dict() for z in (0.05, 1.0))
    h = {"now": now, "at": at, "dimming_mag": 7.77, "z_source": "template fit (galaxy)"}
    spec = {"summary": {"wave_min": 3800.0, "wave_max": 9200.0}}
    text, done = compose("And if it were at z = 1?", measure=None, reach=None, cosmo=None, z=0.05,
                         z_source="template fit (galaxy)", hypothetical=h, spectrum=spec)
    assert done == ["hypothetical"]
    assert "beyond this spectrum's red end" in text and "13,129.2 Å" in text  # Hα at z = 1
    assert "7,457.0 Å — inside" in text and "7.77 mag" in text


def test_age_and_summary_answers_quote_the_indices():
    from speclm.agent.compose import compose

    m = {"summary_class": "passive", "evidence": ["Dn4000 = 1.91 (old stellar population; split at 1.5)"],
         "dn4000": 1.91, "hdelta_a": -1.2, "broad": {}}
    text, done = compose("How old are its stars?", measure=m, reach=None, cosmo=None, z=0.1, z_source="template fit")
    assert done == ["age"] and "Dn4000 = 1.91 — mostly old stars" in text and "HδA = -1.20 Å" in text
    text, done = compose("Summarize it in two sentences for a paper.", measure=m, reach=None, cosmo=None, z=0.1,
                         z_source="template fit", spectype="GALAXY")
    assert done == ["summary"] and text.startswith("The object is a passive galaxy") and text.count(". ") <= 2
