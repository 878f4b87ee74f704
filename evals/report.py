"""`speclm report`: one self-contained HTML page with everything the evals produced.

Why one file: a result that needs a folder of assets or a server gets lost; a single HTML file
with the figure embedded as base64 and the CSS inline can be mailed, attached to a PR or opened
from a laptop years later. Every section is optional: a part that was not run is shown as
"not run" together with the command that produces it, so the page says what is missing.

Inputs (all optional): an eval directory from `speclm eval redshift` (report.json +
pred_vs_true.png), a retention JSON (`speclm eval retention`), an ablation table (Markdown or
JSON, `speclm eval ablation`), and a conversation transcript (JSON from `speclm demo --json`).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import re
from pathlib import Path

from speclm.evals.metrics import TABLE_ROWS, fmt
from speclm.tools.errors import ConfigError

COMMANDS = {
    "eval": "speclm eval redshift --adapter bundled --dataset DATA_DIR --split val --out runs/eval",
    "retention": "speclm eval retention --adapter bundled --out runs/retention.json",
    "ablation": "speclm eval ablation --out runs/ablation.md",
    "conversation": "speclm demo --json > runs/conversation.json",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.muted{color:#666;font-size:.9em} .notrun{background:#fff8e6;border:1px solid #f0d48a;padding:.7em 1em;border-radius:6px}
code,pre{background:#f6f6f6;border-radius:4px;padding:.1em .3em;font-size:.9em} pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}
img{max-width:100%;height:auto;border:1px solid #eee}
.msg{margin:.5em 0;padding:.6em .9em;border-radius:8px;white-space:pre-wrap} .role{font-weight:600;font-size:.8em;text-transform:uppercase;color:#555;display:block}
.user{background:#eef4ff} .assistant{background:#f1f8ee} .tool{background:#f7f1fb;font-family:ui-monospace,monospace;font-size:.85em} .system{background:#f5f5f5}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em} dt{font-weight:600} dd{margin:0}
"""

e = html.escape


def _not_run(what: str, key: str) -> str:
    return (f'<div class="notrun"><strong>{e(what)}: not run.</strong> Produce it with<br>'
            f"<code>{e(COMMANDS[key])}</code></div>")


def _table(header: list[str], rows: list[list[str]], escape: bool = True) -> str:
    h = "".join(f"<th>{e(c) if escape else c}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c)) if escape else c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _num(v) -> str:
    if isinstance(v, bool) or v is None:
        return "—" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        for k in ("acc", "acc_norm", "score", "value", "mean", "exact_match"):
            if k in v and isinstance(v[k], (int, float)):
                return _num(v[k])
        return json.dumps(v)
    return str(v)


# --------------------------------------------------------------------------- sections

def eval_section(eval_dir: str | None) -> str:
    if not eval_dir:
        return "<h2>Redshift evaluation</h2>" + _not_run("Redshift evaluation", "eval")
    d = Path(eval_dir)
    f = d / "report.json" if d.is_dir() else d
    if not f.is_file():
        raise ConfigError(f"{eval_dir}: no report.json (run `speclm eval redshift --out DIR` first)")
    rep = json.loads(f.read_text())
    parts = ["<h2>Redshift evaluation</h2>"]
    png = f.parent / rep.get("plot", "pred_vs_true.png")
    if png.is_file():
        b64 = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f'<figure><img alt="predicted vs true redshift" src="data:image/png;base64,{b64}">'
                     "<figcaption class=\"muted\">Predicted vs true redshift (contours: all objects; points: a "
                     "random subset), after the paper's Fig. 1; bottom: Δz/(1+z) vs true z.</figcaption></figure>")
    else:
        parts.append('<p class="muted">(plot file missing)</p>')
    m = rep.get("metrics", {})
    names = [("model", "speclm (constrained)"), ("model_unconstrained", "speclm (free generation)"),
             ("knn", "kNN baseline"), ("constant", "constant (training median)")]
    names = [(k, label) for k, label in names if k in m]
    rows = []
    for key, label, spec in TABLE_ROWS:
        vals = [m[k].get(key) for k, _ in names]
        if all(v is None for v in vals):
            continue
        rows.append([label] + [fmt(v, spec) for v in vals])
    parts.append("<h3>Metrics</h3>" + _table(["metric"] + [lab for _, lab in names], rows))
    ev, ad, tr, t = rep.get("eval_set", {}), rep.get("adapter", {}), rep.get("train_set", {}), rep.get("timing", {})
    meta = [
        ("adapter", ad.get("path")), ("base model", rep.get("config", {}).get("base_resolved")),
        ("adapter trained", f"{ad.get('steps')} steps on n={ad.get('n_train')} ({ad.get('preset')})"),
        ("evaluated on", f"{ev.get('path')}" + (f" split={ev.get('split')!r}" if ev.get("split") is not None else "")),
        ("dataset fingerprint", ev.get("fingerprint")), ("n evaluated", f"{ev.get('n')} (skipped {ev.get('n_skipped', 0)})"),
        ("kNN / constant trained on", f"{tr.get('path')} (n={tr.get('n')}; {tr.get('match', tr.get('note', ''))})"),
        ("kNN", (f"k={rep['baseline']['k']}, {rep['baseline']['metric']} distance" if rep.get("baseline") else "not run")),
        ("speed", f"{t.get('spectra_per_s')} spectra/s on {t.get('device')} (batch {t.get('batch_size')})"),
        ("overlap checks", "; ".join(rep.get("overlap_checks", [])) or "none possible"),
        ("created", rep.get("created")),
    ]
    parts.append("<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in meta) + "</dl>")
    return "\n".join(parts)


def _nested_table(data: dict) -> str:
    """{row: {col: value}} -> table (rows = outer keys, columns = union of inner keys)."""
    cols: list[str] = []
    for v in data.values():
        if isinstance(v, dict):
            cols += [c for c in v if c not in cols]
    rows = [[str(r)] + [_num(v.get(c)) if isinstance(v, dict) else _num(v) for c in cols] for r, v in data.items()]
    return _table([""] + cols, rows)


def _rows_table(rows: list[dict]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return _table(cols, [[_num(r.get(c)) for c in cols] for r in rows])


def render_json_table(data) -> str:
    """Best-effort table of a results JSON: Markdown inside it, a list of rows, or nested dicts."""
    if isinstance(data, dict):
        for k in ("table_markdown", "markdown"):
            if isinstance(data.get(k), str):
                return markdown_to_html(data[k])
        for k in ("rows", "results_rows"):
            if isinstance(data.get(k), list) and all(isinstance(r, dict) for r in data[k]):
                return _rows_table(data[k])
        for k in ("table", "results", "conditions", "summary"):
            if isinstance(data.get(k), dict) and data[k] and all(isinstance(v, dict) for v in data[k].values()):
                return _nested_table(data[k])
        if data and all(isinstance(v, dict) for v in data.values()):
            return _nested_table(data)
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return _rows_table(data)
    return f"<pre>{e(json.dumps(data, indent=1)[:20000])}</pre>"


def _acc(r: dict | None) -> str:
    if not isinstance(r, dict) or not isinstance(r.get("acc"), (int, float)):
        return "—"
    se = f" ± {r['stderr']:.3f}" if isinstance(r.get("stderr"), (int, float)) else ""
    return f"{r['acc']:.3f}{se}" + (f" (n={r['n']})" if r.get("n") is not None else "")


def _pct(v) -> str:
    return "—" if not isinstance(v, (int, float)) else f"{v:.1f}%"


def retention_table(data: dict) -> str:
    """The `speclm eval retention` report: conditions × (astronomy, general), accuracy and % retained."""
    conds = data.get("conditions") or {}
    labels = (data.get("tasks") or {}).get("labels") or {"astro": "Scientific QA", "general": "General QA"}
    pct = data.get("retention_pct") or {}
    rows = []
    base = conds.get("base") or data.get("base_reference")
    if "base" not in conds and base:
        rows.append(["base (reused)", _acc(base.get("astro")), "100.0%", _acc(base.get("general")), "100.0%"])
    descr = {"base": "base (no adapter)", "always": "adapter always on", "toggle": "adapter toggled off for text"}
    for name, r in conds.items():
        p = {"astro": 100.0, "general": 100.0} if name == "base" else pct.get(name, {})
        rows.append([descr.get(name, name), _acc(r.get("astro")), _pct(p.get("astro")),
                     _acc(r.get("general")), _pct(p.get("general"))])
    table = _table(["condition", labels.get("astro", "astro"), "retained", labels.get("general", "general"),
                    "retained"], rows)
    notes = "".join(f"<li>{e(str(n))}</li>" for n in data.get("notes", []))
    model = data.get("model") or {}
    meta = (f'<p class="muted">base {e(str(model.get("base", "?")))} on {e(str(model.get("device", "?")))}; '
            f'lm-eval {e(str(data.get("lm_eval_version", "?")))}; '
            f'limit {e(str((data.get("config") or {}).get("limit")))}</p>')
    return table + meta + (f"<ul class=\"muted\">{notes}</ul>" if notes else "")


def retention_section(path: str | None) -> str:
    head = "<h2>Language retention</h2>"
    if not path:
        return head + _not_run("Retention (base vs adapter on vs adapter off, astronomy and general sets)", "retention")
    data = json.loads(Path(path).read_text())
    note = '<p class="muted">Accuracy per set for each condition (higher is better); source: ' + e(str(path)) + "</p>"
    if isinstance(data, dict) and data.get("kind") == "speclm-retention":
        return head + note + retention_table(data)
    return head + note + render_json_table(data)


_ROW = re.compile(r"^\s*\|(.+)\|\s*$")
_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _inline(text: str) -> str:
    t = e(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return t


def markdown_to_html(md: str) -> str:
    """Pipe tables become <table>, '#' lines headings, other lines paragraphs (enough for our tables)."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        ln = lines[i]
        if _ROW.match(ln) and i + 1 < len(lines) and _SEP.match(lines[i + 1]):
            header = [c.strip() for c in _ROW.match(ln).group(1).split("|")]
            rows = []
            i += 2
            while i < len(lines) and _ROW.match(lines[i]):
                rows.append([_inline(c.strip()) for c in _ROW.match(lines[i]).group(1).split("|")])
                i += 1
            out.append(_table([_inline(h) for h in header], rows, escape=False))
            continue
        if ln.strip().startswith("#"):
            level = min(len(ln) - len(ln.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{_inline(ln.strip('# ').strip())}</h{level}>")
        elif ln.strip():
            out.append(f"<p>{_inline(ln.strip())}</p>")
        i += 1
    return "\n".join(out)


def ablation_section(path: str | None) -> str:
    head = "<h2>Ablations</h2>"
    if not path:
        return head + _not_run("Ablation table (Table 1 variants)", "ablation")
    p = Path(path)
    text = p.read_text()
    if p.suffix.lower() == ".json":
        return head + render_json_table(json.loads(text))
    return head + markdown_to_html(text)


def _messages(data) -> list[dict]:
    if isinstance(data, dict):
        for k in ("messages", "turns", "conversation", "transcript"):
            if isinstance(data.get(k), list):
                return data[k]
    if isinstance(data, list):
        return data
    raise ConfigError("conversation JSON must be a list of {role, content} or hold one under 'messages'")


def conversation_section(path: str | None) -> str:
    head = "<h2>Sample dual-capability conversation</h2>"
    if not path:
        return head + _not_run("Conversation (spectrum in, redshift out, then questions in English)", "conversation")
    msgs = _messages(json.loads(Path(path).read_text()))
    parts = []
    for m in msgs:
        if not isinstance(m, dict):
            continue
        role = str(m.get("role") or m.get("speaker") or "message")
        content = m.get("content", m.get("text", ""))
        if not isinstance(content, str):
            content = json.dumps(content, indent=1)
        if m.get("tool_calls"):
            content += ("\n" if content else "") + "tool calls: " + json.dumps(m["tool_calls"])
        if m.get("name"):
            role += f" ({m['name']})"
        cls = next((c for c in ("user", "assistant", "tool", "system") if role.lower().startswith(c)), "tool")
        parts.append(f'<div class="msg {cls}"><span class="role">{e(role)}</span>{e(content)}</div>')
    return head + f'<p class="muted">Transcript: {e(str(path))}</p>' + "\n".join(parts)


def build_report(eval_dir: str | None = None, retention: str | None = None, ablation: str | None = None,
                 conversation: str | None = None, title: str = "speclm evaluation report") -> str:
    """The whole HTML page as a string."""
    for label, p in (("--retention", retention), ("--ablation", ablation), ("--conversation", conversation)):
        if p and not Path(p).is_file():
            raise ConfigError(f"{label} {p}: no such file")
    if eval_dir and not Path(eval_dir).exists():
        raise ConfigError(f"--eval {eval_dir}: no such directory")
    try:
        from speclm import __version__
    except ImportError:  # pragma: no cover
        __version__ = "?"
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    body = "\n".join([eval_section(eval_dir), retention_section(retention), ablation_section(ablation),
                      conversation_section(conversation)])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{e(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{e(title)}</h1>\n"
            f'<p class="muted">speclm {e(__version__)} · generated {e(now)} · reproduces the evaluation of '
            "<em>Teaching LLMs to Speak Spectroscopy</em> (redshift accuracy vs language retention)</p>\n"
            f"{body}\n</body>\n</html>\n")


def write_report(out: str | Path, **kw) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(**kw), encoding="utf-8")
    return out
