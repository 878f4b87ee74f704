"""Where the model loses to the kNN: per-spectrum errors of both, binned by z, S/N and star-formation history.

Reads the ``report.json`` of ``speclm eval redshift --dataset D --split S --train-dataset ...`` (rows with
``knn_z``) and the simulated spectra's own parameters from the dataset, and prints one Markdown table per
grouping: n, MAE and share beyond 0.05 in Δz/(1+z) for the LLM and the kNN, and their ratio; then the LLM's
catastrophes (beyond 0.05) with their 68% interval, so a narrow interval around a wrong answer shows.

    python benchmarks/llm_vs_knn_by_bin.py runs/e27/v12/bgs_val_knn runs/e27/v12/boss_val_knn
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _rows(report_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rep = json.loads((report_dir / "report.json").read_text())
    ds = Path(rep["eval_set"]["path"])
    t = pq.read_table(ds / "spectra.parquet", columns=["id", "meta_json"]).to_pylist()
    sim = {r["id"]: json.loads(r["meta_json"]).get("sim", {}) for r in t}
    out = []
    for p in rep["predictions"]:
        if "knn_z" not in p:
            raise SystemExit(f"{report_dir}: no kNN rows (run the evaluation with --train-dataset)")
        s = sim.get(p["id"], {})
        out.append(dict(p, set=report_dir.name, sfh=s.get("sfh", "?"), agn=bool(s.get("agn_lines")),
                        snr=s.get("snr", p.get("snr_r"))))
    return out


def _stats(rows: list[dict]) -> dict:
    z = np.array([r["z_true"] for r in rows])
    d = lambda k: np.abs(np.array([r[k] for r in rows]) - z)
    e_llm, e_knn = d("z"), d("knn_z")
    width = np.array([r["z_hi"] - r["z_lo"] for r in rows])
    return {"n": len(rows), "llm": e_llm.mean(), "knn": e_knn.mean(),
            "llm5": np.mean(e_llm / (1 + z) > 0.05), "knn5": np.mean(e_knn / (1 + z) > 0.05),
            "llm_med": np.median(e_llm), "knn_med": np.median(e_knn), "width68": np.median(width)}


def table(rows: list[dict], key, bins: list[tuple[str, callable]]) -> str:
    lines = [f"| {key} | n | LLM MAE | kNN MAE | LLM/kNN | LLM median | kNN median | LLM >0.05 | kNN >0.05 | LLM 68% width |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, pick in bins:
        sel = [r for r in rows if pick(r)]
        if not sel:
            continue
        s = _stats(sel)
        lines.append(f"| {name} | {s['n']} | {s['llm']:.4f} | {s['knn']:.4f} | {s['llm'] / max(s['knn'], 1e-9):.2f} | "
                     f"{s['llm_med']:.4f} | {s['knn_med']:.4f} | {100 * s['llm5']:.1f}% | {100 * s['knn5']:.1f}% | "
                     f"{s['width68']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="directories holding report.json (with kNN rows)")
    args = ap.parse_args(argv)
    rows = [r for d in args.reports for r in _rows(Path(d))]
    zb = [(0, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.8)]
    sb = [(0, 3), (3, 5), (5, 10), (10, 20), (20, 1e9)]
    print(table(rows, "set", [(s, lambda r, s=s: r["set"] == s) for s in dict.fromkeys(r["set"] for r in rows)]
                + [("all", lambda r: True)]))
    print()
    print(table(rows, "true z", [(f"{a}-{b}", lambda r, a=a, b=b: a <= r["z_true"] < b) for a, b in zb]))
    print()
    print(table(rows, "S/N", [(f"{a}-{b:g}", lambda r, a=a, b=b: a <= (r["snr"] or 0) < b) for a, b in sb]))
    print()
    print(table(rows, "SFH", [(s, lambda r, s=s: r["sfh"] == s) for s in sorted({r["sfh"] for r in rows})]))
    print()
    bad = [r for r in rows if abs(r["z"] - r["z_true"]) / (1 + r["z_true"]) > 0.05]
    print(f"LLM catastrophes (>0.05): {len(bad)}")
    print("| set | id | true z | LLM z [68%] | kNN z | S/N | SFH |\n|---|---|---|---|---|---|---|")
    for r in sorted(bad, key=lambda r: r["z_true"]):
        print(f"| {r['set']} | {r['id']} | {r['z_true']:.4f} | {r['z']:.4f} [{r['z_lo']:.4f}, {r['z_hi']:.4f}] | "
              f"{r['knn_z']:.4f} | {r['snr'] or 0:.1f} | {r['sfh']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
