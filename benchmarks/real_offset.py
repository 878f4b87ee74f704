"""The signed offset of the model's redshift on real SDSS galaxies, beside the template search's and the
model's own offset on simulated validation spectra.

Why: MAE hides a shared shift. On sdss_real_dev the model's answers are mostly *low*; if the search (full
resolution, templates in vacuum) shows no such shift on the same files, the reader and the wavelength
conventions are right and the shift is in how the model reads real light; if the model shows no shift on
simulations, the simulator and the real sky differ in something the 64-bin vector carries.

    speclm predict --json ../shared/data/sdss_real_dev/fits > runs/dev_pred.jsonl
    speclm predict --json data/sim15k --split val > runs/sim15k_val_pred.jsonl
    python benchmarks/real_offset.py --real runs/dev_pred.jsonl --sim runs/sim15k_val_pred.jsonl
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

C_KM_S = 299792.458


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip().startswith("{")]


def offsets(z, zt):
    z, zt = np.asarray(z, float), np.asarray(zt, float)
    return (z - zt) / (1 + zt)


def summary(d, core=0.02) -> dict:
    d = np.asarray(d, float)
    c = d[np.abs(d) < core]
    if not c.size:
        return {"n": int(d.size), "n_core": 0}
    boot = np.random.default_rng(0).choice(c, (2000, c.size)).mean(1) if c.size > 1 else np.array([c[0]])
    return {"n": int(d.size), "n_core": int(c.size), "median_km_s": round(float(np.median(c)) * C_KM_S, 0),
            "mean_km_s": round(float(c.mean()) * C_KM_S, 0),
            "mean_68_km_s": [round(float(np.percentile(boot, 16)) * C_KM_S, 0), round(float(np.percentile(boot, 84)) * C_KM_S, 0)],
            "share_low": round(float((c < 0).mean()), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", required=True, help="speclm predict --json output on the real folder")
    ap.add_argument("--manifest", default="../shared/data/sdss_real_dev/manifest.csv")
    ap.add_argument("--folder", default=None, help="the real files (default: the manifest's folder)")
    ap.add_argument("--sim", default=None, help="speclm predict --json output on a simulated split (z_catalog = truth)")
    ap.add_argument("--z-max", type=float, default=0.5)
    ap.add_argument("--out", default=None, help="write the summary as JSON here")
    args = ap.parse_args(argv)
    from speclm.tools.redshift_search import find_redshift
    from speclm.tools.spectrum import read_spectrum

    man = Path(args.manifest)
    folder = Path(args.folder) if args.folder else man.parent
    cat = {Path(r["file"]).name: r for r in csv.DictReader(man.open())}
    zm, zs, zt, names = [], [], [], []
    for r in _rows(args.real):
        m = cat.get(Path(r["file"]).name)
        if not m or m["sdss_class"] != "GALAXY" or not float(m["z"]) < args.z_max or int(m.get("zwarning") or 0):
            continue
        s = read_spectrum(folder / m["file"])
        zm.append(r["z"])
        zs.append(find_redshift(s, None).z)
        zt.append(float(m["z"]))
        names.append(Path(m["file"]).name)
    out = {"real": {"model": summary(offsets(zm, zt)), "search": summary(offsets(zs, zt)),
                    "per_file": [{"file": n, "z": t, "model": round(a, 4), "search": round(b, 5)}
                                 for n, t, a, b in zip(names, zt, zm, zs)]}}
    if args.sim:
        sim = [r for r in _rows(args.sim) if r.get("z_catalog") is not None and r["z_catalog"] < args.z_max]
        out["sim"] = {"model": summary(offsets([r["z"] for r in sim], [r["z_catalog"] for r in sim]))}
    for where, d in out.items():
        for who, s in d.items():
            if who == "per_file":
                continue
            print(f"{where:4s} {who:6s} n {s['n']:5d} (|dz|/(1+z) < 0.02: {s['n_core']}): median {s.get('median_km_s')} "
                  f"km/s, mean {s.get('mean_km_s')} km/s (68% {s.get('mean_68_km_s')}), read low {s.get('share_low')}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    from speclm.tools.errors import SpeclmError

    try:
        raise SystemExit(main())
    except SpeclmError as e:  # a bad path, adapter or dataset: one line
        raise SystemExit(f"error: {e}") from None
