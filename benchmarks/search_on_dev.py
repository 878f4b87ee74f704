"""The redshift search alone (no model) on ../shared/data/sdss_real_dev: type and z against SDSS's.

Right = the same CLASS and |Δz|/(1+z) < 0.01. Prints the count, the confident-and-wrong ones and every miss;
with file arguments also prints the search's answer for each target of those files (e.g. the LAMOST and
DESI files). Used to check that a change to tools/redshift_search.py moves nothing on the dev files.

    python benchmarks/search_on_dev.py [../shared/data/real_other/*.fits*]
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from speclm.tools.redshift_search import find_redshift
from speclm.tools.spectrum import read_spectrum, read_targets

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss_real_dev"


def main() -> None:
    rows = list(csv.DictReader(open(DEV / "manifest.csv")))
    misses, confident_wrong = [], 0
    for r in rows:
        a = find_redshift(read_spectrum(DEV / r["file"]), None)
        zc = float(r["z"])
        if not (abs(a.z - zc) / (1 + zc) < 0.01 and a.spectype == r["sdss_class"]):
            misses.append((r["file"], r["sdss_class"], round(zc, 4), a.spectype, round(a.z, 4), a.confident))
            confident_wrong += a.confident
    print(f"right: {len(rows) - len(misses)} of {len(rows)}; confident and wrong: {confident_wrong}")
    for m in misses:
        print("  miss:", m)
    for f in sys.argv[1:]:
        for ref, s in read_targets(f):
            if isinstance(s, Exception):
                print(ref, "error:", s)
                continue
            a = find_redshift(s, None)
            print(Path(ref).name, s.meta.get("class"), s.z_catalog, "->", a.spectype, a.z,
                  "confident" if a.confident else "flagged")


if __name__ == "__main__":
    main()
