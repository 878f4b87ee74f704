"""`speclm ask`: conversations with the assistant from a terminal.

``speclm ask "question" [--spectrum FILE]`` prints the reply (people); ``speclm ask --script
FILE.jsonl --json`` plays every line of FILE — ``{"text": ..., "spectrum": optional path}`` — as
the turns of one new conversation and prints one JSON object per turn: reply, route, tool_calls
[{name, args}], planner (who chose the calls), z, z_source, spectype, the class the measurements
found and what the claim check dropped. A bad script is a one-line error and exit code 2.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from speclm.tools.spectrum import target_file


def register(subparsers) -> None:
    p = subparsers.add_parser("ask", help="ask the assistant from the terminal (one question, or a JSONL script)",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("text", nargs="?", default=None, help="the question (omit with --script)")
    p.add_argument("--spectrum", default=None, help="a spectrum file attached to the question")
    p.add_argument("--sdss-id", default=None, help="an SDSS identifier (plate-mjd-fiber, specObjID, RA/Dec)")
    p.add_argument("--script", default=None, help="JSONL file: one {\"text\", \"spectrum\"} turn per line")
    p.add_argument("--json", action="store_true", help="print one JSON object per turn")
    p.add_argument("--thread", default=None, help="continue this conversation thread (with --checkpoint-db)")
    from speclm.agent.config import AgentConfig

    AgentConfig.add_arguments(p, ASSISTANT_OPTIONS)  # the options' help comes from the config's fields
    p.set_defaults(func=run_ask, checkpoint_db=":memory:", max_new_tokens=120)


#: the AgentConfig fields `speclm ask` and `speclm demo` expose as options
ASSISTANT_OPTIONS = ("base", "adapter", "adapter_mode", "backend", "openai_base_url", "openai_model",
                     "openai_adapter_model", "openai_api_key_env", "planner", "planner_adapter", "plan_max_steps", "max_new_tokens",
                     "cosmology", "narrator", "checkpoint_db")


def read_script(path: str) -> list[dict]:
    """The turns of a JSONL script, validated (ScriptError names the line and the problem)."""
    from speclm.tools.errors import ScriptError

    p = Path(path)
    if not p.is_file():
        raise ScriptError(f"script {path} does not exist")
    turns = []
    for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScriptError(f"{p.name} line {i}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text", ""), str):
            raise ScriptError(f"{p.name} line {i}: expected an object with a \"text\" string")
        extra = set(obj) - {"text", "spectrum", "sdss_id"}
        if extra:
            raise ScriptError(f"{p.name} line {i}: unknown key(s) {', '.join(sorted(extra))}")
        sp = obj.get("spectrum")
        if sp is not None and not target_file(sp).is_file():
            raise ScriptError(f"{p.name} line {i}: spectrum {sp} does not exist")
        if not obj.get("text", "").strip() and not sp:
            raise ScriptError(f"{p.name} line {i}: empty turn (no text and no spectrum)")
        turns.append({"text": obj.get("text", ""), "spectrum": sp, "sdss_id": obj.get("sdss_id")})
    if not turns:
        raise ScriptError(f"script {path} has no turns")
    return turns


def turn_record(r) -> dict:
    """One turn as the JSON record of `speclm ask --json`."""
    calls = [{"name": t.get("name"), "args": t.get("input")} for t in r.tool_trace]
    return {"reply": r.reply, "route": r.route, "tool_calls": calls, "planner": r.planner,
            "z": r.z, "z_source": r.z_source, "spectype": r.spectype,
            "class": (r.measure or {}).get("summary_class"), "answered": r.answered,
            "dropped_sentences": len((r.grounding or {}).get("dropped") or []), "error": r.error,
            "seconds": r.seconds}


def run_ask(args) -> int:
    from speclm.agent.assistant import AgentConfig, Assistant
    from speclm.tools.errors import ScriptError

    if args.script:
        if args.text:
            raise ScriptError("give a question or --script, not both")
        turns = read_script(args.script)
    else:
        if not (args.text or args.spectrum or args.sdss_id):
            raise ScriptError("nothing to ask: give a question, --spectrum, --sdss-id or --script")
        if args.spectrum and not target_file(args.spectrum).is_file():
            raise ScriptError(f"spectrum {args.spectrum} does not exist")
        turns = [{"text": args.text or "", "spectrum": args.spectrum, "sdss_id": args.sdss_id}]
    cfg = AgentConfig.from_args(args)
    rc = 0
    with Assistant(cfg) as a:
        thread = args.thread or a.new_thread_id()
        for t in turns:
            r = a.turn(thread, t["text"], spectrum_path=t["spectrum"], sdss_id=t["sdss_id"])
            if args.json:
                print(json.dumps({"thread": thread, **turn_record(r)}, ensure_ascii=False, default=str), flush=True)
            else:
                print(r.reply, flush=True)
            rc = rc or (1 if r.route == "error" else 0)
    return rc
