"""`speclm eval agent`: the YAML scenario suite loads and validates, malformed scenarios are clear
errors, and the suite runs against the real graph on the tiny random base + an untrained adapter —
every scenario that does not measure model quality passes, the z-accuracy scenarios are evaluated,
and a deliberately wrong expectation is reported as FAIL with its reason."""
from __future__ import annotations

import json

import pytest
import yaml
from speclm.evals import scenarios as S

REQUIRED = {"spectrum_upload_z", "followup_cosmology", "sdss_lookup", "bad_file", "off_topic", "ambiguous"}
MODEL_INDEPENDENT = {"followup_cosmology", "sdss_lookup", "bad_file", "off_topic", "ambiguous",
                     "cosmology_current_z", "redshift_check", "adapter_toggle", "adapter_always_text",
                     "grounded_passive", "grounded_star_forming", "grounded_agn"}
SLOW = ("simulated_z",)  # bagpipes: about a minute to build its spectrum on a CPU


@pytest.fixture(scope="module")
def tiny_rt(tmp_path_factory):
    """The tiny random base with an untrained LoRA (init_adapter), loaded once per module."""
    from speclm.finetune.presets import get_preset
    from speclm.finetune.runtime import ModelRuntime
    from speclm.finetune.train import init_adapter

    rt = ModelRuntime.load("tiny", None, dtype="float32")
    rt.attach(str(init_adapter(get_preset("tiny"), tmp_path_factory.mktemp("adapter") / "tiny-redshift", runtime=rt)))
    return rt


def _cfg(**kw) -> S.AgentEvalConfig:
    from speclm.agent.config import AgentConfig

    return S.AgentEvalConfig(agent=AgentConfig(base="tiny", adapter=None, max_new_tokens=4), out=None, **kw)


@pytest.fixture(scope="module")
def suite_report(tiny_rt):
    """The required scenarios (the rest of the suite runs in the slow test below)."""
    pytest.importorskip("ppxf")
    scs = S.select(S.load_scenarios(), only=tuple(sorted(REQUIRED)))
    return S.run_suite(scs, _cfg(), runtime=tiny_rt, progress=False)


# -- loading and validation --------------------------------------------------------------------

def test_bundled_suite_loads_and_validates():
    scs = {s.name: s for s in S.load_scenarios()}
    assert REQUIRED | MODEL_INDEPENDENT <= set(scs)
    assert scs["spectrum_upload_z"].model_dependent and not scs["bad_file"].model_dependent
    assert scs["sdss_lookup"].needs == ("sdss_server",)
    assert scs["adapter_always_text"].adapter_mode == "always"
    z = scs["spectrum_upload_z"].turns[0].expect["z_within"]
    assert {"z": "model", "of": "catalog", "tol": 0.05} in z
    assert any(d.get("when") == "confident" and d["tol"] == 0.002 for d in z)
    assert S.select(list(scs.values()), only=("ambiguous",))[0].name == "ambiguous"
    with pytest.raises(S.ScenarioError, match="no scenario named 'nope'"):
        S.select(list(scs.values()), only=("nope",))


GOOD = {"name": "ok", "turns": [{"text": "hi", "expect": {"route": "chat"}}]}


@pytest.mark.parametrize("patch, message", [
    ({"turns": []}, "non-empty list 'turns'"),
    ({"name": "Bad Name"}, "needs a 'name'"),
    ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
    ({"needs": ["gpu"]}, "unknown need 'gpu'"),
    ({"turns": [{"text": "hi", "expect": {"rout": "chat"}}]}, "turn 1: unknown check 'rout'"),
    ({"turns": [{"text": "hi", "expect": {"route": "chitchat"}}]}, "unknown route 'chitchat'"),
    ({"turns": [{"text": "hi", "expect": {"error": "yes"}}]}, "check 'error': must be true or false"),
    ({"turns": [{"text": "x", "spectrum": "ppxf:M31"}]}, "unknown ppxf spectrum 'M31'"),
    ({"turns": [{"text": "x", "spectrum": "bad:cursed"}]}, "unknown bad-file kind 'cursed'"),
    ({"turns": [{"text": "x", "spectrum": "synthetic:abc"}]}, "synthetic:<z>"),
    ({"turns": [{"expect": {"route": "chat"}}]}, "needs text, a spectrum or an sdss_id"),
    ({"turns": [{"text": "x", "expect": {"z_within": {"z": "model", "tol": 2}}}]}, r"tol must be a number in \[0, 1\)"),
    ({"turns": [{"text": "x", "expect": {"z_within": {"z": "guess", "tol": 0.1}}}]}, "z must be one of"),
    ({"turns": [{"text": "x", "expect": {"reply_contains_tool": "cosmology.age"}}]}, "unknown tool value"),
    ({"turns": [{"text": "x", "expect": {"reply_contains_tool": "cosmology.lines.Hzeta.observed_A"}}]},
     "unknown line 'Hzeta'"),
    ({"turns": [{"text": "Look up {sdss[0].name}"}]}, "needs 'needs: sdss_server'"),
    ({"needs": "sdss_server", "turns": [{"text": "Look up {sdss[9].name}"}]}, "serves only 4 objects"),
    ({"adapter_mode": "sometimes"}, "adapter_mode must be"),
])
def test_malformed_scenario_is_a_clear_error(patch, message):
    with pytest.raises(S.ScenarioError, match=message) as exc:
        S.parse_scenario({**GOOD, **patch}, "my.yaml")
    assert str(exc.value).startswith("my.yaml")


def test_malformed_files(tmp_path):
    (tmp_path / "a.yaml").write_text("name: [unclosed\n")
    with pytest.raises(S.ScenarioError, match="not valid YAML"):
        S.load_scenarios(tmp_path / "a.yaml")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump([GOOD]))
    with pytest.raises(S.ScenarioError, match="'ok' is also used in"):
        S.load_scenarios(tmp_path)
    with pytest.raises(S.ScenarioError, match="does not exist"):
        S.load_scenarios(tmp_path / "missing")


# -- running the suite on the tiny model ------------------------------------------------------

def test_suite_on_tiny_model(suite_report):
    rep = suite_report
    by_name = {r["name"]: r for r in rep["scenarios"]}
    assert set(by_name) == REQUIRED
    for name in REQUIRED & MODEL_INDEPENDENT:
        fails = [c for c in by_name[name]["checks"] if c["status"] != S.PASS]
        assert by_name[name]["status"] == S.PASS, fails
    # the z-accuracy scenario is evaluated (not necessarily passed by a random model)
    z_rows = {c["check"]: c for c in by_name["spectrum_upload_z"]["checks"] if c["check"].startswith("z_within")}
    assert set(z_rows) == {"z_within:model~catalog", "z_within:trusted~catalog|confident"}
    model = z_rows["z_within:model~catalog"]
    assert model["status"] in (S.PASS, S.FAIL) and "model z=" in model["detail"] and model["model_dependent"]
    assert z_rows["z_within:trusted~catalog|confident"]["status"] in (S.PASS, S.FAIL, S.SKIP)
    other = [c for c in by_name["spectrum_upload_z"]["checks"] if not c["check"].startswith("z_within")]
    assert other and all(c["status"] == S.PASS for c in other)  # route, tools, adapter, quoted numbers
    assert rep["ok"] == (rep["summary"]["fail"] == 0)
    table = S.format_table(rep)
    assert table.splitlines()[0].split()[:5] == ["scenario", "turn", "check", "result", "detail"]
    assert "bad_file" in table and "reply_contains_tool" in table and "scenarios" in table.splitlines()[-1]
    # the follow-up quotes the cosmology tool's lookback time, as agent/replies.py formats it
    from speclm.agent.replies import fmt_gyr

    turn2 = by_name["followup_cosmology"]["turns"][1]["result"]
    assert fmt_gyr(turn2["cosmology"]["lookback_gyr"]) in turn2["reply"]
    json.dumps(rep)  # JSON-able as is


@pytest.mark.slow
def test_rest_of_suite_on_tiny_model(tiny_rt):
    """Everything not in the fast test; model-independent scenarios must pass, the model-dependent
    ones (z accuracy, incl. the bagpipes-simulated spectrum) must be evaluated or skipped."""
    pytest.importorskip("ppxf")
    scs = S.select(S.load_scenarios(), exclude=tuple(sorted(REQUIRED)))
    rep = S.run_suite(scs, _cfg(), runtime=tiny_rt, progress=False)
    for r in rep["scenarios"]:
        if r["name"] in MODEL_INDEPENDENT:
            assert r["status"] == S.PASS, [c for c in r["checks"] if c["status"] != S.PASS]
        else:
            assert r["model_dependent"] and r["status"] in (S.PASS, S.FAIL, S.SKIP)
            assert not [c for c in r["checks"] if c["check"] == "runner"], r["checks"]
            assert r["status"] == S.SKIP or any(c["check"].startswith("z_within") for c in r["checks"])


def test_failing_check_reported_with_reason(tiny_rt):
    sc = S.parse_scenario({"name": "wrong", "turns": [
        {"text": "What is the capital of France?",
         "expect": {"route": "cosmology", "reply_contains": "zebra", "no_tools": True}},
        {"text": "lookback time at z = 0.2",
         "expect": {"z_within": {"z": "cosmology", "of": 0.25, "tol": 0.01}}}]})
    rep = S.run_suite([sc], _cfg(), runtime=tiny_rt, progress=False)
    rows = {(c["turn"], c["check"]): c for c in rep["checks"]}
    assert rows[(1, "route")]["status"] == S.FAIL and "route=chat" in rows[(1, "route")]["detail"]
    assert rows[(1, "reply_contains")]["status"] == S.FAIL and "zebra" in rows[(1, "reply_contains")]["detail"]
    assert rows[(1, "no_tools")]["status"] == S.PASS
    z = rows[(2, "z_within:cosmology~0.25")]
    assert z["status"] == S.FAIL and "|Δz|=0.05 > 0.01" in z["detail"]
    assert not rep["ok"] and rep["scenarios"][0]["status"] == S.FAIL
    assert "FAIL" in S.format_table(rep)


def test_cli_exit_codes_and_json(tiny_rt, tmp_path, monkeypatch, capsys):
    from speclm.cli import main

    monkeypatch.setattr(S, "load_runtime", lambda cfg: tiny_rt)  # share the loaded tiny model
    good = {"name": "clarify", "turns": [{"text": "What about this one?", "expect": {"route": "clarify"}}]}
    bad = {"name": "wrong", "turns": [{"text": "hello", "expect": {"no_llm": True}}]}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump([good, bad]))
    out = tmp_path / "r.json"
    args = ["eval", "agent", "--base", "tiny", "--adapter", "none", "--scenarios", str(f), "--out", str(out),
            "--no-progress", "--max-new-tokens", "4"]
    assert main(args + ["--only", "clarify"]) == 0
    assert json.loads(out.read_text())["summary"]["pass"] == 1
    assert main(args) == 1
    rep = json.loads(out.read_text())
    assert [r["status"] for r in rep["scenarios"]] == ["PASS", "FAIL"]
    assert "FAIL" in capsys.readouterr().out
    # a model-dependent failure fails the run unless --ignore-model-dependent
    f.write_text(yaml.safe_dump([good, {**bad, "model_dependent": True}]))
    assert main(args) == 1 and main(args + ["--ignore-model-dependent"]) == 0
    assert main(args + ["--list"]) == 0 and "model-dependent" in capsys.readouterr().out
    f.write_text(yaml.safe_dump({"name": "x", "turns": [{"text": "hi", "expect": {"nope": 1}}]}))
    assert main(args) == 2
    assert "unknown check 'nope'" in capsys.readouterr().err
    assert main(["eval", "agent", "--only", "nosuch", "--out", str(out)]) == 2
