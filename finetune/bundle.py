"""`speclm bundle`: a trained adapter made ready to ship — float16 weights and a declared domain.

Why a command: shipping an adapter was a few lines run by hand (cast the LoRA tensors to float16,
write the galaxies and redshift range it answers for into its card). Once, the hand-run cast wrote a
card without ``domain``; without it the p(z) floor spans 0–0.5 instead of 0–0.8 and the first
calibration of that bundle was fitted on the wrong floor. Here the domain is required: it comes
from the run's card (a warm start inherits it, see ``train.inherit_domain``) or from
``--domain-z-max``, and the bundle is refused without one.

What it checks:
* every tensor is finite after the cast, and its worst relative error against float32 is reported
  (float16 keeps ~3 decimal digits; a LoRA factor that overflows 65504 is refused, not clipped);
* the declared ``z_max`` lies in the codec's range (``z_int_digits``), and, when the run's training
  datasets are still on this machine, no training redshift lies beyond it;
* ``train_ids.txt`` travels with the weights (the evals refuse to score any of those spectra).

The calibration is dropped from the card: it was fitted on the float32 weights' logits and is refitted
on the bundle (``speclm eval calibrate --adapter OUT ... --write``).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from speclm.tools.errors import ConfigError

#: the files of an adapter directory a bundle carries
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "training_card.json", "train_ids.txt")


def new_out_dir(out, sources) -> Path:
    """``out`` as a Path, refused when it is one of ``sources`` or an existing non-empty folder (nothing is overwritten)."""
    outp = Path(out).expanduser()
    if outp.resolve() in [Path(p).resolve() for p in sources]:
        raise ConfigError(f"--out {outp} is one of the sources: write to a new directory")
    if outp.exists() and (not outp.is_dir() or any(outp.iterdir())):
        raise ConfigError(f"--out {outp} exists and is not an empty directory: choose a new one (nothing is overwritten)")
    return outp


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def training_z_max(card: dict) -> tuple[float | None, list[str]]:
    """The largest training redshift over the run's datasets that are still on this machine (None when
    none is), and the dataset paths that could not be read."""
    from speclm.finetune.datasets import open_dataset

    paths = [(card.get("dataset") or {}).get("path")]
    paths += [d.get("path") for d in ((card.get("init_adapter") or {}).get("datasets") or [])]
    zmax, missing = None, []
    for p in [p for p in paths if p]:
        try:
            ds = open_dataset(p)
            z = np.asarray(ds.z(split="train"), dtype=float)
        except Exception:  # noqa: BLE001 - a dataset gone from this machine: reported, not fatal
            missing.append(p)
            continue
        if z.size:
            zmax = max(zmax or 0.0, float(np.nanmax(z)))
    return zmax, missing


def bundle_adapter(run: str, out: str, *, domain_z_max: float | None = None, domain_why: str | None = None,
                   spectype: str = "GALAXY") -> dict:
    """Write ``run``'s adapter to ``out`` in float16 with a domain in its card; returns the card."""
    import torch
    from safetensors.torch import load_file, save_file

    src = Path(run).expanduser()
    missing = [f for f in ADAPTER_FILES if not (src / f).is_file()]
    if missing:
        raise ConfigError(f"{src} is not a finished adapter run: {', '.join(missing)} missing")
    outp = new_out_dir(out, [src])
    card = json.loads((src / "training_card.json").read_text())

    z_int = int((card.get("codec") or {}).get("z_int_digits", 1))
    have = card.get("domain")
    if domain_z_max is None:
        if not have or have.get("z_max") is None:
            raise ConfigError(f"{src}'s card has no domain (the galaxies and z range the model answers for): "
                              "give --domain-z-max Z (and --domain-why) to bundle it")
        domain = dict(have)
    else:
        if not 0.0 < domain_z_max < 10.0 ** z_int:
            raise ConfigError(f"--domain-z-max {domain_z_max}: must lie in (0, {10 ** z_int}) for the codec's "
                              f"{z_int} integer digit(s)")
        if have and have.get("z_max") is not None and float(have["z_max"]) != float(domain_z_max):
            print(f"note: the card's domain z < {have['z_max']} is replaced by --domain-z-max {domain_z_max}")
        domain = {"spectype": spectype, "z_max": float(domain_z_max),
                  "why": domain_why or f"declared when bundling {src.name}"}
    zmax_train, unread = training_z_max(card)
    if zmax_train is not None and zmax_train >= float(domain["z_max"]):
        raise ConfigError(f"the run was trained on redshifts up to {zmax_train:.3f}, beyond its domain z < "
                          f"{domain['z_max']}: widen --domain-z-max")

    tensors = load_file(str(src / "adapter_model.safetensors"))
    worst, cast = 0.0, {}
    for k, v in tensors.items():
        v32 = v.to(torch.float32)
        h = v32.to(torch.float16)
        if not torch.isfinite(h).all():
            raise ConfigError(f"tensor {k} overflows float16 (max |w| {float(v32.abs().max()):.3g}): not bundled")
        scale = float(v32.abs().max()) or 1.0
        worst = max(worst, float((h.to(torch.float32) - v32).abs().max()) / scale)
        cast[k] = h.contiguous()
    outp.mkdir(parents=True, exist_ok=True)
    save_file(cast, str(outp / "adapter_model.safetensors"))
    for f in ("adapter_config.json", "train_ids.txt"):
        shutil.copyfile(src / f, outp / f)

    card = dict(card)
    dropped = card.pop("calibration", None) is not None
    card["domain"] = domain
    card["bundle"] = {"source": str(src.resolve()), "source_weights_sha": _sha(src / "adapter_model.safetensors"),
                      "dtype": "float16", "tensors": len(cast), "max_rel_error": worst,
                      "training_z_max": zmax_train, "datasets_not_on_this_machine": unread,
                      "calibration_dropped": dropped}
    (outp / "training_card.json").write_text(json.dumps(card, indent=2))
    return card
