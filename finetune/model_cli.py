"""`speclm predict`, `speclm train`, `speclm soup` and `speclm bundle`: the model runtime from the command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speclm.finetune.presets import TrainConfig
from speclm.tools.errors import SpeclmError



#: TrainConfig fields that ``speclm train`` exposes as options (overriding the preset's values)
TRAIN_OPTIONS = ("n_train", "epochs", "lr", "batch_size", "grad_accum", "save_every", "n_eval", "seed", "init_adapter")


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict redshifts of spectrum files, folders or datasets",
                       description="Constrained 'Redshift: z' decoding with a 68%% interval from the digit probabilities.")
    p.add_argument("paths", nargs="+", help="spectrum files, folders of files, or speclm dataset directories")
    p.add_argument("--adapter", default="bundled", help="LoRA adapter directory, or 'bundled' (default)")
    p.add_argument("--base", default=None, help="base model (default: the one named in the adapter's training card)")
    p.add_argument("--split", default="val", help="split to use when a path is a dataset (default val)")
    p.add_argument("--limit", type=int, default=0, help="at most N spectra per dataset/folder (0 = all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="spectra per forward pass of the model (default 8; with --out the catalog's 16)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per spectrum (JSON lines)")
    p.add_argument("--refine", action="store_true",
                   help="state the assistant's redshift: the model's p(z) modes plus a blind template search "
                        "(GALAXY 0-1.5, QSO 0-7, STAR z~0), with spectral type, confidence, warnings and alternatives")
    p.add_argument("--out", default=None,
                   help="write a catalog (.fits or .parquet) of every target instead of printing; resumable: rerun the "
                        "same command after an interruption (README: the catalog's columns and ZWARN bits)")
    p.add_argument("--workers", type=int, default=1,
                   help="with --out: N > 1 spreads the chunks over a local Dask cluster of N worker processes")
    p.add_argument("--scheduler", default="", help="with --out: address of a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--chunk-size", type=int, default=16, help="with --out: targets per chunk (resume/distribution unit)")
    p.add_argument("--merge-lora", action=argparse.BooleanOptionalAction, default=True,
                   help="with --out: fold the LoRA into the base weights for the catalog (1.3x faster on CPU; a z may "
                        "move by one unit of its last digit in bf16)")
    p.add_argument("--attention", choices=("auto", "eager", "sdpa"), default="auto",
                   help="with --out: the attention kernel (auto = eager on CPU, 1.2x faster for the digit tree; sdpa on "
                        "CUDA); --no-merge-lora --attention sdpa gives `speclm predict`'s exact numbers")
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf",
                   help="with --out: the model's digit tree on transformers (default) or on vLLM offline inference "
                        "(a GPU machine with vllm installed; the LoRA stays unmerged; see finetune/digit_tree.py)")
    p.set_defaults(func=cmd_predict)

    t = sub.add_parser("train", help="LoRA fine-tune a base model on a speclm dataset",
                       description="Loss on answer tokens only; checkpoints every N steps; rerun the same command to resume.")
    t.add_argument("--preset", default="smollm2", help="preset name or YAML file (see --list-presets)")
    t.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    t.add_argument("--dataset", help="speclm dataset directory (train and val splits)")
    t.add_argument("--out", help="output adapter directory (also holds checkpoints)")
    t.add_argument("--base", default=None, help="override the preset's base model")
    t.add_argument("--rank", type=int, default=None, help="override lora.r (alpha = 2 x rank)")
    t.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps (smoke tests)")
    TrainConfig.add_arguments(t, TRAIN_OPTIONS, override=True)
    t.add_argument("--no-bf16", action="store_true", help="force fp32 (default: bf16 only where the hardware has native bf16)")
    t.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run in --out")
    t.add_argument("--device", default="auto")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("soup", help="average LoRA adapters into one (a weight soup)",
                       description="Writes an adapter whose update is the weighted mean of the given adapters' "
                                   "(peft add_weighted_adapter, cat: exact, rank = sum of ranks). Calibrate it "
                                   "afterwards: speclm eval calibrate --adapter OUT ... --write.")
    s.add_argument("adapters", nargs="+", help="two or more LoRA adapter directories of one base, preprocessing and codec")
    s.add_argument("--out", required=True, help="output adapter directory")
    s.add_argument("--weights", type=float, nargs="+", default=None,
                   help="one positive weight per adapter, summing to 1 (default: equal)")
    s.add_argument("--fp32", action="store_true", help="store the soup in float32 (default float16)")
    s.set_defaults(func=cmd_soup)

    b = sub.add_parser("bundle", help="make a trained adapter ready to ship: float16 weights and a declared domain",
                       description="Casts the LoRA weights to float16, copies train_ids.txt, and writes the domain (the "
                                   "galaxies and z range the model answers for) into the card: from the run's card, "
                                   "or --domain-z-max. Refused without a domain, or when the run's training redshifts "
                                   "(where its datasets are on this machine) reach beyond it. The calibration is "
                                   "refitted afterwards: speclm eval calibrate --adapter OUT ... --write.")
    b.add_argument("run", help="a finished adapter run directory (speclm train --out, or speclm soup --out)")
    b.add_argument("--out", required=True, help="new, empty output directory")
    b.add_argument("--domain-z-max", type=float, default=None,
                   help="galaxies at z below this are the model's domain (default: the run card's domain)")
    b.add_argument("--domain-why", default=None, help="one sentence on where the domain comes from (kept in the card)")
    b.set_defaults(func=cmd_bundle)


# -- predict -----------------------------------------------------------------------------------
def _is_dataset(p: Path) -> bool:
    return p.is_dir() and (p / "meta.json").is_file() and (p / "spectra.parquet").is_file()


def iter_inputs(paths, split: str, limit: int):
    """Yield (label, Spectrum | SpeclmError) for files, folders, globs, datasets and every target of a
    multi-target file (``FILE[TARGETID]`` labels); a broken file or target doesn't stop the batch."""
    from speclm.finetune.datasets import open_dataset
    from speclm.tools.spectrum import expand_inputs, read_targets

    n = 0
    for raw in paths:
        p = Path(raw)
        if _is_dataset(p):
            ds = open_dataset(p)
            for i, s in enumerate(ds.iter_spectra(split)):
                if limit and i >= limit:
                    break
                yield f"{p}:{s.meta.get('id', i)}", s
            continue
        for f in expand_inputs([raw]):
            try:
                targets = list(read_targets(f))
            except SpeclmError as exc:
                targets = [(f, exc)]
            for label, s in targets:
                if limit and n >= limit:
                    return
                n += 1
                yield label, s


def cmd_predict(args) -> int:
    if args.out:
        from speclm.finetune.catalog import CatalogConfig, run_catalog

        cfg = CatalogConfig(refine=args.refine, chunk_size=args.chunk_size,
                            batch_size=args.batch_size or CatalogConfig.batch_size,
                            merge_lora=args.merge_lora, attention=args.attention,
                            workers=args.workers, scheduler=args.scheduler, adapter=args.adapter,
                            base=args.base or "", device=args.device, engine=args.engine)
        info = run_catalog(args.paths, args.out, cfg)
        print(json.dumps(info))
        return 0 if info["n_bad"] < info["n_targets"] else 2
    from speclm.finetune.predict import RedshiftPredictor, spectrum_prompt
    from speclm.finetune.preprocess import coverage_notes
    from speclm.finetune.runtime import ModelRuntime, read_card, resolve_adapter
    from speclm.tools.spectrum import r_band_snr

    adapter = resolve_adapter(args.adapter)
    base = args.base or read_card(adapter).get("base_model") or "embedded"
    items = list(iter_inputs(args.paths, args.split, args.limit))
    if not items:
        raise SpeclmError("no spectra found in the given paths")
    rt = ModelRuntime.load(base, adapter=adapter, device=args.device)
    pred = RedshiftPredictor.from_runtime(rt)
    prompts, keep, rows = [], [], []
    for label, s in items:
        if isinstance(s, SpeclmError):
            rows.append({"file": label, "error": str(s), "error_type": type(s).__name__})
            continue
        try:
            prompts.append(spectrum_prompt(s, pred.pre, pred.codec))
            keep.append((label, s))
        except SpeclmError as exc:
            rows.append({"file": label, "error": str(exc), "error_type": type(exc).__name__})
    # the same per-S/N p(z) temperature as the agent and `speclm eval redshift` (predict_spectra)
    snr = [r_band_snr(s) for _, s in keep]
    if pred.shifts > 1:  # the card asks for several readings per spectrum: they need the pixels
        results = pred.predict_spectra([s for _, s in keep], batch_size=args.batch_size or 8, progress=len(keep) > 8)
    else:
        results = pred.predict_prompts(prompts, batch_size=args.batch_size or 8, progress=len(prompts) > 8, snr=snr)
    for (label, s), r, sn in zip(keep, results, snr):
        d = {"file": label, **r.to_dict(), "z_catalog": s.z_catalog, "snr_r": sn, "pz_temperature": pred.temperature_for(sn),
             "pz_outlier": pred.outlier_for(sn),
             "preprocess_notes": coverage_notes(s, pred.pre)}
        if args.refine:
            d = refined_record(label, s, d)
        rows.append(d)
    n_err = 0
    for d in rows:
        if "error" in d:
            n_err += 1
        if args.json:
            print(json.dumps(d))
        elif "error" in d:
            print(f"{d['file']}: error: {d['error']}")
        elif args.refine:
            print(describe_record(d))
        else:
            cat = f"  (catalog z = {d['z_catalog']:.4f})" if d["z_catalog"] is not None else ""
            print(f"{d['file']}: z = {d['z']:.3f}  [68%: {d['z_lo']:.3f} - {d['z_hi']:.3f}]{cat}")
    return 2 if n_err == len(rows) else 0


REFINED_KEYS = ("file", "targetid", "ra", "dec", "survey_name", "z", "z_err", "z_model", "z_lo", "z_hi", "z_source",
                "spectype", "confident", "warnings", "alternatives", "features", "reason", "z_catalog", "class_catalog",
                "z_catalog_source", "noise", "preprocess_notes", "seconds")


def refined_record(label: str, spectrum, pred: dict) -> dict:
    """The `predict --refine` record: the z the assistant states (find_redshift) beside the model's."""
    from speclm.tools.redshift_search import find_redshift

    ans = find_redshift(spectrum, pred).to_dict()
    ans["alternatives"] = [{k: a[k] for k in ("z", "spectype", "delta_chi2")} for a in ans["alternatives"]]
    d = {**ans, "file": label, "z_catalog": pred.get("z_catalog"), "class_catalog": spectrum.meta.get("class"),
         "z_catalog_source": spectrum.meta.get("z_source"), "targetid": spectrum.meta.get("targetid"),
         "ra": spectrum.meta.get("ra"), "dec": spectrum.meta.get("dec"),
         "survey_name": spectrum.meta.get("survey_name"), "noise": "estimated" if spectrum.meta.get("noise_estimated")
         else ("none" if spectrum.meta.get("ivar_assumed") else "file"),
         "preprocess_notes": pred.get("preprocess_notes") or []}
    return {k: d.get(k) for k in REFINED_KEYS}


def describe_record(d: dict) -> str:
    err = f" ± {d['z_err']:.5f}" if d.get("z_err") else ""
    verdict = "confident" if d["confident"] else "NOT confident"
    out = (f"{d['file']}: {d['spectype']} z = {d['z']:.5f}{err} ({d['z_source']}, {verdict}); model z = "
           f"{d['z_model']:.3f} [68%: {d['z_lo']:.3f} - {d['z_hi']:.3f}]")
    if d.get("z_catalog") is not None:
        out += f"; catalog z = {d['z_catalog']:.4f}"
    for w in d["warnings"]:
        out += f"\n    warning: {w}"
    if not d["confident"] and d["alternatives"]:
        out += "\n    alternatives: " + ", ".join(f"z = {a['z']:.4f} {a['spectype']} (Δχ²/ν = {a['delta_chi2']:.0f})"
                                             for a in d["alternatives"][:3])
    return out


# -- train -------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    import numpy as np

    from speclm.finetune.datasets import open_dataset, zbin_split
    from speclm.finetune.presets import get_preset, list_presets
    from speclm.finetune.train import train_arrays

    if args.list_presets:
        for name, desc in list_presets().items():
            print(f"{name:14s} {desc}")
        return 0
    if not args.dataset or not args.out:
        raise SpeclmError("speclm train needs --dataset DIR and --out DIR (or --list-presets)")
    over: dict = {"train": {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}, "lora": {}}
    if args.rank is not None:
        over["lora"]["r"] = args.rank
    if args.rank is not None:
        over["lora"]["alpha"] = 2 * args.rank
    if args.no_bf16:
        over["train"]["bf16"] = "no"
    if args.base:
        over["base"] = args.base
    preset = get_preset(args.preset, **{k: v for k, v in over.items() if v})
    if is_pairs_dataset(args.dataset):
        return _train_planner(args, preset)
    ds = open_dataset(args.dataset)
    if "train" not in ds.splits or "val" not in ds.splits:
        raise SpeclmError(f"{args.dataset} needs 'train' and 'val' splits (has {ds.splits})")
    Xtr, ztr, idtr = ds.features("train", preset.preprocess), ds.z("train"), np.array(ds.ids("train"))
    Xv, zv, idv = ds.features("val", preset.preprocess), ds.z("val"), np.array(ds.ids("val"))
    ok, okv = ~np.isnan(Xtr).any(1), ~np.isnan(Xv).any(1)
    Xtr, ztr, idtr, Xv, zv, idv = Xtr[ok], ztr[ok], idtr[ok], Xv[okv], zv[okv], idv[okv]
    n = preset.train.n_train
    if n and n < len(ztr):
        sel, _ = zbin_split(ztr, n, 0, seed=preset.train.seed)
        Xtr, ztr, idtr = Xtr[sel], ztr[sel], idtr[sel]
    # validation order: a fixed shuffle so the first n_eval are spread over z
    perm = np.random.default_rng(1234).permutation(len(zv))
    Xv, zv, idv = Xv[perm], zv[perm], idv[perm]
    info = {"path": str(Path(args.dataset).resolve()), "fingerprint": ds.fingerprint(),
            "source": ds.meta.get("source"), "simulated": bool(ds.meta.get("simulated", False)),
            "n_train_split": int(ok.sum()), "n_val_split": int(okv.sum())}
    print(f"training {preset.name} on {len(ztr)} spectra ({info['source']}), base {preset.base}", file=sys.stderr)
    train_arrays(preset, args.out, Xtr, ztr, Xv, zv, train_ids=list(idtr), val_ids=list(idv), dataset_info=info,
                 resume=not args.no_resume, max_steps=args.max_steps, device=args.device)
    return 0


def cmd_soup(args) -> int:
    from speclm.finetune.soup import soup_adapters

    card = soup_adapters(args.adapters, args.out, args.weights, fp16=not args.fp32)
    s = card["soup"]
    print(f"wrote {args.out}: rank {card['lora']['r']}, weights "
          f"{', '.join(format(a['weight'], '.3g') for a in s['adapters'])}, {s['layers']} LoRA layers, "
          f"max relative error of dW {s['max_rel_error_dW']:.1e}, {card['n_train_including_init']} training ids")
    return 0


def cmd_bundle(args) -> int:
    from speclm.finetune.bundle import bundle_adapter

    card = bundle_adapter(args.run, args.out, domain_z_max=args.domain_z_max, domain_why=args.domain_why)
    b, d = card["bundle"], card["domain"]
    zt = "training z up to " + format(b["training_z_max"], ".3f") if b["training_z_max"] is not None else \
        "training datasets not on this machine (z range not checked)"
    print(f"wrote {args.out}: {b['tensors']} tensors in float16 (max relative error {b['max_rel_error']:.1e}), domain "
          f"{d['spectype']} z < {d['z_max']}, {zt}"
          + ("; calibration dropped: refit it with speclm eval calibrate --write" if b["calibration_dropped"] else ""))
    return 0


PAIRS_FORMATS = ("speclm-planner-dataset",)


def is_pairs_dataset(path) -> bool:
    """A text-pairs dataset (``speclm data planner``): requests with their rendered (prompt, answer) steps."""
    try:
        return json.loads((Path(path) / "meta.json").read_text()).get("format") in PAIRS_FORMATS
    except (OSError, ValueError):
        return False


def _read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _train_planner(args, preset) -> int:
    """``speclm train --preset planner --dataset DIR`` on a planner dataset (``speclm data planner``):
    one (prompt, answer) pair per planning step of every training request, as the dataset rendered them."""
    from speclm.finetune.train import train_pairs

    train, val = _read_jsonl(Path(args.dataset) / "train.jsonl"), _read_jsonl(Path(args.dataset) / "val.jsonl")
    if any("steps" not in r for r in train[:1]):
        raise SpeclmError(f"{args.dataset} was written before datasets carried their rendered steps; "
                          "write it again with `speclm data planner`")
    n = preset.train.n_train
    if n and n < len(train):
        train = train[:n]
    pairs = [tuple(p) for r in train for p in r["steps"]]
    meta = json.loads((Path(args.dataset) / "meta.json").read_text())
    info = {"path": str(Path(args.dataset).resolve()), "task": "planner", "source": meta.get("source"),
            "simulated": True, "seed": meta.get("seed"), "n": meta.get("n"),
            "generator_version": meta.get("generator_version", 1), "generator_commit": meta.get("generator_commit"),
            "n_requests": len(train), "n_steps": len(pairs)}
    print(f"training {preset.name} on {len(pairs)} planning steps of {len(train)} synthetic requests, "
          f"base {preset.base}", file=sys.stderr)
    train_pairs(preset, args.out, pairs, train_ids=[r["id"] for r in train], val_ids=[r["id"] for r in val],
                n_val=len(val), dataset_info=info, resume=not args.no_resume, max_steps=args.max_steps,
                device=args.device)
    return 0
