"""The spectrum plot of the chat: flux against observed wavelength, lines marked at the predicted z.

Why matplotlib (not gr.LinePlot): a 4000-pixel spectrum with ~20 labelled vertical markers is a
static picture; a PNG is small, renders identically in every browser (and in headless Chromium for
the end-to-end test), and the same function serves `speclm` scripts and notebooks.

Why the markers come from :mod:`speclm.tools.lines`: the line check, the cosmology tool and this
plot must agree on where Hα lands; they all call ``Line.observed(z)`` on the one line list.
Lines the line check actually matched are drawn solid and labelled with their S/N; the rest of the
list is drawn faint, so a user sees both what was found and what was expected but not seen.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from speclm.tools import lines as line_list
from speclm.tools.errors import UnknownLineError
from speclm.tools.spectrum import Spectrum

#: colours per line kind (matched lines); unmatched lines are grey
KIND_COLOURS = {"emission": "#1f77b4", "absorption": "#d62728", "break": "#2ca02c"}


def _smooth(flux: np.ndarray, good: np.ndarray, width: int) -> np.ndarray:
    """Inverse-variance-free boxcar over good pixels only, so masked gaps do not drag the curve to 0."""
    if width <= 1:
        return np.where(good, flux, np.nan)
    f = np.where(good, flux, 0.0).astype(float)
    w = good.astype(float)
    k = np.ones(width)
    num = np.convolve(f, k, mode="same")
    den = np.convolve(w, k, mode="same")
    out = np.full_like(f, np.nan)
    ok = den > 0.5 * width
    out[ok] = num[ok] / den[ok]
    return out


def visible_lines(z: float, wave_min: float, wave_max: float) -> list[tuple[line_list.Line, float]]:
    """(line, observed Å) for every list entry that lands inside the spectrum at redshift z.

    A blend's components are skipped when the blend itself is in the list: one marker per feature
    a spectroscopist would name ([O II] 3728, not two labels 3 Å apart)."""
    components = {c for line in line_list.LINES for c in line.blend_of}
    out = []
    for line in line_list.LINES:
        if line.name in components:
            continue
        obs = line.observed(z)
        if wave_min <= obs <= wave_max:
            out.append((line, obs))
    return out


def _matched_names(check: dict | None) -> dict[str, dict]:
    """Line-check result -> {canonical name: matched-line dict} (blends and their components map to each other)."""
    found: dict[str, dict] = {}
    for rec in (check or {}).get("lines") or []:
        name = rec.get("name")
        if not name:
            continue
        try:
            line = line_list.get(name)
        except UnknownLineError:  # an unknown name from a newer line list: keep the raw record only
            found[name] = rec
            continue
        found[line.name] = rec
        for comp in line.blend_of:
            found.setdefault(comp, rec)
        for blend in line_list.LINES:  # a matched component lights up its blend's marker
            if line.name in blend.blend_of:
                found.setdefault(blend.name, rec)
    return found


def spectrum_figure(spec: Spectrum, *, z: float | None = None, z_lo: float | None = None,
                    z_hi: float | None = None, check: dict | None = None, title: str | None = None,
                    smooth: int = 3, width_in: float = 10.0, height_in: float = 3.6):
    """A matplotlib Figure of ``spec`` with the line list marked at ``z`` (no markers when z is None).

    check: the line-check dict ({"lines": [{name, observed_A, snr, ...}], "confident", ...}); matched
    lines are drawn solid in their kind's colour and labelled; other lines in range are faint grey.
    The caller owns the figure (gr.Plot renders it; close it with ``matplotlib.pyplot.close``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    wave = np.asarray(spec.wavelength, float)
    good = spec.good
    flux = _smooth(np.asarray(spec.flux, float), good, smooth)

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(wave, flux, lw=0.7, color="black")
    finite = flux[np.isfinite(flux)]
    if finite.size:
        lo, hi = np.percentile(finite, [0.5, 99.5])
        pad = 0.15 * (hi - lo if hi > lo else abs(hi) + 1.0)
        ax.set_ylim(lo - pad, hi + 2.5 * pad)  # head-room for the labels
    ax.set_xlim(wave[0], wave[-1])
    ax.set_xlabel("observed wavelength (vacuum Å)")
    unit = "10⁻¹⁷ erg s⁻¹ cm⁻² Å⁻¹" if str(spec.meta.get("format", "")).startswith("sdss") else "arbitrary units"
    ax.set_ylabel(f"flux ({unit})", fontsize=8)

    if z is not None and np.isfinite(z):
        matched = _matched_names(check)
        top = ax.get_xaxis_transform()  # x in data, y in axes fraction: labels hug the top edge
        shown = visible_lines(z, wave[0], wave[-1])
        if not shown:  # say so, rather than leave the reader looking for markers
            ax.text(0.5, 0.97, f"no line of the list falls in {wave[0]:.0f}–{wave[-1]:.0f} Å at z = {z:.3f}",
                    transform=ax.transAxes, ha="center", va="top", fontsize=8, color="0.35")
        for line, obs in shown:
            rec = matched.get(line.name)
            if rec is not None:
                colour = KIND_COLOURS.get(line.kind, "tab:purple")
                x = float(rec.get("observed_A") or obs)
                ax.axvline(x, color=colour, lw=1.1, alpha=0.9)
                snr = rec.get("snr")
                label = line.display + (f" ({snr:.0f}σ)" if isinstance(snr, (int, float)) else "")
                ax.text(x, 0.99, label, transform=top, rotation=90, va="top", ha="right", fontsize=7,
                        color=colour)
            else:
                ax.axvline(obs, color="0.6", lw=0.7, ls=":", alpha=0.8)
                ax.text(obs, 0.99, line.display, transform=top, rotation=90, va="top", ha="right",
                        fontsize=6, color="0.45")
    if title is None:
        title = _default_title(spec, z, z_lo, z_hi)
    ax.set_title(title, fontsize=10)
    return fig


def _default_title(spec: Spectrum, z, z_lo, z_hi) -> str:
    name = str(spec.meta.get("id") or spec.meta.get("source") or "spectrum")
    name = name.rsplit("/", 1)[-1]
    if z is None:
        return f"{name} — no redshift yet"
    s = f"{name} — lines at z = {z:.4f}"
    if z_lo is not None and z_hi is not None:
        s += f" (68%: {z_lo:.4f}–{z_hi:.4f})"
    return s


def figure_from_result(spec: Spectrum, prediction: dict | None, check: dict | None,
                       stated: dict | None = None):
    """The plot for a turn: markers at the z the assistant states (``stated``: {"z", "z_source",
    "spectype"} from the thread), else at the line-refined z when the check is confident, else the
    model's z. Returns (figure, z_used)."""
    z = z_lo = z_hi = None
    if prediction:
        z, z_lo, z_hi = prediction.get("z"), prediction.get("z_lo"), prediction.get("z_hi")
    title = None
    name = str(spec.meta.get("id") or spec.meta.get("source") or "spectrum").rsplit("/", 1)[-1]
    if stated and stated.get("z") is not None and stated.get("z_source") not in (None, "model"):
        z = stated["z"]
        kind = {"QSO": "quasar", "STAR": "star", "GALAXY": "galaxy"}.get(stated.get("spectype") or "", "")
        title = f"{name} — lines at the stated z = {z:.4f} ({(kind + ', ') if kind else ''}{stated['z_source']})"
        return spectrum_figure(spec, z=z, check=check, title=title), z
    if check and check.get("confident") and check.get("z") is not None:
        z = check["z"]
        title = f"{name} — lines at the line-fit z = {z:.4f}"
        z_lo = z_hi = None  # the model's interval belongs to the model's z, not to this one
    return spectrum_figure(spec, z=z, z_lo=z_lo, z_hi=z_hi, check=check, title=title), z


def marker_positions(z: float, wave_range: Iterable[float]) -> dict[str, float]:
    """{line name: observed Å} of the markers the plot would draw (used by tests and the trace)."""
    lo, hi = wave_range
    return {line.name: obs for line, obs in visible_lines(z, lo, hi)}

