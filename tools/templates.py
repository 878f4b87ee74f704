"""Rest-frame spectral templates for the redshift search: galaxies, quasars and stars.

What is stored and where it comes from (all offline physics, no survey data):

* galaxy stellar light: bagpipes (BC03 simple stellar populations, solar metallicity, no dust, no
  nebular emission; BC03's air wavelengths converted to vacuum) at seven ages, 5 Myr to 11 Gyr, broadened to σ = 150 km/s;
* stars: the Sun (G2 V) and Vega (A0 V) from the ``spectra_sun_vega.npz`` file that ppxf ships
  (the only stellar spectra any installed package carries), plus Planck curves (computed here) for
  the cool stars a G/A pair cannot mimic;
* emission lines (narrow galaxy lines and quasar broad lines) are Gaussians built at load time from
  the one line list (:mod:`speclm.tools.lines`), so no rest wavelength is typed here;
* quasar continua: power laws f_λ ∝ λ^β, with the Lyman-α forest region as its own free piece.

The stored grid is uniform in log10 λ with the SDSS pixel step (1e-4, 69 km/s) from 400 to
11,500 Å, so that a redshift is an integer shift of pixels (see redshift_search). The stored part
is computed from the installed bagpipes and ppxf on first use (about 10 s) and kept in the speclm
cache (``<cache>/templates/redshift_templates.npz``); nothing derived from their data ships in this
repository. ``python -m speclm.tools.templates --build`` rebuilds it.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from speclm.tools import lines as line_list
from speclm.tools.cosmology import C_KM_S
from speclm.tools.errors import ConfigError
from speclm.tools.paths import cache_root
from speclm.tools.spectrum import air_to_vacuum

DLOGLAM = 1e-4  # SDSS's log10 pixel step
LOGLAM_MIN = math.log10(400.0)
LOGLAM_MAX = math.log10(11500.0)
SSP_AGES_GYR = (0.005, 0.025, 0.1, 0.3, 1.0, 3.0, 11.0)
STELLAR_SIGMA_KMS = 150.0  # stellar velocity dispersion + SDSS instrument, in quadrature (typical)
NARROW_SIGMA_KMS = 150.0
BROAD_SIGMAS_KMS = (1500.0, 3500.0)  # two widths per broad line: their sum fits most broad profiles
POWER_LAW_BETAS = (-2.0, -1.0, 0.0)
PLANCK_TEMPERATURES_K = (3000.0, 3800.0, 5000.0)
TEMPLATE_VERSION = 1  # bump when build() changes what it computes


def template_file() -> Path:
    return cache_root() / "templates" / f"redshift_templates_v{TEMPLATE_VERSION}.npz"

# Narrow emission lines of the galaxy model, one free amplitude each (doublets with fixed atomic
# ratios share one). Names are keys of the line list.
NARROW_GROUPS: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("Halpha", (("Halpha", 1.0),)),
    ("Hbeta", (("Hbeta", 1.0),)),
    ("Hgamma", (("Hgamma", 1.0),)),
    ("Hdelta", (("Hdelta", 1.0),)),
    ("OII", (("OII3727", 1.0), ("OII3729", 1.0))),
    ("OIII", (("OIII5008", 1.0), ("OIII4960", 1.0 / 2.98))),  # atomic ratio
    ("NII", (("NII6585", 1.0), ("NII6550", 1.0 / 3.05))),  # atomic ratio
    ("SII6718", (("SII6718", 1.0),)),
    ("SII6733", (("SII6733", 1.0),)),
    ("OI", (("OI6302", 1.0),)),
    ("NeIII", (("NeIII3870", 1.0),)),
    ("NeV", (("NeV3427", 1.0),)),
    ("MgII_narrow", (("MgII2800", 1.0),)),
)
# The scan (all z at once) uses three fixed-ratio line groups; the refinement frees every group.
SCAN_GROUPS = {
    "star-forming lines": {"Halpha": 2.86, "Hbeta": 1.0, "Hgamma": 0.47, "Hdelta": 0.26, "NII": 0.9,
                           "SII6718": 0.5, "SII6733": 0.35, "OIII": 0.6, "NeIII": 0.05},
    "[O II]": {"OII": 1.0},
    "high-ionisation lines": {"OIII": 3.0, "Hbeta": 0.3, "Halpha": 0.9, "NII": 0.9, "OI": 0.15,
                              "NeIII": 0.3, "NeV": 0.3, "MgII_narrow": 0.5},
}
# Quasar broad lines; scan-time relative fluxes after Vanden Berk et al. (2001), Lyα = 100.
BROAD_LINES = (("Lyalpha", 100.0), ("NV1240", 2.5), ("SiIV1400", 8.9), ("CIV1549", 25.3),
               ("HeII1640", 2.5), ("CIII1909", 15.9), ("MgII2800", 14.7), ("Hdelta", 1.3),
               ("Hgamma", 2.6), ("Hbeta", 8.6), ("Halpha", 30.8))
LYA_REST_A = line_list.get("Lyalpha").rest_A


def rest_grid() -> np.ndarray:
    """log10(λ_rest / Å) of the template grid."""
    n = int(round((LOGLAM_MAX - LOGLAM_MIN) / DLOGLAM)) + 1
    return LOGLAM_MIN + DLOGLAM * np.arange(n)


def _smooth(flux: np.ndarray, sigma_kms: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    sig_pix = sigma_kms / C_KM_S / (DLOGLAM * math.log(10))
    return gaussian_filter1d(flux, sig_pix, mode="nearest")


def _norm(flux: np.ndarray, wave: np.ndarray) -> np.ndarray:
    sel = (wave > 4000) & (wave < 9000)
    scale = float(np.mean(np.abs(flux[sel]))) or 1.0
    return (flux / scale).astype(np.float32)


def build(out: Path | None = None) -> Path:
    """Compute the stored templates (bagpipes SSPs, ppxf's Sun and Vega) and save them."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bagpipes as bp
    import ppxf

    grid = rest_grid()
    wave = 10**grid
    bp.config.R_spec = 5000.0
    comps = {"redshift": 0.0, "burst": {"age": 1.0, "massformed": 10.0, "metallicity": 1.0}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bp.model_galaxy(comps, spec_wavs=np.arange(1000.0, 11600.0, 2.0))
        ssp = []
        for age in SSP_AGES_GYR:
            comps["burst"]["age"] = age
            model.update(comps)
            # BC03 wavelengths are in air; the grid (like Spectrum) is vacuum
            f = np.interp(wave, air_to_vacuum(model.wavelengths, uv_is_vacuum=True), model.spectrum_full)
            ssp.append(_norm(_smooth(f, STELLAR_SIGMA_KMS), wave))
    sv = np.load(Path(ppxf.__file__).parent / "sps_models" / "spectra_sun_vega.npz")
    stars = []
    for key in ("flux_sun", "flux_vega"):
        f = np.interp(wave, air_to_vacuum(sv["lam"], uv_is_vacuum=True), sv[key])  # ppxf's Sun/Vega are air wavelengths
        stars.append(_norm(_smooth(f, 70.0), wave))
    out = Path(out or template_file())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, loglam=grid.astype(np.float64), ssp=np.array(ssp), ssp_ages_gyr=np.array(SSP_AGES_GYR),
                        stars=np.array(stars), star_names=np.array(["Sun (G2 V)", "Vega (A0 V)"]),
                        source=np.array("bagpipes BC03 SSPs (solar Z, no dust, no nebular), sigma 150 km/s; "
                                        "ppxf spectra_sun_vega.npz"))
    os.replace(tmp, out)  # atomic: a concurrent reader never sees half a file
    return out


@dataclass(frozen=True)
class TemplateSet:
    """One spectral type's basis on the rest grid: ``flux`` (n_templates, n_pix), their names, and
    which of them are emission-line features (for the line-support count)."""

    spectype: str
    names: tuple[str, ...]
    flux: np.ndarray
    line_features: tuple[str, ...] = ()


def _gauss(grid: np.ndarray, rest_A: float, sigma_kms: float, sigma_A: float = 0.0) -> np.ndarray:
    lam = 10**grid
    sig = math.hypot(rest_A * sigma_kms / C_KM_S, sigma_A)
    g = np.exp(-0.5 * ((lam - rest_A) / sig) ** 2)
    return g / (sig * math.sqrt(2 * math.pi))  # unit flux, per Å


def _group(grid, members, sigma_kms) -> np.ndarray:
    out = np.zeros(grid.size)
    for name, ratio in members:
        l = line_list.get(name)
        out += ratio * _gauss(grid, l.rest_A, sigma_kms, l.sigma_A)
    return out


@lru_cache(maxsize=1)
def _stored() -> dict:
    f = template_file()
    if not f.is_file():
        try:
            build(f)
        except ImportError as exc:
            raise ConfigError(f"the redshift templates need bagpipes and ppxf to be built once ({exc}); "
                              "pip install bagpipes ppxf") from None
    with np.load(f) as d:
        return {k: d[k] for k in d.files}


def _line_scale(ssp: np.ndarray) -> float:
    # emission templates are scaled to a typical equivalent width against the stellar templates'
    # unit continuum, so their coefficients are O(1) like the rest (better conditioned solves)
    return 20.0


@lru_cache(maxsize=None)
def template_set(spectype: str, stage: str) -> TemplateSet:
    """The basis for ``spectype`` (GALAXY / QSO / STAR) at ``stage`` ("scan": few fixed-ratio
    templates for the all-z scan; "fit": every feature free, for the refinement)."""
    if stage not in ("scan", "fit"):
        raise ConfigError(f"stage must be 'scan' or 'fit', got {stage!r}")
    d = _stored()
    grid = d["loglam"]
    lam = 10**grid
    names: list[str] = []
    rows: list[np.ndarray] = []
    feats: list[str] = []
    narrow = {name: _group(grid, members, NARROW_SIGMA_KMS) * _line_scale(d["ssp"]) for name, members in NARROW_GROUPS}
    if spectype == "GALAXY":
        for age, f in zip(d["ssp_ages_gyr"], d["ssp"]):
            names.append(f"SSP {age:g} Gyr")
            rows.append(f.astype(float))
        for beta in POWER_LAW_BETAS:  # smooth continuum shapes (dust, flux calibration): the quasar fit
            names.append(f"smooth continuum β={beta:g}")  # must then win on its broad lines alone
            rows.append((lam / 3000.0) ** beta)
        if stage == "scan":
            for gname, comp in SCAN_GROUPS.items():
                names.append(gname)
                rows.append(sum(r * narrow[k] for k, r in comp.items()))
        else:
            for gname in narrow:
                names.append(gname)
                rows.append(narrow[gname])
                feats.append(gname)
    elif spectype == "QSO":
        blue = lam < LYA_REST_A
        for beta in POWER_LAW_BETAS:
            pl = (lam / 3000.0) ** beta
            names.append(f"power law β={beta:g}")
            rows.append(np.where(blue, 0.0, pl))
        names.append("Lyα forest (mean transmission free)")
        rows.append(np.where(blue, (lam / 3000.0) ** -1.0, 0.0))
        for age_i in (3, 6):  # host galaxy: 0.3 and 11 Gyr populations
            names.append(f"host SSP {d['ssp_ages_gyr'][age_i]:g} Gyr")
            rows.append(d["ssp"][age_i].astype(float))
        broad_scale = 3.0 * _line_scale(d["ssp"])
        if stage == "scan":
            for sig in BROAD_SIGMAS_KMS:
                names.append(f"broad lines σ={sig:g} km/s")
                rows.append(broad_scale * sum(w / 25.0 * _gauss(grid, line_list.get(n).rest_A, sig)
                                              for n, w in BROAD_LINES))
            names.append("narrow lines")
            rows.append(sum(r * narrow[k] for k, r in SCAN_GROUPS["high-ionisation lines"].items()))
        else:
            for n, _ in BROAD_LINES:
                for sig in BROAD_SIGMAS_KMS:
                    names.append(f"broad {n} σ={sig:g}")
                    rows.append(broad_scale * _gauss(grid, line_list.get(n).rest_A, sig))
                    feats.append(f"broad {n}")
            for gname in ("Halpha", "Hbeta", "OII", "OIII", "NII", "SII6718", "NeIII", "NeV"):
                names.append(gname)
                rows.append(narrow[gname])
            # quasars' narrow lines are often broader than a galaxy's (outflows): a σ=400 km/s copy
            for gname, members in NARROW_GROUPS:
                if gname in ("Hbeta", "OIII", "OII", "Halpha", "NII"):
                    names.append(f"{gname} σ=400")
                    rows.append(_group(grid, members, 400.0) * _line_scale(d["ssp"]))
    elif spectype == "STAR":
        for nm, f in zip(d["star_names"], d["stars"]):
            names.append(str(nm))
            rows.append(f.astype(float))
        for t in PLANCK_TEMPERATURES_K:
            x = 1.4387769e8 / (lam * t)  # hc/(λ k T), λ in Å
            with np.errstate(over="ignore"):
                bb = lam**-5 / np.expm1(np.minimum(x, 700.0))
            names.append(f"Planck {t:g} K")
            rows.append(_norm(bb, lam).astype(float))
    else:
        raise ConfigError(f"unknown spectral type {spectype!r}; expected GALAXY, QSO or STAR")
    return TemplateSet(spectype=spectype, names=tuple(names), flux=np.array(rows), line_features=tuple(feats))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", action="store_true", help="(re)build the stored templates with bagpipes and ppxf")
    args = ap.parse_args(argv)
    if args.build:
        print(build())
    for t in ("GALAXY", "QSO", "STAR"):
        ts = template_set(t, "fit")
        print(t, len(ts.names), "templates:", ", ".join(ts.names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
