"""`speclm eval classes`: the measurement tool's class against SDSS's SUBCLASS, on real spectra.

For every spectrum of a folder: the assistant's redshift (``find_redshift``, no model), then
``measure_spectrum`` at that z, then the confusion table of our summary class (rows: SDSS's
CLASS/SUBCLASS from a manifest or from the file's own SPECOBJ HDU) and a consistency rate under
:data:`CONSISTENT` — what each SDSS label allows:

* STARFORMING / STARBURST: star-forming or composite;
* AGN: Seyfert, LINER or composite;
* a QSO (BROADLINE): broad-line AGN; a GALAXY with BROADLINE (SDSS: a line with σ > 200 km/s at
  5σ, a weaker test than our FWHM ≥ 1,200 km/s): broad-line AGN, Seyfert, LINER or composite;
* blank (no line strong enough for SDSS to classify): anything but the strong-line verdicts
  star-forming and broad-line AGN;
* STAR: nothing (SDSS's pipeline called the object a star).

SDSS's SUBCLASS is itself a pipeline's opinion (NGC 3073, a dwarf galaxy, is CLASS=STAR there),
so this table measures agreement, not truth. Stellar velocity dispersions are compared with SDSS's
VDISP where the file has one.
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

CONSISTENT = {
    "STARFORMING": {"star-forming", "composite"},
    "STARBURST": {"star-forming", "composite"},
    "AGN": {"Seyfert", "LINER", "composite"},
    "QSO BROADLINE": {"broad-line AGN"},
    "GALAXY BROADLINE": {"broad-line AGN", "Seyfert", "LINER", "composite"},
    "blank": {"passive", "LINER", "composite", "Seyfert", "unclassified"},
    "STAR": set(),  # SDSS called it a star: a galaxy class never agrees (NGC 3073 is a dwarf galaxy)
}


def sdss_label(sdss_class: str, subclass: str) -> str:
    """The row of the confusion table: STARFORMING, STARBURST, AGN, QSO/GALAXY BROADLINE or blank."""
    sub = (subclass or "").strip().upper()
    if sdss_class == "STAR":
        return "STAR"
    if "BROADLINE" in sub:
        return f"{'QSO' if sdss_class == 'QSO' else 'GALAXY'} BROADLINE"
    for k in ("STARBURST", "STARFORMING", "AGN"):
        if k in sub:
            return k
    return "blank"


def _from_file(path: Path) -> dict:
    from astropy.io import fits

    out = {}
    try:
        with fits.open(path, memmap=False) as h:
            if "SPECOBJ" in h:
                d = h["SPECOBJ"].data
                for key in ("CLASS", "SUBCLASS", "Z", "VDISP", "VDISP_ERR"):
                    if key in d.names:
                        v = d[key][0]
                        out[key.lower()] = v.strip() if isinstance(v, str) else float(v)
    except OSError:
        pass
    return out


def evaluate(folder: str, manifest: str | None = None, z_max: float = 0.5, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from speclm.tools.measure import measure_spectrum
    from speclm.tools.redshift_search import find_redshift
    from speclm.tools.spectrum import read_spectrum

    folder = Path(folder)
    labels = {}
    if manifest:
        for r in csv.DictReader(open(manifest)):
            labels[Path(r["file"]).name] = {"class": r["sdss_class"], "subclass": r["sdss_subclass"], "z": float(r["z"])}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".fits", ".fit"))
    rows = []
    for p in tqdm(files, desc="classes", disable=not progress):
        info = _from_file(p)
        lab = labels.get(p.name) or {"class": info.get("class", ""), "subclass": info.get("subclass", ""),
                                     "z": info.get("z")}
        if lab.get("z") is not None and lab["z"] > z_max:
            continue
        spec = read_spectrum(p)
        ans = find_redshift(spec, None)
        m = measure_spectrum(spec, ans.z, ans.spectype)
        row = sdss_label(lab["class"], lab["subclass"])
        vd = m.velocity_dispersion or {}
        rows.append({"file": p.name, "sdss_class": lab["class"], "sdss_subclass": lab["subclass"], "label": row,
                     "z_sdss": lab.get("z"), "z": ans.z, "spectype": ans.spectype, "class": m.summary_class,
                     "consistent": m.summary_class in CONSISTENT[row], "evidence": m.evidence,
                     "sigma_kms": vd.get("sigma_kms") if vd.get("reliable") else None,
                     "vdisp_sdss": info.get("vdisp") or None})
    return {"rows": rows, "table": confusion(rows)}


def confusion(rows: list[dict]) -> dict:
    from speclm.tools.measure import CLASSES

    t = defaultdict(Counter)
    for r in rows:
        t[r["label"]][r["class"]] += 1
    n = len(rows)
    ok = sum(r["consistent"] for r in rows)
    return {"counts": {k: dict(v) for k, v in t.items()}, "columns": list(CLASSES), "n": n, "consistent": ok,
            "consistent_fraction": ok / n if n else None}


def markdown(res: dict) -> str:
    t = res["table"]
    cols = [c for c in t["columns"] if any(c in v for v in t["counts"].values())]
    lines = ["| SDSS label | " + " | ".join(cols) + " | consistent |", "|---" * (len(cols) + 2) + "|"]
    for lab in sorted(t["counts"]):
        row = t["counts"][lab]
        n_ok = sum(v for k, v in row.items() if k in CONSISTENT[lab])
        lines.append(f"| {lab} (n={sum(row.values())}) | " + " | ".join(str(row.get(c, "")) for c in cols)
                     + f" | {n_ok}/{sum(row.values())} |")
    lines.append(f"\nconsistent with SDSS: {t['consistent']}/{t['n']}")
    vd = [(r["sigma_kms"], r["vdisp_sdss"]) for r in res["rows"] if r["sigma_kms"] and r["vdisp_sdss"]]
    if vd:
        import numpy as np

        a = np.array(vd)
        lines.append(f"stellar σ vs SDSS VDISP on {len(vd)} galaxies: median ratio {np.median(a[:, 0] / a[:, 1]):.3f}, "
                     f"median |Δ| {np.median(np.abs(a[:, 0] - a[:, 1])):.1f} km/s")
    return "\n".join(lines)


def register_eval(esub) -> None:
    p = esub.add_parser("classes", help="measurement-tool class vs SDSS SUBCLASS on real spectra (confusion table)",
                        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--folder", required=True, help="folder of SDSS spec FITS files")
    p.add_argument("--manifest", default=None, help="CSV with file, sdss_class, sdss_subclass, z (else the files' SPECOBJ)")
    p.add_argument("--z-max", type=float, default=0.5, help="skip objects whose SDSS z is above this")
    p.add_argument("--out", default=None, help="folder for classes.json and classes.md")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)


def _run(args) -> int:
    res = evaluate(args.folder, args.manifest, args.z_max, progress=not args.no_progress)
    md = markdown(res)
    print(md)
    for r in res["rows"]:
        print(f"  {r['file']:<40s} {r['label']:<17s} -> {r['class']:<15s} {'ok' if r['consistent'] else 'DIFFERENT'}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "classes.json").write_text(json.dumps(res, indent=1, default=str))
        (out / "classes.md").write_text(md + "\n")
    return 0
