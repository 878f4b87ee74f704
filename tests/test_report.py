"""`speclm report`: one self-contained, parseable HTML5 page with the plot embedded and every
section either filled or marked "not run" with the command that makes it."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from speclm.evals.metrics import redshift_metrics
from speclm.evals.plots import Panel, plot_pred_vs_true
from speclm.evals.report import COMMANDS, build_report, markdown_to_html

VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr", "embed", "track"}


class Checker(HTMLParser):
    """Collects tags, h2 texts, img srcs and checks that non-void tags are properly nested."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.h2, self.imgs, self.tables = [], [], [], [], 0
        self._in_h2 = False
        self.decl = None

    def handle_decl(self, decl):
        self.decl = decl

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))
        if tag == "table":
            self.tables += 1
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


def parse(page: str) -> Checker:
    c = Checker()
    c.feed(page)
    c.close()
    assert c.decl and c.decl.lower() == "doctype html"
    assert not c.errors, c.errors[:5]
    assert c.stack == [], c.stack
    return c


@pytest.fixture
def eval_dir(tmp_path) -> Path:
    """An eval directory in the format `speclm eval redshift` writes (plot + report.json)."""
    d = tmp_path / "eval"
    rng = np.random.default_rng(0)
    zt = rng.uniform(0, 0.5, 300)
    zm, zk = zt + rng.normal(0, 0.04, 300), zt + rng.normal(0, 0.02, 300)
    plot_pred_vs_true([Panel("model", zt, zm), Panel("kNN", zt, zk)], d / "pred_vs_true.png")
    rep = {"kind": "speclm-eval-redshift", "plot": "pred_vs_true.png",
           "metrics": {"model": redshift_metrics(zt, zm, zm - 0.04, zm + 0.04, train_median=0.25),
                       "knn": redshift_metrics(zt, zk), "constant": redshift_metrics(zt, np.full(300, 0.25)) | {"value": 0.25}},
           "adapter": {"path": "/a/adapter", "steps": 100, "n_train": 3000, "preset": "smollm2"},
           "config": {"base_resolved": "embedded"},
           "eval_set": {"path": "/d/sim", "split": "val", "n": 300, "n_skipped": 0, "fingerprint": "abc"},
           "train_set": {"path": "/d/sim", "n": 3000, "match": "exact"},
           "baseline": {"k": 10, "metric": "l2"}, "timing": {"spectra_per_s": 12.5, "device": "cpu", "batch_size": 16},
           "overlap_checks": ["same dataset, held-out split"], "created": "2026-01-01T00:00:00+00:00"}
    (d / "report.json").write_text(json.dumps(rep))
    return d


def test_full_report_parses_and_embeds_plot(eval_dir, tmp_path):
    ret = tmp_path / "retention.json"
    ret.write_text(json.dumps({"conditions": {
        "base": {"astro_mcq": 0.61, "arc_easy": {"acc": 0.55}},
        "adapter on": {"astro_mcq": 0.52, "arc_easy": {"acc": 0.50}},
        "adapter off": {"astro_mcq": 0.61, "arc_easy": {"acc": 0.55}}}}))
    abl = tmp_path / "ablation.md"
    abl.write_text("# Table 1\n\n| lr | rank | MAE |\n|---|---:|---:|\n| 1e-4 | 8 | **0.043** |\n| 1e-3 | 8 | 0.065 |\n")
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps({"messages": [
        {"role": "user", "content": "What is the redshift of spec-0266.fits? <script>alert(1)</script>"},
        {"role": "tool", "name": "predict_redshift", "content": {"z": 0.123}},
        {"role": "assistant", "content": "z = 0.123, so Hα lands at 7372 Å."}]}))
    page = build_report(eval_dir=str(eval_dir), retention=str(ret), ablation=str(abl), conversation=str(conv))
    c = parse(page)
    assert c.h2 == ["Redshift evaluation", "Language retention", "Ablations", "Sample dual-capability conversation"]
    pngs = [s for s in c.imgs if s.startswith("data:image/png;base64,")]
    assert len(pngs) == 1
    assert base64.b64decode(pngs[0].split(",", 1)[1])[:4] == b"\x89PNG"
    assert c.tables >= 3  # metrics, retention, ablation
    assert "not run" not in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # transcript text is escaped
    assert "kNN baseline" in page and "constant (training median)" in page and "0.043" in page
    assert "adapter off" in page and "0.55" in page
    assert "<style>" in page and "<link" not in page and "http://" not in page.split("<body>")[0]


def test_empty_report_says_what_to_run(tmp_path):
    from speclm.cli import main

    out = tmp_path / "r" / "report.html"
    assert main(["report", "--out", str(out)]) == 0
    page = out.read_text()
    c = parse(page)
    assert len(c.h2) == 4 and c.imgs == []
    assert page.count("not run") == 4
    for cmd in COMMANDS.values():
        assert cmd.split(" --")[0] in page
    assert "speclm demo --json" in page


def test_report_user_errors(tmp_path, capsys):
    from speclm.cli import main

    assert main(["report", "--out", str(tmp_path / "x.html"), "--retention", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "emptydir").mkdir()
    assert main(["report", "--out", str(tmp_path / "x.html"), "--eval", str(tmp_path / "emptydir")]) == 2
    assert "report.json" in capsys.readouterr().err


def test_markdown_table_conversion():
    html = markdown_to_html("Intro `code`\n\n| a | b |\n| :-- | --: |\n| 1 | x<y |\n\ntrailing")
    c = Checker()
    c.feed("<div>" + html + "</div>")
    assert not c.errors and c.tables == 1
    assert "<th>a</th>" in html and "<td>x&lt;y</td>" in html and "<code>code</code>" in html


def test_retention_report_format_table(tmp_path):
    """The JSON `speclm eval retention --out` writes: three conditions × astronomy/general."""
    acc = lambda a, n: {"acc": a, "stderr": 0.01, "n": n, "subjects": {}}  # noqa: E731
    data = {"kind": "speclm-retention", "lm_eval_version": "0.4.9", "model": {"base": "embedded", "device": "cpu"},
            "config": {"limit": 20}, "tasks": {"labels": {"astro": "Scientific QA (MMLU astronomy)",
                                                         "general": "General QA (10 MMLU subjects)"}},
            "conditions": {"base": {"astro": acc(0.30, 152), "general": acc(0.40, 200)},
                           "always": {"astro": acc(0.27, 152), "general": acc(0.36, 200)},
                           "toggle": {"astro": acc(0.30, 152), "general": acc(0.40, 200)}},
            "retention_pct": {"always": {"astro": 90.0, "general": 90.0}, "toggle": {"astro": 100.0, "general": 100.0}},
            "notes": ["AstroBench keys are not public; MMLU astronomy is the open stand-in."]}
    f = tmp_path / "ret.json"
    f.write_text(json.dumps(data))
    page = build_report(retention=str(f))
    parse(page)
    assert "adapter always on" in page and "adapter toggled off for text" in page
    assert "0.270 ± 0.010 (n=152)" in page and "90.0%" in page and "Scientific QA (MMLU astronomy)" in page
    assert page.count("not run") == 3


def test_demo_json_feeds_the_report(tmp_path, ngc3522_fits):
    """The command the empty report prints (`speclm demo --json`) exists and its transcript renders."""
    import subprocess
    import sys

    from speclm.finetune.presets import get_preset
    from speclm.finetune.train import init_adapter

    ad = init_adapter(get_preset("tiny"), tmp_path / "ad")
    r = subprocess.run([sys.executable, "-m", "speclm.cli", "demo", "--base", "tiny", "--adapter", str(ad),
                        "--spectrum", str(ngc3522_fits), "--max-new-tokens", "8", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)  # stdout holds only the JSON; the live dialogue went to stderr
    assert "User:" in r.stderr and "-- numbers from the tools --" in r.stderr
    roles = [m["role"] for m in d["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    first = d["messages"][1]
    assert first["route"] == "spectrum" and "predict_redshift" in first["tools"]
    assert 0 <= first["numbers"]["prediction"]["z"] < 10
    (tmp_path / "conv.json").write_text(r.stdout)
    page = build_report(conversation=str(tmp_path / "conv.json"))
    assert "What is its redshift?" in page and "NGC3522_SDSS_DR18.fits" in page
