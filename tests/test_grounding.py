"""The claim check and the measurement-backed answers: invented claims are caught, measured ones pass.

The invented replies below are what the embedded SmolLM2-135M actually wrote before the composer
(issue: grounded answers); each must turn the check red, and the composed answers on real SDSS
spectra must pass it and name the SDSS-consistent class."""
from __future__ import annotations

from pathlib import Path

import pytest

from speclm.agent import compose, grounding, replies
from speclm.agent.ask_cli import read_script
from speclm.tools.errors import ScriptError

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sdss_real_dev" / "fits"
OLD_REPLIES = [  # the paper's follow-up, "is it forming stars?", "which surveys?" before this change
    "This type of galaxy is known as a Sgr A-type SGA (Type Ia Supergiantary). It is a remnant from the Big Bang.",
    "The galaxy shows redshift-induced star formation, typical of a starburst galaxy in the Local Group.",
    "It could be observed by our cosmic microwave background (CMB) telescope and by the Hubble Space Telescope.",
    "Its light left it 3.8 billion years ago, so it is an elliptical galaxy.",
]


def _facts(measure: dict | None = None) -> grounding.Facts:
    f = grounding.Facts().add(replies.METHOD)
    if measure:
        f.add(measure)
    return f


@pytest.mark.parametrize("text", OLD_REPLIES)
def test_invented_claims_are_caught(text):
    facts = _facts({"summary_class": "star-forming", "z": 0.0320, "evidence": ["BPT: below the Kauffmann line"]})
    bad = grounding.check_reply(text, facts)
    assert bad, text
    kept, dropped = grounding.keep_grounded(text, facts)
    assert kept == "" and dropped


def test_grounded_sentences_pass_and_numbers_need_their_precision():
    f = grounding.Facts().add({"cosmology": {"lookback_gyr": 0.45123, "z": 0.03197}, "name": "DESI Bright Galaxy Survey"})
    assert not grounding.check_reply("The light left it 0.451 Gyr ago at z = 0.03197.", f)
    assert grounding.check_reply("The light left it 0.46 Gyr ago.", f)  # a wrong number at its own precision
    assert not grounding.check_reply("DESI Bright Galaxy Survey could observe it.", f)
    assert grounding.check_reply("Euclid could observe it.", f)  # a survey no tool named


def test_intents_cover_the_papers_questions():
    assert compose.intents("What type of galaxy is expected at the redshift you just predicted? "
                           "Which surveys could observe it?") == ["type", "surveys"]
    assert compose.intents("Is it forming stars?") == ["star_formation"]
    assert compose.intents("Is there an AGN?") == ["agn"]
    assert "lines" in compose.intents("What are its emission line ratios?")
    assert compose.intents("What is the meaning of life?") == []


@pytest.mark.parametrize("fname,allowed", [
    ("spec-0266-51630-0461.fits", {"passive"}),                    # SDSS SUBCLASS blank, Dn4000 ≈ 2
    ("spec-1045-52725-0628.fits", {"star-forming", "composite"}),  # SDSS STARFORMING
    ("spec-0651-52141-0072.fits", {"broad-line AGN"}),             # SDSS QSO AGN BROADLINE
])
def test_measured_class_on_real_spectra_and_composed_answer_is_grounded(fname, allowed):
    from speclm.tools.measure import measure_spectrum
    from speclm.tools.redshift_search import find_redshift
    from speclm.tools.spectrum import read_spectrum
    from speclm.tools.survey_reach import survey_reach

    path = REAL / fname
    if not path.is_file():
        pytest.skip("the real SDSS dev set (../shared/data/sdss_real_dev) is not here")
    spec = read_spectrum(path)
    ans = find_redshift(spec, None)
    m = measure_spectrum(spec, ans.z, ans.spectype).to_dict()
    assert m["summary_class"] in allowed, m["evidence"]
    phot = m["photometry"]
    assert phot and 14 < phot["r"] < 21  # SDSS spectroscopic targets are this bright
    reach = survey_reach(z=ans.z, spectype=ans.spectype, magnitudes={b: phot[b] for b in "gri"},
                         ra=m["position"]["ra"], dec=m["position"]["dec"])
    text, done = compose.compose("What type of galaxy is it? Which surveys could observe it?", measure=m,
                                 reach=reach, cosmo=None, z=ans.z, z_source=ans.z_source)
    assert done == ["type", "surveys"] and m["summary_class"] in text
    facts = _facts(m).add(reach).add(ans.to_dict()).add("What type of galaxy is it? Which surveys could observe it?")
    assert grounding.check_reply(text, facts) == []


def test_ask_script_errors_are_one_line(tmp_path):
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"text": "hi"}\nnot json\n')
    with pytest.raises(ScriptError, match="line 2: not JSON"):
        read_script(str(bad))
    bad.write_text('{"text": "hi", "spectrum": "/nope.fits"}\n')
    with pytest.raises(ScriptError, match="does not exist"):
        read_script(str(bad))
    bad.write_text('{"txt": "hi"}\n')
    with pytest.raises(ScriptError, match="unknown key"):
        read_script(str(bad))


def test_speclm_ask_script_json_end_to_end(tmp_path, ngc3522_fits, capsys):
    """`speclm ask --script --json` on the tiny random base + an untrained adapter: one record per
    turn with the fields the issue asks for; the follow-up is composed (no model) and grounded."""
    import json

    from speclm.cli import main
    from speclm.finetune.presets import get_preset
    from speclm.finetune.train import init_adapter

    adapter = init_adapter(get_preset("tiny"), tmp_path / "tiny-redshift")
    script = tmp_path / "turns.jsonl"
    script.write_text(json.dumps({"text": "What is its redshift?", "spectrum": str(ngc3522_fits)}) + "\n"
                      + json.dumps({"text": "Is it forming stars? Which surveys could observe it?"}) + "\n")
    rc = main(["ask", "--script", str(script), "--json", "--base", "tiny", "--adapter", str(adapter)])
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert rc == 0 and len(recs) == 2 and recs[0]["thread"] == recs[1]["thread"]
    for key in ("reply", "route", "tool_calls", "planner", "z", "z_source", "spectype"):
        assert key in recs[0] and key in recs[1]
    assert [c["name"] for c in recs[0]["tool_calls"]][:3] == ["read_spectrum", "predict_redshift", "find_redshift"]
    # the default planner is the embedded model's; a tiny random base cannot plan, so the rules took the turn
    assert recs[0]["planner"] == "rules (fallback)" and recs[0]["spectype"] == "GALAXY" and recs[0]["class"]
    assert recs[1]["answered"] == ["star_formation", "surveys"] and recs[1]["class"] in recs[1]["reply"]
    assert "survey_reach" in [c["name"] for c in recs[1]["tool_calls"]] and recs[1]["dropped_sentences"] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    assert main(["ask", "--script", str(bad), "--json"]) == 2
    assert "line 1: not JSON" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# yes/no answers are decided by the tool field, and the claim check verifies their polarity

SEYFERT2 = {"summary_class": "Seyfert", "evidence": ["BPT: above the Kewley et al. (2001) line"], "broad": {},
            "bpt": {"log_nii_ha": 0.05, "log_oiii_hb": 0.9}, "dn4000": 1.3}


def test_could_it_be_a_quasar_is_answered_from_the_search_type():
    from speclm.agent.compose import compose

    text, done = compose("Could this be a quasar instead?", measure=SEYFERT2, reach=None, cosmo=None, z=0.075,
                         z_source="template fit (galaxy)", spectype="GALAXY")
    assert done == ["quasar"] and text.startswith("No: the redshift search types it as a galaxy")
    assert "Seyfert" in text  # the AGN the lines show is still said, as what it is
    text, _ = compose("Is it a QSO?", measure=None, reach=None, cosmo=None, z=1.2, z_source="template fit (qso)",
                      spectype="QSO")
    assert text.startswith("Yes")


def test_claim_check_drops_a_yes_that_contradicts_the_search():
    from speclm.agent.grounding import Facts, keep_grounded

    facts = Facts().add({"spectype": "GALAXY", "summary_class": "Seyfert", "z": 0.075})
    facts.add("quasar QSO Seyfert")
    facts.decides = {"spectype": "GALAXY", "class": "Seyfert"}
    kept, dropped = keep_grounded("Yes: it is a quasar. The class is Seyfert.", facts)
    assert kept == "The class is Seyfert." and dropped[0]["violations"][0]["kind"] == "polarity"
    kept, dropped = keep_grounded("No: it is not a quasar.", facts)
    assert kept == "No: it is not a quasar." and not dropped
    # an AGN yes/no is checked against the measurements' class
    kept, _ = keep_grounded("No sign of an AGN: the class is Seyfert.", facts)
    assert kept == ""
    facts.decides = {"spectype": "QSO", "class": "broad-line AGN"}
    kept, _ = keep_grounded("No: it is not a quasar.", facts)
    assert kept == ""


def test_a_number_with_a_unit_needs_a_fact_of_that_unit():
    """CI once kept "Its light left it 3.8 billion years ago" because some measured number (an
    equivalent width, an S/N) happened to be 3.8: an age must match an age."""
    f = grounding.Facts().add({"measure": {"ew_halpha": 3.8, "snr": 12.0},
                               "cosmology": {"lookback_gyr": 1.3312, "comoving_distance_mpc": 452.7}})
    bad = grounding.check_sentence("Its light left it 3.8 billion years ago.", f)
    assert bad and bad[0]["kind"] == "number"
    assert grounding.check_sentence("Its light left it 1.33 billion years ago.", f) == []
    assert grounding.check_sentence("Its light left it 1.33 Gyr ago.", f) == []
    assert grounding.check_sentence("That is about 1331 million years.", f) == []
    assert grounding.check_sentence("It lies 453 Mpc away.", f) == []
    assert grounding.check_sentence("It lies 3.8 Mpc away.", f)  # a width is not a distance
    assert grounding.check_sentence("The Hα equivalent width is 3.8 Å.", f) == []  # unitless match still works
    g = grounding.Facts().add("the light left the galaxy 2.41 Gyr ago")  # a tool's words carry units too
    assert grounding.check_sentence("It left 2.41 billion years ago.", g) == []
