"""Redshift point-estimate metrics, the ones photo-z and spec-z papers quote.

Why this set: MAE is what the paper reports (Fig. 1, Table 1) but a mean hides catastrophic
failures, so we also give the median, the robust scatter σ_NMAD, the bias and outlier fractions
in Δz/(1+z) (the conventional normalisation: an error of 0.01 matters more at z = 0.05 than at
z = 0.5), the parse failures of free generation, the coverage of the claimed 68% interval (is
the p(z) honest?), and the MAE of answering the training median every time (any model worth
training must beat it).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from speclm.tools.json_safe import json_default  # noqa: F401  (re-exported for the eval writers)

NMAD_SCALE = 1.4826  # makes the median absolute deviation a consistent σ estimator for a Gaussian
OUTLIER_CUTS = (0.15, 0.05)


def sigma_nmad(x: Sequence[float]) -> float:
    """1.4826 × median(|x − median(x)|); NaN for an empty input."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return math.nan
    return float(NMAD_SCALE * np.median(np.abs(x - np.median(x))))


def _f(x) -> float | None:
    """JSON-friendly float (None for NaN so reports never contain bare NaN)."""
    x = float(x)
    return None if not math.isfinite(x) else x


def redshift_metrics(z_true: Sequence[float], z_pred: Sequence[float | None], z_lo: Sequence[float] | None = None,
                     z_hi: Sequence[float] | None = None, n_parse_fail: int = 0,
                     train_median: float | None = None, z95: tuple | None = None, z99: tuple | None = None) -> dict:
    """Metrics of predicted vs true redshifts.

    ``z_pred`` entries that are None/NaN count as parse failures (in addition to ``n_parse_fail``,
    which is for failures the caller already dropped) and are excluded from the error statistics;
    ``parse_fail_frac`` is over all attempted objects. ``z_lo``/``z_hi`` (same length as ``z_true``)
    give the 68% interval; coverage is the fraction of objects with ``z_lo <= z_true <= z_hi``.
    ``train_median``: if given, ``mae_constant`` is the MAE of always answering it (same objects).
    ``z95`` / ``z99``: (lo, hi) of the 95% and 99% intervals; ``coverage_95`` and ``confidently_wrong``
    (the truth outside the 99% interval: a wrong answer the p(z) did not warn about).
    """
    zt = np.asarray(z_true, dtype=np.float64)
    zp = np.asarray([np.nan if v is None else v for v in z_pred], dtype=np.float64)
    if zt.shape != zp.shape:
        raise ValueError(f"z_true has {zt.size} values but z_pred has {zp.size}")
    ok = np.isfinite(zp) & np.isfinite(zt)
    n_fail = int(np.sum(~np.isfinite(zp) & np.isfinite(zt))) + int(n_parse_fail)
    n = int(ok.sum())
    attempted = n + n_fail
    out: dict = {"n": n, "n_parse_fail": n_fail,
                 "parse_fail_frac": _f(n_fail / attempted) if attempted else None}
    if n == 0:
        for k in ("mae", "median_abs_dz", "rmse", "sigma_nmad", "bias_mean", "bias_median",
                  "outlier_frac_0.15", "outlier_frac_0.05", "coverage_68", "coverage_95", "confidently_wrong"):
            out[k] = None
        out["mae_constant"] = None
        return out
    t, p = zt[ok], zp[ok]
    dz = p - t
    dzn = dz / (1.0 + t)
    out.update(
        mae=_f(np.mean(np.abs(dz))),
        median_abs_dz=_f(np.median(np.abs(dz))),
        rmse=_f(np.sqrt(np.mean(dz**2))),
        sigma_nmad=_f(sigma_nmad(dzn)),
        bias_mean=_f(np.mean(dzn)),
        bias_median=_f(np.median(dzn)),
    )
    for cut in OUTLIER_CUTS:
        out[f"outlier_frac_{cut}"] = _f(np.mean(np.abs(dzn) > cut))
    if z_lo is not None and z_hi is not None:
        lo = np.asarray(z_lo, dtype=np.float64)[ok]
        hi = np.asarray(z_hi, dtype=np.float64)[ok]
        out["coverage_68"] = _f(np.mean((lo <= t) & (t <= hi)))
        out["median_interval_width"] = _f(np.median(hi - lo))
    else:
        out["coverage_68"] = None
    for key, iv, inside in (("coverage_95", z95, True), ("confidently_wrong", z99, False)):
        out[key] = None
        if iv is not None:
            lo = np.asarray(iv[0], dtype=np.float64)[ok]
            hi = np.asarray(iv[1], dtype=np.float64)[ok]
            cov = (lo <= t) & (t <= hi)
            out[key] = _f(np.mean(cov if inside else ~cov))
    out["mae_constant"] = _f(np.mean(np.abs(t - train_median))) if train_median is not None else None
    return out


# Rows of the compact table: (key, label, format)
TABLE_ROWS = (
    ("n", "n", "{:d}"),
    ("mae", "MAE", "{:.4f}"),
    ("median_abs_dz", "median |Δz|", "{:.4f}"),
    ("rmse", "RMSE", "{:.4f}"),
    ("sigma_nmad", "σ_NMAD", "{:.4f}"),
    ("bias_median", "bias (median Δz/(1+z))", "{:+.4f}"),
    ("outlier_frac_0.15", "outliers >0.15", "{:.1%}"),
    ("outlier_frac_0.05", "outliers >0.05", "{:.1%}"),
    ("coverage_68", "68% interval coverage", "{:.1%}"),
    ("coverage_95", "95% interval coverage", "{:.1%}"),
    ("confidently_wrong", "confidently wrong (outside 99%)", "{:.1%}"),
    ("parse_fail_frac", "parse failures", "{:.1%}"),
)


def fmt(value, spec: str) -> str:
    if value is None:
        return "—"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def metrics_table(columns: dict[str, dict]) -> str:
    """Plain-text table: one column per named metrics dict (e.g. model, kNN, constant)."""
    names = list(columns)
    rows = [["metric", *names]]
    for key, label, spec in TABLE_ROWS:
        if all(columns[c].get(key) is None for c in names):
            continue
        rows.append([label, *[fmt(columns[c].get(key), spec) for c in names]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


