"""`speclm inspect FILE`: show what the one reader made of a spectrum file.

Why a command for this: before asking the model for a redshift, a user (and a test) should see
exactly what was read -- pixel counts, wavelength range and the unit it was inferred from,
air/vacuum, S/N and any catalog redshift -- and a bad file should fail here with one line.
"""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="read a spectrum file and print what was read",
        description="Read a spectrum (SDSS/BOSS spec FITS, FITS table, CSV/TXT, .npy, .npz) and "
                    "print pixel counts, wavelength range, units, S/N and catalog metadata.")
    p.add_argument("file", help="spectrum file; every target of a multi-target file (DESI coadd), or one as "
                                "FILE[TARGETID] / FILE[#index]")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--air", action=argparse.BooleanOptionalAction, default=None,
                   help="declare the wavelengths air (--air) or vacuum (--no-air); "
                        "default: trust the file, else vacuum")
    p.add_argument("--max-mb", type=float, default=50.0,
                   help="refuse files larger than this many MiB (default 50)")
    p.add_argument("--min-pixels", type=int, default=100,
                   help="fewest valid pixels accepted (default 100)")
    p.set_defaults(func=_inspect)


def _inspect(args) -> int:
    from speclm.tools.errors import SpectrumError
    from speclm.tools.spectrum import read_targets, summary

    kw = dict(max_bytes=int(args.max_mb * 2**20), min_pixels=args.min_pixels, air=args.air)
    targets = list(read_targets(args.file, **kw))
    if len(targets) == 1 and isinstance(targets[0][1], SpectrumError):
        raise targets[0][1]
    infos = [summary(s) if not isinstance(s, SpectrumError) else
             {"source": ref, "error": str(s), "error_type": type(s).__name__} for ref, s in targets]
    if args.json:  # one object for a one-target file, a list (one per target) for a multi-target file
        print(json.dumps(infos[0] if len(infos) == 1 else infos, indent=2))
        return 0 if any("error" not in i for i in infos) else 2
    for k, info in enumerate(infos):
        if len(infos) > 1:
            print(f"--- target {k + 1} of {len(infos)}: {info['source']}")
        if "error" in info:
            print(f"error: {info['error']}")
            continue
        width = max(len(key) for key in info)
        for key, value in info.items():
            if key == "warnings":
                continue
            if isinstance(value, float):
                value = f"{value:.6g}" if key not in ("wave_min", "wave_max") else f"{value:.2f} A"
            print(f"{key:<{width}}  {value}")
        for w in info["warnings"]:
            print(f"{'warning':<{width}}  {w}")
    return 0 if any("error" not in i for i in infos) else 2
