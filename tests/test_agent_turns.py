"""The agent end to end on the tiny random base + an untrained adapter (init_adapter): turns,
tool numbers in replies, adapter toggling, persistence, errors, SDSS lookups (loopback server)."""
from __future__ import annotations

import pytest
from sdss_server import sdss_cfg, sdss_objects, sdss_sim  # noqa: F401  (pytest fixtures)

from speclm.agent import replies
from speclm.agent.assistant import AgentConfig, Assistant, TurnResult

FOLLOWUP = ("What type of galaxy is expected at the redshift you just predicted? "
            "Which surveys could observe it?")


@pytest.fixture(scope="module")
def tiny_rt(tmp_path_factory):
    """The tiny random base with an untrained LoRA (init_adapter), loaded once per module."""
    from speclm.finetune.presets import get_preset
    from speclm.finetune.runtime import ModelRuntime
    from speclm.finetune.train import init_adapter

    rt = ModelRuntime.load("tiny", None, dtype="float32")
    out = init_adapter(get_preset("tiny"), tmp_path_factory.mktemp("adapter") / "tiny-redshift", runtime=rt)
    rt.attach(str(out))
    return rt


def _cfg(tmp_path, **kw) -> AgentConfig:
    """The tiny random model cannot plan: these turn-mechanics tests use the rules planner (the embedded
    planner's default path is tested end to end in test_embedded_end_to_end and test_planner_embedded)."""
    kw.setdefault("planner", "rules")
    return AgentConfig(base="tiny", adapter=None, checkpoint_db=str(tmp_path / "chat.sqlite"),
                       max_new_tokens=12, **kw)


@pytest.fixture
def lora_log(tiny_rt, monkeypatch):
    """Record, for every forward pass of the base model, whether the LoRA layers were active."""
    from peft.tuners.lora import LoraLayer

    inner = tiny_rt.model.get_base_model()
    layers = [m for m in tiny_rt.model.modules() if isinstance(m, LoraLayer)]
    assert layers
    log: list[bool] = []
    orig = inner.forward

    def forward(*a, **k):
        log.append(not any(l.disable_adapters for l in layers))
        return orig(*a, **k)

    monkeypatch.setattr(inner, "forward", forward)
    return log


def test_spectrum_turn_then_followup(tiny_rt, tmp_path, ngc3522_fits, lora_log):
    a = Assistant(_cfg(tmp_path), runtime=tiny_rt)
    events = list(a.stream("t1", "What is the redshift of this galaxy?", spectrum_path=ngc3522_fits))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "route" and kinds[-1] == "done" and "prediction" in kinds and "token" in kinds
    assert [e["name"] for e in events if e["type"] == "tool"] == [
        "read_spectrum", "predict_redshift", "find_redshift", "cosmology", "measure_spectrum"]
    r: TurnResult = events[-1]["result"]
    assert r.route == "spectrum" and r.error is None and r.adapter_on
    p, c = r.prediction, r.cosmology
    assert p["z_lo"] <= p["z"] <= p["z_hi"] and r.search["z_model"] == pytest.approx(p["z"])
    assert r.spectrum_summary["z_catalog"] == pytest.approx(0.00402, abs=1e-4)
    # the tiny test model answers noise; the stated z is the search's, right, and used from then on
    assert r.spectype == "GALAXY" and r.z == pytest.approx(0.00402, abs=3e-4) and r.search["confident"]
    assert r.z_source == "template fit (galaxy)" and f"z = {r.z:.5f}" in r.reply
    assert c["z"] == pytest.approx(r.z) and replies.fmt_gyr(c["lookback_gyr"]) in r.reply
    assert f"{p['z_lo']:.4f}" in r.reply and f"{p['z_hi']:.4f}" in r.reply  # the interval keeps 4 decimals
    assert "".join(e["text"] for e in events if e["type"] == "token").strip() == r.reply.strip()
    assert lora_log and all(lora_log)  # toggle: only the redshift step ran, adapter on

    lora_log.clear()
    f = a.turn("t1", FOLLOWUP)
    assert f.route == "chat" and f.error is None and not f.adapter_on
    assert f.cosmology["z"] == pytest.approx(r.z)  # the stored z, not a new guess
    assert replies.fmt_z(r.z, r.z_source) in f.reply
    assert replies.fmt_gyr(f.cosmology["lookback_gyr"]) in f.reply
    assert f.measure["summary_class"] in f.reply and f.surveys  # composed from the measurement + survey tools
    assert not lora_log and f.llm_calls == []  # no model words about the object on the embedded default

    cosmo = a.turn("t1", "How far away is it, and where does Hα land?")
    assert cosmo.route == "cosmology" and "Mpc" in cosmo.reply
    ha = next(l for l in cosmo.cosmology["lines"] if l["name"] == "Halpha")
    assert f"{ha['observed_A']:.1f} Å" in cosmo.reply
    hist = a.history("t1")
    assert [m["role"] for m in hist] == ["user", "assistant"] * 3
    assert a.state("t1")["z"] == pytest.approx(r.z)


def test_always_mode_keeps_adapter_on_for_text(tiny_rt, tmp_path, ngc3522_fits, lora_log):
    a = Assistant(_cfg(tmp_path, adapter_mode="always"), runtime=tiny_rt)
    a.turn("t", "", spectrum_path=ngc3522_fits)
    lora_log.clear()
    f = a.turn("t", "Thanks!")  # free chat: the model writes (its words checked)
    assert f.adapter_on and lora_log and all(lora_log)
    g = a.turn("t", FOLLOWUP)  # answers about the object are composed from tools in every mode
    assert not g.llm_calls and g.measure["summary_class"] in g.reply


def test_conversation_survives_restart(tiny_rt, tmp_path, ngc3522_fits):
    a = Assistant(_cfg(tmp_path), runtime=tiny_rt)
    r = a.turn("keep", "predict please", spectrum_path=ngc3522_fits)
    a.close()
    b = Assistant(_cfg(tmp_path), runtime=tiny_rt)  # same SQLite file, new process state
    assert b.state("keep")["z"] == pytest.approx(r.z)
    assert len(b.history("keep")) == 2
    f = b.turn("keep", "What is the lookback time?")
    assert f.route == "cosmology" and f.cosmology["z"] == pytest.approx(r.z)
    assert replies.fmt_gyr(f.cosmology["lookback_gyr"]) in f.reply
    assert b.history("other") == []


def test_bad_upload_then_good_upload(tiny_rt, tmp_path, bad_inputs, ngc3522_fits):
    a = Assistant(_cfg(tmp_path), runtime=tiny_rt)
    for kind in ("junk_csv", "empty"):
        bad = bad_inputs(kind)
        r = a.turn("t", "here", spectrum_path=bad)
        assert r.route == "error" and r.attempted_route == "spectrum" and r.error
        assert bad.name in r.error and r.error in r.reply and r.prediction is None
    good = a.turn("t", "and this one?", spectrum_path=ngc3522_fits)
    assert good.route == "spectrum" and good.error is None and good.prediction is not None
    assert len(a.history("t")) == 6


def test_clarify_without_spectrum(tiny_rt, tmp_path):
    a = Assistant(_cfg(tmp_path), runtime=tiny_rt)
    r = a.turn("t", "what about this one?")
    assert r.route == "clarify" and "SDSS identifier" in r.reply and not r.llm_calls
    r = a.turn("t", "What is the lookback time?")
    assert r.route == "clarify" and "Which redshift" in r.reply
    r = a.turn("t", "lookback time at z = 0.315")
    assert r.route == "cosmology" and r.cosmology["z"] == pytest.approx(0.315)
    assert replies.fmt_gyr(r.cosmology["lookback_gyr"]) in r.reply


def test_missing_model_and_adapter_are_replies(tmp_path, ngc3522_fits, tiny_rt):
    bad = Assistant(AgentConfig(base=str(tmp_path / "no-such-model"), adapter=None,
                                checkpoint_db=str(tmp_path / "a.sqlite")))
    r = bad.turn("t", "hi", spectrum_path=ngc3522_fits)
    assert r.route == "error" and "no-such-model" in r.reply
    assert bad.turn("t", "lookback time at z=0.1").route == "cosmology"  # tools still answer
    from speclm.finetune.runtime import ModelRuntime

    bare = ModelRuntime(tiny_rt.model.get_base_model(), tiny_rt.tokenizer, "tiny", "cpu")
    no_adapter = Assistant(_cfg(tmp_path, ), runtime=bare)
    r = no_adapter.turn("t", "", spectrum_path=ngc3522_fits)
    assert r.route == "error" and "speclm train" in r.reply


def test_sdss_lookup_through_loopback_server(tiny_rt, tmp_path, sdss_cfg, sdss_objects):
    obj = sdss_objects[0]
    a = Assistant(_cfg(tmp_path, sdss=sdss_cfg), runtime=tiny_rt)
    r = a.turn("t", f"Look up {obj.name} in SDSS")
    assert r.route == "lookup" and r.error is None
    assert r.lookup["z"] == pytest.approx(obj.z) and f"{obj.z:.5f}" in r.reply
    assert r.prediction is not None and r.cosmology is not None  # predicted on the fetched spectrum
    # the check route with a z in the text refines it on the fetched spectrum's lines
    c = a.turn("t", f"Can you check the redshift z = {obj.z + 0.0005:.4f} against the lines?")
    assert c.route == "check" and c.check["confident"], c.reply
    assert c.check["z"] == pytest.approx(obj.z, abs=2e-4) and "refines z to" in c.reply
    assert a.state("t")["z_source"] == "line fit"
    # every later number uses the refined z; the km/s shift is quoted against the value it names
    assert c.cosmology is not None and c.cosmology["z"] == pytest.approx(c.check["z"])
    assert f"from the z you gave, z = {float(f'{obj.z + 0.0005:.4f}'):.5f}" in c.reply
    assert "~10 km/s" not in c.reply and "km/s (the fit's error)" in c.reply
    missing = a.turn("t", "Look up 0266-51630-0999")
    assert missing.route == "error" and "no spectrum" in missing.reply
    assert a.state("t")["z"] == pytest.approx(c.check["z"])  # the thread's object is unchanged
    by_id = a.turn("t", "what is it?", sdss_id=str(sdss_objects[1].specobjid))
    assert by_id.route == "lookup" and by_id.lookup["z"] == pytest.approx(sdss_objects[1].z)


@pytest.mark.slow
def test_embedded_end_to_end(tmp_path, ngc3522_fits):
    from speclm.finetune.runtime import bundled_adapter_dir

    if not (bundled_adapter_dir() / "adapter_config.json").is_file():
        pytest.skip(f"the bundled adapter is not trained yet ({bundled_adapter_dir()} missing)")
    a = Assistant(AgentConfig(checkpoint_db=str(tmp_path / "e.sqlite"), max_new_tokens=80))
    r = a.turn("t", "What is the redshift?", spectrum_path=ngc3522_fits)
    assert r.route == "spectrum" and r.error is None and 0 <= r.prediction["z"] < 1
    f = a.turn("t", FOLLOWUP)
    # the measurements (v9) or the cosmology (v10) first; either way the measured class and the lookback time
    assert f.route in ("chat", "cosmology") and replies.fmt_gyr(f.cosmology["lookback_gyr"]) in f.reply
    assert r.measure["summary_class"] and r.measure["summary_class"].lower() in f.reply.lower()
    assert len(f.reply) > len(replies.grounded_facts(z=r.z, z_source=r.z_source, pred=r.prediction,
                                                     cosmo=f.cosmology))  # the LLM added text
