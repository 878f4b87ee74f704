"""Predicted-vs-true redshift figures in the style of the paper's Fig. 1 (top row).

Why this style: the paper shows density contours of the *whole* validation set with a subset of
points drawn on top "for clarity", a 1:1 line and the MAE in each panel title; reproducing it lets
a reader put our numbers next to theirs. We add a residual panel (Δz/(1+z) vs true z) under each
panel because a mean error hides where in redshift a method fails. PNG via matplotlib's Agg
backend (no display needed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

Z_RANGE = (0.0, 0.5)
MAX_POINTS = 400  # points drawn on top of the contours (the contours use every object)


@dataclass
class Panel:
    """One method's predictions on the evaluation set."""

    name: str
    z_true: np.ndarray
    z_pred: np.ndarray
    mae: float | None = None

    def __post_init__(self):
        self.z_true = np.asarray(self.z_true, dtype=np.float64)
        self.z_pred = np.asarray([np.nan if v is None else v for v in self.z_pred], dtype=np.float64)
        if self.mae is None:
            ok = np.isfinite(self.z_true) & np.isfinite(self.z_pred)
            self.mae = float(np.mean(np.abs(self.z_pred[ok] - self.z_true[ok]))) if ok.any() else None


def _range(panels: Sequence[Panel]) -> tuple[float, float]:
    """[0, 0.5] like the paper, widened to a round number when the *true* redshifts go beyond it
    (predictions outside the box are drawn on its edge, so a wild answer still shows)."""
    vals = np.concatenate([p.z_true for p in panels])
    vals = vals[np.isfinite(vals)]
    hi = Z_RANGE[1]
    if vals.size and np.percentile(vals, 99.5) > hi:
        hi = float(np.ceil(np.percentile(vals, 99.5) * 10) / 10)
    return Z_RANGE[0], hi


def _contours(ax, x, y, lim, color):
    """Filled density contours enclosing ~95/68/38% of the points (smoothed 2-D histogram)."""
    if x.size < 30:
        return
    from scipy.ndimage import gaussian_filter

    bins = 60
    H, xe, ye = np.histogram2d(x, y, bins=bins, range=[lim, lim])
    H = gaussian_filter(H, 1.5).T
    if H.sum() <= 0:
        return
    flat = np.sort(H.ravel())[::-1]
    cum = np.cumsum(flat) / flat.sum()
    levels = sorted({float(flat[min(np.searchsorted(cum, q), flat.size - 1)]) for q in (0.95, 0.68, 0.38)})
    levels = [lv for lv in levels if lv > 0]
    if len(levels) < 2:
        return
    xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
    ax.contourf(xc, yc, H, levels=levels + [H.max() * 1.01], cmap=color, alpha=0.55, zorder=1)
    ax.contour(xc, yc, H, levels=levels, colors="k", linewidths=0.5, alpha=0.5, zorder=2)


def plot_pred_vs_true(panels: Sequence[Panel], path: str | Path, *, suptitle: str | None = None,
                      seed: int = 0) -> Path:
    """Side-by-side pred-vs-true panels (one per method) with residual panels underneath; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = list(panels)
    lim = _range(panels)
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08, "wspace": 0.25})
    cmaps = ["Oranges", "Blues", "Greens", "Purples"]
    colors = ["#d95f02", "#1f78b4", "#33a02c", "#6a3d9a"]
    rng = np.random.default_rng(seed)
    for j, p in enumerate(panels):
        ax, rax = axes[0, j], axes[1, j]
        ok = np.isfinite(p.z_true) & np.isfinite(p.z_pred)
        x, y = p.z_true[ok], np.clip(p.z_pred[ok], lim[0], lim[1])
        _contours(ax, x, y, lim, cmaps[j % len(cmaps)])
        pick = rng.permutation(x.size)[:MAX_POINTS]
        ax.scatter(x[pick], y[pick], s=6, color=colors[j % len(colors)], alpha=0.7, lw=0, zorder=3)
        ax.plot(lim, lim, color="k", lw=0.8, ls="--", zorder=4)
        ax.set_xlim(lim), ax.set_ylim(lim)
        ax.set_aspect("equal", adjustable="box")
        mae = "n/a" if p.mae is None else f"{p.mae:.3f}"
        ax.set_title(f"{p.name}\nMAE={mae}  (n={x.size})", fontsize=10)
        ax.set_xticklabels([])
        if j == 0:
            ax.set_ylabel("predicted z")
        res = (p.z_pred[ok] - x) / (1 + x)
        rax.axhline(0, color="k", lw=0.8, ls="--")
        for cut in (-0.05, 0.05):
            rax.axhline(cut, color="0.6", lw=0.6, ls=":")
        rax.scatter(x[pick], res[pick], s=4, color=colors[j % len(colors)], alpha=0.7, lw=0)
        rax.set_xlim(lim)
        span = max(0.1, float(np.percentile(np.abs(res), 98)) * 1.1) if res.size else 0.1
        rax.set_ylim(-span, span)
        rax.set_xlabel("true z")
        if j == 0:
            rax.set_ylabel("Δz/(1+z)")
        # keep the residual panel as wide as the square panel above it
        ax.apply_aspect()
        pos, rpos = ax.get_position(), rax.get_position()
        rax.set_position([pos.x0, rpos.y0, pos.width, rpos.height])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path
