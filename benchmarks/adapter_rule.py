"""The adapter decision rule of issue 27 (v17's, with v18's HII clause; used for v17-v23): a candidate against the
bundled adapter on the simulated decision sets, each adapter with its own calibration, from the `report.json`s
that `speclm eval redshift --no-knn --out DIR` writes.

Clauses (written before any candidate's numbers; README "v17" and "v18"):
(a) on each of low-z, BOSS-like, BGS-like and z-uniform val: share beyond 0.05 <= reference + 1 point,
    sigma_NMAD <= 1.10 x reference, MAE <= 1.10 x reference + 0.3/n (one catastrophe's allowance);
(b) LRG-like val: at most 10% beyond 0.05;
(c) the four sets' MAE sum below the reference's and their summed calibrated confidently-wrong count not above;
(HII) HII-galaxy val: MAE and share beyond 0.05 both below the reference's, at most 3% confidently wrong.

    python benchmarks/adapter_rule.py v23b --reference v14 --root runs/e27
reads ROOT/v17d/TAG_{lowz,boss,bgs,uni,lrg}/report.json and ROOT/hii/TAG_val/report.json for both tags.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

FOUR = ("lowz", "boss", "bgs", "uni")


def read_model_metrics(d: Path) -> dict:
    m = json.loads((d / "report.json").read_text())["metrics"]["model"]
    m["n_wrong"] = round(m["confidently_wrong"] * m["n"])
    return m


def judge(cand: dict, ref: dict) -> dict:
    """cand, ref: set name -> the model's metrics (FOUR, "lrg", "hii"). Returns clause -> (ok, why)."""
    out = {}
    for s in FOUR:
        c, r = cand[s], ref[s]
        ok = (c["outlier_frac_0.05"] <= r["outlier_frac_0.05"] + 0.01 + 1e-12
              and c["sigma_nmad"] <= 1.10 * r["sigma_nmad"] and c["mae"] <= 1.10 * r["mae"] + 0.3 / c["n"])
        out[f"a_{s}"] = (ok, f"MAE {c['mae']:.4f} (ref {r['mae']:.4f}), >0.05 {c['outlier_frac_0.05']:.1%} "
                             f"(ref {r['outlier_frac_0.05']:.1%}), sigma_NMAD {c['sigma_nmad']:.4f} (ref {r['sigma_nmad']:.4f})")
    out["b_lrg"] = (cand["lrg"]["outlier_frac_0.05"] <= 0.10, f">0.05 {cand['lrg']['outlier_frac_0.05']:.1%}")
    smae, rmae = sum(cand[s]["mae"] for s in FOUR), sum(ref[s]["mae"] for s in FOUR)
    swr, rwr = sum(cand[s]["n_wrong"] for s in FOUR), sum(ref[s]["n_wrong"] for s in FOUR)
    out["c_sum"] = (smae < rmae and swr <= rwr, f"MAE sum {smae:.4f} (ref {rmae:.4f}), confidently wrong {swr} (ref {rwr})")
    c, r = cand["hii"], ref["hii"]
    out["hii"] = (c["mae"] < r["mae"] and c["outlier_frac_0.05"] < r["outlier_frac_0.05"] and c["confidently_wrong"] <= 0.03,
                  f"MAE {c['mae']:.4f} (ref {r['mae']:.4f}), >0.05 {c['outlier_frac_0.05']:.1%} "
                  f"(ref {r['outlier_frac_0.05']:.1%}), confidently wrong {c['confidently_wrong']:.1%}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tag", help="candidate's tag (directory prefix)")
    ap.add_argument("--reference", default="v14", help="reference adapter's tag (default v14)")
    ap.add_argument("--root", default="runs/e27")
    args = ap.parse_args(argv)
    root = Path(args.root)

    def load(tag):
        m = {s: read_model_metrics(root / "v17d" / f"{tag}_{s}") for s in (*FOUR, "lrg")}
        m["hii"] = read_model_metrics(root / "hii" / f"{tag}_val")
        return m

    verdict = judge(load(args.tag), load(args.reference))
    for k, (ok, why) in verdict.items():
        print(f"{k:8s} {'passes' if ok else 'FAILS '}  {why}")
    ok = all(v[0] for v in verdict.values())
    print(f"{args.tag}: {'ships' if ok else 'rejected'} against {args.reference}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
