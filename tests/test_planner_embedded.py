"""The embedded planner: its text format, its synthetic training data, its held-out score, and the
graph running its plans (the real SmolLM2-135M with the bundled planner LoRA, tools for real)."""
from __future__ import annotations

import re

import pytest

from sdss_server import sdss_cfg, sdss_objects, sdss_sim  # noqa: F401  (pytest fixtures)
from speclm.agent.registry import build_tools
from speclm.agent.planner import ChatTemplatePlanner, parse_template_calls, validate_call
from speclm.evals import planner as ev
from speclm.agent import plan_text as pt
from speclm.agent import planner_data as pdata
from speclm.finetune.runtime import bundled_adapter_dir


# -- the format ------------------------------------------------------------------------------
def test_call_round_trip_and_rejections():
    line = pt.format_call("cosmology", {"z": 0.0521, "lines": ["Hbeta"], "spectrum_path": "/x.fits"})
    assert line == 'cosmology {"z": 0.0521, "lines": ["Hbeta"]}'  # the agent fills spectrum_path
    assert pt.parse_step(" " + line) == ("cosmology", {"z": 0.0521, "lines": ["Hbeta"]})
    assert pt.parse_step(" done") == (None, {})
    assert pt.parse_step("predict_redshift {}\nmore text") == ("predict_redshift", {})
    assert pt.parse_step('sdss_lookup {"plate": 0266, "fiberid": 0461}') == ("sdss_lookup", {"plate": 266, "fiberid": 461})
    assert pt.parse_step('read_spectrum {"path": "/d/0266.fits"}') == ("read_spectrum", {"path": "/d/0266.fits"})
    for bad in ("", "the redshift is 0.1", "teleport {}", 'cosmology {"z": ', "cosmology [1, 2]"):
        assert pt.parse_step(bad) is None, bad


def test_step_prompt_carries_context_calls_and_results():
    ctx = pt.context_line(0.0461, "sdss", "GALAXY", True)
    p = pt.step_prompt(ctx, "how  far is it?", [("sdss_lookup", {"plate": 266}, "ok: z=0.0461 GALAXY")])
    assert "Object: z=0.0461 (sdss), GALAXY, spectrum loaded." in p and "User: how far is it?" in p
    assert '1. sdss_lookup {"plate": 266} -> ok: z=0.0461 GALAXY' in p and p.endswith("Next:")
    assert pt.context_line() == "Object: none."
    assert pt.result_summary("sdss_lookup", error="SDSSError: boom").startswith("error: SDSSError")


# -- the synthetic data ------------------------------------------------------------------------
def test_generated_plans_are_valid_calls_and_deterministic():
    reqs = pdata.generate(400, seed=3)
    assert reqs == pdata.generate(400, seed=3) and reqs != pdata.generate(400, seed=4)
    tools = build_tools(predict=lambda s: {})
    intents = {r["intent"] for r in reqs}
    assert {"attached", "analyze_sdss", "lookup_then", "line_position", "hypothetical", "nothing", "check"} <= intents
    for r in reqs:
        for c in r["plan"]:
            st = {"spectrum": {"path": "x.fits"}, "upload_path": "up.fits"}
            assert validate_call(c["name"], c["args"], tools, st) is None, (r, c)
            assert c["name"] in pt.TOOL_NAMES
        pairs = pdata.step_examples(r)
        assert len(pairs) == len(r["plan"]) + 1 and pairs[-1][1] == " done"
    multi = [r for r in reqs if len(r["plan"]) == 2 and "error" not in r["plan"][0]["result"]]
    # a second call takes its value from the first call's result (the looked-up or predicted z)
    assert any(r["plan"][1]["args"].get("z", r["plan"][1]["args"].get("z0")) is not None
               and pt.format_number(r["plan"][1]["args"].get("z", r["plan"][1]["args"].get("z0"))) in r["plan"][0]["result"]
               for r in multi)


def test_an_attached_file_is_analysed_first_whatever_the_message_asks():
    reqs = [r for r in pdata.generate(1500, seed=11) if r["intent"] == "attached"]
    assert len(reqs) > 50
    for r in reqs:
        assert r["context"].endswith(pt.ATTACHED) and r["plan"][0]["name"] == "analyze_spectrum", r
        assert r["plan"][0]["args"] == {}  # the agent fills in the attached file
    texts = {r["text"].lower() for r in reqs}
    assert any("survey" in t or "desi" in t for t in texts) and len(texts) > 40  # questions of every kind
    two = [r for r in reqs if len(r["plan"]) == 2]
    # a follow-up the analysis does not answer comes next, at the analysis' z (not the thread's old one)
    assert {r["plan"][1]["name"] for r in two} == {"survey_reach", "cosmology", "redshift_check", "predict_redshift"}
    for r in two:
        z = r["plan"][1]["args"].get("z")
        assert z is None or pt.format_number(z) in r["plan"][0]["result"], r
    sdss = [r for r in pdata.generate(1500, seed=11) if r["intent"] == "analyze_sdss"]
    assert sdss and all(set(r["plan"][0]["args"]) == {"sdss_id"} for r in sdss)


def test_hand_written_requests_are_valid_plans_and_their_z_is_redrawn_consistently():
    """The hand-written training requests (agent/planner_written/) are valid calls in every copy; the
    copy with a redrawn thread z carries the new z into the calls that copied it."""
    items = pdata.written_items()
    assert len(items) >= 300 and len({pdata._norm(it["text"]) for it in items}) > 0.95 * len(items)
    reqs = [r for r in pdata.generate(10, seed=1) if r["intent"] == "written"]
    assert len(reqs) == 2 * len(items)
    tools = build_tools(predict=lambda s: {})
    st = {"spectrum": {"path": "x.fits"}, "upload_path": "up.fits"}
    moved = 0
    for orig, copy in zip(reqs[0::2], reqs[1::2]):
        assert orig["text"] == copy["text"] and [c["name"] for c in orig["plan"]] == [c["name"] for c in copy["plan"]]
        for c in orig["plan"] + copy["plan"]:
            assert validate_call(c["name"], c["args"], tools, st) is None, (orig["text"], c)
        ctx = ev._parse_context(copy["context"]) or {}
        read_back = set()  # z values an earlier call of this plan returned (a lookup's catalog z)
        for c in copy["plan"]:
            z = c["args"].get("z", c["args"].get("z0"))
            if c["name"] in ("measure_spectrum", "survey_reach") and not copy["context"].endswith(pt.ATTACHED):
                assert z == ctx.get("z") or pt.format_number(z) in read_back, (copy, c)  # the object's z, as redrawn
            read_back |= set(re.findall(r"z=([0-9.]+)", c["result"]))
        moved += orig["context"] != copy["context"]
    assert moved > len(items) // 2


def test_whatifs_ages_and_summaries_are_planned_to_tools():
    reqs = pdata.generate(3000, seed=12)
    hyp = [r for r in reqs if r["intent"] == "hypothetical"]
    assert hyp and all(r["plan"] == [] or r["plan"][0]["name"] == "cosmology" for r in hyp)
    # the named z, not the object's, is the argument
    assert all(pt.format_number(r["plan"][0]["args"]["z"]) in r["text"] for r in hyp if r["plan"])
    measured = {r["text"].lower() for r in reqs if r["plan"] and r["plan"][0]["name"] == "measure_spectrum"}
    assert any("stars" in t and "old" in t for t in measured) and any("summar" in t for t in measured)
    assert any("quasar" in t for t in measured)  # a yes/no about the object's nature: measured, then decided


def test_one_generator_version_and_the_earlier_ones_from_their_commit():
    """The generator is one version in code; versions 1-5 (planners v1-v6) come back from the commit
    that held them, exactly (v1's requests keep the hash pinned when v1 was in code)."""
    import hashlib
    import inspect
    import json

    assert "version" not in inspect.signature(pdata.generate).parameters
    try:
        old = ev.legacy_generate(300, 0, 1)
    except ValueError as exc:  # a checkout without history: nothing to compare against
        pytest.skip(str(exc))
    assert hashlib.sha256(json.dumps(old, ensure_ascii=False).encode()).hexdigest()[:16] == "eab896026aba4acc"


HELD_OUT_SETS = list(ev.HELD_OUT_SETS.values())


@pytest.mark.parametrize("path", HELD_OUT_SETS, ids=lambda p: p.stem)
def test_held_out_phrasings_are_never_training_requests(path):
    held = ev.held_out_texts(path)
    assert len(held) >= 60
    try:
        trained = ev.training_requests(bundled_adapter_dir("bundled-planner"))  # rebuilt from the card alone in CI
    except ValueError as exc:  # the warm start's data need the repository's history
        pytest.skip(str(exc))
    assert len(trained) >= 1000
    pdata.assert_not_in(held, trained)
    with pytest.raises(ValueError, match="held-out phrasings are in the training"):
        pdata.assert_not_in(held, [{"text": held[3].upper() + " ?"}])


def test_retired_held_out_sets_are_training_requests_and_no_longer_held_out():
    """A set retired into training after its evaluation is trained on in full, and is never again listed
    (or scored by default) as held out."""
    written = {pdata._norm(it["text"]) for it in pdata.written_items()}
    assert ev.RETIRED_SETS and not set(ev.RETIRED_SETS) & set(ev.HELD_OUT_SETS)
    for name in ev.RETIRED_SETS:
        texts = ev.held_out_texts(name)
        assert len(texts) == 64 and all(pdata._norm(t) in written for t in texts)


def test_an_analysed_sdss_id_comes_from_the_message_or_this_turns_lookup():
    from speclm.agent.planner import analysis_target

    lookup = [("sdss_lookup", {"plate": 412, "mjd": 51871, "fiberid": 233})]
    text = "Fetch 0412-51871-0233 and then run the full analysis on its spectrum, please."
    assert analysis_target({"sdss_id": "0412-51871-0233"}, text, lookup) == {"sdss_id": "0412-51871-0233"}
    # a word the planner copied from the lookup's read-back line (fifteenth set) is no id: the lookup's is used
    assert analysis_target({"sdss_id": "GALAXY"}, text, lookup) == {"sdss_id": "0412-51871-0233"}
    assert analysis_target({"sdss_id": "0266-51630-0461"}, text, lookup) == {"sdss_id": "0412-51871-0233"}
    assert analysis_target({"sdss_id": "GALAXY"}, "analyse it", []) == {}


# -- the scorer can fail -----------------------------------------------------------------------
def _oracle(items):
    by_text = {it["text"]: it for it in items}

    def propose(ctx, text, done):
        plan = by_text[text]["plan"]
        return pt.step_answer(*(plan[len(done)]["name"], plan[len(done)]["args"]) if len(done) < len(plan) else (None,))

    return propose


def test_scorer_rewards_the_right_plan_and_punishes_constants():
    items = ev.load_held_out()
    assert ev.score_planner(_oracle(items), items)["right"] == 1.0
    const = ev.score_planner(lambda c, t, d: ' cosmology {"z": 0.1}' if not d else " done", items)
    assert const["right"] < 0.1
    garbage = ev.score_planner(lambda c, t, d: "Sure! The redshift is 0.1.", items)
    assert garbage["right"] == 0 and garbage["fallback"] == 1.0
    assert ev.args_match({"lines": ["Hβ", "[OIII] 5007"], "z": 0.3}, {"z": 0.3, "lines": ["OIII5008", "Hbeta"]})
    assert not ev.args_match({"z": 0.31}, {"z": 0.3})
    # a schema default may be left out or written on either side (a request naming Planck18 is
    # answered right with or without it); any other cosmology must be there
    assert ev.args_match({"z": 3}, {"z": 3.0, "cosmology": "Planck18"})
    assert ev.args_match({"z": 3, "cosmology": "Planck18"}, {"z": 3.0, "cosmology": "Planck18"})
    assert not ev.args_match({"z": 3}, {"z": 3.0, "cosmology": "WMAP9"})
    assert not ev.args_match({"z": 3, "cosmology": "WMAP9"}, {"z": 3.0})
    assert ev.args_match({"z": 3, "cosmology": "Planck18"}, {"z": 3.0})


def test_an_sdss_analysis_and_the_lookup_it_runs_are_one_plan_and_nothing_else_is():
    """analyze_spectrum of an SDSS object runs that object's lookup itself: [lookup X, analyze X] and
    [analyze X] score the same, whichever the expected plan writes; a lookup of another object, or
    a lookup that is not followed by the analysis, stays a call of its own."""
    x = {"plate": 412, "mjd": 51871, "fiberid": 233}
    both = [("sdss_lookup", x), ("analyze_spectrum", {"sdss_id": "0412-51871-0233"})]
    assert ev.canonical_plan(both) == both[1:]
    assert ev.canonical_plan([("sdss_lookup", {"identifier": "SDSS 0412-51871-0233"}), both[1]]) == both[1:]
    other = [("sdss_lookup", dict(x, fiberid=234)), both[1]]
    assert ev.canonical_plan(other) == other
    assert ev.canonical_plan([("sdss_lookup", x), ("cosmology", {"z": 0.1})]) == [("sdss_lookup", x), ("cosmology", {"z": 0.1})]
    items = [{"text": "fetch 0412-51871-0233 and measure its redshift", "context": {},
              "plan": [{"name": "analyze_spectrum", "args": {"sdss_id": "0412-51871-0233"}}]},
             {"text": "look up 0412-51871-0233, then analyse it", "context": {},
              "plan": [{"name": "sdss_lookup", "args": x}, {"name": "analyze_spectrum", "args": {"sdss_id": "0412-51871-0233"}}]}]
    lookup = pt.step_answer("sdss_lookup", x)
    analyse = pt.step_answer("analyze_spectrum", {"sdss_id": "0412-51871-0233"})

    def with_lookup(ctx, text, done):
        return [lookup, analyse, " done"][min(len(done), 2)]

    def alone(ctx, text, done):
        return [analyse, " done"][min(len(done), 1)]

    assert ev.score_planner(with_lookup, items)["right"] == 1.0
    assert ev.score_planner(alone, items)["right"] == 1.0
    wrong = pt.step_answer("sdss_lookup", dict(x, fiberid=234))
    assert ev.score_planner(lambda c, t, d: [wrong, analyse, " done"][min(len(d), 2)], items)["right"] == 0.0


def test_a_call_the_attached_files_analysis_already_made_is_the_same_plan_and_nothing_else_is():
    """The analysis of an attached file measures it and runs the default cosmology at the z it finds:
    [analyze, measure at that z] and [analyze] score the same, whichever is expected; a measurement at
    another z, a cosmology with lines or a named cosmology, a survey call, or a missing analysis do not."""
    out = {"z": 0.0893, "spectype": "GALAXY"}
    an = ("analyze_spectrum", {})
    meas = ("measure_spectrum", {"z": 0.0893, "spectype": "GALAXY"})
    assert ev.canonical_plan([an, meas], [out, None]) == [an]
    assert ev.canonical_plan([an, ("cosmology", {"z": 0.0893})], [out, None]) == [an]
    keep = [[an, ("measure_spectrum", {"z": 0.09, "spectype": "GALAXY"})],
            [an, ("measure_spectrum", {"z": 0.0893, "spectype": "QSO"})],
            [an, ("cosmology", {"z": 0.0893, "lines": ["Halpha"]})],
            [an, ("cosmology", {"z": 0.0893, "cosmology": "WMAP9"})],
            [an, ("survey_reach", {"z": 0.0893, "spectype": "GALAXY"})]]
    for plan in keep:
        assert ev.canonical_plan(plan, [out, None]) == plan, plan
    assert ev.canonical_plan([meas], [None]) == [meas]
    # after a redshift search the z may differ from the analysis': a measurement then is a call of its own
    search = ("find_redshift", {})
    assert ev.canonical_plan([an, search, meas], [out, out, None]) == [an, search, meas]
    items = [{"text": "here's a new one, is it an AGN?", "context": {"attached": True},
              "plan": [{"name": "analyze_spectrum", "args": {}, "output": out},
                       {"name": "measure_spectrum", "args": {"z": 0.0893, "spectype": "GALAXY"}}]},
             {"text": "here's a new one, what is it?", "context": {"attached": True},
              "plan": [{"name": "analyze_spectrum", "args": {}, "output": out}]}]
    analyse, measure = pt.step_answer("analyze_spectrum", {}), pt.step_answer(*meas)
    assert ev.score_planner(lambda c, t, d: [analyse, " done"][min(len(d), 1)], items)["right"] == 1.0
    assert ev.score_planner(lambda c, t, d: [analyse, measure, " done"][min(len(d), 2)], items)["right"] == 1.0
    other = pt.step_answer("measure_spectrum", {"z": 0.5, "spectype": "GALAXY"})
    assert ev.score_planner(lambda c, t, d: [analyse, other, " done"][min(len(d), 2)], items)["right"] == 0.0
    assert ev.score_planner(lambda c, t, d: [measure, " done"][min(len(d), 1)], items)["right"] == 0.0


def test_an_optional_argument_the_schema_refuses_is_dropped_and_read_from_the_message():
    """The model's "Planck17" for "a flat cosmology rather than Planck" is dropped and the message's own
    cosmology used; a line list of cosmology names likewise; a valid call, or a refusal of a required
    argument, is left as it is (the fallback decides)."""
    from speclm.agent.planner import repaired_arguments

    tools, st = ev._tools(), {"z": 0.5, "spectype": "GALAXY", "spectrum": {"path": "x.fits"}}
    got, note = repaired_arguments("cosmology", {"z": 0.33, "cosmology": "Planck17"}, tools, st,
                                   "the distances in a simple flat cosmology rather than Planck")
    assert got == {"z": 0.33, "cosmology": "flat"} and "Planck17" in note
    got, _ = repaired_arguments("cosmology", {"z": 0.07, "lines": ["Planck15"]}, tools, st, "its age in Planck15")
    assert got == {"z": 0.07, "cosmology": "Planck15"}
    assert repaired_arguments("cosmology", {"z": 0.3, "cosmology": "WMAP9"}, tools, st, "in WMAP9") == (
        {"z": 0.3, "cosmology": "WMAP9"}, None)
    bad = {"z": "far", "cosmology": "Planck17"}
    assert repaired_arguments("cosmology", bad, tools, st, "distance?") == (bad, None)


# -- chat-template tool planning (Llama-3.1 / Hermes outputs) ------------------------------------
def test_template_tool_calls_are_parsed():
    llama = '<|python_tag|>{"name": "cosmology", "parameters": {"z": 0.3, "lines": ["Halpha"]}}'
    assert [(c["name"], c["args"]) for c in parse_template_calls(llama)] == [("cosmology", {"z": 0.3, "lines": ["Halpha"]})]
    hermes = ('<tool_call>\n{"name": "sdss_lookup", "arguments": {"plate": 266, "fiberid": 461}}\n</tool_call>'
              '<tool_call>{"name": "predict_redshift", "arguments": "{}"}</tool_call>')
    assert [c["name"] for c in parse_template_calls(hermes)] == ["sdss_lookup", "predict_redshift"]
    assert parse_template_calls("The galaxy is far away.") == []


TOOLS_TEMPLATE = (  # a minimal Jinja chat template with tool support, in the style of Llama-3.1's
    "{% if tools %}<|im_start|>system\nTools:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_chat_template_planner_renders_the_tools_schemas():
    from speclm.finetune.runtime import load_tokenizer

    tok = load_tokenizer("embedded")
    backend = type("B", (), {"runtime": type("R", (), {"tokenizer": tok})()})()
    tools = build_tools(predict=lambda s: {})
    with pytest.raises(Exception, match="no tool support"):
        ChatTemplatePlanner(backend).render({"text": "hi"}, tools)
    tok.chat_template = TOOLS_TEMPLATE
    text = ChatTemplatePlanner(backend).render({"text": "where is Hα at z=0.3?", "z": 0.1}, tools)
    assert '"name": "cosmology"' in text and '"radius_arcsec"' in text and "where is Hα at z=0.3?" in text


# -- the bundled planner, for real ---------------------------------------------------------------
def _need_planner():
    if not (bundled_adapter_dir("bundled-planner") / "adapter_config.json").is_file():
        pytest.skip("the bundled planner adapter is missing")


@pytest.fixture(scope="module")
def embedded_backend():
    from speclm.agent.llm import LocalBackend

    _need_planner()
    return LocalBackend("embedded", "bundled")


@pytest.mark.slow
def test_bundled_planner_on_held_out_phrasings(embedded_backend):
    from speclm.agent.planner import EmbeddedPlanner

    items = ev.load_held_out()[::2]  # a fixed half (every other item) keeps the suite short
    res = ev.score_planner(EmbeddedPlanner(embedded_backend).propose, items)
    assert res["right"] >= 0.85, [(r["text"], r["got"]) for r in res["rows"] if not r["right"]]
    assert res["fallback"] <= 0.1  # an untrained LoRA falls back on every request


@pytest.mark.slow
def test_planned_lookup_then_predict_and_a_multi_step_follow_up(embedded_backend, tmp_path, sdss_cfg, sdss_objects):
    from speclm.agent.assistant import AgentConfig, Assistant

    obj = sdss_objects[0]
    a = Assistant(AgentConfig(planner="model", sdss=sdss_cfg, checkpoint_db=str(tmp_path / "p.sqlite")),
                  backend=embedded_backend)
    r = a.turn("t", f"Look up {obj.name} and predict its redshift with the model")
    assert r.planner == "embedded" and r.route == "lookup" and r.error is None, r.reply
    assert [e["name"] for e in r.tool_trace] == ["sdss_lookup", "predict_redshift"]
    assert r.tool_trace[0]["input"] == {"plate": obj.plate, "mjd": obj.mjd, "fiberid": obj.fiberid}
    assert r.tool_trace[1]["input"]["spectrum_path"].endswith(f"{obj.name}.fits")  # filled from the lookup
    assert f"{obj.z:.5f}" in r.reply and r.prediction is not None
    st = a.state("t")
    assert st["z"] == pytest.approx(obj.z) and st["z_source"] == "SDSS catalog"
    f = a.turn("t", "How far is it, and where would Hβ land?")
    assert f.planner == "embedded" and [e["name"] for e in f.tool_trace] == ["cosmology"], f.tool_trace
    assert f.tool_trace[0]["input"]["z"] == pytest.approx(obj.z, abs=1e-6)
    assert f.cosmology is not None and "Hβ" in f.reply


@pytest.mark.slow
def test_unusable_proposal_falls_back_to_the_rules(embedded_backend, tmp_path):
    """An untrained planner LoRA (peft's init: the bare base model) writes prose, not a call: the
    proposal is not run and the rules answer the turn, saying so in the record."""
    from speclm.agent.assistant import AgentConfig, Assistant
    from speclm.finetune.presets import get_preset
    from speclm.finetune.train import init_adapter

    untrained = init_adapter(get_preset("planner"), tmp_path / "untrained-planner", runtime=None)
    a = Assistant(AgentConfig(planner="model", planner_adapter=str(untrained),
                              checkpoint_db=str(tmp_path / "f.sqlite")), backend=embedded_backend)
    r = a.turn("t", "What is the lookback time at z = 0.3?")
    assert r.planner == "rules (fallback)" and r.route == "cosmology" and r.cosmology["z"] == pytest.approx(0.3)


def test_cosmology_schema_refuses_names_the_line_list_does_not_know():
    """A planner's 'CIII1549' (C III] is at 1909 Å) or 'QSO' is refused by the schema, so the call never
    reaches the tool; every spelling the line list knows passes."""
    tools = build_tools(predict=lambda s: {})
    err = validate_call("cosmology", {"z": 2.3, "lines": ["CIV1549", "CIII1549"]}, tools, {})
    assert err and "CIII1549" in err and "CIV1549" not in err.split("known:")[0]
    assert validate_call("cosmology", {"z": 2.3, "lines": ["QSO"]}, tools, {})
    assert validate_call("cosmology", {"z": 2.3, "lines": ["C III]", "Hα", "[O III] 5007", "Dn4000"]}, tools, {}) is None
    # a cosmology the tool does not have ("book two nights on the APO 3.5m" -> 'APO3500') is refused too
    err = validate_call("cosmology", {"z": 2.2, "cosmology": "APO3500"}, tools, {})
    assert err and "unknown cosmology" in err
    assert validate_call("cosmology", {"z": 2.2, "cosmology": "planck-15"}, tools, {}) is None
    assert validate_call("cosmology", {"z": 2.2, "cosmology": "flat"}, tools, {}) is None


def test_the_default_configuration_scorer_turns_red_on_a_constant_planner():
    """`speclm eval planner`'s default column drives the agent's own FallbackPlanner: a model planner that
    always calls the same tool scores far below the rules, and its attached files are still analysed."""
    from langchain_core.messages import AIMessage

    from speclm.agent.planner import FallbackPlanner

    class Constant:
        name = "constant"

        def plan(self, state, tools):
            return AIMessage(content="", tool_calls=[{"name": "find_redshift", "args": {}, "id": "c1"}])

    items = ev.load_held_out(ev.HELD_OUT_SETS["seventh"])
    const = ev.score_agent_planner(FallbackPlanner(Constant()), items)
    rules = ev.score_rules(items)
    assert const["right"] < 0.3 < rules["right"], (const["right"], rules["right"])
    # a constant that cannot even run (a z no source gives) is not run: the rules take those turns, counted
    class Invented(Constant):
        def plan(self, state, tools):
            return AIMessage(content="", tool_calls=[{"name": "cosmology", "args": {"z": 0.123456}, "id": "c2"}])

    inv = ev.score_agent_planner(FallbackPlanner(Invented()), items)
    assert inv["fallback"] > 0.9 and inv["right"] == rules["right"]
    attached = [r for r, it in zip(const["rows"], items) if (it.get("context") or {}).get("attached")]
    assert attached and all(r["got"][0][0] == "analyze_spectrum" and r["fallback"] for r in attached)


def test_a_message_is_split_into_the_requests_it_makes():
    """"A, then B" and "A; B" are two requests in order; a list inside one request, a courtesy and a
    second sentence that only elaborates stay one (the planner plans each part as its own message)."""
    from speclm.agent.plan_text import request_parts

    assert request_parts("comoving distance, then the BPT class please") == ["comoving distance", "the BPT class please"]
    assert request_parts("sigma_v pls; then survey reach") == ["sigma_v pls", "survey reach"]
    assert request_parts("luminosity distance for it, and where does Hβ land?") == [
        "luminosity distance for it", "where does Hβ land?"]
    assert request_parts("check z=0.3 and then rerun the template fit") == ["check z=0.3", "rerun the template fit"]
    assert request_parts("Is there an AGN? And separately, what's D_L in WMAP9?") == ["Is there an AGN",
                                                                                 "what's D_L in WMAP9?"]
    assert request_parts("1) lookback time 2) which surveys could see it") == ["lookback time", "which surveys could see it"]
    assert request_parts("BPT class please. In addition, the angular scale") == ["BPT class please", "the angular scale"]
    assert request_parts("Which surveys would pick it up? After that, give me the Dn4000.") == [
        "Which surveys would pick it up", "give me the Dn4000"]
    assert request_parts("measure the line fluxes and tell me how far away it is") == [
        "measure the line fluxes", "tell me how far away it is"]
    assert request_parts("Dn4000 pls + the angular diameter distance") == ["Dn4000 pls", "the angular diameter distance"]
    assert request_parts("kpc per arcsec here vs if it were at z = 1.2?") == ["kpc per arcsec here", "if it were at z = 1.2?"]
    assert request_parts("D_L in WMAP9 vs in Planck18") == ["D_L in WMAP9", "in Planck18"]
    assert len(request_parts("[NII]/Ha vs [OIII]/Hb, where does it sit?")) == 1  # a BPT ratio pair is one request
    assert request_parts("redshift please + which surveys could observe it?") == [
        "redshift please", "which surveys could observe it?"]
    for one in ("where do Halpha and [NII] 6585 land in the observed frame?", "if it were at z = 1. what's D_L?",
                "second-order effects aside, how far is it?", "z=1.5. Next time more",
                "is this really a star? the template says so but I'm not sure",
                "look up 0266-51630-0461 and measure its redshift", "NII/Ha, SII/Ha and the WHAN class",
                "is the [OIII]+Hbeta blend resolved?"):
        assert request_parts(one) == [one.strip(" ?.")] or len(request_parts(one)) == 1, request_parts(one)


def test_stated_arguments_are_completed_and_repeated_requests_are_one_call():
    """A cosmology or a cone radius the message names is added to a call that left it out (only when
    unambiguous); two parts that ask the same tool at the same z are one call with both arguments."""
    from speclm.agent.plan_text import request_parts
    from speclm.agent.planner import merge_arguments, same_call, text_arguments

    assert text_arguments("cosmology", {"z": 0.05}, "distance modulus at z=0.05 in WMAP9")["cosmology"] == "WMAP9"
    assert text_arguments("cosmology", {"z": 0.05}, "use planck 15 please")["cosmology"] == "Planck15"
    assert "cosmology" not in text_arguments("cosmology", {"z": 0.05}, "Planck15 or WMAP9, which is larger?")
    assert text_arguments("cosmology", {"z": 0.05, "cosmology": "Planck18"}, "WMAP9")["cosmology"] == "Planck18"
    two = "lookback time in WMAP9 first, then the same thing in Planck18"
    a, b = (text_arguments("cosmology", {"z": 0.3}, two, part) for part in request_parts(two))
    assert (a["cosmology"], b["cosmology"]) == ("WMAP9", "Planck18")
    assert not same_call("cosmology", a, "cosmology", b)  # two named cosmologies: two calls
    assert same_call("cosmology", a, "cosmology", {"z": 0.3, "lines": ["NaD"]})
    # a position the message states goes to survey_reach; two positions are ambiguous
    got = text_arguments("survey_reach", {"z": 0.66}, "at RA 34.52 Dec -5.13 (XMM-LSS), could BOSS reach it?")
    assert (got["ra"], got["dec"]) == (34.52, -5.13)
    assert "ra" not in text_arguments("survey_reach", {"z": 0.6}, "RA 34.5 Dec -5.1 or RA 150.1, Dec +2.2?")
    # the thread's object type, unless the message names another
    from speclm.agent.planner import thread_arguments
    star = {"z": 0.0, "spectype": "STAR"}
    assert thread_arguments("survey_reach", {"z": 0.0, "spectype": "GALAXY"}, "would LAMOST get this star?", star)[
        "spectype"] == "STAR"
    assert thread_arguments("measure_spectrum", {"z": 0.0, "spectype": "GALAXY"}, "its lines?", star)["spectype"] == "STAR"
    assert thread_arguments("survey_reach", {"z": 0.0, "spectype": "QSO"}, "if it were a quasar?", star)["spectype"] == "QSO"
    assert thread_arguments("survey_reach", {"z": 1.2, "spectype": "GALAXY"}, "at z = 1.2?", star)["spectype"] == "GALAXY"
    got = text_arguments("sdss_lookup", {"ra": 185.7, "dec": 15.8}, "anything within 10 arcsec of RA 185.7, Dec 15.8?")
    assert got["radius_arcsec"] == 10.0
    assert "radius_arcsec" not in text_arguments("sdss_lookup", {"plate": 266}, "plate 266 within 10 arcsec")
    got = text_arguments("survey_reach", {"z": 0.44, "spectype": "GALAXY"}, "it's r = 20.4, g=21.1 in our imaging; which surveys?")
    assert got["magnitudes"] == {"r": 20.4, "g": 21.1}
    assert "magnitudes" not in text_arguments("survey_reach", {"z": 0.3}, "at z = 0.3, which surveys could see it?")
    got = text_arguments("survey_reach", {"z": 0.42}, "which surveys can reach it? mags u 21.9, g 20.7, r 19.95, i 19.6")
    assert got["magnitudes"] == {"u": 21.9, "g": 20.7, "r": 19.95, "i": 19.6}
    assert "magnitudes" not in text_arguments("survey_reach", {"z": 0.42}, "which surveys, given a 3.5 m telescope and r 2.5 hours?")
    # a position the planner wrote under magnitudes goes to ra / dec, and is no magnitude
    got = text_arguments("survey_reach", {"z": 0.74, "magnitudes": {"ra": 213.7, "dec": 52.4}},
                         "Could DESI have targeted it? It sits at RA 213.7, Dec +52.4.")
    assert got == {"z": 0.74, "ra": 213.7, "dec": 52.4}
    got = text_arguments("survey_reach", {"z": 0.74, "magnitudes": {"ra": 213.7, "r": 20.1}}, "RA 213.7, r = 20.1")
    assert got == {"z": 0.74, "ra": 213.7, "magnitudes": {"r": 20.1}}
    # "a flat cosmology" names one; a flat continuum does not
    assert text_arguments("cosmology", {"z": 0.25}, "luminosity distance in a flat cosmology?")["cosmology"] == "flat"
    assert text_arguments("cosmology", {"z": 0.25}, "assume flat ΛCDM, what is D_A?")["cosmology"] == "flat"
    assert "cosmology" not in text_arguments("cosmology", {"z": 0.25}, "the continuum is flat; how far away is it?")
    got = text_arguments("sdss_lookup", {"ra": 150.1, "dec": 2.2, "radius_arcsec": 0.5}, "within 0.5 arcmin of RA 150.1, Dec 2.2")
    assert got["radius_arcsec"] == 30.0  # arcmin in the text: converted, the copied bare number replaced
    from speclm.agent.planner import ungrounded_argument
    text = "within 0.5 arcmin of RA 150.1, Dec 2.2"
    assert ungrounded_argument("sdss_lookup", got, {"text": text}) is None  # 30 = 60 x 0.5 is grounded
    assert ungrounded_argument("sdss_lookup", dict(got, radius_arcsec=31.0), {"text": text})
    assert text_arguments("sdss_lookup", {"ra": 150.1, "dec": 2.2, "radius_arcsec": 5.0}, "5 arcsec of RA 150.1, Dec 2.2")[
        "radius_arcsec"] == 5.0
    assert same_call("cosmology", {"z": 0.05}, "cosmology", {"z": 0.05, "lines": ["NaD"]})
    assert not same_call("cosmology", {"z": 0.05}, "cosmology", {"z": 1.0})
    assert not same_call("cosmology", {"z": 0.05}, "measure_spectrum", {"z": 0.05})
    assert merge_arguments({"z": 0.05, "lines": ["Halpha"]}, {"z": 0.0843, "lines": ["NaD", "Halpha"]}) == {
        "z": 0.05, "lines": ["Halpha", "NaD"]}


def test_a_general_question_gets_no_tool_and_a_question_about_the_object_does():
    """A tool call proposed for a general astronomy question is not run (this object's numbers do not
    answer it), and a 'no call' for it is not overridden by the rules; a question about the object is
    still planned to its tool."""
    from langchain_core.messages import AIMessage

    from speclm.agent.planner import FallbackPlanner, general_question

    assert general_question("in general terms, what does a BPT diagram plot?")
    assert general_question("what exactly is a LINER?")
    assert general_question("generally speaking, why do LINERs have strong [OI]? not about this object, just wondering")
    assert not general_question("is it a LINER?") and not general_question("what is a good distance for this one?")
    assert not general_question("in general, is this object a LINER?")
    assert general_question("in general, why do type 1 quasars show broad lines? is it just orientation?")  # "it": the phenomenon

    class Measures:
        name = "measures"

        def plan(self, state, tools):
            if any(getattr(m, "tool_calls", None) for m in state["messages"]):
                return AIMessage(content="")
            return AIMessage(content="", tool_calls=[{"name": "measure_spectrum", "args": {"z": 0.1}, "id": "c1"}])

    items = [{"text": "in general, what is a Seyfert?", "context": {"z": 0.1, "z_source": "search",
                                                                    "spectype": "GALAXY", "has_spectrum": True},
              "plan": []},
             {"text": "is this galaxy a Seyfert?", "context": {"z": 0.1, "z_source": "search", "spectype": "GALAXY",
                                                               "has_spectrum": True},
              "plan": [{"name": "measure_spectrum", "args": {"z": 0.1}}]}]
    res = ev.score_agent_planner(FallbackPlanner(Measures()), items)
    assert [r["right"] for r in res["rows"]] == [True, True], res["rows"]


def test_read_spectrum_paths_are_compared_and_analysis_paths_are_not():
    """The default-configuration scorer keeps read_spectrum's path (the planner copies it from the
    message) and drops only the path the agent fills in for an analysis."""
    from langchain_core.messages import AIMessage

    from speclm.agent.planner import FallbackPlanner

    class Reads:
        name = "reads"

        def __init__(self, path):
            self.path = path

        def plan(self, state, tools):
            if any(getattr(m, "tool_calls", None) for m in state["messages"]):
                return AIMessage(content="")
            return AIMessage(content="", tool_calls=[{"name": "read_spectrum", "args": {"path": self.path}, "id": "r1"}])

    items = [{"text": "read /data/a.fits", "context": None, "plan": [{"name": "read_spectrum", "args": {"path": "/data/a.fits"}}]}]
    assert ev.score_agent_planner(FallbackPlanner(Reads("/data/a.fits"), validate=False), items)["right"] == 1.0
    assert ev.score_agent_planner(FallbackPlanner(Reads("/data/b.fits"), validate=False), items)["right"] == 0.0


@pytest.mark.slow
def test_two_requests_in_one_message_are_both_planned(embedded_backend):
    """The default configuration plans both halves of "A, then B" and merges two requests to one tool
    at one redshift into one call — all calls the model's."""
    from speclm.agent.planner import EmbeddedPlanner, FallbackPlanner

    ctx = {"z": 0.0734, "z_source": "search", "spectype": "GALAXY", "has_spectrum": True}
    items = [{"text": "what's the lookback time, then its BPT class?", "context": ctx,
              "plan": [{"name": "cosmology", "args": {"z": 0.0734}},
                       {"name": "measure_spectrum", "args": {"z": 0.0734, "spectype": "GALAXY"}}]},
             {"text": "comoving distance in WMAP9, and where does H-alpha land?", "context": ctx,
              "plan": [{"name": "cosmology", "args": {"z": 0.0734, "cosmology": "WMAP9", "lines": ["Halpha"]}}]}]
    res = ev.score_agent_planner(FallbackPlanner(EmbeddedPlanner(embedded_backend)), items)
    assert res["right"] == 1.0 and res["fallback"] == 0.0, [(r["text"], r["got"]) for r in res["rows"]]


def test_one_request_gets_one_answer_and_a_stated_redshift_is_the_users():
    """After a call that answers a one-request message, a second tool the planner adds unasked is not run
    (a cosmology question gets no measure_spectrum); after an analysis of an attached file the request
    goes on to what it asked. A redshift the request states ("test z = 2.03", "if it were at z = 1.5")
    replaces the thread's z that the planner copied; numbers with units are not redshifts."""
    from speclm.agent.plan_text import DONE, format_call, request_parts
    from speclm.agent.planner import EmbeddedPlanner, FallbackPlanner, stated_redshifts, text_arguments

    assert stated_redshifts("I reckon it's really at 1.62. Can you test 1.62?") == [1.62]
    assert stated_redshifts("test z=2.03 against the lines") == [2.03]
    assert stated_redshifts("where does Halpha land at 6563 A, within 5 arcsec, checking 3 lines?") == []
    assert text_arguments("redshift_check", {"z0": 2.031}, "", "Test z=2.03 against the lines")["z0"] == 2.03
    assert text_arguments("cosmology", {"z": 0.318}, "", "if it sat at z=1.5 how far would it be?")["z"] == 1.5
    assert text_arguments("cosmology", {"z": 0.318}, "", "lookback time?")["z"] == 0.318
    assert request_parts("is it passive and how far away is it?") == ["is it passive", "how far away is it?"]
    assert request_parts("is it a quasar? if so where do Lya and CIV fall") == ["is it a quasar", "where do Lya and CIV fall"]
    assert request_parts("measure the fluxes and after that the surveys") == ["measure the fluxes", "the surveys"]
    assert stated_redshifts("test z0=0.2300 and then rerun the fit") == [0.23]
    # no object yet: a later request without a z of its own takes the one the message states
    assert text_arguments("cosmology", {"z": 0.0}, "D at z=0.05 in WMAP9, and where does NaD land?",
                          "where does NaD land?", None)["z"] == 0.05
    assert len(request_parts("where do Halpha and Hbeta fall?")) == 1

    class Eager(EmbeddedPlanner):  # a planner that always adds a measurement after its first call
        def __init__(self, first):
            super().__init__(backend=None)
            self.first = first

        def propose(self, context, text, done=()):
            if not done:
                return format_call(*self.first)
            if len(done) == 1:
                z = 0.3 if "z=0.3" in context else 1.0
                return format_call("measure_spectrum", {"z": z, "spectype": "GALAXY"})
            return DONE

    ctx = {"z": 0.3, "z_source": "search", "spectype": "GALAXY", "has_spectrum": True}
    one = [{"text": "lookback time?", "context": ctx, "plan": [{"name": "cosmology", "args": {"z": 0.3}}]}]
    res = ev.score_agent_planner(FallbackPlanner(Eager(("cosmology", {"z": 0.3}))), one)
    assert res["right"] == 1.0, res["rows"]
    # the same planner after an attached file's analysis: the follow-up is the request's own
    att = [{"text": "attached; once analysed, is it star-forming?", "context": {"attached": True},
            "plan": [{"name": "analyze_spectrum", "args": {}, "output": {"z": 1.0, "spectype": "GALAXY"}},
                     {"name": "measure_spectrum", "args": {"z": 1.0, "spectype": "GALAXY"}}]}]
    res = ev.score_agent_planner(FallbackPlanner(Eager(("analyze_spectrum", {}))), att)
    assert [c[0] for c in res["rows"][0]["got"]] == ["analyze_spectrum", "measure_spectrum"], res["rows"]


def test_the_scorer_reads_a_doublet_as_its_feature():
    """"[O II]" as the blend (OII) or its blue member (OII3727) is the same feature; Hα is not [N II]."""
    assert ev.args_match({"z": 0.5, "lines": ["OII"]}, {"z": 0.5, "lines": ["OII3727"]}, "cosmology")
    assert not ev.args_match({"z": 0.5, "lines": ["NII6550"]}, {"z": 0.5, "lines": ["Halpha"]}, "cosmology")
    assert not ev.args_match({"z": 0.5, "lines": ["Halpha", "Hbeta"]}, {"z": 0.5, "lines": ["Halpha"]}, "cosmology")
