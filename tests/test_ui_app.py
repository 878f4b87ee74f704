"""The gr.Blocks layout without a browser: components, examples and event wiring exist."""
from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from speclm.ui.app import ChatService, build_app  # noqa: E402
from speclm.ui.examples import sdss_examples  # noqa: E402


def test_layout_has_every_part_and_examples():
    service = ChatService(None, examples=sdss_examples())
    demo = build_app(service, concurrency=3)
    cfg = demo.get_config_file()
    by_id = {c["props"].get("elem_id"): c for c in cfg["components"] if c.get("props", {}).get("elem_id")}
    for elem in ("speclm-chat", "speclm-msg", "speclm-redshift", "speclm-upload", "speclm-sdss",
                 "speclm-lookup", "speclm-plot", "speclm-trace", "speclm-trace-accordion"):
        assert elem in by_id, elem
    assert by_id["speclm-chat"]["type"] == "chatbot"
    assert by_id["speclm-upload"]["type"] == "file"
    assert by_id["speclm-trace-accordion"]["props"]["open"] is False  # collapsed by default
    labels = [by_id[f"speclm-example-{i}"]["props"]["value"] for i in range(len(service.examples))]
    assert labels and all("real SDSS DR18" in lab for lab in labels)
    # turns share one concurrency group so several sessions run at once, up to the limit
    turns = [f for f in demo.fns.values() if f.concurrency_id == "speclm-turn"]
    assert len(turns) == 4 + len(labels)  # message, upload, lookup button + enter, each example
    assert all(f.concurrency_limit == 3 for f in turns)
    generators = [d for d in cfg["dependencies"] if d["types"]["generator"]]
    assert len(generators) == len(turns)  # every turn streams
    assert cfg.get("analytics_enabled") is False
