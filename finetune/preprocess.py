"""Turn any observed spectrum into the fixed-length vector the model reads (paper §2).

Why a fixed observed-frame grid: the model must infer redshift from *where* features sit, so every
spectrum (SDSS, BOSS, a CSV from a user's own pipeline, a simulation) is resampled onto the same
wavelength bins before encoding. The config is saved with every dataset and every adapter, and
inference refuses to run with a different one, so the model always sees what it was trained on.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError, TooFewPixelsError
from speclm.tools.spectrum import Spectrum


@dataclass(frozen=True)
class PreprocessConfig(Config):
    """Every choice between a spectrum file and the vector of numbers the codec encodes."""

    wave_min: float = setting(3800.0, "Blue edge of the fixed observed-frame grid, vacuum Angstrom.")
    wave_max: float = setting(9200.0, "Red edge of the fixed observed-frame grid, vacuum Angstrom.")
    n_bins: int = setting(64, "Number of output values (bins) per spectrum; tokens scale with it.")
    grid: str = setting(
        "log",
        "'linear' (the paper: log->linear resampling, equal-width Angstrom bins) or 'log' "
        "(equal-width bins in log wavelength: a redshift is then a pure shift of the pattern).",
    )
    normalize: str = setting(
        "median",
        "How flux is scaled before binning: 'median' (divide by the median of good binned flux), "
        "'max' (divide by the 99th percentile), 'none'.",
    )
    scale: float = setting(
        25.0,
        "After normalisation values are multiplied by this (median-normalised flux 1.0 -> 25), "
        "so that integer codecs keep useful dynamic range.",
    )
    gain: float = setting(
        1.0,
        "Contrast around the normalised level: value = scale * (1 + gain * (x - 1)). With continuum "
        "division the signal is a few per cent around 1; a gain of ~5 moves it into the leading "
        "digit, where a language model can read it (gain 1 = plain scaling).",
    )
    clip_min: float = setting(0.0, "Lower clip of the scaled values (negative noise floors to this).")
    clip_max: float = setting(99.0, "Upper clip of the scaled values (keeps fixed-width codecs fixed).")
    continuum: str = setting(
        "none",
        "'none' keeps the continuum shape; 'divide' divides the binned flux by its running median "
        "(window continuum_window bins), keeping lines and breaks but removing flux-calibration "
        "tilts and dust slopes, which differ most between simulations and real SDSS spectra.",
    )
    continuum_window: int = setting(9, "Running-median window (bins, odd) for continuum='divide'.")
    min_coverage: float = setting(
        0.3, "A bin whose good-pixel coverage is below this fraction is filled by interpolation."
    )
    min_good_bins: float = setting(
        0.5, "Refuse a spectrum when fewer than this fraction of bins have good pixels."
    )

    def __post_init__(self):
        if not (1000.0 <= self.wave_min < self.wave_max <= 30000.0):
            raise ConfigError(f"wave_min/wave_max must satisfy 1000 <= min < max <= 30000, got {self.wave_min}, {self.wave_max}")
        if not (4 <= self.n_bins <= 8192):
            raise ConfigError(f"n_bins must be in [4, 8192], got {self.n_bins}")
        if self.grid not in ("linear", "log"):
            raise ConfigError(f"grid must be 'linear' or 'log', got {self.grid!r}")
        if self.normalize not in ("median", "max", "none"):
            raise ConfigError(f"normalize must be 'median', 'max' or 'none', got {self.normalize!r}")
        if self.continuum not in ("none", "divide"):
            raise ConfigError(f"continuum must be 'none' or 'divide', got {self.continuum!r}")
        if self.continuum_window < 3 or self.continuum_window % 2 == 0 or self.continuum_window >= self.n_bins:
            raise ConfigError(f"continuum_window must be odd, >= 3 and < n_bins, got {self.continuum_window}")
        if not self.gain > 0:
            raise ConfigError(f"gain must be > 0, got {self.gain}")
        if not self.scale > 0:
            raise ConfigError(f"scale must be > 0, got {self.scale}")
        if not self.clip_min < self.clip_max:
            raise ConfigError("clip_min must be < clip_max")
        for name in ("min_coverage", "min_good_bins"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")

    # -- persistence -------------------------------------------------------------------------


    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def bin_edges(self) -> np.ndarray:
        if self.grid == "linear":
            return np.linspace(self.wave_min, self.wave_max, self.n_bins + 1)
        return np.geomspace(self.wave_min, self.wave_max, self.n_bins + 1)

    def bin_centers(self) -> np.ndarray:
        e = self.bin_edges()
        return 0.5 * (e[1:] + e[:-1]) if self.grid == "linear" else np.sqrt(e[1:] * e[:-1])


def _pixel_edges(wave: np.ndarray) -> np.ndarray:
    """Pixel boundaries halfway between centres (works for log and linear sampling)."""
    mid = 0.5 * (wave[1:] + wave[:-1])
    first = wave[0] - (mid[0] - wave[0])
    last = wave[-1] + (wave[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def rebin(wave: np.ndarray, flux: np.ndarray, weight: np.ndarray, edges: np.ndarray):
    """Flux-conserving rebinning: mean flux density in each output bin, weighted by overlap.

    ``weight`` is 1 for good pixels and 0 for bad ones (ivar/mask), so bad pixels contribute
    nothing. Returns (binned flux, coverage fraction of each bin by good pixels).
    Implemented with cumulative integrals so it costs O(n_pixels + n_bins).
    """
    pe = _pixel_edges(wave)
    width = np.diff(pe)
    # cumulative integral of flux*weight and of weight over pixel edges
    cf = np.concatenate([[0.0], np.cumsum(flux * weight * width)])
    cw = np.concatenate([[0.0], np.cumsum(weight * width)])
    # integral up to arbitrary x: linear interpolation of cumulative arrays (exact for piecewise-constant pixels)
    xf = np.interp(edges, pe, cf)
    xw = np.interp(edges, pe, cw)
    flux_int = np.diff(xf)
    w_int = np.diff(xw)
    bin_w = np.diff(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(w_int > 0, flux_int / w_int, np.nan)
    coverage = w_int / bin_w
    return out, coverage


def coverage_notes(spectrum: Spectrum, cfg: PreprocessConfig) -> list[str]:
    """What the preprocessing does with a spectrum's wavelength range, in words (e.g. DESI's
    3600–9824 Å against the model's grid): the pixels outside the grid are not read by the model
    (the redshift search and the measurements still use them); a grid end the spectrum does not
    reach is filled by interpolation."""
    wave = np.asarray(spectrum.wavelength, float)
    good = spectrum.good
    out = []
    blue = int(np.sum(good & (wave < cfg.wave_min)))
    red = int(np.sum(good & (wave > cfg.wave_max)))
    if blue > 5 or red > 5:
        parts = []
        if blue > 5:
            parts.append(f"{blue} good pixels below {cfg.wave_min:.0f} Å")
        if red > 5:
            parts.append(f"{red} good pixels above {cfg.wave_max:.0f} Å")
        out.append(f"the model reads {cfg.wave_min:.0f}–{cfg.wave_max:.0f} Å (its training range); "
                   f"{' and '.join(parts)} of this {wave[0]:.0f}–{wave[-1]:.0f} Å spectrum are not in its input "
                   "(the redshift search and the measurements use them)")
    if wave[good].size and (wave[good][0] > cfg.wave_min + 50 or wave[good][-1] < cfg.wave_max - 50):
        out.append(f"the spectrum's good pixels cover {wave[good][0]:.0f}–{wave[good][-1]:.0f} Å; the model's "
                   f"bins outside that are filled by interpolation")
    return out


def preprocess(spectrum: Spectrum, cfg: PreprocessConfig) -> np.ndarray:
    """Resample, mask, normalise and scale a spectrum into ``cfg.n_bins`` float32 values."""
    wave = np.asarray(spectrum.wavelength, dtype=np.float64)
    flux = np.asarray(spectrum.flux, dtype=np.float64)
    good = spectrum.good
    flux = np.where(good, flux, 0.0)
    binned, coverage = rebin(wave, flux, good.astype(np.float64), cfg.bin_edges())
    ok = coverage >= cfg.min_coverage
    if ok.sum() < max(2, cfg.min_good_bins * cfg.n_bins):
        raise TooFewPixelsError(
            f"only {int(ok.sum())} of {cfg.n_bins} bins between {cfg.wave_min:.0f} and {cfg.wave_max:.0f} Å "
            f"have good pixels (need {cfg.min_good_bins:.0%}); is the spectrum in this wavelength range?"
        )
    centers = cfg.bin_centers()
    x = np.log(centers)
    binned = np.where(ok, binned, np.interp(x, x[ok], binned[ok]))
    if cfg.continuum == "divide":
        from scipy.ndimage import median_filter

        cont = median_filter(binned, size=cfg.continuum_window, mode="nearest")
        floor = max(1e-3 * float(np.median(np.abs(binned[ok]))), 1e-30)
        binned = binned / np.maximum(cont, floor)
    if cfg.normalize == "median":
        norm = np.median(binned[ok])
    elif cfg.normalize == "max":
        norm = np.percentile(binned[ok], 99)
    else:
        norm = 1.0
    if not np.isfinite(norm) or norm <= 0:
        # faint/negative continua: fall back to the mean absolute level so nothing divides by 0
        norm = np.mean(np.abs(binned[ok])) or 1.0
    values = cfg.scale * (1.0 + cfg.gain * (binned / norm - 1.0))
    return np.clip(values, cfg.clip_min, cfg.clip_max).astype(np.float32)
