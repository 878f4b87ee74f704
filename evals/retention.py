"""Language retention: does the spectroscopy adapter cost the model its English? (paper Table 1)

The paper reports "Scientific QA" (AstroBench) and "General QA" (eval-harness) as % of the base
model's score. AstroBench's answer keys are not public, so speclm measures with MMLU instead:
``speclm_astro`` = MMLU astronomy (152 questions) stands in for Scientific QA, ``speclm_general``
= a fixed spread of 10 MMLU subjects (see ``evals/tasks/_speclm_general.yaml``) for General QA.
Both are scored by the real lm-evaluation-harness (``simple_evaluate``, zero-shot loglikelihood
over the letters A-D, lm-eval's own MMLU prompt) from task YAML under ``evals/tasks/`` that read
the original MMLU CSVs offline.

Three conditions, each a real forward pass through the model:

* ``base``   -- the bare base model, no adapter loaded at all;
* ``always`` -- the adapter on for everything (the paper's setting: one model for all turns);
* ``toggle`` -- speclm's agent: the adapter is loaded but switched off for text turns (peft's
  ``disable_adapter()``, exactly what :meth:`ModelRuntime.adapter_enabled` does in the agent).

``toggle`` should equal ``base``; measuring it rather than copying the base number is the check
that the switch really restores the base weights' behaviour.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from speclm.tools.json_safe import json_default
from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError, SpeclmError

TASK_DIR = Path(__file__).resolve().parent / "tasks"
CONDITIONS = ("base", "always", "toggle")
SETS = ("astro", "general")
SET_LABELS = {"astro": "Scientific QA (MMLU astronomy)", "general": "General QA (10 MMLU subjects)"}
# The lm-eval groups defined in evals/tasks/ (local CSV data), per prompt format ...
LOCAL_GROUPS = {"letter": {"astro": "speclm_astro", "general": "speclm_general"},
                "cloze": {"astro": "speclm_astro_cloze", "general": "speclm_general_cloze"}}
# letter: lm-eval's MMLU prompt, the model picks A-D (acc). cloze: the answer texts are scored
# after "Question: ...\nAnswer:" (acc_norm) -- lm-eval's mmlu_*_continuation; small models that
# sit at chance on letters get a measurable score this way.
FORMATS = {"letter": "acc", "cloze": "acc_norm"}
# ... and their subjects; the same subjects name lm-eval's hub tasks mmlu_<subject> (--hub-tasks).
ASTRO_SUBJECTS = ("astronomy",)
GENERAL_SUBJECTS = (
    "philosophy", "prehistory", "world_religions",                               # humanities
    "high_school_geography", "high_school_macroeconomics", "sociology",         # social sciences
    "elementary_mathematics", "high_school_biology",                            # STEM
    "marketing", "nutrition",                                                    # other
)
SUBJECTS = {"astro": ASTRO_SUBJECTS, "general": GENERAL_SUBJECTS}
NOTES = (
    "Scientific QA: the paper used AstroBench (Ting et al. 2025), whose answer keys are not public; "
    "MMLU astronomy is the open stand-in.",
    "General QA: 10 MMLU subjects spread over MMLU's four categories (humanities: philosophy, "
    "prehistory, world_religions; social sciences: high_school_geography, high_school_macroeconomics, "
    "sociology; STEM: elementary_mathematics, high_school_biology; other: marketing, nutrition).",
    "Retention = condition accuracy / base accuracy x 100 (as in Table 1). With --limit the numbers "
    "come from the first N questions of each subject and carry the stderr shown.",
)


class RetentionError(SpeclmError):
    """The retention evaluation cannot run (MMLU data missing, lm-eval missing, bad options)."""


@dataclass
class RetentionConfig(Config):
    """What to measure and how; saved into the output JSON."""

    mmlu_dir: str | None = setting(None, "Folder of the original MMLU CSVs (…/mmlu or …/mmlu/data); "
                                    "default $SPECLM_MMLU_DIR or ../shared/data/mmlu next to the repo.")
    base: str | None = setting(None, "Base model: 'embedded', 'tiny', a HF id or a local path "
                                "(default: the adapter card's base_model, else 'embedded').")
    adapter: str | None = setting("bundled", "PEFT adapter directory, or 'bundled'; needed for always/toggle.")
    conditions: tuple = setting(CONDITIONS, "Subset of base, always, toggle.")
    limit: int | None = setting(None, "Questions per subject (first N); None = all (astro 152, general 3028).")
    num_fewshot: int = setting(0, "Few-shot examples from MMLU dev (0-5); the paper-style default is 0.")
    batch_size: int = setting(8, "lm-eval batch size.")
    device: str = setting("auto", "cpu, cuda, cuda:0, … or auto.")
    dtype: str = setting("auto", "float32, bfloat16 or auto (bf16 on GPU/AMX CPUs).")
    hub_tasks: bool = setting(False, "Use lm-eval's own mmlu_<subject> tasks (needs network: cais/mmlu on the hub); "
                              "the lm_eval CLI equivalent: lm_eval --model hf --model_args pretrained=BASE,"
                              "peft=ADAPTER --tasks mmlu_astronomy,mmlu_philosophy,…")
    apply_chat_template: bool = setting(False, "Wrap questions in the model's chat template.")
    format: str = setting("letter", "'letter' (MMLU A-D prompt, acc) or 'cloze' (answer texts scored, acc_norm: "
                               "lm-eval's mmlu_*_continuation; for small models at chance on letters, e.g. 135M).")
    loader: str = setting("runtime", "'runtime' = speclm's ModelRuntime (any base incl. tiny); 'lm-eval' = "
                                "lm-eval's HFLM(pretrained=PATH, peft=ADAPTER) loader (path/HF-id bases).")

    def __post_init__(self):
        self.conditions = tuple(self.conditions)
        bad = set(self.conditions) - set(CONDITIONS)
        if bad or not self.conditions:
            raise ConfigError(f"conditions must be a non-empty subset of {CONDITIONS}, got {self.conditions}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if not 0 <= self.num_fewshot <= 5:
            raise ConfigError(f"num_fewshot must be in 0..5 (MMLU dev has 5 per subject), got {self.num_fewshot}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {tuple(FORMATS)}, got {self.format!r}")
        if self.loader not in ("runtime", "lm-eval"):
            raise ConfigError(f"loader must be 'runtime' or 'lm-eval', got {self.loader!r}")
        if {"always", "toggle"} & set(self.conditions) and not self.adapter:
            raise ConfigError("conditions always/toggle need an adapter (--adapter bundled|PATH)")


# --------------------------------------------------------------------------------------- data

def default_mmlu_dir() -> Path | None:
    """$SPECLM_MMLU_DIR, else ``shared/data/mmlu`` beside the repository (where CI puts shared/)."""
    env = os.environ.get("SPECLM_MMLU_DIR")
    if env:
        return Path(env)
    cand = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlu"
    return cand if cand.exists() else None


def _task_utils():
    """evals/tasks/utils.py, loaded by path as lm-eval does (tasks/ is data, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("speclm_mmlu_task_utils", TASK_DIR / "utils.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def resolve_mmlu_dir(path: str | os.PathLike | None) -> Path:
    """Check the MMLU CSVs for every subject we use are there; return the folder to hand lm-eval."""
    find_split_dir = _task_utils().find_split_dir
    p = Path(path).expanduser() if path else default_mmlu_dir()
    if p is None:
        raise RetentionError("no MMLU data: pass --mmlu DIR (the original MMLU CSV release, e.g. "
                             "../shared/data/mmlu) or set SPECLM_MMLU_DIR")
    try:
        split_dir = find_split_dir(p)
    except FileNotFoundError as exc:
        raise RetentionError(str(exc)) from None
    missing = [f"{s}_test.csv" for s in ASTRO_SUBJECTS + GENERAL_SUBJECTS
               if not (split_dir / "test" / f"{s}_test.csv").is_file()]
    if missing:
        raise RetentionError(f"{split_dir}/test lacks {', '.join(missing)}")
    return p.resolve()


def task_manager(mmlu_dir: Path | None, hub: bool = False):
    """lm-eval TaskManager that knows speclm's tasks (or lm-eval's built-in ones for --hub-tasks)."""
    from lm_eval.tasks import TaskManager

    if hub:
        return TaskManager()
    return TaskManager(include_path=str(TASK_DIR), include_defaults=False,
                       metadata={"mmlu_dir": str(mmlu_dir)})


def task_names(hub: bool, fmt: str = "letter") -> dict[str, list[str]]:
    if hub:
        suffix = "_continuation" if fmt == "cloze" else ""
        return {k: [f"mmlu_{s}{suffix}" for s in SUBJECTS[k]] for k in SETS}
    return {k: [LOCAL_GROUPS[fmt][k]] for k in SETS}


# --------------------------------------------------------------------------------- one condition

def _log_softmax_correct(sample: dict) -> float:
    """log p(correct letter) renormalised over the four letters: a continuous, per-question score
    that moves with any change of the weights even when the argmax (accuracy) does not."""
    lls = [float(r[0]) for r in sample["filtered_resps"]]
    m = max(lls)
    lse = m + math.log(sum(math.exp(x - m) for x in lls))
    return lls[int(sample["target"])] - lse


def summarise(results: dict, hub: bool, fmt: str = "letter") -> dict:
    """Per set: acc (the format's metric: acc or acc_norm), stderr, n, mean log p(correct), per subject."""
    from lm_eval.api.metrics import pooled_sample_stderr

    metric = FORMATS[fmt]
    names = task_names(hub, fmt)
    out = {}
    for key in SETS:
        subs = {}
        for i, subj in enumerate(SUBJECTS[key]):
            name = names[key][i] if hub else f"speclm_mmlu_{subj}"
            r = results["results"][name]
            samples = results.get("samples", {}).get(name, [])
            se = r.get(f"{metric}_stderr,none")
            subs[subj] = {"acc": float(r[f"{metric},none"]), "stderr": float(se) if isinstance(se, (int, float)) else None,
                          "n": int(results["n-samples"][name]["effective"]),
                          "mean_logprob_correct": (sum(map(_log_softmax_correct, samples)) / len(samples)
                                                   if samples else None)}
        n = sum(s["n"] for s in subs.values())
        acc = sum(s["acc"] * s["n"] for s in subs.values()) / n
        group = LOCAL_GROUPS[fmt][key]
        if not hub and f"{metric},none" in results["results"].get(group, {}):  # lm-eval's own group aggregate
            acc = float(results["results"][group][f"{metric},none"])
        ses = [s["stderr"] for s in subs.values()]
        if len(subs) == 1:
            stderr = ses[0]
        elif all(s is not None for s in ses):
            stderr = float(pooled_sample_stderr(ses, [s["n"] for s in subs.values()]))
        else:
            stderr = None
        lps = [s["mean_logprob_correct"] for s in subs.values()]
        mlp = (sum(lp * s["n"] for lp, s in zip(lps, subs.values())) / n) if all(lp is not None for lp in lps) else None
        out[key] = {"acc": acc, "metric": metric, "stderr": stderr, "n": n, "mean_logprob_correct": mlp, "subjects": subs}
    return out


def evaluate_model(model, tokenizer, cfg: RetentionConfig, mmlu_dir: Path | None, *, lm=None) -> dict:
    """Score one model state (whatever adapter state it is in now) on both sets with lm-eval."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if lm is None:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size)
    tm = task_manager(mmlu_dir, cfg.hub_tasks)
    names = task_names(cfg.hub_tasks, cfg.format)
    t0 = time.time()
    res = simple_evaluate(model=lm, tasks=names["astro"] + names["general"], task_manager=tm,
                          num_fewshot=cfg.num_fewshot, limit=cfg.limit, log_samples=True,
                          bootstrap_iters=1000, apply_chat_template=cfg.apply_chat_template)
    if res is None:  # non-zero rank under a distributed launcher
        return {}
    out = summarise(res, cfg.hub_tasks, cfg.format)
    out["seconds"] = round(time.time() - t0, 1)
    out["lm_eval_config"] = {k: res["config"].get(k) for k in ("batch_size", "limit", "bootstrap_iters")}
    return out


# ------------------------------------------------------------------------------- orchestration

def _adapter_info(path: str | None) -> dict:
    if not path:
        return {}
    from speclm.finetune.runtime import read_card, resolve_adapter

    p = resolve_adapter(path)
    card = read_card(p)
    return {"path": p, "base_model": card.get("base_model"), "steps": card.get("steps"),
            "note": card.get("note"), "preset": (card.get("preset") or {}).get("name"),
            "metrics_val": card.get("metrics_val")}


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def retention_pct(conditions: dict, base: dict | None) -> dict:
    """{condition: {set: acc/base_acc*100}} for every non-base condition."""
    if not base:
        return {}
    out = {}
    for name, res in conditions.items():
        if name == "base" or not res:
            continue
        out[name] = {k: (round(100.0 * res[k]["acc"] / base[k]["acc"], 6) if base[k]["acc"] > 0 else None) for k in SETS}
    return out


def run_retention(cfg: RetentionConfig, *, base_result: dict | None = None, progress: bool = True) -> dict:
    """Measure the requested conditions; returns the JSON-able report.

    ``base_result`` (a previous report's ``conditions["base"]`` for the same base model, data and
    limit) lets callers such as the ablation grid score the base model once for many adapters.
    """
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise RetentionError("the retention evaluation needs lm-evaluation-harness: pip install 'lm-eval>=0.4.5'") from None
    from speclm.finetune.runtime import pick_device

    mmlu_dir = None if cfg.hub_tasks else resolve_mmlu_dir(cfg.mmlu_dir)
    ad = _adapter_info(cfg.adapter) if {"always", "toggle"} & set(cfg.conditions) else {}
    base = cfg.base or ad.get("base_model") or "embedded"
    if ad.get("base_model") and ad["base_model"] != base:
        logging.getLogger(__name__).warning("adapter was trained on %s but is evaluated on %s", ad["base_model"], base)
    _quiet_lm_eval()
    t_start = time.time()
    conds: dict[str, dict] = {}
    say = print if progress else (lambda *a, **k: None)
    if cfg.loader == "lm-eval":
        model_info = _run_with_lm_eval_loader(cfg, base, ad, mmlu_dir, conds, say)
    else:
        model_info = _run_with_runtime(cfg, base, ad, mmlu_dir, conds, say)
    base_res = conds.get("base") or base_result
    report = {
        "kind": "speclm-retention",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "speclm_version": _speclm_version(),
        "lm_eval_version": _lm_eval_version(),
        "wall_seconds": round(time.time() - t_start, 1),
        "model": model_info | {"device": pick_device(cfg.device)},
        "adapter": ad,
        "tasks": {"source": "lm-eval hub tasks (cais/mmlu)" if cfg.hub_tasks else "local MMLU CSVs via evals/tasks",
                  "mmlu_dir": str(mmlu_dir) if mmlu_dir else None, "task_dir": str(TASK_DIR),
                  "subjects": {k: list(SUBJECTS[k]) for k in SETS}, "labels": SET_LABELS,
                  "format": cfg.format, "metric": FORMATS[cfg.format]},
        "config": asdict(cfg) | {"conditions": list(cfg.conditions), "base": base},
        "conditions": conds,
        "base_reused": bool(base_result) and "base" not in conds,
        "retention_pct": retention_pct(conds, base_res),
        "notes": list(NOTES),
    }
    if base_result and "base" not in conds:
        report["base_reference"] = base_res
    return report


def _measure(name: str, model, tok, cfg, mmlu_dir, conds, say, *, lm=None):
    say(f"[retention] {name}: scoring {'all' if cfg.limit is None else cfg.limit} questions per subject …", flush=True)
    conds[name] = evaluate_model(model, tok, cfg, mmlu_dir, lm=lm)
    r = conds[name]
    say(f"[retention] {name}: astro {r['astro']['acc']:.3f} (n={r['astro']['n']}), "
        f"general {r['general']['acc']:.3f} (n={r['general']['n']}) in {r['seconds']:.0f}s", flush=True)


def _run_with_runtime(cfg, base, ad, mmlu_dir, conds, say) -> dict:
    """One ModelRuntime, as in the agent: score base first, then attach the adapter in place."""
    from speclm.finetune.runtime import ModelRuntime, resolve_base

    rt = ModelRuntime.load(base, device=cfg.device, dtype=cfg.dtype)
    info = {"base": base, "resolved": resolve_base(base), "loader": "speclm ModelRuntime",
            "dtype": str(next(rt.model.parameters()).dtype).replace("torch.", "")}
    if "base" in cfg.conditions:
        _measure("base", rt.model, rt.tokenizer, cfg, mmlu_dir, conds, say)
    if {"always", "toggle"} & set(cfg.conditions):
        rt.attach(ad["path"], name="retention_adapter")
        if "always" in cfg.conditions:
            with rt.adapter_enabled(True):
                _measure("always", rt.model, rt.tokenizer, cfg, mmlu_dir, conds, say)
        if "toggle" in cfg.conditions:
            with rt.adapter_enabled(False):  # peft disable_adapter(): the agent's text-turn state
                _measure("toggle", rt.model, rt.tokenizer, cfg, mmlu_dir, conds, say)
    return info


def _run_with_lm_eval_loader(cfg, base, ad, mmlu_dir, conds, say) -> dict:
    """lm-eval's own loading path: HFLM(pretrained=PATH) for base, HFLM(..., peft=ADAPTER) for the
    adapter conditions; toggle = the same PeftModel under ``disable_adapter()``."""
    from lm_eval.models.huggingface import HFLM

    from speclm.finetune.runtime import pick_device, resolve_base

    resolved = resolve_base(base)
    if resolved == "tiny":
        raise ConfigError("--loader lm-eval needs a base on disk or on the hub; 'tiny' exists only in memory")
    dev = pick_device(cfg.device)
    dtype = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16"}[cfg.dtype]
    kw = dict(pretrained=resolved, device=dev, dtype=dtype, batch_size=cfg.batch_size)
    info = {"base": base, "resolved": resolved, "loader": "lm-eval HFLM(peft=)", "dtype": dtype}
    if "base" in cfg.conditions:
        lm = HFLM(**kw)
        _measure("base", None, None, cfg, mmlu_dir, conds, say, lm=lm)
        del lm
    if {"always", "toggle"} & set(cfg.conditions):
        lm = HFLM(**kw, peft=ad["path"])
        if "always" in cfg.conditions:
            _measure("always", None, None, cfg, mmlu_dir, conds, say, lm=lm)
        if "toggle" in cfg.conditions:
            with lm.model.disable_adapter():
                _measure("toggle", None, None, cfg, mmlu_dir, conds, say, lm=lm)
    return info


def _quiet_lm_eval() -> None:
    """lm-eval logs every task at INFO and warns that we pass a model object; keep the CLI readable."""
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _speclm_version() -> str:
    from speclm import __version__

    return __version__


# ---------------------------------------------------------------------------------- presentation

def _fmt_acc(r: dict) -> str:
    se = f" ± {r['stderr']:.3f}" if r.get("stderr") is not None else ""
    return f"{r['acc']:.3f}{se} (n={r['n']})"


def format_table(report: dict) -> str:
    """Plain-text table: accuracy ± stderr (n) and % retained per condition and set."""
    conds = report["conditions"]
    base = conds.get("base") or report.get("base_reference")
    rows = [("condition", SET_LABELS["astro"], "retained", SET_LABELS["general"], "retained")]
    order = [c for c in CONDITIONS if c in conds]
    if "base" not in conds and base:
        rows.append(("base (reused)", _fmt_acc(base["astro"]), "100.0%", _fmt_acc(base["general"]), "100.0%"))
    for c in order:
        r = conds[c]
        pct = report["retention_pct"].get(c, {}) if c != "base" else {"astro": 100.0, "general": 100.0}
        fmt = lambda v: "n/a" if v is None else f"{v:.1f}%"  # noqa: E731
        rows.append((c, _fmt_acc(r["astro"]), fmt(pct.get("astro")), _fmt_acc(r["general"]), fmt(pct.get("general"))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = report["model"]
    head = (f"Language retention — base {m['base']} ({m.get('dtype')}, {m.get('device')}), adapter "
            f"{report['adapter'].get('path') or '(none)'}; lm-eval {report['lm_eval_version']}, "
            f"{report['config']['format']} format ({FORMATS[report['config']['format']]}), "
            f"{report['config']['num_fewshot']}-shot, limit {report['config']['limit'] or 'none'}")
    return "\n".join([head, *lines, *(f"note: {n}" for n in report["notes"][:1])])


# --------------------------------------------------------------------------------------- testing aid

def perturb_adapter(src: str | os.PathLike, dst: str | os.PathLike, *, scale: float = 0.02, seed: int = 0) -> Path:
    """Copy an adapter with Gaussian noise added to every LoRA weight.

    Why: a freshly initialised LoRA has B = 0, so it changes nothing and cannot show whether a
    measurement tells "adapter on" from "adapter off". The noise makes it a real (untrained)
    change of the weights; the card says so.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from speclm.finetune.runtime import resolve_adapter

    src, dst = Path(resolve_adapter(str(src))), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    f = dst / "adapter_model.safetensors"
    sd = load_file(str(f))
    g = torch.Generator().manual_seed(seed)
    sd = {k: (v.float() + scale * torch.randn(v.shape, generator=g)).to(v.dtype) for k, v in sd.items()}
    save_file(sd, str(f), metadata={"format": "pt"})
    card_f = dst / "training_card.json"
    card = json.loads(card_f.read_text()) if card_f.is_file() else {}
    card["note"] = f"{card.get('note', '')} + gaussian noise scale {scale} seed {seed} (test adapter, not trained)".strip(" +")
    card_f.write_text(json.dumps(card, indent=2))
    return dst


# ------------------------------------------------------------------------------------------- CLI

def register_eval(eval_subparsers) -> None:
    """Add ``speclm eval retention`` to the ``speclm eval`` subcommand group."""
    p = eval_subparsers.add_parser(
        "retention", help="language retention on MMLU (astronomy + 10 general subjects) with lm-eval",
        description=__doc__.split("\n\n")[0] + " Scored with lm-evaluation-harness on MMLU (offline CSVs); "
                    "prints accuracy and %% retained for base / always / toggle.")
    p.add_argument("--mmlu", metavar="DIR", default=None,
                   help="original MMLU CSV folder (…/mmlu with data/{dev,test,val}); default $SPECLM_MMLU_DIR "
                        "or ../shared/data/mmlu beside the repo")
    p.add_argument("--conditions", default=",".join(CONDITIONS), help="comma list of base,always,toggle")
    RetentionConfig.add_arguments(p, ("adapter", "base", "limit", "num_fewshot", "batch_size", "device", "dtype",
                                      "format", "loader"))
    p.add_argument("--chat-template", action="store_true", help="apply the model's chat template to prompts")
    RetentionConfig.add_arguments(p, ("hub_tasks",))
    p.add_argument("--out", metavar="FILE.json", default=None, help="write the full report here")
    p.set_defaults(func=_cmd_retention)


def _cmd_retention(args) -> int:
    cfg = RetentionConfig.from_args(
        args, mmlu_dir=args.mmlu, adapter=None if args.adapter in ("", "none") else args.adapter,
        conditions=tuple(c.strip() for c in args.conditions.split(",") if c.strip()),
        apply_chat_template=args.chat_template)
    report = run_retention(cfg)
    print(format_table(report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=json_default))
        print(f"wrote {out}")
    return 0


