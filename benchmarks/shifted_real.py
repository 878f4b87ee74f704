"""Real SDSS spectra moved to other redshifts in software: a sim-to-real probe beyond z = 0.004.

Why: the only real SDSS spectra available offline are the two DR18 files in the ppxf wheel, both
at z ~ 0.004, so "does the adapter read *real* galaxy light?" can only be asked at one redshift.
Multiplying the observed wavelengths by (1 + z')/(1 + z_cat) puts the same real light (real
continuum shape, real absorption and emission lines, real noise and calibration) at z'. What it
cannot fake: the blue end of the new spectrum is missing (the original starts at 3826 A, so at
z' = 0.1 nothing is left below ~4190 A; the preprocessing fills those bins by interpolation), and
sky-line residuals move with the galaxy instead of staying put. Read the results as "real galaxy
light, two galaxies", not as an independent real-data evaluation.

    python benchmarks/shifted_real.py --out data/real_shifted --z-max 0.15 --step 0.01
    speclm eval redshift --adapter bundled --dataset data/real_shifted --split test \
        --train-dataset data/sim15k --out runs/eval-real-shifted
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from speclm.finetune.datasets import write_dataset
from speclm.tools.spectrum import Spectrum, read_spectrum


def ppxf_sdss_files() -> list[Path]:
    spec = importlib.util.find_spec("ppxf")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("ppxf is not installed (pip install ppxf): it ships the two real SDSS DR18 files")
    folder = Path(list(spec.submodule_search_locations)[0]) / "spectra"
    files = sorted(folder.glob("*_SDSS_DR18.fits"))
    if not files:
        raise SystemExit(f"no *_SDSS_DR18.fits under {folder}")
    return files


def shifted(s: Spectrum, z_new: float, wave_max: float) -> Spectrum:
    z0 = float(s.meta["z"])
    w = np.asarray(s.wavelength, float) * (1 + z_new) / (1 + z0)
    keep = w <= wave_max
    meta = {**s.meta, "z": float(z_new), "z_original": z0, "id": f"{s.meta.get('id', 'real')}-shift-{z_new:.3f}",
            "source": f"{s.meta.get('source', '')} (real SDSS, redshifted in software)"}
    return Spectrum(wavelength=w[keep].astype(np.float32), flux=np.asarray(s.flux)[keep],
                    ivar=np.asarray(s.ivar)[keep], mask=np.asarray(s.mask)[keep], meta=meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/real_shifted")
    ap.add_argument("--z-max", type=float, default=0.15)
    ap.add_argument("--step", type=float, default=0.01)
    ap.add_argument("--wave-max", type=float, default=9215.0, help="drop pixels redder than SDSS's last one")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args()
    zs = np.round(np.arange(0.0, a.z_max + 1e-9, a.step), 4)
    out = []
    for f in ppxf_sdss_files():
        s = read_spectrum(f)
        s.meta["id"] = f.stem
        out.extend(shifted(s, float(z), a.wave_max) for z in zs)
    path = write_dataset(a.out, out, split_of=["test"] * len(out), overwrite=a.overwrite,
                         meta={"source": "real SDSS DR18 (ppxf wheel) redshifted in software", "simulated": False,
                               "selection": f"NGC 3522 and NGC 3073 moved to z' = 0..{a.z_max} step {a.step}"})
    print(f"wrote {len(out)} shifted real spectra to {path}")


if __name__ == "__main__":
    main()
