"""A physics check of a model's redshift: do real spectral lines sit where z says they should?

Why: the fine-tuned LLM reads a spectrum as text and answers "Redshift: z" — it can be off by a
catastrophic amount with no warning. This module asks the spectrum itself: normalise the
continuum, slide a template of the line list (emission Gaussians, stellar absorption dips,
Balmer lines of either sign) over a fine grid of z around the model's z0, and keep the z where the
lines explain the data best (inverse-variance weighted χ², then a local refinement). It reports
which lines were found, how well they agree, whether any other z in the window fits almost as
well, and the 4000 Å break at the refined z — then says in words whether to trust the result.

Method, in short (all in the observed frame, vacuum Å):
1. continuum = two-pass running median over good pixels (~9000 km/s wide, emission outliers
   clipped in the second pass); residual r = f/c - 1 with weights w = ivar c².
2. For each line and each trial z: fit r = a·g(λ; z) + b on the pixels within ±5σ of the line
   (g a unit Gaussian of the line's width, b a local baseline that absorbs continuum errors);
   Δχ²_line = a²/var(a), kept only if a has the physical sign (emission > 0, absorption < 0,
   Balmer either; absorption fits ignore pixels > 4σ above the continuum, so the wing of a strong
   emission line cannot fake a dip next to it). The z-scan statistic is Σ_lines Δχ², divided by
   the squared noise scale (robust scatter of the normalised residuals) so template mismatch in
   high-S/N spectra does not read as significance.
3. Refine the grid peak on a 10× finer grid with a parabola (z_err from its curvature), measure
   each line at the refined z (S/N, amplitude, rest EW) and each strong line's own z.
4. Confidence: ≥ 2 lines above S/N 3, at least 2 (and half) of the strong lines' own velocities
   within 150 km/s; with exactly two distinct features, no other pair of the line list with the
   same wavelength ratio (a two-line alias);
   no z further than 500 km/s away within Δχ² = 16 (4σ) of the best one, the peak not pressed
   against the window edge, and (when Ca H&K are seen) a 4000 Å break (Dn4000 ≥ 0.9).
   Only a confident result changes ``z``; otherwise ``z`` stays the model's and ``z_best_fit``
   shows what the lines alone would say.

numpy / scipy only (no torch): this lives in the tools layer.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from speclm.tools.config import Config
from speclm.tools import lines as line_list
from speclm.tools.cosmology import C_KM_S
from speclm.tools.errors import ConfigError, RedshiftRangeError, TooFewPixelsError
from speclm.tools.spectrum import Spectrum

#: most negative z0 accepted: about -3000 km/s, bluer than any galaxy's peculiar motion (M31 is
#: -300 km/s); anything below is an error in the estimate, not a physical blueshift
Z0_MIN = -0.01
Z0_MAX = 20.0


@dataclass
class RedshiftCheckConfig(Config):
    """Knobs of the line-template z scan; defaults suit SDSS-like R~2000 optical spectra."""

    search_halfwidth: float = field(default=0.02, metadata={
        "help": "half-width of the z window, in units of (1+z0): window = z0 ± h(1+z0)"})
    step_kms: float = field(default=20.0, metadata={"help": "z-grid step, km/s (refined 10x finer at the peak)"})
    sigma_emission_kms: float = field(default=150.0, metadata={
        "help": "Gaussian sigma of emission-line templates (instrument + gas motions), km/s"})
    sigma_absorption_kms: float = field(default=200.0, metadata={
        "help": "Gaussian sigma of absorption templates (instrument + stellar dispersion), km/s; "
                "blends add their intrinsic width from the line list"})
    continuum_window_kms: float = field(default=9000.0, metadata={
        "help": "running-median continuum window, km/s (much wider than any line)"})
    snr_min: float = field(default=3.0, metadata={"help": "a line counts as matched at S/N >= this"})
    snr_strong: float = field(default=5.0, metadata={"help": "S/N for a line to get its own z measured"})
    min_lines: int = field(default=2, metadata={"help": "matched lines needed to call the z confident"})
    margin_min: float = field(default=16.0, metadata={
        "help": "Δχ² by which the best z must beat any z more than alt_exclusion_kms away"})
    alt_exclusion_kms: float = field(default=500.0, metadata={
        "help": "velocity distance beyond which another χ² peak counts as a rival solution"})
    agree_kms: float = field(default=150.0, metadata={
        "help": "per-line velocities within this of the refined z count as agreeing"})
    min_coverage: float = field(default=0.6, metadata={
        "help": "fraction of a line's core that must fall on good pixels for it to count"})
    min_good_pixels: int = field(default=50, metadata={"help": "fewer good pixels than this is an error"})

    def __post_init__(self) -> None:
        if not (0 < self.search_halfwidth <= 0.5):
            raise ConfigError(f"search_halfwidth={self.search_halfwidth} must be in (0, 0.5]")
        if not (0.5 <= self.step_kms <= 200):
            raise ConfigError(f"step_kms={self.step_kms} must be in [0.5, 200]")
        for name in ("sigma_emission_kms", "sigma_absorption_kms", "continuum_window_kms", "snr_min",
                     "snr_strong", "margin_min", "alt_exclusion_kms", "agree_kms"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.continuum_window_kms < 10 * max(self.sigma_emission_kms, self.sigma_absorption_kms):
            raise ConfigError("continuum_window_kms must be at least 10x the template sigmas")
        if not (0 < self.min_coverage <= 1):
            raise ConfigError(f"min_coverage={self.min_coverage} must be in (0, 1]")
        if self.min_lines < 1:
            raise ConfigError("min_lines must be >= 1")


@dataclass
class MatchedLine:
    """One line measured at the refined z. amplitude is the peak height in units of the continuum
    (+ emission, - absorption); ew_rest_A follows the classic sign (absorption > 0, emission < 0)."""

    name: str
    display: str
    kind: str
    rest_A: float
    observed_A: float
    amplitude: float
    ew_rest_A: float
    snr: float
    z_line: float | None = None
    dv_km_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RedshiftCheck:
    """The verdict on a redshift estimate z_input (see module docstring for the method).

    z: the redshift to use — the line-refined z when ``confident``, else z_input unchanged.
    z_best_fit: the peak of the line scan whatever the verdict (equal to z when confident).
    lines: lines matched at z_best_fit (S/N >= snr_min). delta_chi2: how much better the lines fit
    at z_best_fit than at z_input; peak_delta_chi2: line model vs. continuum only, at z_best_fit;
    alt_z / alt_delta_chi2: the best rival z more than alt_exclusion_kms away.
    All Δχ² are divided by noise_scale² (robust scatter of the normalised residuals, >= 1).
    """

    z: float
    z_err: float | None
    z_input: float
    z_best_fit: float
    z_best_fit_err: float | None
    lines: list[MatchedLine]
    n_lines: int
    confident: bool
    reason: str
    delta_chi2: float
    peak_delta_chi2: float
    alt_z: float | None
    alt_delta_chi2: float | None
    dn4000: float | None
    noise_scale: float
    z_window: tuple[float, float]
    n_lines_in_range: int

    @property
    def shift_km_s(self) -> float:
        """Velocity of the refined z relative to the input z."""
        return C_KM_S * (self.z - self.z_input) / (1.0 + self.z_input)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lines"}
        d["lines"] = [l.to_dict() for l in self.lines]
        d["z_window"] = list(self.z_window)
        d["shift_km_s"] = self.shift_km_s
        return d

    def describe(self) -> str:
        """A plain-text paragraph for the agent."""
        if self.confident:
            head = (f"Line check of z = {self.z_input:.5f}: refined z = {self.z:.5f}"
                    + (f" ± {self.z_err:.5f}" if self.z_err is not None else "")
                    + f" (shift {self.shift_km_s:+.0f} km/s); confident: " + self.reason + ".")
        else:
            head = (f"Line check of z = {self.z_input:.5f}: NOT confident, keep the input z"
                    + (f" (the best line fit, z = {self.z_best_fit:.5f}, is not convincing)"
                       if self.lines else "") + ": " + self.reason + ".")
        if self.lines:
            head += " Lines found: " + ", ".join(
                f"{l.display} ({l.kind}, S/N {l.snr:.1f}, at {l.observed_A:.1f} Å)" for l in self.lines) + "."
        if self.dn4000 is not None:
            head += f" Dn4000 = {self.dn4000:.2f}."
        return head


# --------------------------------------------------------------------------------------------
# continuum


def _continuum(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, window_kms: float) -> np.ndarray:
    """Two-pass running median over good pixels only (window in pixels from the median log step)."""
    from scipy.ndimage import median_filter, uniform_filter1d

    dln = np.median(np.diff(np.log(wave)))
    n = int(round(window_kms / C_KM_S / dln)) | 1
    n = max(5, min(n, (wave.size // 2) * 2 - 1))
    cont = median_filter(flux, size=n, mode="nearest")
    # second pass: replace strong outliers (emission peaks, cosmic residue) by the first continuum
    resid = (flux - cont) * np.sqrt(ivar)
    mad = 1.4826 * np.median(np.abs(resid - np.median(resid))) or 1.0
    clean = np.where(np.abs(resid) > 4 * mad, cont, flux)
    cont = median_filter(clean, size=n, mode="nearest")
    return uniform_filter1d(cont, size=max(3, n // 8) | 1, mode="nearest")


def dn4000(wave: np.ndarray, flux: np.ndarray, good: np.ndarray, z: float, min_coverage: float = 0.5) -> float | None:
    """Balogh Dn4000 at redshift z: <F_ν>(4000–4100) / <F_ν>(3850–3950), rest frame.

    None when either window is less than ``min_coverage`` covered by good pixels.
    """
    rest = wave / (1.0 + z)
    fnu = flux * wave**2  # F_ν ∝ λ² F_λ; the constant cancels in the ratio
    means = []
    for lo, hi in (line_list.DN4000.red_A, line_list.DN4000.blue_A):
        inwin = (rest >= lo) & (rest <= hi)
        sel = inwin & good
        if inwin.sum() == 0 and sel.sum() == 0:
            return None
        dlam = np.gradient(rest)
        if (dlam[sel].sum() / (hi - lo)) < min_coverage:
            return None
        means.append(np.average(fnu[sel], weights=dlam[sel]))
    if means[1] <= 0 or not np.isfinite(means[0] / means[1]):
        return None
    return float(means[0] / means[1])


# --------------------------------------------------------------------------------------------
# the z scan


@dataclass
class _Prepared:
    wave: np.ndarray  # good pixels only
    r: np.ndarray
    w: np.ndarray
    w_abs: np.ndarray  # w with emission-line pixels zeroed, for absorption fits
    dlam: np.ndarray
    scale2: float


def _line_sigma(line: line_list.Line, cfg: RedshiftCheckConfig) -> float:
    """Rest-frame template sigma in Å: velocity width in quadrature with the blend's own width."""
    v = cfg.sigma_absorption_kms if line.kind == "absorption" else cfg.sigma_emission_kms
    return math.hypot(line.rest_A * v / C_KM_S, line.sigma_A)


def _fit_line(p: _Prepared, line: line_list.Line, zs: np.ndarray, cfg: RedshiftCheckConfig):
    """Per-z fit of one line with its physical sign. Returns (a, sig_a, dchi2_allowed, coverage).

    Balmer lines are tried both ways (emission on all pixels, absorption with emission pixels
    excluded) and the better allowed fit wins at each z.
    """
    if line.kind == "absorption":
        return _fit_signed(p, line, zs, cfg, -1)
    em = _fit_signed(p, line, zs, cfg, +1)
    if not line.also_absorption:
        return em
    ab = _fit_signed(p, line, zs, cfg, -1)
    pick = ab[2] > em[2]
    return tuple(np.where(pick, x_ab, x_em) for x_em, x_ab in zip(em, ab))


def _fit_signed(p: _Prepared, line: line_list.Line, zs: np.ndarray, cfg: RedshiftCheckConfig, sign: int):
    """Gaussian + constant fit at every z; Δχ² kept only where sign * amplitude > 0.

    Absorption fits (sign < 0) use weights with emission-line pixels zeroed: otherwise the wing
    of a strong emission line inside the window lifts the local baseline and a spurious "dip"
    appears next to it (e.g. Hα 'absorption' one [N II] spacing away from real Hα emission).
    """
    sig_rest = _line_sigma(line, cfg)
    mu = line.rest_A * (1.0 + zs)
    sig = sig_rest * (1.0 + zs)
    lo, hi = mu.min() - 5 * sig.max(), mu.max() + 5 * sig.max()
    i0, i1 = np.searchsorted(p.wave, [lo, hi])
    nz = zs.size
    if i1 - i0 < 3:
        zero = np.zeros(nz)
        return zero, np.full(nz, np.inf), zero, zero
    lam, r, dl = p.wave[i0:i1], p.r[i0:i1], p.dlam[i0:i1]
    w = (p.w if sign > 0 else p.w_abs)[i0:i1]
    x = (lam[None, :] - mu[:, None]) / sig[:, None]
    win = (np.abs(x) <= 5.0).astype(float)
    g = np.exp(-0.5 * x * x) * win
    sw, swr = win @ w, win @ (w * r)
    swg, swgg, swgr = g @ w, (g * g) @ w, g @ (w * r)
    det = sw * swgg - swg**2
    ok = det > 1e-12 * np.maximum(sw * swgg, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(ok, (sw * swgr - swg * swr) / det, 0.0)
        var_a = np.where(ok, sw / det, np.inf) * p.scale2
        dchi2 = np.where(ok, a * a / var_a, 0.0)
    # fraction of the line's core (g² integral = sigma*sqrt(pi)) that lands on usable pixels
    coverage = ((g * g) @ (dl * (w > 0))) / (sig * math.sqrt(math.pi))
    allowed = (coverage >= cfg.min_coverage) & (sign * a > 0)
    return a, np.sqrt(var_a), np.where(allowed, dchi2, 0.0), coverage


def _scan(p: _Prepared, use: list[line_list.Line], zs: np.ndarray, cfg: RedshiftCheckConfig) -> np.ndarray:
    total = np.zeros(zs.size)
    for line in use:
        total += _fit_line(p, line, zs, cfg)[2]
    return total


def _zgrid(z_lo: float, z_hi: float, step_kms: float) -> np.ndarray:
    """Uniform in ln(1+z), i.e. uniform in velocity."""
    a, b = math.log1p(z_lo), math.log1p(z_hi)
    n = max(3, int(math.ceil((b - a) / (step_kms / C_KM_S))) + 1)
    return np.expm1(np.linspace(a, b, n))


def _refine(p, use, zs, chi, cfg) -> tuple[float, float | None]:
    """Fine grid around the coarse peak, then a parabola through the top of Δχ²(z)."""
    k = int(np.argmax(chi))
    z_peak = zs[k]
    fine_step = cfg.step_kms / 10.0
    span = 2 * cfg.step_kms / C_KM_S * (1 + z_peak)
    zf = _zgrid(max(z_peak - span, zs[0]), min(z_peak + span, zs[-1]), fine_step)
    cf = _scan(p, use, zf, cfg)
    j = int(np.argmax(cf))
    z_best = float(zf[j])
    # parabola over ±(half a line sigma) around the fine peak for the curvature -> z_err
    half = 0.5 * cfg.sigma_emission_kms / C_KM_S * (1 + z_best)
    zz = _zgrid(z_best - half, z_best + half, fine_step)
    cc = _scan(p, use, zz, cfg)
    x = zz - z_best
    c2, c1, _ = np.polyfit(x, cc, 2)
    z_err = None
    if c2 < 0:
        vertex = -c1 / (2 * c2)
        if abs(vertex) <= half:
            z_best += float(vertex)
        z_err = float(math.sqrt(-1.0 / c2))
    return z_best, z_err


def _prepare(spectrum: Spectrum, cfg: RedshiftCheckConfig) -> _Prepared:
    wave = np.asarray(spectrum.wavelength, dtype=float)
    flux = np.asarray(spectrum.flux, dtype=float)
    ivar = np.asarray(spectrum.ivar, dtype=float)
    mask = np.asarray(spectrum.mask) if spectrum.mask is not None else np.zeros(wave.size, int)
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & (mask == 0) & np.isfinite(wave)
    if good.sum() < cfg.min_good_pixels:
        raise TooFewPixelsError(
            f"only {int(good.sum())} good pixels (ivar > 0, unmasked); the line check needs {cfg.min_good_pixels}")
    dlam_all = np.gradient(wave)
    wave, flux, ivar, dlam = wave[good], flux[good], ivar[good], dlam_all[good]
    cont = _continuum(wave, flux, ivar, cfg.continuum_window_kms)
    # where the continuum is ~0 or negative the ratio is meaningless: drop those pixels
    floor = 0.02 * np.median(np.abs(cont)) if np.any(cont) else 0.0
    ok = cont > floor
    if ok.sum() < cfg.min_good_pixels:
        raise TooFewPixelsError("the continuum is zero or negative almost everywhere; no line check possible")
    wave, flux, ivar, cont, dlam = wave[ok], flux[ok], ivar[ok], cont[ok], dlam[ok]
    r = flux / cont - 1.0
    w = ivar * cont**2
    nres = r * np.sqrt(w)
    scale = 1.4826 * float(np.median(np.abs(nres - np.median(nres))))
    scale = max(1.0, scale) if np.isfinite(scale) else 1.0
    # emission pixels: > 4 robust sigma above the continuum, grown by 2 emission-line sigmas
    emis = nres > 4.0 * scale
    grow = int(math.ceil(2 * cfg.sigma_emission_kms / C_KM_S / np.median(np.diff(np.log(wave)))))
    if emis.any() and grow > 0:
        emis = np.convolve(emis.astype(float), np.ones(2 * grow + 1), mode="same") > 0
    return _Prepared(wave=wave, r=r, w=w, w_abs=np.where(emis, 0.0, w), dlam=dlam, scale2=scale**2)


def _check_z0(z0) -> float:
    try:
        z = float(z0)
    except (TypeError, ValueError):
        raise RedshiftRangeError(f"z0 must be a number, got {z0!r}") from None
    if not math.isfinite(z):
        raise RedshiftRangeError(f"z0 must be finite, got {z0!r}")
    if z < Z0_MIN:
        raise RedshiftRangeError(
            f"z0={z:g} is negative beyond {Z0_MIN:g} (a blueshift of {C_KM_S * -z:,.0f} km/s): "
            "not a galaxy redshift, nothing to check")
    if z > Z0_MAX:
        raise RedshiftRangeError(f"z0={z:g} is above {Z0_MAX:g}")
    return z


def _resolve_lines(names) -> list[line_list.Line]:
    if names is None:
        return line_list.by_kind("emission") + line_list.by_kind("absorption")
    out = [line_list.get(n) for n in ([names] if isinstance(names, str) else names)]
    out = [l for l in out if l.kind != "break"]
    if not out:
        raise ConfigError("lines= must name at least one emission or absorption line")
    return out


def check_redshift(spectrum: Spectrum, z0: float, *, search_halfwidth: float | None = None,
                   lines=None, config: RedshiftCheckConfig | None = None) -> RedshiftCheck:
    """Check (and refine) a redshift estimate z0 against the spectrum's own lines.

    search_halfwidth: window z0 ± h(1+z0) (default from config, 0.02 ≈ ±6000 km/s).
    lines: names from the line list to use (default: every emission and absorption line).
    Raises RedshiftRangeError for z0 < -0.01 or non-finite; TooFewPixelsError for an empty spectrum.
    """
    cfg = config or RedshiftCheckConfig()
    if search_halfwidth is not None:
        cfg = RedshiftCheckConfig(**{**asdict(cfg), "search_halfwidth": float(search_halfwidth)})
    z_in = _check_z0(z0)
    use = _resolve_lines(lines)
    p = _prepare(spectrum, cfg)

    h = cfg.search_halfwidth * (1.0 + z_in)
    z_lo, z_hi = max(z_in - h, Z0_MIN), min(z_in + h, Z0_MAX)
    zs = _zgrid(z_lo, z_hi, cfg.step_kms)
    zs = np.union1d(zs, [z_in])  # so Δχ²(z_input) is evaluated exactly

    # lines whose template can land on good pixels somewhere in the window
    per_line = {l.name: _fit_line(p, l, zs, cfg) for l in use}
    in_range = [l for l in use if np.any(per_line[l.name][3] >= cfg.min_coverage)]
    common = dict(z_input=z_in, noise_scale=math.sqrt(p.scale2), z_window=(float(zs[0]), float(zs[-1])),
                  n_lines_in_range=len(in_range))
    if not in_range:
        return RedshiftCheck(z=z_in, z_err=None, z_best_fit=z_in, z_best_fit_err=None, lines=[], n_lines=0,
                             confident=False,
                             reason=(f"no line of the list falls on good pixels for z in [{zs[0]:.4f}, {zs[-1]:.4f}]; "
                                     "nothing to check, trust the model's z"),
                             delta_chi2=0.0, peak_delta_chi2=0.0, alt_z=None, alt_delta_chi2=None,
                             dn4000=None, **common)

    chi = np.zeros(zs.size)
    for l in in_range:
        chi += per_line[l.name][2]
    z_best, z_err = _refine(p, in_range, zs, chi, cfg)
    peak = float(_scan(p, in_range, np.array([z_best]), cfg)[0])
    at_input = float(chi[np.searchsorted(zs, z_in)])

    # rival solutions: best Δχ² more than alt_exclusion_kms from the peak
    far = np.abs(np.log1p(zs) - math.log1p(z_best)) * C_KM_S > cfg.alt_exclusion_kms
    alt_z = float(zs[far][np.argmax(chi[far])]) if far.any() else None
    alt_chi = float(chi[far].max()) if far.any() else None

    matched = _measure_lines(p, in_range, z_best, cfg)
    try:
        dnb = dn4000(np.asarray(spectrum.wavelength, float), np.asarray(spectrum.flux, float), spectrum.good, z_best)
    except Exception:  # a quirky spectrum must not break the check for the sake of one index
        dnb = None

    # a peak pressed against the window edge means the best z may lie outside the window
    edge_kms = C_KM_S * min(math.log1p(z_best) - math.log1p(zs[0]), math.log1p(zs[-1]) - math.log1p(z_best))
    at_edge = edge_kms < cfg.sigma_emission_kms
    confident, reason = _verdict(matched, peak, alt_z, alt_chi, z_best, dnb, cfg)
    if confident and at_edge:
        confident = False
        reason += ("; but the best z sits at the edge of the search window, so the true z may lie outside it "
                   "(widen the half-width)")
    # the recommended z: the lines' z only when they are convincing, else the model's own
    z_out, z_out_err = (z_best, z_err) if confident else (z_in, None)
    return RedshiftCheck(z=float(z_out), z_err=z_out_err, z_best_fit=float(z_best), z_best_fit_err=z_err,
                         lines=matched, n_lines=len(matched), confident=confident, reason=reason,
                         delta_chi2=float(peak - at_input) if matched else 0.0,
                         peak_delta_chi2=peak, alt_z=alt_z, alt_delta_chi2=alt_chi, dn4000=dnb, **common)


def _measure_lines(p: _Prepared, use, z: float, cfg: RedshiftCheckConfig) -> list[MatchedLine]:
    out: list[MatchedLine] = []
    zarr = np.array([z])
    for line in use:
        a, sa, dchi, cov = (v[0] for v in _fit_line(p, line, zarr, cfg))
        if dchi <= 0 or not np.isfinite(sa) or sa <= 0:
            continue
        snr = abs(a) / sa
        if snr < cfg.snr_min:
            continue
        sig_obs = _line_sigma(line, cfg) * (1 + z)
        ew_rest = -a * math.sqrt(2 * math.pi) * sig_obs / (1 + z)
        kind = line.kind if line.kind != "emission" else ("emission" if a > 0 else "absorption")
        m = MatchedLine(name=line.name, display=line.display, kind=kind, rest_A=line.rest_A,
                        observed_A=line.observed(z), amplitude=float(a), ew_rest_A=float(ew_rest), snr=float(snr))
        if snr >= cfg.snr_strong:  # its own z: a ±400 km/s single-line scan
            half = 400.0 / C_KM_S * (1 + z)
            zz = _zgrid(z - half, z + half, cfg.step_kms / 5)
            d = _fit_line(p, line, zz, cfg)[2]
            if d.max() > 0:
                m.z_line = float(zz[int(np.argmax(d))])
                m.dv_km_s = float(C_KM_S * (m.z_line - z) / (1 + z))
        out.append(m)
    return out


def _features(matched) -> list:
    """Matched lines grouped into distinct features (a doublet and its blend are one feature)."""
    groups: list[list] = []
    for m in sorted(matched, key=lambda m: m.rest_A):
        if groups and m.rest_A - groups[-1][-1].rest_A < 20.0:
            groups[-1].append(m)
        else:
            groups.append([m])
    return [max(g, key=lambda m: m.snr) for g in groups]


def pair_alias(matched, z: float, cfg: RedshiftCheckConfig) -> str | None:
    """When only two distinct features support z, is their wavelength ratio also that of another
    pair of lines in the line list (quasar lines included)? Then the pair does not fix z."""
    feats = _features(matched)
    if len(feats) != 2:
        return None
    a, b = feats
    return alias_of_pair((a.rest_A, a.observed_A, a.amplitude > 0), (b.rest_A, b.observed_A, b.amplitude > 0),
                         z, tol_kms=2 * cfg.agree_kms)


def alias_of_pair(a: tuple, b: tuple, z: float, tol_kms: float = 300.0) -> str | None:
    """a, b = (rest Å, observed Å, is_emission) of two features identified at z. Returns a sentence
    naming another pair of the line list with the same wavelength ratio (an alias), or None."""
    (ra, oa, ea), (rb, ob, eb) = sorted([a, b], key=lambda t: t[1])
    ratio = ob / oa
    tol = tol_kms / C_KM_S

    def can_be(l, emission: bool) -> bool:  # an emission peak aliases only with emission lines, a dip with dips
        return (l.kind == "emission") if emission else (l.kind == "absorption" or l.also_absorption)

    cands = [l for l in line_list.LINES if l.kind != "break" and not l.blend_of]
    for la in (l for l in cands if can_be(l, ea)):
        for lb in (l for l in cands if can_be(l, eb)):
            if lb.rest_A <= la.rest_A + 20.0:
                continue
            if abs(la.rest_A - ra) < 20.0 and abs(lb.rest_A - rb) < 20.0:
                continue  # the identification we already have
            if abs(math.log(lb.rest_A / la.rest_A / ratio)) < tol:
                za = oa / la.rest_A - 1.0
                if Z0_MIN <= za <= Z0_MAX and abs(za - z) > 0.002 * (1 + z):
                    return (f"only two features, and their wavelength ratio is also that of {la.display} and "
                            f"{lb.display} at z = {za:.4f}: an alias the lines alone cannot rule out")
    return None


def _verdict(matched, peak, alt_z, alt_chi, z_best, dnb, cfg) -> tuple[bool, str]:
    if not matched:
        return False, f"no line above S/N {cfg.snr_min:g} in the window; trust the model's z"
    strong = [m for m in matched if m.snr >= cfg.snr_strong and m.dv_km_s is not None]
    kinds = {m.kind for m in matched}
    what = " and ".join(sorted(kinds)) + (" line" if len(matched) == 1 else " lines")
    parts = [f"{len(matched)} {what} at S/N>{cfg.snr_min:g}"]
    agree = True
    if len(strong) >= 2:
        spread = max(abs(m.dv_km_s) for m in strong)
        n_ok = sum(abs(m.dv_km_s) <= cfg.agree_kms for m in strong)
        # at least min_lines strong lines (and half of them) must agree: "1 of 2 agree" is one line
        agree = n_ok >= max(cfg.min_lines, math.ceil(0.5 * len(strong)))
        parts.append(f"{len(strong)} at S/N>{cfg.snr_strong:g} agree within {spread:.0f} km/s"
                     if n_ok == len(strong) else
                     f"only {n_ok} of {len(strong)} lines at S/N>{cfg.snr_strong:g} agree within "
                     f"{cfg.agree_kms:g} km/s")
    margin = None if alt_chi is None else peak - alt_chi
    if margin is not None:
        parts.append(f"best z beats the next-best (z={alt_z:.4f}) by Δχ²={margin:.0f}")
    if dnb is not None:
        parts.append(f"Dn4000={dnb:.2f}")
    text = "; ".join(parts)
    if len(matched) < cfg.min_lines:
        return False, text + f"; fewer than {cfg.min_lines} lines, a single line's identity is ambiguous"
    if margin is not None and margin < cfg.margin_min:
        return False, text + f"; another z fits almost as well (Δχ² < {cfg.margin_min:g}), ambiguous"
    if not agree:
        return False, text + "; the lines disagree"
    alias = pair_alias(matched, z_best, cfg)
    if alias:
        return False, text + "; " + alias
    has_abs = any(m.kind == "absorption" and m.name in ("CaK", "CaH") for m in matched)
    if dnb is not None and has_abs and dnb < 0.9:
        return False, text + "; Ca H&K absorption but no 4000 Å break, inconsistent"
    return True, text
