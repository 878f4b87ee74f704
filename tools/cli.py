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
    p.add_argument("file", help="spectrum file")
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
    from speclm.tools.spectrum import read_spectrum, summary

    spec = read_spectrum(args.file, max_bytes=int(args.max_mb * 2**20),
                         min_pixels=args.min_pixels, air=args.air)
    info = summary(spec)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "warnings":
            continue
        if isinstance(value, float):
            value = f"{value:.6g}" if key not in ("wave_min", "wave_max") else f"{value:.2f} A"
        print(f"{key:<{width}}  {value}")
    for w in info["warnings"]:
        print(f"{'warning':<{width}}  {w}")
    return 0
