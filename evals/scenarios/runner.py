"""Playing scenarios against the real graph: one fresh thread and checkpoint db per scenario; reports."""
from __future__ import annotations

import dataclasses
from typing import Any

import json
import math
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from speclm.evals.scenarios.checks import CHECKS, TurnContext, shorten
from speclm.evals.scenarios.fixtures import Fixtures, fill_sdss, sdss_sim_module
from speclm.evals.scenarios.schema import FAIL, PASS, SKIP, FixtureUnavailable, Scenario, ScenarioError
from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError


# ------------------------------------------------------------------------------------------------
# Runner
# ------------------------------------------------------------------------------------------------

@dataclass
class AgentEvalConfig(Config):
    """How `speclm eval agent` runs the suite."""

    agent: Any = setting(None, "the assistant's AgentConfig (model, adapter, planner, ...); None = its defaults. "
                         "Each scenario gets its own thread database; a scenario may set adapter_mode")
    scenarios: str | None = setting(None, "scenario YAML file or directory (default: the bundled suite)")
    only: tuple = setting((), "run only these scenario names")
    exclude: tuple = setting((), "skip these scenario names")
    out: str | None = setting("agent_eval.json", "JSON report path (None: do not write)")
    ignore_model_dependent: bool = setting(False, "failures of model_dependent scenarios do not fail the run")

    def __post_init__(self):
        from speclm.agent.config import AgentConfig

        if self.agent is None:
            self.agent = AgentConfig(max_new_tokens=120)
        elif isinstance(self.agent, dict):
            self.agent = AgentConfig(**self.agent)
        self.only, self.exclude = tuple(self.only), tuple(self.exclude)


def _row(sc: Scenario, turn: int, check: str, status: str, detail: str) -> dict:
    return {"scenario": sc.name, "turn": turn, "check": check, "status": status, "detail": detail,
            "model_dependent": sc.model_dependent}


def run_scenario(sc: Scenario, cfg: AgentEvalConfig, runtime, fixtures: Fixtures, work: Path) -> dict:
    """Play one scenario in a fresh thread + checkpoint db; returns its record (turns and check rows)."""
    from speclm.agent.assistant import Assistant

    mode = sc.adapter_mode or cfg.agent.adapter_mode
    rec = {"name": sc.name, "description": sc.description, "source": sc.source, "adapter_mode": mode,
           "model_dependent": sc.model_dependent, "turns": [], "checks": [], "status": PASS}
    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            objects, sdss_cfg = [], None
            if "sdss_server" in sc.needs:
                sim_mod = sdss_sim_module()
                objects = sim_mod.make_objects(sc.sdss_objects["n"], seed=sc.sdss_objects["seed"])
                sim = stack.enter_context(sim_mod.SkyServerSim(objects))
                sdss_cfg = {"skyserver_url": sim.skyserver_url, "sas_url": sim.sas_url,
                            "cache_dir": str(work / "sdss-cache"), "timeout": 20.0, "retries": 1, "backoff": 0.01}
            a = stack.enter_context(Assistant(dataclasses.replace(
                cfg.agent, adapter_mode=mode, checkpoint_db=str(work / "chat.sqlite"), sdss=sdss_cfg), runtime=runtime))
            tid = a.new_thread_id()
            truth = catalog = None
            base_dir = Path(sc.source).parent if sc.source and Path(sc.source).is_file() else None
            for i, turn in enumerate(sc.turns, 1):
                path = z_fix = None
                if turn.spectrum:
                    path, z_fix = fixtures.get(turn.spectrum, base_dir)
                text, sid = fill_sdss(turn.text, objects), fill_sdss(turn.sdss_id, objects)
                prev_z = a.state(tid)["z"]
                r = a.turn(tid, text, spectrum_path=path, sdss_id=sid)
                st = a.state(tid)
                if not r.error:  # a failed turn leaves the thread's object as it was
                    if path is not None:
                        truth, catalog = z_fix, (r.spectrum_summary or {}).get("z_catalog")
                    elif r.lookup:
                        obj = next((o for o in objects if o.name == r.lookup.get("name")), None)
                        truth, catalog = (obj.z if obj else None), r.lookup.get("z")
                from speclm.agent.grounding import check_reply

                values = a.graph.get_state({"configurable": {"thread_id": tid}}).values
                ctx = TurnContext(result=r, adapter_mode=mode, prev_z=prev_z, z_after=st["z"], truth=truth,
                                  catalog=catalog, upload_name=Path(path).name if path else None,
                                  n_messages=st["n_messages"],
                                  measured_class=(values.get("measure") or {}).get("summary_class"),
                                  invented=check_reply(r.reply, a.nodes.facts(values).add([r.error] if r.error else [])))
                rows = []
                for key, value in turn.expect.items():
                    try:
                        out = CHECKS[key].evaluate(value, ctx)
                    except Exception as exc:  # noqa: BLE001 - a check that cannot be evaluated is a failed check
                        out = (FAIL, f"check crashed: {type(exc).__name__}: {exc}")
                    for label, status, detail in (out if isinstance(out, list) else [("", *out)]):
                        rows.append(_row(sc, i, f"{key}:{label}" if label else key, status, detail))
                rec["checks"] += rows
                rec["turns"].append({"turn": i, "text": text, "spectrum": turn.spectrum, "sdss_id": sid,
                                     "result": r.to_dict(), "truth_z": truth, "catalog_z": catalog})
        except FixtureUnavailable as exc:
            rec["checks"].append(_row(sc, len(rec["turns"]) + 1, "fixture", SKIP, str(exc)))
            rec["status"] = SKIP
        except ScenarioError:
            raise
        except Exception as exc:  # noqa: BLE001 - the runner failed on this scenario: report, go on
            rec["checks"].append(_row(sc, len(rec["turns"]) + 1, "runner", FAIL, f"{type(exc).__name__}: {exc}"))
    statuses = {c["status"] for c in rec["checks"]}
    if FAIL in statuses:
        rec["status"] = FAIL
    elif rec["status"] != SKIP and statuses == {SKIP}:
        rec["status"] = SKIP
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


def load_runtime(cfg: AgentEvalConfig):
    """One ModelRuntime for the whole suite (base + adapter), shared by every scenario's Assistant."""
    from speclm.finetune.runtime import ModelRuntime

    return ModelRuntime.load(cfg.agent.base, cfg.agent.adapter, device=cfg.agent.device)


def run_suite(scenarios: list[Scenario], cfg: AgentEvalConfig, *, runtime=None, progress: bool = True) -> dict:
    """Run scenarios (each in a fresh thread and temp checkpoint db); returns the JSON-able report."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    rt = runtime if runtime is not None else load_runtime(cfg)
    records = []
    with tempfile.TemporaryDirectory(prefix="speclm-agent-eval-") as tmp:
        fixtures = Fixtures(Path(tmp) / "fixtures")
        for sc in tqdm(scenarios, desc="agent scenarios", unit="scenario", disable=not progress):
            records.append(run_scenario(sc, cfg, rt, fixtures, Path(tmp) / sc.name))
    counted = [r for r in records if not (cfg.ignore_model_dependent and r["model_dependent"])]
    checks = [c for r in records for c in r["checks"]]
    summary = {
        "scenarios": len(records),
        **{k.lower(): sum(r["status"] == k for r in records) for k in (PASS, FAIL, SKIP)},
        "checks": len(checks), **{f"checks_{k.lower()}": sum(c["status"] == k for c in checks) for k in (PASS, FAIL, SKIP)},
        "model_dependent_failed": sum(r["status"] == FAIL and r["model_dependent"] for r in records),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    cfg_d = asdict(cfg)
    cfg_d["agent"] = {k: v for k, v in asdict(cfg.agent).items() if k != "sdss"}
    cfg_d["runtime"] = f"{getattr(rt, 'base', '?')} + adapter {getattr(rt, 'active', None) or 'none'}"
    return {"suite": "speclm agent scenarios", "config": cfg_d, "summary": summary,
            "ok": all(r["status"] != FAIL for r in counted), "scenarios": records, "checks": checks}


def format_table(report: dict, width: int = 72) -> str:
    """Plain-text table: scenario | turn | check | result | detail, then a summary line."""
    rows = [("scenario", "turn", "check", "result", "detail")]
    for c in report["checks"]:
        res = c["status"] + ("*" if c["model_dependent"] and c["status"] == FAIL else "")
        rows.append((c["scenario"], str(c["turn"]), c["check"], res, shorten(c["detail"], width)))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(r[i].ljust(w[i]) for i in range(4)) + "  " + r[4])
        if j == 0:
            lines.append("  ".join("-" * w[i] for i in range(4)) + "  " + "-" * 6)
    s = report["summary"]
    lines.append("")
    for r in report["scenarios"]:
        lines.append(f"{r['status']:<4}  {r['name']}{' (model-dependent)' if r['model_dependent'] else ''}"
                     f"  [{len(r['turns'])} turns, {r['seconds']:.1f} s]")
    lines.append(f"\n{s['pass']} passed, {s['fail']} failed, {s['skip']} skipped of {s['scenarios']} scenarios "
                 f"({s['checks_pass']}/{s['checks']} checks passed, {s['checks_skip']} skipped; {s['seconds']:.0f} s)"
                 + ("; * = model-dependent" if s["model_dependent_failed"] else ""))
    return "\n".join(lines)


def write_report(report: dict, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)

    def default(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return str(o)

    p.write_text(json.dumps(report, indent=2, default=default))
    return p
