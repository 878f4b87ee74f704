"""`speclm check FILE [--z Z0]`: which redshift does the spectrum itself support?

Without --z: the assistant's redshift procedure, :func:`speclm.tools.redshift_search.find_redshift`
(galaxy, quasar and star templates over the whole range; spectral type, confidence, alternatives).
With --z: :func:`speclm.tools.redshift_check.check_redshift`, the line check in a window around Z0.
The agent calls the same functions, so what a user sees here is what the agent quotes. Files are read with the one reader,
``speclm.tools.spectrum.read_spectrum``; its SpeclmError subclasses become one-line errors.
"""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="check / refine a redshift against the spectrum's emission and absorption lines",
        description="Without --z: search the whole range (GALAXY 0-1.5, QSO 0-7, STAR z~0) with template fits "
                    "and state the spectral type, z, confidence and alternatives. With --z Z0: fit the line list "
                    "(emission Gaussians, Ca H&K, G band, Mg b, Na D, Balmer lines) over a fine z grid around Z0 "
                    "and report the refined z, the lines found and whether to trust it.",
    )
    p.add_argument("file", metavar="FILE", help="spectrum file (any format `speclm inspect` reads); every target of a "
                                                "multi-target file (one JSON line each), or one as FILE[TARGETID]")
    p.add_argument("--z", dest="z0", type=float, default=None,
                   help="redshift to check (e.g. the model's answer); default: no Z0, search the whole range")
    p.add_argument("--halfwidth", type=float, default=None,
                   help="search half-width in units of (1+z0) (default 0.02, about ±6000 km/s)")
    p.add_argument("--lines", default=None,
                   help="comma-separated line names to use (default: all), e.g. 'Halpha,OIII,CaK,CaH'")
    p.add_argument("--json", action="store_true", help="print the result as JSON (z, lines, confident, reason, ...)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    """Every target of the file (one for most files; a DESI coadd holds many): a broken target is
    reported as its one-line error and the others are still checked."""
    from speclm.tools.errors import SpectrumError
    from speclm.tools.spectrum import read_targets

    targets = list(read_targets(args.file))
    if len(targets) == 1:
        if isinstance(targets[0][1], SpectrumError):
            raise targets[0][1]
        return _run_one(args, targets[0][1], targets[0][0])
    rc = 2
    for ref, spectrum in targets:
        if isinstance(spectrum, SpectrumError):
            print(json.dumps({"file": ref, "error": str(spectrum), "error_type": type(spectrum).__name__})
                  if args.json else f"{ref}: error: {spectrum}")
            continue
        if not args.json:
            print(f"--- {ref}")
        rc = min(rc, _run_one(args, spectrum, ref, compact=True))
    return rc


def _run_one(args: argparse.Namespace, spectrum, label: str, compact: bool = False) -> int:
    from speclm.tools.errors import ConfigError
    from speclm.tools.redshift_check import check_redshift

    args.label, args.compact = label, compact
    z0 = args.z0
    if z0 is None:
        if args.lines or args.halfwidth is not None:
            raise ConfigError("--lines and --halfwidth shape the line check around a given z; pass --z Z0")
        return _search(args, spectrum)
    names = [n.strip() for n in args.lines.split(",") if n.strip()] if args.lines else None
    result = check_redshift(spectrum, z0, search_halfwidth=args.halfwidth, lines=names)
    if args.json:
        out = result.to_dict()
        out["file"] = args.label
        print(json.dumps(out, indent=None if args.compact else 2, allow_nan=False))
        return 0
    print(result.describe())
    if result.lines:
        print(f"\n{'line':<16}{'kind':<12}{'observed Å':>11}{'S/N':>7}{'amp':>8}{'EW_rest Å':>11}{'dv km/s':>9}")
        for m in result.lines:
            dv = f"{m.dv_km_s:+.0f}" if m.dv_km_s is not None else "-"
            print(f"{m.display:<16}{m.kind:<12}{m.observed_A:>11.1f}{m.snr:>7.1f}{m.amplitude:>+8.3f}"
                  f"{m.ew_rest_A:>+11.2f}{dv:>9}")
    return 0


def _search(args, spectrum) -> int:
    from speclm.tools.redshift_search import find_redshift

    ans = find_redshift(spectrum, None)
    if args.json:
        out = ans.to_dict()
        out["file"] = args.label
        out["z_catalog"] = spectrum.z_catalog
        print(json.dumps(out, indent=None if args.compact else 2, allow_nan=False))
        return 0
    print(ans.describe())
    if ans.features:
        print("\nsupporting features: " + ", ".join(f"{f['feature']} ({f['kind']}, {f['snr']:.0f}σ)" for f in ans.features))
    if ans.alternatives:
        print("alternatives: " + ", ".join(f"z = {a['z']:.4f} {a['spectype']} (Δχ²/ν = {a['delta_chi2']:.0f})"
                                        for a in ans.alternatives[:4]))
    return 0
