"""The redshift search as committed at an earlier commit against the search now, on the real files and on
simulated ones: spectral type, confidence and z (to --tol) per spectrum, and the time each took.

    python benchmarks/search_before_after.py --commit 1c21deb --sim runs/bench_catalog/spectra --n-sim 100

(The simulated spectra are those benchmarks/catalog_throughput.py writes.) Prints every spectrum whose answer
differs, with both z and the new z's error, then a one-line summary.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

REAL = [Path("../shared/data/sdss_real_dev/fits"), Path("../shared/data/real_other")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", default="1c21deb", help="the search of this commit is 'before'")
    ap.add_argument("--sim", default="runs/bench_catalog/spectra", help="folder of simulated spectrum files")
    ap.add_argument("--n-sim", type=int, default=100)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()

    from speclm.evals.history import module_at
    from speclm.tools import redshift_search as now
    from speclm.tools.spectrum import read_spectrum

    old = module_at(args.commit, "tools/redshift_search.py", "redshift_search_before")
    files = [p for d in REAL for p in sorted(d.rglob("*")) if p.is_file() and p.name.endswith((".fits", ".fits.gz"))]
    files += sorted(Path(args.sim).glob("*.fits"))[: args.n_sim]
    n = diff = 0
    t_old = t_new = 0.0
    for f in files:
        try:
            s = read_spectrum(f)
        except Exception as exc:  # not a spectrum (a redrock file, say): said, skipped
            print(f"skip {f.name}: {str(exc)[:80]}")
            continue
        t = time.perf_counter()
        a = old.find_redshift(s, None)
        t_old += time.perf_counter() - t
        t = time.perf_counter()
        b = now.find_redshift(s, None)
        t_new += time.perf_counter() - t
        n += 1
        if (a.spectype, a.confident) != (b.spectype, b.confident) or abs(a.z - b.z) > args.tol:
            diff += 1
            print(f"DIFF {f.name}: before {a.spectype} {a.z:.6f} confident={a.confident}; now {b.spectype} "
                  f"{b.z:.6f} ± {b.z_err or float('nan'):.6f} confident={b.confident}")
    print(f"{n} spectra: {diff} differ in type, confidence or z (> {args.tol:g}); search time before {t_old:.1f} s, "
          f"now {t_new:.1f} s ({t_old / max(t_new, 1e-9):.2f}x)")


if __name__ == "__main__":
    main()
