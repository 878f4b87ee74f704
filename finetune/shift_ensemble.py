"""Reading one spectrum at several sub-bin phases and averaging the p(z): the shift ensemble.

Why: the model reads a spectrum as 64 values on a log-wavelength grid, each bin 1.4% wide, and must place a
feature *inside* a bin to give three decimals. On faint spectra that reading depends on where the features fall
inside their bins: the same faint red galaxy read shifted by a quarter of a bin can land at the right z where
the unshifted reading took a low-z peak (issue 27's diagnosis, docs/protocols/tta27.md). On a log grid a
redshift is a pure shift, so the same pixels at wavelength * exp(s) are a galaxy at (1 + z) exp(s) - 1: K
readings at phases spread over one bin are K looks at one spectrum, and their answers map back exactly.

How: shift s_k = (k - (K - 1) / 2) / K bins (K = 4: -3/8, -1/8, +1/8, +3/8 of a bin); each reading's p(z) on
the model's 0.001 grid is mapped back through its cumulative distribution and the K CDFs are averaged with
equal weights. The point estimate is the median of the mean *raw* CDF (the model's own p(z), as for one
reading); the intervals are quantiles of the mean *calibrated* CDF (each reading calibrated as one reading is,
at the spectrum's r-band S/N). K = 1 is one reading at s = 0: exactly today's prediction.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from speclm.tools.errors import ConfigError

#: the common grid the K CDFs are averaged on: edges of 0.001 cells from z = -0.0005 to 9.9995 (the codec's
#: one integer digit)
EDGES = (np.arange(10001) - 0.5) / 1000.0


def check_shifts(k: int, pre) -> int:
    k = int(k)
    if not 1 <= k <= 16:
        raise ConfigError(f"decoding shifts {k}: use 1 (one reading) to 16")
    if k > 1 and getattr(pre, "grid", "log") != "log":
        raise ConfigError("a shift ensemble needs the log-wavelength grid (a redshift is then a pure shift)")
    return k


#: "centred": shifts (j - (K - 1) / 2) / K of a bin, j = 0..K-1 (the unshifted reading in the middle for odd K);
#: "forward": j / K of a bin, never negative. Why both: a reading at a negative shift cannot say z < 1 - exp(s)
#: (the model answers z' >= 0 in its own frame, and z' = 0 maps back to exp(-s) - 1 > 0), so centred shifts push
#: the lowest redshifts up (tta27c's 13 confidently wrong low-z answers); forward shifts represent every z >= 0.
SHIFT_MODES = ("centred", "forward")


def shift_offsets(k: int, pre, mode: str = "centred") -> np.ndarray:
    """The K shifts in ln(wavelength), as fractions of one bin of the model's log grid (see :data:`SHIFT_MODES`)."""
    if mode not in SHIFT_MODES:
        raise ConfigError(f"shift mode {mode!r}: use one of {', '.join(SHIFT_MODES)}")
    d = math.log(pre.wave_max / pre.wave_min) / pre.n_bins
    j = np.arange(k, dtype=float)
    return (j - (k - 1) / 2.0) / k * d if mode == "centred" else j / k * d


def shifted(spectrum, s: float):
    """The same pixels at wavelength * exp(s): the spectrum of a galaxy at (1 + z) exp(s) - 1."""
    from dataclasses import replace

    return replace(spectrum, wavelength=spectrum.wavelength * math.exp(s))


def cdf_back(d0: int, fine: np.ndarray, s: float) -> np.ndarray:
    """One reading's CDF (density ``fine`` over z' = d0 + i/1000, read on the shifted spectrum) at :data:`EDGES`
    of the unshifted z: CDF(z) = CDF'((1 + z) exp(s) - 1)."""
    e = d0 + (np.arange(fine.size + 1) - 0.5) / 1000.0
    c = np.concatenate([[0.0], np.cumsum(fine) / fine.sum()])
    return np.interp((1.0 + EDGES) * math.exp(s) - 1.0, e, c, left=0.0, right=1.0)


def quantile(cdf: np.ndarray, p: float) -> float:
    i = int(np.searchsorted(cdf, p, side="left"))
    if i <= 0:
        return max(0.0, float(EDGES[0]))
    if i >= cdf.size:
        return float(EDGES[-1])
    c0, c1 = cdf[i - 1], cdf[i]
    t = 0.0 if c1 <= c0 else (p - c0) / (c1 - c0)
    return max(0.0, float(EDGES[i - 1] + t * (EDGES[i] - EDGES[i - 1])))


def combine(raw_cdfs: Sequence[np.ndarray], cal_cdfs: Sequence[np.ndarray], greedy: float, text_prefix: str,
            z_decimals: int, domain_z_max: float | None, format_z):
    """One :class:`RedshiftPrediction` from K readings' CDFs on :data:`EDGES` (raw and calibrated)."""
    from speclm.finetune.predict import RedshiftPrediction

    raw = np.mean(raw_cdfs, axis=0)
    cal = np.mean(cal_cdfs, axis=0)
    nd = z_decimals
    centers = 0.5 * (EDGES[1:] + EDGES[:-1])
    dens_raw = np.diff(raw)
    dens_cal = np.diff(cal)
    z = quantile(raw, 0.5)
    d0 = min(int(z), 9)
    leaf = dens_cal[d0 * 1000:(d0 + 1) * 1000].reshape(100, 10).sum(1)
    pred = RedshiftPrediction(
        z=round(z, nd), z_lo=round(quantile(cal, 0.16), nd + 1), z_hi=round(quantile(cal, 0.84), nd + 1),
        z_mean=round(max(0.0, float((dens_raw * centers).sum() / max(dens_raw.sum(), 1e-300))), nd),
        z_mode=round(float(centers[int(np.argmax(dens_raw))]), nd), z_greedy=round(greedy, nd),
        text=text_prefix + format_z(greedy),
        pz_grid=[round(d0 + i / 100.0, 2) for i in range(100)], pz=[float(v) for v in leaf],
        z_lo95=round(quantile(cal, 0.025), nd + 1), z_hi95=round(quantile(cal, 0.975), nd + 1),
        z_lo99=round(quantile(cal, 0.005), nd + 1), z_hi99=round(quantile(cal, 0.995), nd + 1),
        domain_z_max=domain_z_max)
    pred.z_lo, pred.z_hi = min(pred.z_lo, pred.z), max(pred.z_hi, pred.z)
    return pred


def read_shifted(predictor, spectra: Sequence, k: int, batch_size: int = 8, progress: bool = False,
                 mode: str = "centred") -> dict:
    """The digit logits of K readings of each spectrum (spectrum-major: reading j of spectrum i is row i*K + j),
    with the shifts ``offsets`` and each spectrum's r-band S/N ``snr`` (of the unshifted spectrum)."""
    from tqdm.auto import tqdm

    from speclm.finetune.predict import spectrum_prompt
    from speclm.tools.spectrum import r_band_snr

    k = check_shifts(k, predictor.pre)
    offs = shift_offsets(k, predictor.pre, mode)
    parts, snr = [], []
    step = max(1, batch_size // k)  # spectra per forward pass: K prompts each
    for i in tqdm(range(0, len(spectra), step), desc=f"predict x{k}", unit="batch", disable=not progress):
        chunk = spectra[i:i + step]
        prompts = [spectrum_prompt(shifted(s, o), predictor.pre, predictor.codec) for s in chunk for o in offs]
        snr += [r_band_snr(s) for s in chunk]
        parts.append(predictor.raw_logits(prompts))
    raw = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else {}
    return {"raw": raw, "offsets": offs, "snr": snr, "k": k}


def _rows(raw: dict, rows) -> dict:
    return {key: v[rows] for key, v in raw.items()}


def combine_readings(predictor, readings: dict, intervals: str = "mixture", only: int | None = None) -> list:
    """One prediction per spectrum from :func:`read_shifted`'s readings.

    intervals: "mixture" — quantiles of the mean calibrated CDF of the K readings; "nearest" — the calibrated
    intervals of the one reading whose own (raw) median lies nearest the ensemble's point estimate, mapped back
    (each reading is calibrated as a single reading is; the mixture of K calibrated readings is wider than any).
    only: use reading ``only`` alone (its answer mapped back): a single reading at that phase.
    """
    from speclm.finetune.codec import format_redshift

    if intervals not in ("mixture", "nearest"):
        raise ConfigError(f"intervals {intervals!r}: use 'mixture' or 'nearest'")
    raw, offs, snr, k = readings["raw"], readings["offsets"], readings["snr"], readings["k"]
    n = len(snr)
    out = []
    fmt = lambda v: format_redshift(v, predictor.codec)  # noqa: E731
    for i in range(n):
        rows = np.arange(i * k, (i + 1) * k) if only is None else np.array([i * k + only])
        sub = _rows(raw, rows)
        o = offs[rows - i * k]
        T, W = predictor.temperature_for(snr[i]), predictor.outlier_for(snr[i])
        f_raw = predictor.fine_pz(sub, 1.0, 0.0)
        f_cal = predictor.fine_pz(sub, T, W)
        rc = [cdf_back(*f_raw[m], o[m]) for m in range(len(rows))]
        cc = [cdf_back(*f_cal[m], o[m]) for m in range(len(rows))]
        one = predictor.summarise_raw(sub, 1.0, 0.0)
        m0 = int(np.argmin(np.abs(o)))  # the reading nearest the unshifted spectrum writes the text
        g = max(0.0, (1.0 + one[m0].z_greedy) * math.exp(-o[m0]) - 1.0)
        if intervals == "nearest" and len(rows) > 1:
            zc = quantile(np.mean(rc, axis=0), 0.5)
            near = int(np.argmin([abs(quantile(c, 0.5) - zc) for c in rc]))
            r = combine(rc, [cc[near]], g, predictor.codec.answer_prefix, predictor.codec.z_decimals,
                        predictor.domain_z_max, fmt)
        else:
            r = combine(rc, cc, g, predictor.codec.answer_prefix, predictor.codec.z_decimals, predictor.domain_z_max, fmt)
        out.append(r)
    return out


def predict_shifted(predictor, spectra: Sequence, k: int, batch_size: int = 8, progress: bool = False,
                    intervals: str = "mixture", mode: str = "centred"):
    """K readings of each spectrum, combined (see the module docstring). ``predictor``: a RedshiftPredictor."""
    return combine_readings(predictor, read_shifted(predictor, spectra, k, batch_size, progress, mode), intervals)
