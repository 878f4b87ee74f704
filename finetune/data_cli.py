"""`speclm data {simulate,folder,info,sdss}` and `speclm encode FILE`.

Why these commands: every dataset the trainer and evaluator use is made by one of them and has
the one on-disk format (finetune/datasets.py), and `speclm encode` prints exactly the text the
model reads for a file, so a user can see what the model sees. Heavy imports stay in handlers.
"""
from __future__ import annotations

import importlib
import json
import time

DEFAULT_PRESET = "smollm2"


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="make and inspect datasets (simulate, sdss, folder, info)",
                                 description="Make datasets in the one speclm format and inspect them.")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: (data.print_help(), 1)[1])

    p = dsub.add_parser("simulate", help="simulate SDSS-like galaxy spectra with bagpipes",
                        description="Simulate galaxy spectra (bagpipes stellar+nebular models observed "
                                    "through an SDSS-like noise, sky, telluric, calibration and mask model) "
                                    "and write them as a dataset with z-uniform val/test splits.")
    p.add_argument("--n", type=int, default=None, help="number of spectra (required)")
    p.add_argument("--out", default=None, help="output dataset directory (required)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--z-min", type=float, default=0.0, help="lowest redshift (default 0)")
    p.add_argument("--z-max", type=float, default=0.5, help="highest redshift (default 0.5)")
    p.add_argument("--z-distribution", choices=("uniform", "sdss"), default="uniform",
                   help="redshift distribution (default uniform)")
    p.add_argument("--val-frac", type=float, default=0.25, help="validation fraction, z-uniform (default 0.25)")
    p.add_argument("--test-frac", type=float, default=0.0, help="test fraction, z-uniform (default 0)")
    p.add_argument("--snr-median", type=float, default=None, help="median r-band S/N per pixel (default 9)")
    p.add_argument("--clean", action="store_true",
                   help="no noise draw, sky/telluric residuals, tilts, masks or offsets (ivar still set)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any SimConfig field, repeatable, e.g. --set snr_max=80 --set agn_lines_prob=0.3 "
                        "(`speclm data simulate --list-fields` shows them with their help)")
    p.add_argument("--list-fields", action="store_true", help="print every SimConfig field with its help and exit")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)

    p = dsub.add_parser("folder", help="make a dataset from a folder of spectrum files",
                        description="Read every FITS/CSV/TXT/NPY/NPZ file in a folder with the one reader; "
                                    "unreadable files are skipped and listed in meta.json.")
    p.add_argument("folder", help="folder with spectrum files")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--val-frac", type=float, default=0.0, help="validation fraction (default 0)")
    p.add_argument("--test-frac", type=float, default=0.0, help="test fraction (default 0)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--recursive", action="store_true", help="also read sub-folders")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_folder)

    p = dsub.add_parser("merge", help="concatenate datasets (each spectrum keeps its split)",
                        description="Concatenate speclm datasets into one; splits, ids and provenance are kept.")
    p.add_argument("inputs", nargs="+", help="dataset directories (two or more)")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_merge)

    p = dsub.add_parser("info", help="summarise a dataset (counts, z histogram, tokens per spectrum)",
                        description="Counts per split, source, redshift histogram, and tokens per "
                                    "spectrum of the encoded prompt under a preset's codec.")
    p.add_argument("path", help="dataset directory")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"preset for the token count (default {DEFAULT_PRESET})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--sample", type=int, default=32, help="spectra encoded for the token count (default 32)")
    p.add_argument("--no-tokens", action="store_true", help="skip the tokenizer (faster)")
    p.set_defaults(func=_info)

    try:
        sdss_dataset = importlib.import_module("speclm.finetune.sdss_dataset")
    except ModuleNotFoundError as exc:
        if exc.name != "speclm.finetune.sdss_dataset":
            raise
    else:
        sdss_dataset.register_cli(dsub)

    p = subparsers.add_parser("encode", help="print exactly the text the model reads for a spectrum file",
                              description="Read a spectrum, preprocess and encode it with a preset, and "
                                          "print the prompt text the model reads, byte for byte.")
    p.add_argument("file", help="spectrum file")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"preset (default {DEFAULT_PRESET})")
    p.set_defaults(func=_encode)


# ----------------------------------------------------------------------------- handlers

def parse_sim_overrides(items) -> dict:
    """``["snr_max=80", "telluric=false"]`` -> typed SimConfig keyword arguments (clear errors)."""
    from dataclasses import MISSING, fields

    from speclm.finetune.simulate import SimConfig
    from speclm.tools.errors import ConfigError

    types = {f.name: type(f.default) for f in fields(SimConfig) if f.default is not MISSING}
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        if key not in types:
            raise ConfigError(f"--set: unknown simulator field {key!r} (see --list-fields)")
        t, raw = types[key], raw.strip()
        try:
            if t is bool:
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                out[key] = raw.lower() in ("1", "true", "yes")
            else:
                out[key] = t(raw)
        except ValueError:
            raise ConfigError(f"--set {key}: {raw!r} is not a valid {t.__name__}") from None
    return out


def _simulate(args) -> int:
    import sys

    from speclm.finetune.datasets import assign_splits, write_dataset
    from speclm.finetune.simulate import SimConfig, draw_parameters, iter_spectra
    from speclm.tools.errors import ConfigError

    if args.list_fields:
        for name, text in SimConfig.help().items():
            print(f"{name:24s} {getattr(SimConfig, name, '')!s:10s} {text}")
        return 0
    if args.n is None or not args.out:
        raise ConfigError("speclm data simulate needs --n N and --out DIR")
    kw = dict(n=args.n, seed=args.seed, z_min=args.z_min, z_max=args.z_max, z_distribution=args.z_distribution)
    kw.update(parse_sim_overrides(args.set))
    if args.snr_median is not None:
        kw["snr_median"] = args.snr_median
    if args.clean:
        kw.update(noise=False, sky_residuals=False, telluric=False, fluxcal_tilt=False, masking=False,
                  flux_offset=False)
    cfg = SimConfig(**kw)
    z = [draw_parameters(cfg, i)["z"] for i in range(cfg.n)]  # cheap: splits known before simulating
    split = assign_splits(z, val_frac=args.val_frac, test_frac=args.test_frac, seed=args.seed)
    t0 = time.perf_counter()
    meta = {"source": "simulated", "simulated": True, "seed": cfg.seed,
            "selection": f"bagpipes, z {cfg.z_min}-{cfg.z_max} ({cfg.z_distribution}), SDSS-like observation",
            "sim_config": cfg.to_dict(), "split": {"val_frac": args.val_frac, "test_frac": args.test_frac,
                                                   "method": "zbin_split, 20 equal-frequency z bins"}}
    out = write_dataset(args.out, iter_spectra(cfg, workers=args.workers, progress=not args.no_progress),
                        split_of=split, meta=meta, overwrite=args.overwrite)
    dt = time.perf_counter() - t0
    counts = {s: split.count(s) for s in ("train", "val", "test") if split.count(s)}
    print(f"wrote {cfg.n} simulated spectra to {out} ({counts}) in {dt:.1f} s = {cfg.n / dt:.1f} spectra/s",
          file=sys.stderr)
    return 0


def _folder(args) -> int:
    import sys

    from speclm.finetune.datasets import dataset_from_folder, open_dataset

    out = dataset_from_folder(args.folder, args.out, val_frac=args.val_frac, test_frac=args.test_frac,
                              seed=args.seed, recursive=args.recursive, overwrite=args.overwrite,
                              progress=not args.no_progress)
    ds = open_dataset(out)
    skipped = ds.meta.get("skipped", [])
    print(f"wrote {len(ds)} spectra to {out} ({ds.counts()}); skipped {len(skipped)} file(s)", file=sys.stderr)
    for s in skipped:
        print(f"  skipped {s['file']}: {s['reason']}", file=sys.stderr)
    return 0


def _merge(args) -> int:
    import sys

    from speclm.finetune.datasets import merge_datasets, open_dataset

    out = merge_datasets(args.inputs, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    ds = open_dataset(out)
    print(f"wrote {len(ds)} spectra to {out} ({ds.counts()})", file=sys.stderr)
    return 0


def _histogram(z, n_bins: int = 10, width: int = 40) -> list[str]:
    import numpy as np

    z = z[np.isfinite(z)]
    if z.size == 0:
        return ["(no redshifts)"]
    lo, hi = float(z.min()), float(z.max())
    if hi <= lo:
        hi = lo + 1e-3
    counts, edges = np.histogram(z, bins=n_bins, range=(lo, hi))
    top = max(int(counts.max()), 1)
    return [f"{edges[i]:6.3f}-{edges[i + 1]:6.3f} {'#' * int(round(width * c / top)):<{width}} {c}"
            for i, c in enumerate(counts)]


def dataset_info(path, *, preset: str = DEFAULT_PRESET, sample: int = 32, tokens: bool = True) -> dict:
    """Everything `speclm data info` prints, as a dict (used by the CLI and by reports)."""
    import numpy as np

    from speclm.finetune.datasets import open_dataset

    ds = open_dataset(path)
    z = ds.z()
    zf = z[np.isfinite(z)]
    info: dict = {
        "path": str(ds.path), "n": len(ds), "counts": ds.counts(),
        "source": ds.meta.get("source", ""), "simulated": bool(ds.meta.get("simulated", False)),
        "selection": ds.meta.get("selection", ""), "created": ds.meta.get("created", ""),
        "z": {"n_with_z": int(zf.size),
              "min": float(zf.min()) if zf.size else None,
              "median": float(np.median(zf)) if zf.size else None,
              "max": float(zf.max()) if zf.size else None},
        "z_histogram": _histogram(z),
        "skipped": len(ds.meta.get("skipped", [])),
    }
    info["encoding"] = _encoding_info(ds, preset, sample, tokens)
    return info


def _encoding_info(ds, preset_name: str, sample: int, tokens: bool) -> dict:
    """Prompt length of a few spectra under a preset; fail-soft (the dataset summary must still print)."""
    import numpy as np

    out: dict = {"preset": preset_name}
    try:
        from speclm.finetune.codec import build_prompt
        from speclm.finetune.preprocess import preprocess
        from speclm.finetune.presets import get_preset
        from speclm.tools.errors import SpectrumError

        preset = get_preset(preset_name)
        n = len(ds)
        rows = np.linspace(0, n - 1, min(sample, n)).astype(int) if n else []
        prompts = []
        for s in ds.iter_spectra(rows=rows):
            try:
                prompts.append(build_prompt(preprocess(s, preset.preprocess), preset.codec))
            except SpectrumError:
                continue
        out["n_encoded"] = len(prompts)
        out["n_bins"] = preset.preprocess.n_bins
        if prompts:
            out["chars_mean"] = float(np.mean([len(p) for p in prompts]))
        if tokens and prompts:
            try:
                from speclm.finetune.codec import token_report
                from speclm.finetune.runtime import load_tokenizer

                tok = load_tokenizer("embedded" if preset.base in ("embedded", "tiny") else preset.base)
                out["tokens"] = token_report(prompts, tok)
            except Exception as exc:  # noqa: BLE001 - tokenizer missing/offline must not break info
                out["tokens_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    except Exception as exc:  # noqa: BLE001
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return out


def _info(args) -> int:
    info = dataset_info(args.path, preset=args.preset, sample=args.sample, tokens=not args.no_tokens)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"dataset   {info['path']}")
    print(f"source    {info['source']}{' (simulated)' if info['simulated'] else ''}  {info['selection']}")
    print(f"created   {info['created']}")
    print(f"spectra   {info['n']}  " + "  ".join(f"{k or 'unassigned'}={v}" for k, v in info["counts"].items()))
    if info["skipped"]:
        print(f"skipped   {info['skipped']} file(s) (see meta.json)")
    zi = info["z"]
    if zi["n_with_z"]:
        print(f"redshift  n={zi['n_with_z']}  min={zi['min']:.4f}  median={zi['median']:.4f}  max={zi['max']:.4f}")
    for line in info["z_histogram"]:
        print(f"  {line}")
    e = info["encoding"]
    if "error" in e:
        print(f"encoding  unavailable under preset {e['preset']!r}: {e['error']}")
    else:
        line = f"encoding  preset {e['preset']}: {e.get('n_bins')} values, {e.get('chars_mean', 0):.0f} chars/prompt"
        if "tokens" in e:
            t = e["tokens"]
            line += f", {t['mean']:.1f} tokens/spectrum (min {t['min']}, max {t['max']}, n={t['n']})"
        elif "tokens_error" in e:
            line += f", tokens unavailable ({e['tokens_error']})"
        print(line)
    return 0


def _encode(args) -> int:
    import sys

    from speclm.finetune.codec import build_prompt
    from speclm.finetune.preprocess import preprocess
    from speclm.finetune.presets import get_preset
    from speclm.tools.spectrum import read_spectrum

    preset = get_preset(args.preset)
    text = build_prompt(preprocess(read_spectrum(args.file), preset.preprocess), preset.codec)
    sys.stdout.write(text)  # exactly the prompt: no newline added when piped (`> file` keeps the bytes)
    if sys.stdout.isatty() and not text.endswith("\n"):
        sys.stdout.write("\n")
    return 0


