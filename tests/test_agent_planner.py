"""The planner <-> tools loop (AgentConfig.planner = "model") driven by a loopback OpenAI-compatible
server that answers with genuine ``tool_calls`` (what vLLM's tool-call parser returns), through the
real `openai` client and LangGraph's ToolNode: multi-step plans, invalid arguments, a tool error,
the step limit, and the spectrum path that no planner may skip."""
from __future__ import annotations

import json

import pytest

from loopback_openai import JSONHandler, LoopbackServer
from speclm.agent import replies
from speclm.agent.assistant import AgentConfig, Assistant
from speclm.tools.errors import ConfigError


def _call(name: str, args: dict, i: int) -> dict:
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


class ToolCallingServer(LoopbackServer):
    """/v1/chat/completions with ``tools``: answers from ``script`` (a list of steps, each a list of
    (tool, args) calls or a final text), recording every request; without ``tools``: plain text."""

    def __init__(self, script: list):
        self.script, self.requests = list(script), []
        srv = self

        class H(JSONHandler):
            def do_POST(self):  # noqa: N802
                body = self.read_json()
                srv.requests.append(body)
                if "tools" in body:
                    step = srv.script.pop(0) if len(srv.script) > 1 else srv.script[0]
                    if isinstance(step, str):
                        msg = {"role": "assistant", "content": step}
                    else:
                        msg = {"role": "assistant", "content": None,
                               "tool_calls": [_call(n, a, i + 10 * len(srv.requests)) for i, (n, a) in enumerate(step)]}
                else:
                    msg = {"role": "assistant", "content": "ok"}
                self.send_json({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                "choices": [{"index": 0, "finish_reason": "stop", "message": msg}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        self.start(H)


@pytest.fixture
def serve():
    made = []

    def make(script):
        s = ToolCallingServer(script)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _assistant(srv, tmp_path, **kw):
    return Assistant(AgentConfig(backend="openai", planner="model", openai_base_url=srv.url, openai_model="planner-llm",
                                 adapter=None, checkpoint_db=str(tmp_path / "c.sqlite"), **kw))


def test_multi_step_plan_with_tool_results_fed_back(serve, tmp_path):
    srv = serve([[("cosmology", {"z": 0.3, "lines": ["Hbeta"]})],
                 [("survey_reach", {"z": 0.3, "spectype": "GALAXY"})],
                 "It is far away, and several surveys reach that redshift."])
    a = _assistant(srv, tmp_path)
    r = a.turn("t", "At z = 0.3, how far is it, where would Hβ land, and which surveys could observe it?")
    assert r.route == "cosmology" and r.planner == "openai" and r.error is None
    assert [(c["name"], c["planned_by"]) for c in r.plan] == [("cosmology", "openai"), ("survey_reach", "openai")]
    assert [t["name"] for t in r.tool_trace] == ["cosmology", "survey_reach"]
    c = r.cosmology
    hb = next(l for l in c["lines"] if l["name"] == "Hbeta")
    assert f"{hb['observed_A']:.1f} Å" in r.reply and f"{c['luminosity_distance_mpc']:,.0f} Mpc" in r.reply
    assert "DESI Bright Galaxy Survey" in r.reply and r.surveys  # no magnitudes given: "possibly", with the reason
    assert "(The language model's own words" in r.reply  # its sentence passed the claim check, marked
    assert r.grounding["dropped"] == []  # every composed sentence is grounded (none had to be dropped)
    # the second planner request saw the first tool's result as a tool message with its call id
    tool_msgs = [m for m in srv.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_msgs and json.loads(tool_msgs[0]["content"])["z"] == pytest.approx(0.3)
    assert srv.requests[0]["tools"] and {t["function"]["name"] for t in srv.requests[0]["tools"]} >= {
        "cosmology", "survey_reach", "measure_spectrum", "sdss_lookup"}
    assert [m["role"] for m in a.history("t")] == ["user", "assistant"]  # tool traffic is not conversation


def test_invalid_arguments_come_back_as_errors_and_the_thread_goes_on(serve, tmp_path):
    srv = serve([[("cosmology", {"z": -5})], "I could not compute that."])
    a = _assistant(srv, tmp_path)
    r = a.turn("t", "lookback time at a negative redshift please")
    assert r.route == "error" and r.attempted_route == "cosmology" and r.tool_trace[0].get("error")
    assert r.reply.startswith("I couldn't compute that:") and "\n" not in r.reply  # one line
    err_msg = [m for m in srv.requests[1]["messages"] if m["role"] == "tool"][0]["content"]
    assert "greater than or equal to 0" in err_msg  # the schema's validation error, read back by the planner
    assert "I could not compute that." not in r.reply or "own words" in r.reply


def test_a_tool_error_and_an_invented_claim(serve, tmp_path):
    srv = serve([[("measure_spectrum", {"spectrum_path": str(tmp_path / "missing.fits"), "z": 0.1})],
                 "This is a Seyfert galaxy observed by Hubble."])
    a = _assistant(srv, tmp_path)
    r = a.turn("t", "measure this file please")
    assert r.tool_trace[0].get("error") and "missing.fits" in r.tool_trace[0]["error"]
    assert "Seyfert" not in r.reply and "Hubble" not in r.reply  # no tool said so: dropped by the claim check


def test_step_limit(serve, tmp_path):
    srv = serve([[("cosmology", {"z": 0.1})]])  # a planner that never stops calling tools
    a = _assistant(srv, tmp_path, plan_max_steps=3)
    r = a.turn("t", "tell me everything about z = 0.1")
    assert len(r.tool_trace) == 3 and "limit of 3 steps" in r.reply
    assert replies.fmt_gyr(r.cosmology["lookback_gyr"]) in r.reply


def test_an_attached_file_is_always_analysed(serve, tmp_path, ngc3522_fits):
    """A planner that skips the analysis of an attached file is overruled: the rules' plan runs it."""
    srv = serve(["no tools needed"])
    a = _assistant(srv, tmp_path)
    r = a.turn("t", "what is its redshift?", spectrum_path=ngc3522_fits)  # no redshift adapter: a clear error
    assert r.planner == "rules (fallback)" and [c["name"] for c in r.plan] == ["analyze_spectrum"]
    assert r.route == "error" and "adapter" in r.reply and "Error:" not in r.reply  # one line, no class names


def test_planner_config_choices():
    cfg = AgentConfig(planner="model")  # local backend: the embedded planner LoRA
    assert cfg.planner_adapter == "bundled-planner"
    assert AgentConfig(planner="model", planner_adapter="none").planner_adapter is None  # chat-template tools
    with pytest.raises(ConfigError, match="planner must be"):
        AgentConfig(planner="llm")
    with pytest.raises(ConfigError, match="plan_max_steps"):
        AgentConfig(planner="model", plan_max_steps=0)
