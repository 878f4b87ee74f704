"""Simulated SDSS-like galaxy spectra: bagpipes stellar+nebular models plus the dirt real data has.

Why simulate: the redshift model needs tens of thousands of labelled spectra and no SDSS access is
available at run time. Why the dirt: a model trained on clean templates learns shortcuts (smooth
continua, perfect calibration) that real SDSS spectra break. So every simulated spectrum goes
through an SDSS-like observation: instrumental broadening, the fixed SDSS log-lambda grid,
sky + object Poisson noise with a realistic throughput curve, sky-line subtraction residuals,
telluric residuals, flux-calibration tilts, masked stretches and small sky-level offsets. Each of
these is switchable and scalable through :class:`SimConfig`.

Speed: bagpipes builds its wavelength-resampled grids once per process (seconds); afterwards a
galaxy costs ~20 ms: we call its full-spectrum step once per galaxy (rest-frame, high resolution)
and do the broadening, redshifting and resampling ourselves with numpy. With the ``fork`` start
method the parent builds the model once and the workers inherit it.

Determinism: spectrum ``i`` draws its physical parameters from ``SeedSequence(seed, spawn_key=(i, 0))``
and its noise from ``spawn_key=(i, 1)``, so output is bit-identical for any worker count or order.
"""
from __future__ import annotations

import contextlib
import io
import math
import multiprocessing as mp
import os
import re
import warnings
from dataclasses import dataclass, fields
from typing import Any, Iterator

import numpy as np

from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError
from speclm.tools.cosmology import C_KM_S
from speclm.tools.spectrum import Spectrum, air_to_vacuum



# SDSS and_mask bits we use (sdss.org "SPPIXMASK"): simulated defects carry the bit a real
# spectrum would, so readers that honour masks treat them alike.
MASK_FULLREJECT = 1 << 18
MASK_NODATA = 1 << 24

# Strong night-sky emission lines, AIR Angstrom, with a rough integrated flux in units of
# 1e-17 erg/s/cm^2 per 3" fiber (relative strengths matter, not absolute values).
_SKY_LINES_AIR = np.array([
    (5577.34, 60.0), (5889.95, 12.0), (5895.92, 10.0), (6300.30, 25.0), (6363.78, 8.0),
    (6863.96, 12.0), (6923.22, 14.0), (6948.94, 10.0), (7276.41, 12.0), (7316.28, 22.0),
    (7340.89, 20.0), (7369.25, 16.0), (7401.69, 14.0), (7571.75, 12.0), (7750.64, 24.0),
    (7794.11, 26.0), (7821.50, 20.0), (7913.71, 26.0), (7964.65, 30.0), (7993.33, 30.0),
    (8344.60, 50.0), (8399.17, 45.0), (8430.17, 40.0), (8465.36, 42.0), (8504.63, 25.0),
    (8761.31, 30.0), (8767.91, 30.0), (8827.10, 55.0), (8885.85, 55.0), (8919.64, 35.0),
    (8943.40, 50.0), (8958.08, 45.0), (8988.37, 45.0), (9001.11, 20.0), (9038.08, 20.0),
    (9049.23, 18.0), (9152.22, 15.0), (9183.49, 12.0),
])
# Telluric O2 bands (vacuum Angstrom): (start, end, typical raw depth).
_TELLURIC_BANDS = ((6866.0, 6886.0, 0.3), (7594.0, 7690.0, 0.8))


SKY_LINES_VAC = air_to_vacuum(_SKY_LINES_AIR[:, 0])
SKY_LINE_FLUX = _SKY_LINES_AIR[:, 1]


@dataclass
class SimConfig(Config):
    """Everything that decides what the simulator produces; saved in every simulated dataset."""

    n: int = setting(1000, "number of spectra")
    seed: int = setting(0, "master seed; spectrum i uses SeedSequence(seed, spawn_key=(i, k))")
    z_min: float = setting(0.0, "lowest redshift")
    z_max: float = setting(0.5, "highest redshift")
    z_distribution: str = setting("uniform", "'uniform' in z, or 'sdss' (i<18-like n(z) peaked near 0.1, LRG tail)")
    loglam_min: float = setting(3.5794, "log10 of the first observed wavelength (SDSS: 3.5794 = 3800 A, vacuum)")
    loglam_max: float = setting(3.9645, "log10 of the last observed wavelength (SDSS: 3.9645 = 9215 A)")
    dloglam: float = setting(1e-4, "log10 wavelength step (SDSS: 1e-4 = 69 km/s per pixel)")
    inst_sigma_kms: float = setting(69.0, "instrumental Gaussian sigma in km/s (SDSS R~2000)")
    veldisp_min: float = setting(50.0, "lowest stellar velocity dispersion, km/s")
    veldisp_max: float = setting(350.0, "highest stellar velocity dispersion, km/s")
    passive_frac_low_z: float = setting(0.35, "fraction of passive galaxies at z=0")
    passive_frac_high_z: float = setting(0.85, "fraction of passive galaxies at z >= passive_z_full (LRG regime)")
    passive_z_full: float = setting(0.25, "redshift where the passive fraction reaches passive_frac_high_z")
    av_max: float = setting(2.0, "largest V-band dust attenuation (mag) for star-forming galaxies")
    logu_min: float = setting(-4.0, "lowest nebular ionization parameter log10 U")
    logu_max: float = setting(-2.0, "highest nebular ionization parameter log10 U")
    fiber_mag_mean: float = setting(19.4, "mean i-band fiber AB magnitude (i<18 galaxies through a 3\" fiber)")
    fiber_mag_sigma: float = setting(0.5, "scatter of the fiber magnitude")
    snr_median: float = setting(9.0, "median per-pixel S/N in the r band (5600-6800 A)")
    snr_min: float = setting(2.0, "lowest per-pixel r-band S/N")
    snr_max: float = setting(40.0, "highest per-pixel r-band S/N")
    snr_scatter_dex: float = setting(0.18, "scatter of log10 S/N at fixed fiber magnitude")
    noise: bool = setting(True, "draw Gaussian noise from the sky+object variance (ivar is always set)")
    sky_residuals: bool = setting(True, "add sky-line subtraction residuals (spikes at fixed observed wavelengths)")
    sky_residual_strength: float = setting(1.0, "scale of sky residuals (1 = ~4% of each line's flux)")
    telluric: bool = setting(True, "add telluric A/B band correction residuals")
    telluric_strength: float = setting(0.08, "largest fractional telluric residual depth")
    fluxcal_tilt: bool = setting(True, "multiply by a smooth random flux-calibration error")
    fluxcal_amplitude: float = setting(0.15, "largest fractional tilt across the range")
    masking: bool = setting(True, "zero-ivar stretches: bad columns, dichroic region, missing ends")
    mask_strength: float = setting(1.0, "scale of masking probabilities")
    flux_offset: bool = setting(True, "occasional small additive offsets (sky-level errors)")
    flux_offset_prob: float = setting(0.2, "probability of an offset")
    flux_offset_amplitude: float = setting(0.05, "offset sigma as a fraction of the median flux")
    model_resolution: float = setting(4000.0, "bagpipes R_spec used for the rest-frame model (sampling)")
    agn_lines_prob: float = setting(0.0, "probability of adding LINER/Seyfert-like narrow lines ([N II] >~ Halpha, "
                               "strong [O III], [O I], [S II]) that bagpipes' HII-region nebular model lacks; "
                               "common in real SDSS galaxies, passive ones included")
    agn_ew_max: float = setting(30.0, "largest rest-frame Halpha equivalent width (A) of the AGN-like lines; "
                           "drawn log-uniform from 0.3 A")
    hii_lines_prob: float = setting(0.0, "probability that a star-forming galaxy is an HII galaxy / blue compact "
                               "dwarf: strong low-metallicity nebular lines (high [O III]/Hbeta, weak [N II]) on a "
                               "faint continuum, as in SDSS HII galaxies, green peas and DESI's low-z dwarfs")
    hii_ew_min: float = setting(50.0, "smallest rest-frame Halpha equivalent width (A) of an HII galaxy's lines")
    hii_ew_max: float = setting(1500.0, "largest rest-frame Halpha equivalent width (A); drawn log-uniform")
    id_tag: str = setting("", "letters/digits put after the seed in each id (sim-{seed}{tag}-{i}), so that a twin of a "
                          "set -- the same seed and galaxies drawn with other settings, e.g. hii_lines_prob=0 for "
                          "continuum-only twins of HII galaxies -- can be merged with it")

    def __post_init__(self) -> None:
        if int(self.n) != self.n or self.n < 1:
            raise ConfigError(f"n must be a positive integer, got {self.n}")
        if not (0.0 <= self.z_min < self.z_max <= 2.0):
            raise ConfigError(f"need 0 <= z_min < z_max <= 2, got {self.z_min}, {self.z_max}")
        if self.z_distribution not in ("uniform", "sdss"):
            raise ConfigError(f"z_distribution must be 'uniform' or 'sdss', got {self.z_distribution!r}")
        if not (self.loglam_min < self.loglam_max) or self.dloglam <= 0:
            raise ConfigError("need loglam_min < loglam_max and dloglam > 0")
        if not (0 < self.veldisp_min <= self.veldisp_max):
            raise ConfigError("need 0 < veldisp_min <= veldisp_max")
        if not (0 < self.snr_min <= self.snr_median <= self.snr_max):
            raise ConfigError("need 0 < snr_min <= snr_median <= snr_max")
        if not (-4.0 <= self.logu_min <= self.logu_max <= 0.0):
            raise ConfigError("need -4 <= logu_min <= logu_max <= 0 (bagpipes nebular grid)")
        for name in ("passive_frac_low_z", "passive_frac_high_z", "flux_offset_prob", "agn_lines_prob",
                     "hii_lines_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1]")
        for name in ("av_max", "sky_residual_strength", "telluric_strength", "fluxcal_amplitude",
                     "mask_strength", "flux_offset_amplitude", "inst_sigma_kms", "snr_scatter_dex", "agn_ew_max"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if not 0 < self.hii_ew_min <= self.hii_ew_max:
            raise ConfigError(f"need 0 < hii_ew_min <= hii_ew_max, got {self.hii_ew_min}, {self.hii_ew_max}")
        if not re.fullmatch(r"[A-Za-z0-9]*", self.id_tag):
            raise ConfigError(f"id_tag must be letters and digits only, got {self.id_tag!r}")
        if self.fluxcal_amplitude >= 1.0:
            raise ConfigError("fluxcal_amplitude must be < 1")
        if self.model_resolution < 1000:
            raise ConfigError("model_resolution must be >= 1000 to resolve SDSS lines")

    @property
    def wavelength(self) -> np.ndarray:
        """The fixed observed vacuum wavelength grid (Angstrom)."""
        npix = int(round((self.loglam_max - self.loglam_min) / self.dloglam)) + 1
        return 10 ** (self.loglam_min + self.dloglam * np.arange(npix))


    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


# ----------------------------------------------------------------------------- parameters

def _rng(cfg: SimConfig, i: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(i, stream)))


def _age_of_universe_gyr(z: float) -> float:
    # Flat LCDM H0=70, Om=0.3 (bagpipes' cosmology), closed form; avoids importing bagpipes here.
    om, ol, h0 = 0.3, 0.7, 70.0
    th = 977.8 / h0  # Hubble time in Gyr
    a = 1.0 / (1.0 + z)
    return th * 2.0 / (3.0 * math.sqrt(ol)) * math.asinh(math.sqrt(ol / om) * a**1.5)


def _draw_z(cfg: SimConfig, rng: np.random.Generator) -> float:
    if cfg.z_distribution == "uniform":
        return float(rng.uniform(cfg.z_min, cfg.z_max))
    # i<18-like: main sample n(z) ~ z^2 exp(-(z/0.09)^1.5) plus an LRG component near 0.3-0.4.
    while True:
        if rng.random() < 0.8:
            z = float(rng.gamma(3.0, 0.04))
        else:
            z = float(rng.normal(0.32, 0.08))
        if cfg.z_min <= z <= cfg.z_max:
            return z


def draw_parameters(cfg: SimConfig, i: int) -> dict:
    """Physical + observing parameters of spectrum ``i`` (cheap; no bagpipes)."""
    rng = _rng(cfg, i, 0)
    z = _draw_z(cfg, rng)
    tu = _age_of_universe_gyr(z) - 0.05
    frac_pass = cfg.passive_frac_low_z + (cfg.passive_frac_high_z - cfg.passive_frac_low_z) * min(
        1.0, z / max(cfg.passive_z_full, 1e-6))
    p: dict[str, Any] = {"z": z}
    if rng.random() < frac_pass:
        post_sb = rng.random() < 0.1
        p["sfh"] = "post-starburst" if post_sb else "passive"
        p["log_mass"] = float(rng.uniform(10.6, 11.8))
        p["age"] = float(rng.uniform(min(5.0, tu - 1.0), tu))
        p["tau"] = float(rng.uniform(0.1, 1.0))
        p["metallicity"] = float(rng.uniform(0.7, 2.2))
        p["recent_frac"] = float(10 ** rng.uniform(-5.5, -3.0))  # residual SF: none -> weak lines
        p["recent_age"] = 1.0
        p["burst_frac"] = float(rng.uniform(0.05, 0.2)) if post_sb else 0.0
        p["burst_age"] = float(rng.uniform(0.3, 1.5))
        p["av"] = float(rng.uniform(0.0, 0.4))
        p["veldisp"] = float(rng.normal(220.0, 55.0))
    else:
        starburst = rng.random() < 0.15
        p["sfh"] = "starburst" if starburst else "star-forming"
        p["log_mass"] = float(rng.uniform(9.3, 11.0))
        p["age"] = float(rng.uniform(min(2.0, tu - 0.5), tu))
        p["tau"] = float(10 ** rng.uniform(-0.3, 1.0))  # 0.5-10 Gyr: declining to ~constant
        p["metallicity"] = float(rng.uniform(0.2, 1.5))
        p["recent_frac"] = float(10 ** rng.uniform(-3.5, -1.2))  # recent constant SF (rising if large)
        p["recent_age"] = float(rng.uniform(0.2, 3.0))
        p["burst_frac"] = float(10 ** rng.uniform(-2.5, -1.0)) if (starburst or rng.random() < 0.2) else 0.0
        p["burst_age"] = float(rng.uniform(0.005, 0.3))
        p["av"] = float(cfg.av_max * rng.beta(1.6, 3.0))
        p["veldisp"] = float(rng.normal(100.0, 40.0))
    p["recent_age"] = min(p["recent_age"], tu)
    p["burst_age"] = min(p["burst_age"], tu)
    p["age"] = max(0.2, min(p["age"], tu))
    p["veldisp"] = float(np.clip(p["veldisp"], cfg.veldisp_min, cfg.veldisp_max))
    p["dust"] = "Cardelli" if rng.random() < 0.3 else "Calzetti"
    p["logU"] = float(rng.uniform(cfg.logu_min, cfg.logu_max))
    p["fiber_mag_i"] = float(np.clip(rng.normal(cfg.fiber_mag_mean, cfg.fiber_mag_sigma), 17.0, 21.5))
    log_snr = (math.log10(cfg.snr_median) - 0.3 * (p["fiber_mag_i"] - cfg.fiber_mag_mean)
               + rng.normal(0.0, cfg.snr_scatter_dex))
    p["snr"] = float(np.clip(10**log_snr, cfg.snr_min, cfg.snr_max))
    return p


# ----------------------------------------------------------------------------- bagpipes model

_MODEL: dict[str, Any] = {}


def _import_bagpipes():
    """Import bagpipes quietly (it prints banners about LaTeX/MultiNest on import)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.environ.setdefault("MPLBACKEND", "Agg")
        import bagpipes  # noqa: F401
    return bagpipes


def _get_model(cfg: SimConfig):
    """One bagpipes model_galaxy per process (its grid set-up costs seconds).

    A fixed component structure (old exponential body + recent constant + burst, nebular on,
    two dust laws swapped in place) lets every galaxy reuse it via numeric updates only; a
    component a galaxy does not need just gets a negligible mass.
    """
    key = (cfg.model_resolution, cfg.loglam_min, cfg.loglam_max, cfg.dloglam, cfg.inst_sigma_kms)
    if _MODEL.get("key") == key:
        return _MODEL
    bp = _import_bagpipes()
    from bagpipes.models.dust_attenuation_model import dust_attenuation

    bp.config.R_spec = float(cfg.model_resolution)
    # bagpipes samples at R_spec from spec_wavs[0]/(1+max_redshift); we never go past z=2, so a
    # smaller max_redshift during construction cuts the model's pixel count (and cost) by ~40%.
    old_max_z, bp.config.max_redshift = bp.config.max_redshift, 2.0
    comps = _components({"z": 0.1, "log_mass": 10.0, "age": 3.0, "tau": 1.0, "metallicity": 1.0,
                         "recent_frac": 0.1, "recent_age": 1.0, "burst_frac": 0.01, "burst_age": 0.1,
                         "av": 0.5, "dust": "Calzetti", "logU": -3.0, "veldisp": 100.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = bp.model_galaxy(comps, spec_wavs=cfg.wavelength)
        finally:
            bp.config.max_redshift = old_max_z
    w = model.wavelengths
    # rest-frame window needed for any z in the simulator's reach, inside the log-uniform R_spec part
    lo = 10 ** cfg.loglam_min / (1 + 2.0) * 0.97
    hi = 10 ** cfg.loglam_max * 1.03
    sel = np.flatnonzero((w > lo) & (w < hi))
    dust = {"Calzetti": model.dust_atten,
            "Cardelli": dust_attenuation(w, {"type": "Cardelli", "Av": 0.0})}
    wave = cfg.wavelength
    in_range = (SKY_LINES_VAC > wave[0] - 20) & (SKY_LINES_VAC < wave[-1] + 20)
    sky_sig = SKY_LINES_VAC[in_range] * cfg.inst_sigma_kms / C_KM_S
    sky_prof = _gauss_profile(wave, SKY_LINES_VAC[in_range], sky_sig)
    _MODEL.clear()
    _MODEL.update(key=key, model=model, sel=slice(sel[0], sel[-1] + 1), dust=dust,
                  dlnw=float(np.log(w[sel[1]] / w[sel[0]])),
                  sky=(in_range, sky_sig, sky_prof, np.gradient(sky_prof, wave, axis=1)))
    return _MODEL


def _components(p: dict) -> dict:
    m = 10 ** p["log_mass"]
    rec, bur = p["recent_frac"], p["burst_frac"]
    old = max(1.0 - rec - bur, 1e-3)
    tiny = -3.0  # log10 mass (Msun) of an unused component: invisible next to 1e9+ Msun
    return {
        "redshift": float(p["z"]),
        "exponential": {"age": p["age"], "tau": p["tau"], "massformed": math.log10(m * old),
                        "metallicity": p["metallicity"]},
        "constant": {"age_max": p["recent_age"], "age_min": 0.0,
                     "massformed": math.log10(m * rec) if rec > 0 else tiny, "metallicity": p["metallicity"]},
        "burst": {"age": p["burst_age"], "massformed": math.log10(m * bur) if bur > 0 else tiny,
                  "metallicity": p["metallicity"]},
        "dust": {"type": p["dust"], "Av": p["av"]},
        "nebular": {"logU": p["logU"]},
    }


def rest_frame_model(p: dict, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """bagpipes flux density (erg/s/cm^2/A as observed, per rest Angstrom) on its log-uniform grid."""
    M = _get_model(cfg)
    model = M["model"]
    comps = _components(p)
    model.dust_atten = M["dust"][p["dust"]]
    model.model_comp = comps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sfh.update(comps)
        model._calculate_full_spectrum(comps)
    s = M["sel"]
    # BC03 and bagpipes' nebular lines are tabulated in air above 2000 Å; Spectrum is vacuum
    return air_to_vacuum(model.wavelengths[s], uv_is_vacuum=True), model.spectrum_full[s]


# ----------------------------------------------------------------------------- observation

def _gauss_profile(wave: np.ndarray, centers: np.ndarray, sigma_a: np.ndarray) -> np.ndarray:
    """Matrix of unit-area Gaussians [n_lines, n_pix] (built once per process, then reused)."""
    d = (wave[None, :] - centers[:, None]) / sigma_a[:, None]
    return np.exp(-0.5 * d * d) / (np.sqrt(2 * np.pi) * sigma_a[:, None])


def _throughput(wave: np.ndarray) -> np.ndarray:
    # SDSS spectrograph+telescope+atmosphere efficiency, relative: peaks ~6000 A, falls to ~20-35% at the ends.
    return np.exp(-0.5 * (np.log(wave / 6200.0) / 0.28) ** 2)


def observe(wave_rest: np.ndarray, flux_rest: np.ndarray, dlnw: float, p: dict, cfg: SimConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Broaden, redshift, resample, scale, then add the SDSS-like defects. Returns (wave, flux, ivar, mask, extra)."""
    from scipy.ndimage import gaussian_filter1d

    wave = cfg.wavelength
    npix = wave.size
    sig = math.hypot(p["veldisp"], cfg.inst_sigma_kms) / C_KM_S / dlnw
    f = gaussian_filter1d(flux_rest, sig, mode="nearest", truncate=5.0)
    z = p["z"]
    model = np.interp(np.log(wave), np.log(wave_rest * (1 + z)), f)

    # brightness: scale to the drawn i-band fiber magnitude (AB), in SDSS 1e-17 units
    iband = (wave > 7000) & (wave < 8300)
    fnu = 10 ** (-0.4 * (p["fiber_mag_i"] + 48.6))
    target = fnu * 2.998e18 / 7600.0**2 / 1e-17
    model = model * (target / max(float(np.mean(model[iband])), 1e-300))
    extra: dict[str, Any] = {}

    if cfg.agn_lines_prob > 0 and rng.random() < cfg.agn_lines_prob:
        model, extra["agn"] = _add_agn_lines(wave, model, z, cfg, rng)
    if (cfg.hii_lines_prob > 0 and p.get("sfh") in ("star-forming", "starburst")
            and rng.random() < cfg.hii_lines_prob):
        model, extra["hii"] = _add_hii_lines(wave, model, z, cfg, rng)

    if cfg.fluxcal_tilt and cfg.fluxcal_amplitude > 0:
        x = np.linspace(-1.0, 1.0, npix)
        a = cfg.fluxcal_amplitude
        c1, c2, c3 = rng.uniform(-1, 1, 3) * np.array([0.6, 0.3, 0.15]) * a
        tilt = np.exp(c1 * x + c2 * (x * x - 1.0 / 3.0) + c3 * (4 * x**3 - 3 * x))
        tilt = 1.0 + np.clip(tilt - 1.0, -a, a)
        model = model * tilt
        extra["fluxcal_tilt"] = float(tilt.max() - tilt.min())

    if cfg.telluric and cfg.telluric_strength > 0:
        for lo, hi, depth in _TELLURIC_BANDS:
            d = rng.uniform(-1, 1) * cfg.telluric_strength * depth / 0.8
            half = 0.5 * (hi - lo)
            # sharp blue edge, decaying red wing: the O2 band-head shape
            prof = np.where((wave > lo) & (wave < hi), np.exp(-(wave - lo) / half), 0.0)
            model = model * (1.0 - d * prof)

    # variance: photon noise from object + sky through the throughput curve, plus read noise
    in_range, sky_sig, prof, dprof = _get_model(cfg)["sky"]
    line_flux = SKY_LINE_FLUX[in_range] * rng.uniform(0.6, 1.6, in_range.sum())
    sky = 1.2 * (wave / 6000.0) ** 1.5 + line_flux @ prof
    thr = _throughput(wave)
    v = (sky + np.maximum(model, 0.0)) / thr + 0.6 / thr**2
    r = (wave > 5600) & (wave < 6800)
    scale = float(np.median(model[r] / np.sqrt(v[r]))) / p["snr"]
    sigma = np.sqrt(v) * max(scale, 1e-12)

    flux = model.copy()
    if cfg.noise:
        flux = flux + rng.normal(0.0, 1.0, npix) * sigma
    if cfg.sky_residuals and cfg.sky_residual_strength > 0:
        # imperfect subtraction: a few % of each line left, plus a shifted (P-Cygni-like) part
        amp = rng.normal(0.0, 0.04, line_flux.size) * line_flux * cfg.sky_residual_strength
        dshift = rng.normal(0.0, 0.03, line_flux.size) * sky_sig
        flux = flux + amp @ prof + (line_flux * dshift) @ dprof * cfg.sky_residual_strength
        sigma = np.sqrt(sigma**2 + ((0.02 * cfg.sky_residual_strength * line_flux) @ prof) ** 2)
    if cfg.flux_offset and rng.random() < cfg.flux_offset_prob:
        off = rng.normal(0.0, cfg.flux_offset_amplitude) * float(np.median(np.abs(model)))
        flux = flux + off
        extra["flux_offset"] = off

    ivar = 1.0 / sigma**2
    mask = np.zeros(npix, dtype=np.int32)
    if cfg.masking and cfg.mask_strength > 0:
        s = cfg.mask_strength
        for _ in range(rng.poisson(0.6 * s)):  # bad columns / cosmic-ray rejected stretches
            c = int(rng.integers(0, npix))
            n = int(rng.integers(1, 25))
            mask[c:c + n] |= MASK_FULLREJECT
        if rng.random() < 0.05 * s:  # dichroic crossover region
            lo = 5850 + rng.uniform(0, 100)
            mask[(wave > lo) & (wave < lo + rng.uniform(20, 120))] |= MASK_FULLREJECT
        if rng.random() < 0.15 * s:  # missing blue end
            mask[: int(rng.integers(5, 200))] |= MASK_NODATA
        if rng.random() < 0.10 * s:  # missing red end
            mask[npix - int(rng.integers(5, 300)):] |= MASK_NODATA
        bad = mask != 0
        ivar[bad] = 0.0
        flux[(mask & MASK_NODATA) != 0] = 0.0
        extra["masked_frac"] = float(bad.mean())
    return wave, flux, ivar, mask, extra


# LINER / Seyfert narrow-line ratios relative to Halpha (ranges drawn uniformly), on top of the
# HII-region lines bagpipes makes. Names are keys of the one line list (speclm.tools.lines).
_AGN_RATIOS = {
    "liner": {"Hbeta": (0.28, 0.36), "NII6585": (1.0, 2.2), "OIII5008": (0.3, 1.2), "OI6302": (0.15, 0.4),
              "SII6718": (0.35, 0.8), "SII6733": (0.3, 0.6), "OII3727": (0.6, 1.5), "OII3729": (0.6, 1.5)},
    "seyfert": {"Hbeta": (0.28, 0.36), "NII6585": (0.6, 1.4), "OIII5008": (2.0, 4.0), "OI6302": (0.08, 0.25),
                "SII6718": (0.25, 0.5), "SII6733": (0.2, 0.4), "OII3727": (0.3, 0.8), "OII3729": (0.3, 0.8)},
}


def _add_agn_lines(wave: np.ndarray, model: np.ndarray, z: float, cfg: SimConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Narrow AGN-like emission lines at the galaxy's redshift, scaled to a drawn Halpha EW."""
    kind = "seyfert" if rng.random() < 0.3 else "liner"
    ratios = {"Halpha": 1.0} | {k: float(rng.uniform(*v)) for k, v in _AGN_RATIOS[kind].items()}
    ratios["NII6550"] = ratios["NII6585"] / 3.05  # fixed by atomic physics
    ratios["OIII4960"] = ratios["OIII5008"] / 2.98
    ew = float(np.exp(rng.uniform(np.log(0.3), np.log(max(cfg.agn_ew_max, 0.31)))))
    sig_kms = math.hypot(float(rng.uniform(80.0, 300.0)), cfg.inst_sigma_kms)
    return _add_narrow_lines(wave, model, z, ratios, ew, sig_kms), {"kind": kind, "ew_halpha": ew,
                                                                     "sigma_kms": sig_kms}


# Low-metallicity HII-region ratios relative to Halpha (Case B Balmer decrement, little dust): the lines of
# HII galaxies and blue compact dwarfs (Terlevich et al. 1991; Izotov & Thuan SDSS samples), green peas
# ([O III]/Hbeta ~ 5-10, Cardamone et al. 2009).
_HII_RATIOS = {"Hbeta": (0.30, 0.35), "OIII5008": (0.7, 3.0), "NII6585": (0.02, 0.15), "SII6718": (0.03, 0.12),
               "SII6733": (0.02, 0.09), "OII3727": (0.15, 0.5), "OII3729": (0.2, 0.6), "NeIII3870": (0.08, 0.25),
               "OI6302": (0.005, 0.03)}


def _add_hii_lines(wave: np.ndarray, model: np.ndarray, z: float, cfg: SimConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """An HII galaxy's strong nebular lines at the galaxy's redshift, scaled to a drawn Halpha EW."""
    ratios = {"Halpha": 1.0} | {k: float(rng.uniform(*v)) for k, v in _HII_RATIOS.items()}
    ratios["NII6550"] = ratios["NII6585"] / 3.05
    ratios["OIII4960"] = ratios["OIII5008"] / 2.98
    ratios["Hgamma"] = 0.47 * ratios["Hbeta"]
    ratios["Hdelta"] = 0.26 * ratios["Hbeta"]
    ew = float(np.exp(rng.uniform(np.log(cfg.hii_ew_min), np.log(cfg.hii_ew_max))))
    sig_kms = math.hypot(float(rng.uniform(20.0, 80.0)), cfg.inst_sigma_kms)
    return _add_narrow_lines(wave, model, z, ratios, ew, sig_kms), {"ew_halpha": ew, "sigma_kms": sig_kms}


def _add_narrow_lines(wave: np.ndarray, model: np.ndarray, z: float, ratios: dict[str, float], ew: float,
                      sig_kms: float) -> np.ndarray:
    """Gaussian lines with fluxes ``ratios`` x F(Halpha), F(Halpha) = ``ew`` (rest, A) x the continuum at Halpha."""
    from speclm.tools import lines as L

    ha_obs = L.get("Halpha").rest_A * (1 + z)
    near = np.abs(wave - ha_obs) < 60
    # continuum at Halpha (observed frame); when Halpha is redshifted out of range use the red end
    cont = float(np.median(model[near])) if near.sum() > 5 else float(np.median(model[-200:]))
    f_ha = ew * (1 + z) * max(cont, 0.0)
    add = np.zeros_like(model)
    for name, r in ratios.items():
        c = L.get(name).rest_A * (1 + z)
        if c < wave[0] - 50 or c > wave[-1] + 50:
            continue
        sa = c * sig_kms / C_KM_S
        add += r * f_ha * np.exp(-0.5 * ((wave - c) / sa) ** 2) / (math.sqrt(2 * math.pi) * sa)
    return model + add


def simulate_one(cfg: SimConfig, i: int) -> Spectrum:
    """Spectrum ``i`` of the configuration: deterministic, independent of every other index."""
    p = draw_parameters(cfg, i)
    M = _get_model(cfg)
    wr, fr = rest_frame_model(p, cfg)
    wave, flux, ivar, mask, extra = observe(wr, fr, M["dlnw"], p, cfg, _rng(cfg, i, 1))
    meta = {
        "id": f"sim-{cfg.seed}{cfg.id_tag}-{i}", "z": p["z"], "z_err": 0.0, "class": "GALAXY", "source": "simulated",
        "format": "simulated", "air_or_vacuum": "vacuum",
        "sim": {**{k: v for k, v in p.items() if k != "z"}, **extra},
    }
    return Spectrum(wavelength=wave.astype(np.float32), flux=flux.astype(np.float32),
                    ivar=ivar.astype(np.float32), mask=mask, meta=meta)


# ----------------------------------------------------------------------------- parallel driver

_WORKER_CFG: SimConfig | None = None


def _worker_init(cfg: SimConfig) -> None:
    global _WORKER_CFG
    _WORKER_CFG = cfg
    _get_model(cfg)  # no-op when inherited through fork


def _worker_run(i: int) -> Spectrum:
    assert _WORKER_CFG is not None
    return simulate_one(_WORKER_CFG, i)


def iter_spectra(cfg: SimConfig, *, workers: int | None = None, progress: bool = True,
                 indices: range | list[int] | None = None) -> Iterator[Spectrum]:
    """Yield spectra in index order, computed by ``workers`` processes (default: all CPUs)."""
    idx = list(range(cfg.n)) if indices is None else list(indices)
    workers = max(1, min(workers or os.cpu_count() or 1, len(idx) or 1))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(idx), desc="simulating", unit="spec", dynamic_ncols=True)
    try:
        _get_model(cfg)  # build once in the parent; forked workers inherit it
        if workers == 1:
            for i in idx:
                yield simulate_one(cfg, i)
                if bar:
                    bar.update(1)
            return
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        with ctx.Pool(workers, initializer=_worker_init, initargs=(cfg,)) as pool:
            chunk = max(1, min(32, len(idx) // (workers * 8) or 1))
            for spec in pool.imap(_worker_run, idx, chunksize=chunk):
                yield spec
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()


def simulate_spectra(cfg: SimConfig, *, workers: int | None = None, progress: bool = True) -> list[Spectrum]:
    """All ``cfg.n`` spectra as a list (bit-identical for any ``workers``)."""
    return list(iter_spectra(cfg, workers=workers, progress=progress))
