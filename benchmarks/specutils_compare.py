"""How specutils' own loaders read the real files speclm's survey readers are tested on (README table).

specutils is not a speclm dependency: run this in a venv of its own (`pip install specutils`; 2.4.0 was
used for the README). Every registered format is tried by auto-identification and by name, through
`Spectrum.read` and `SpectrumList.read`; the output lists what each returned (shape, wavelength range,
units, uncertainty type, masked pixels, redshift) or its one-line error.

    python -m venv /tmp/su && /tmp/su/bin/pip install specutils
    /tmp/su/bin/python benchmarks/specutils_compare.py DESI_DIR ../shared/data/real_other PPXF_SPECTRA_DIR
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

FORMATS = [None, "DESI coadd", "DESI spectra", "SDSS-III/IV spec", "SDSS-V spec", "SDSS-I/II spSpec",
           "tabular-fits", "wcs1d-fits"]


def describe(s) -> str:
    wv = np.asarray(s.spectral_axis.value)
    unc = type(s.uncertainty).__name__ if s.uncertainty is not None else None
    masked = None if s.mask is None else int(np.sum(s.mask))
    try:
        z = s.redshift if np.size(s.redshift) == 1 else s.redshift[:1]
    except Exception as exc:  # noqa: BLE001
        z = f"n/a ({type(exc).__name__})"
    return (f"  flux {s.flux.shape} [{s.flux.unit}], wave {wv.min():.2f}-{wv.max():.2f} {s.spectral_axis.unit}, "
            f"uncertainty {unc}, masked {masked}, redshift {z}")


def main(dirs: list[str]) -> None:
    from specutils import Spectrum, SpectrumList

    warnings.simplefilter("ignore")
    files = []
    for d in dirs:
        files += sorted(p for p in Path(d).iterdir() if p.name.startswith(("coadd-", "spec-", "NGC3522")))
    for f in files:
        print("=" * 10, f.name)
        for cls in (Spectrum, SpectrumList):
            for fm in FORMATS:
                try:
                    out = cls.read(f, **({} if fm is None else {"format": fm}))
                except Exception as exc:  # noqa: BLE001 -- every failure is a finding
                    print(f"[{cls.__name__} {fm}] error {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
                    continue
                items = out if isinstance(out, list) else [out]
                print(f"[{cls.__name__} {fm}] {type(out).__name__} of {len(items)}")
                for s in items:
                    print(describe(s))


if __name__ == "__main__":
    main(sys.argv[1:])
