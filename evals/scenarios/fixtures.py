"""Spectrum fixtures a scenario names (ppxf:, synthetic:, simulated:, real:, file:, bad:) and the loopback SDSS."""
from __future__ import annotations

import os
from pathlib import Path

from speclm.evals.scenarios.schema import SDSS_TEMPLATE, FixtureUnavailable, parse_fixture


# ------------------------------------------------------------------------------------------------
# Fixtures: spectrum files and the loopback SDSS server
# ------------------------------------------------------------------------------------------------

class Fixtures:
    """Writes fixture spectra into ``root`` (cached per spec; bad files fresh each time)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, tuple[Path, float | None]] = {}
        self._n = 0

    def get(self, spec: str, base_dir: Path | None = None) -> tuple[Path, float | None]:
        """(path, true z or None) for a fixture spec."""
        kind, arg = parse_fixture(spec)
        if kind != "bad" and spec in self._cache:
            return self._cache[spec]
        if kind == "ppxf":
            from speclm.tools.synthetic import ppxf_spectrum

            path = ppxf_spectrum(arg)
            if path is None:
                raise FixtureUnavailable("ppxf is not installed (pip install ppxf): no real SDSS spectra")
            out = (path, self._catalog_z(path))
        elif kind == "synthetic":
            from speclm.tools.synthetic import write_synthetic_fits

            z, seed = arg
            out = (write_synthetic_fits(self.root / f"spec-synthetic-z{z:g}-s{seed}.fits", z=z, seed=seed), z)
        elif kind == "simulated":
            out = self._simulated(arg)
        elif kind == "real":
            root = Path(os.environ.get("SPECLM_REAL_DEV", "../shared/data/sdss_real_dev")) / "fits"
            path = root / arg
            if not path.is_file():
                raise FixtureUnavailable(f"real SDSS spectrum {path} is not here (set SPECLM_REAL_DEV)")
            out = (path, self._catalog_z(path))
        elif kind == "file":
            path = Path(arg).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            out = (path, self._catalog_z(path) if path.is_file() else None)
        else:
            self._n += 1
            out = (self._bad(arg, self.root / f"bad{self._n}"), None)
        if kind != "bad":
            self._cache[spec] = out
        return out

    @staticmethod
    def _catalog_z(path: Path) -> float | None:
        from speclm.tools.spectrum import read_spectrum

        return read_spectrum(path).z_catalog

    def _simulated(self, seed: int) -> tuple[Path, float]:
        import numpy as np
        from speclm.finetune.simulate import SimConfig, simulate_one
        from speclm.tools.spectrum import write_sdss_spec_fits

        try:
            s = simulate_one(SimConfig(n=1, seed=seed), 0)
        except ImportError as exc:  # bagpipes (the simulator's stellar-population models) is optional
            raise FixtureUnavailable(f"simulated spectra need bagpipes ({exc})") from None
        path = write_sdss_spec_fits(self.root / f"spec-simulated-s{seed}.fits", np.log10(s.wavelength), s.flux,
                                    s.ivar, s.meta["z"], and_mask=np.asarray(s.mask, np.int32) if s.mask is not None
                                    else None)
        return path, float(s.meta["z"])

    @staticmethod
    def _bad(kind: str, d: Path) -> Path:
        """One broken file per kind: the one bad-file factory (speclm.tools.synthetic.BadFiles)."""
        from speclm.tools.synthetic import BadFiles

        return BadFiles(d)(kind)


def sdss_sim_module():
    """The loopback SkyServer/SAS (speclm.tools.sdss_sim): one fake SDSS for tests and evals."""
    from speclm.tools import sdss_sim

    return sdss_sim


def fill_sdss(s: str | None, objects: list) -> str | None:
    if s is None:
        return None
    return SDSS_TEMPLATE.sub(lambda m: str(getattr(objects[int(m[1])], m[2])), s)
