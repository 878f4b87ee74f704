"""Real spectra from outside SDSS's legacy sample, read and answered: the README's survey table.

Files: the two real DESI coadds in fastspecfit 3.6.1's wheel (fetched from PyPI into the cache), the
LAMOST DR9 table and DR7 image stars and the SDSS white dwarf in ../shared/data/real_other, and
NGC 3522's SDSS DR18 file (ppxf's wheel) re-saved as a bare 1-D image FITS without uncertainties.
For each: what `speclm inspect` read (format, survey, catalog z and class, noise) and what
`speclm predict --refine --json` answers (the model's z and 68% interval, the stated z, type, verdict).

    python benchmarks/survey_formats.py --out runs/survey_formats     # prints a Markdown table
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from speclm.tools.synthetic import desi_coadd_dir, ppxf_spectrum, write_without_errors

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_other"


def files(out: Path) -> list[Path]:
    desi = desi_coadd_dir()
    found = []
    if desi is not None:
        found += [desi / "coadd-4-80613-thru20210324.fits", desi / "coadd-special-dark-27247.fits"]
    found += [SHARED / "spec-55859-F5902_sp01-001.fits.gz", SHARED / "spec-58397-EG014118N254444M01_sp03-031.fits",
              SHARED / "spec-0266-51602-0031.fits"]
    src = ppxf_spectrum("NGC3522")
    if src is not None:
        found.append(write_without_errors(src, out / "ngc3522-no-errors.fits"))
    return [f for f in found if f.is_file()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/survey_formats")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = files(out)
    inspect = {}
    for p in paths:
        r = subprocess.run([sys.executable, "-m", "speclm.cli", "inspect", "--json", str(p)], capture_output=True,
                           text=True, check=True)
        inspect[str(p)] = json.loads(r.stdout)
    r = subprocess.run([sys.executable, "-m", "speclm.cli", "predict", "--refine", "--json", *map(str, paths)],
                       capture_output=True, text=True, check=True)
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    (out / "inspect.json").write_text(json.dumps(inspect, indent=2))
    (out / "predict_refine.jsonl").write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    print("| file | read as | survey | catalog z, class (source) | noise | model z [68%] | stated z, type | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for d in rows:
        i = inspect[d["file"]] if d["file"] in inspect else next(iter(v for k, v in inspect.items() if d["file"].startswith(k)))
        name = Path(d["file"]).name
        zc = i.get("z_catalog")
        cat = f"{zc:.5f}, {i.get('class')} ({i.get('z_source') or '—'})" if zc is not None else "none"
        verdict = "confident" if d["confident"] else "flagged (not confident)"
        print(f"| {name} | {i['format']} | {i.get('survey_name') or '—'} | {cat} | {i['noise']} | "
              f"{d['z_model']:.3f} [{d['z_lo']:.3f}, {d['z_hi']:.3f}] | {d['z']:.5f} {d['spectype']} | {verdict} |")


if __name__ == "__main__":
    main()
