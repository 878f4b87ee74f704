"""The OpenAI-compatible backend (what vLLM serves with --enable-lora) against a loopback fake
server speaking /v1/chat/completions (plain and SSE streaming) and /v1/completions, through the
real `openai` client."""
from __future__ import annotations

import json

import pytest

from loopback_openai import JSONHandler, LoopbackServer
from speclm.agent import replies
from speclm.agent.assistant import AgentConfig, Assistant

CHAT_TEXT = ("This is likely a massive elliptical galaxy. Its light left it 3.8 billion years ago. "
             "Surveys such as SDSS, DESI and Euclid could observe it.")


class FakeOpenAI(LoopbackServer):
    """Records every request; answers completions with ``z_text`` and chats with CHAT_TEXT."""

    def __init__(self, z_text: str = "0.105"):
        self.z_text, self.requests = z_text, []
        fake = self

        class H(JSONHandler):
            def do_POST(self):  # noqa: N802
                body = self.read_json()
                fake.requests.append((self.path, body))
                if self.path.endswith("/completions") and "chat" not in self.path:
                    return self.send_json({"id": "c1", "object": "text_completion", "created": 0,
                                       "model": body["model"], "choices": [{"index": 0, "text": " " + fake.z_text,
                                                                            "finish_reason": "stop", "logprobs": None}],
                                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                if self.path.endswith("/chat/completions"):
                    text = CHAT_TEXT if body.get("max_tokens", 99) > 8 else "chat"
                    if not body.get("stream"):
                        return self.send_json({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                           "choices": [{"index": 0, "finish_reason": "stop",
                                                        "message": {"role": "assistant", "content": text}}],
                                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for i in range(0, len(text), 9):
                        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "delta": {"content": text[i:i + 9]}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                self.send_error(404)

        self.start(H)

    def models(self, kind: str) -> list[str]:
        """The models of the requests to ``kind``, the planner's (with ``tools``) left out."""
        return [b["model"] for p, b in self.requests if p.endswith(kind) and "tools" not in b]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    from speclm.finetune.presets import get_preset
    from speclm.finetune.train import init_adapter

    return init_adapter(get_preset("tiny"), tmp_path_factory.mktemp("a") / "tiny-redshift")


@pytest.fixture
def fake():
    f = FakeOpenAI()
    yield f
    f.server.shutdown()


def _assistant(fake, adapter_dir, tmp_path, **kw):
    """The backend's text and completion paths, planned by the rules (a fake that only answers text
    cannot plan; the endpoint's tool calling is tested in test_agent_planner.py)."""
    kw.setdefault("planner", "rules")
    return Assistant(AgentConfig(backend="openai", openai_base_url=fake.url, openai_model="base-llm",
                                 openai_adapter_model="redshift-lora", adapter=str(adapter_dir),
                                 checkpoint_db=str(tmp_path / "c.sqlite"), **kw))


def test_openai_backend_two_step_dialogue(fake, adapter_dir, tmp_path, ngc3522_fits):
    a = _assistant(fake, adapter_dir, tmp_path)
    r = a.turn("t", "redshift?", spectrum_path=ngc3522_fits)
    assert r.route == "spectrum" and r.error is None and r.adapter_on
    assert r.prediction["z"] == pytest.approx(0.105) and r.prediction["interval"] is False
    assert fake.models("/v1/completions") == ["redshift-lora"]  # the adapter, addressed by name
    prompt = next(b for p, b in fake.requests if p.endswith("/v1/completions"))["prompt"]
    assert prompt.endswith("Redshift: ")
    assert replies.fmt_gyr(r.cosmology["lookback_gyr"]) in r.reply

    f = a.turn("t", "What type of galaxy is expected at the redshift you just predicted? "
                    "Which surveys could observe it?")
    assert f.route == "chat" and not f.adapter_on
    assert fake.models("/v1/chat/completions") == ["base-llm"]  # toggle: text goes to the base
    assert f.measure["summary_class"] in f.reply  # the composed answer: the measured class ...
    assert "Euclid" in f.reply and "(The language model's own words" in f.reply  # ... the model's grounded words, marked
    assert "elliptical" not in f.reply  # an object type no tool measured is dropped
    assert "3.8 billion" not in f.reply  # the model's arithmetic is dropped ...
    assert replies.fmt_gyr(f.cosmology["lookback_gyr"]) in f.reply  # ... the tool's is quoted
    assert f.cosmology["z"] == pytest.approx(r.z)


def test_openai_always_mode_and_dead_endpoint(fake, adapter_dir, tmp_path, ngc3522_fits):
    a = _assistant(fake, adapter_dir, tmp_path, adapter_mode="always")
    a.turn("t", "", spectrum_path=ngc3522_fits)
    f = a.turn("t", "Which surveys could observe it?")
    assert f.adapter_on and fake.models("/v1/chat/completions") == ["redshift-lora"]
    fake.server.shutdown()
    fake.server.server_close()
    dead = a.turn("t", "Which telescopes could observe this galaxy?")
    assert dead.route == "error" and "failed" in dead.reply
    assert a.turn("t", "What is the lookback time?").route == "cosmology"  # the thread goes on
