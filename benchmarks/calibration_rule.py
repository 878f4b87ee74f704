"""Judge p(z) calibrations of one adapter's weights on stored digit logits (docs/protocols/cal24.md's rule).

Every card must share the reference's weights (only ``calibration`` differs); the logits come from
benchmarks/pz_logits.py, one file per decision set, never used in any fit. For each card: per set the 68% and 95%
coverage and the count of confidently wrong answers (truth outside the 99% interval); pooled, the 68% coverage
and the median 68% width at r-band S/N >= 5. A candidate passes iff (1) its summed confidently-wrong count is
below the reference's, (2) every set's 68% coverage is within 55-80%, (3) the pooled 68% coverage within
64-72%, (4) the pooled median 68% width at S/N >= 5 is at most 1.25 x the reference's; of the passers the one
with the fewest confidently wrong answers wins (ties: the earlier one given).

    python benchmarks/calibration_rule.py --reference bundled --candidates runs/v14_cal24 runs/v14_cal24t \
        --logits runs/logits/v14_v17d_*_val.npz runs/logits/v14_hii_val.npz [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def score(pred, d: dict) -> dict:
    """Coverage, confidently-wrong count and interval widths of one calibrated predictor on stored logits."""
    res = pred.summarise_at_snr(d["raw"], d["snr"])
    z = d["z"]
    lo, hi = np.array([r.z_lo for r in res]), np.array([r.z_hi for r in res])
    lo95, hi95 = np.array([r.z_lo95 for r in res]), np.array([r.z_hi95 for r in res])
    lo99, hi99 = np.array([r.z_lo99 for r in res]), np.array([r.z_hi99 for r in res])
    return {"n": int(len(z)), "in68": (lo <= z) & (z <= hi), "in95": (lo95 <= z) & (z <= hi95),
            "wrong": ~((lo99 <= z) & (z <= hi99)), "w68": hi - lo, "w99": hi99 - lo99, "snr": d["snr"]}


def judge(ref: dict, cand: dict) -> dict:
    """The rule's four clauses for one candidate against the reference (each a dict of set name -> score)."""
    def pooled(s, k):
        return np.concatenate([v[k] for v in s.values()])

    wrong_ref, wrong = sum(int(v["wrong"].sum()) for v in ref.values()), sum(int(v["wrong"].sum()) for v in cand.values())
    cov = {k: float(v["in68"].mean()) for k, v in cand.items()}
    bright_ref, bright = pooled(ref, "snr") >= 5, pooled(cand, "snr") >= 5
    width_ref, width = float(np.median(pooled(ref, "w68")[bright_ref])), float(np.median(pooled(cand, "w68")[bright]))
    pool = float(pooled(cand, "in68").mean())
    clauses = {"1_fewer_confidently_wrong": wrong < wrong_ref, "2_each_set_68_in_55_80": all(0.55 <= c <= 0.80 for c in cov.values()),
               "3_pooled_68_in_64_72": 0.64 <= pool <= 0.72, "4_width_snr5_le_1.25x": width <= 1.25 * width_ref}
    return {"confidently_wrong": wrong, "reference_confidently_wrong": wrong_ref, "pooled_68": pool,
            "median_width_68_snr5": width, "reference_median_width_68_snr5": width_ref, "clauses": clauses,
            "passes": all(clauses.values())}


def main(argv=None) -> int:
    from speclm.evals.redshift import load_split_logits
    from speclm.finetune.predict import RedshiftPredictor, calibration_kwargs
    from speclm.finetune.runtime import ModelRuntime, read_card, resolve_adapter

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, help="adapter whose calibration is the one to beat (e.g. bundled)")
    ap.add_argument("--candidates", nargs="+", required=True, help="adapters with the same weights, other calibrations")
    ap.add_argument("--logits", nargs="+", required=True, help="stored logits of the decision sets (pz_logits.py)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    names = [args.reference, *args.candidates]
    cards = {n: read_card(resolve_adapter(n)) for n in names}
    rt = ModelRuntime.load(cards[args.reference].get("base_model") or "embedded", resolve_adapter(args.reference),
                           device="cpu")
    p0 = RedshiftPredictor.from_runtime(rt)
    sets = {Path(f).stem: load_split_logits(f, adapter=args.reference) for f in args.logits}
    for f in args.logits:  # every candidate's weights are the reference's
        for n in names[1:]:
            load_split_logits(f, adapter=n)
    scores = {n: {s: score(RedshiftPredictor(rt, p0.pre, p0.codec, **calibration_kwargs(cards[n])), d)
                  for s, d in sets.items()} for n in names}
    print("| set | n | " + " | ".join(f"{n}: 68% / 95% / conf. wrong" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for s in sets:
        cells = [f"{v[s]['in68'].mean():.1%} / {v[s]['in95'].mean():.1%} / {int(v[s]['wrong'].sum())}"
                 for v in scores.values()]
        print(f"| {s} | {scores[args.reference][s]['n']} | " + " | ".join(cells) + " |")
    verdicts = {n: judge(scores[args.reference], scores[n]) for n in args.candidates}
    for n, v in verdicts.items():
        failed = [k for k, ok in v["clauses"].items() if not ok]
        print(f"{n}: confidently wrong {v['confidently_wrong']} (reference {v['reference_confidently_wrong']}), pooled 68% "
              f"{v['pooled_68']:.1%}, median 68% width at S/N >= 5 {v['median_width_68_snr5']:.4f} (reference "
              f"{v['reference_median_width_68_snr5']:.4f}): " + ("PASSES" if v["passes"] else "fails " + ", ".join(failed)))
    passers = [n for n in args.candidates if verdicts[n]["passes"]]
    chosen = min(passers, key=lambda n: (verdicts[n]["confidently_wrong"], args.candidates.index(n))) if passers else None
    print(f"chosen: {chosen or 'none (the reference stays)'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"verdicts": verdicts, "chosen": chosen, "sets": {
            n: {s: {"n": v["n"], "coverage_68": float(v["in68"].mean()), "coverage_95": float(v["in95"].mean()),
                    "confidently_wrong": int(v["wrong"].sum()), "median_width_99": float(np.median(v["w99"]))}
                for s, v in sc.items()} for n, sc in scores.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
