"""The assistant's redshift procedure: which (spectral type, z) explains the spectrum best?

One function, :func:`find_redshift`, used by the agent's spectrum path, ``speclm check`` and
``speclm predict --refine``. The model's answer is evidence, not the verdict:

1. **Scan** (redrock's idea, our own templates): for each spectral type — GALAXY (bagpipes stellar
   populations + narrow emission lines, -0.005 ≤ z ≤ 1.5), QSO (power laws, a free Lyman-α forest
   piece, broad + narrow lines, host light, 0 ≤ z ≤ 7) and STAR (Sun, Vega, Planck curves,
   |v| ≤ 600 km/s) — fit flux = Σ a_k T_k(λ/(1+z)) + cubic polynomial by weighted least squares at
   every pixel shift of the log-λ grid (69 km/s), all shifts at once through FFT correlations.
2. **Candidates**: the best local minima of χ²(z) per type, plus the modes of the model's p(z).
3. **Refine** each candidate with a non-negative fit (templates ≥ 0, every line free, polynomial
   free) at neighbouring shifts and a parabola through χ²; z_err from its curvature (× √ν), with a
   systematic floor added in quadrature (10 km/s for galaxies, 100 km/s for quasars).
4. **Verdict**. All Δχ² are divided by ν = max(1, χ²/dof of the best fit), so template mismatch in
   a high-S/N spectrum does not read as significance. A QSO fit pays ``qso_penalty`` (it has more
   free features than a galaxy fit; broad lines must earn their place). A quasar whose Lyman-α
   forest covers the blue end (z above λ_min/1216 Å − 1, + 0.1) is never confident: the forest is
   modelled only as a free mean transmission. The winner is the lowest
   score. It is **confident** only if (a) it beats every candidate more than ``rival_kms`` away,
   whatever its type, by Δχ²/ν ≥ ``decisive_dchi2`` (25, i.e. 5σ) and (b) at least ``min_features``
   (2) spectral features support it at ≥ 3σ: emission lines whose removal from the fit costs
   Δχ²/ν ≥ 9, or absorption lines measured by the line check at the winning z. One line, or two
   lines that another z (or another identification of the same pair) explains, is never confident.

numpy / scipy only (no torch): this is the tools layer.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import numpy as np

from speclm.tools.config import Config
from speclm.tools import templates as tpl
from speclm.tools.cosmology import C_KM_S
from speclm.tools.errors import ConfigError, SpeclmError, TooFewPixelsError
from speclm.tools.spectrum import Spectrum

LN10 = math.log(10.0)
SPECTYPES = ("GALAXY", "QSO", "STAR")


@dataclass
class SearchConfig(Config):
    """Knobs of the redshift search; defaults suit SDSS/BOSS-like optical spectra."""

    galaxy_z_min: float = field(default=-0.005, metadata={"help": "lowest galaxy z scanned"})
    galaxy_z_max: float = field(default=1.5, metadata={"help": "highest galaxy z scanned"})
    qso_z_max: float = field(default=7.0, metadata={"help": "highest quasar z scanned"})
    star_v_max_kms: float = field(default=600.0, metadata={"help": "stars are scanned at |v| <= this"})
    poly_order: int = field(default=3, metadata={"help": "order of the free additive polynomial (flux calibration, sky)"})
    decisive_dchi2: float = field(default=25.0, metadata={
        "help": "Δχ²/ν by which the winner must beat every rival more than rival_kms away (25 = 5σ)"})
    qso_penalty: float = field(default=100.0, metadata={
        "help": "Δχ²/ν a quasar fit must gain over a galaxy fit before it wins (10σ: broad lines must be "
                "unmistakable; weak 'broad' wings of a galaxy's narrow lines must not make it a quasar)"})
    rival_kms: float = field(default=1500.0, metadata={"help": "candidates further apart than this are rivals"})
    feature_dchi2: float = field(default=9.0, metadata={"help": "Δχ²/ν (3σ) for a line to count as support"})
    min_features: int = field(default=2, metadata={"help": "supporting features needed to be confident"})
    n_candidates: int = field(default=5, metadata={"help": "scan minima kept per spectral type"})
    qso_scan_step: int = field(default=2, metadata={
        "help": "the quasar scan's step in pixels (69 km/s each): broad lines need no finer steps; the "
                "candidates are then refined on every pixel. 1 = every pixel"})
    nnls: str = field(default="normal", metadata={
        "help": "'normal': the template fits' NNLS on the normal equations (fast); 'full': on all pixels "
                "(the same solution, ~2x slower search; kept to measure and check the fast one)"})
    model_z_max: float = field(default=0.5, metadata={
        "help": "the redshift model's training domain is galaxies with z up to this, when the prediction does "
                "not carry its adapter card's (domain_z_max)"})
    min_good_pixels: int = field(default=200, metadata={"help": "fewer usable pixels than this is an error"})
    sys_err_galaxy_kms: float = field(default=10.0, metadata={
        "help": "systematic error added in quadrature to a galaxy z (template mismatch, wavelength calibration)"})
    sys_err_qso_kms: float = field(default=100.0, metadata={
        "help": "systematic error added in quadrature to a quasar z (broad lines are shifted from systemic)"})

    def __post_init__(self) -> None:
        if not (-0.01 <= self.galaxy_z_min < self.galaxy_z_max <= 3.0):
            raise ConfigError("need -0.01 <= galaxy_z_min < galaxy_z_max <= 3")
        if not (0 < self.qso_z_max <= 7.5):
            raise ConfigError("qso_z_max must be in (0, 7.5] (the templates start at 400 Å rest)")
        if self.nnls not in ("normal", "full"):
            raise ConfigError("nnls must be 'normal' or 'full'")
        if not (0 <= self.poly_order <= 8):
            raise ConfigError("poly_order must be in [0, 8]")
        for name in ("decisive_dchi2", "qso_penalty", "rival_kms", "feature_dchi2", "star_v_max_kms"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.min_features < 1 or self.n_candidates < 1:
            raise ConfigError("min_features and n_candidates must be >= 1")
        if not 1 <= self.qso_scan_step <= 4:
            raise ConfigError("qso_scan_step must be 1 to 4 pixels")


@dataclass
class Candidate:
    spectype: str
    z: float
    z_err: float | None
    chi2: float
    score: float = 0.0  # chi2 + type penalty (in chi2 units)
    origin: str = "scan"  # "scan" or "model p(z) mode"
    coef: np.ndarray | None = field(default=None, repr=False)
    shift: int = 0


@dataclass
class RedshiftAnswer:
    """What the assistant states about a spectrum's redshift (see module docstring)."""

    z: float
    z_err: float | None
    spectype: str
    z_source: str
    confident: bool
    reason: str
    warnings: list[str]
    alternatives: list[dict]
    features: list[dict]
    delta_chi2: float | None
    chi2_nu: float | None
    z_model: float | None = None
    z_lo: float | None = None
    z_hi: float | None = None
    in_model_domain: bool = True
    line_check: dict | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        err = f" ± {self.z_err:.5f}" if self.z_err else ""
        if self.z_source == "model":
            head = f"z = {self.z:.3f} from the model alone (no fit could run); not confident"
        else:
            head = (f"{self.spectype} at z = {self.z:.5f}{err} ({self.z_source}); "
                    + ("confident" if self.confident else "NOT confident"))
        out = head + ": " + self.reason + "."
        if self.warnings:
            out += " " + " ".join(self.warnings)
        return out


# ------------------------------------------------------------------------------------------
# data on the template grid


@dataclass
class _Data:
    f: np.ndarray  # flux on a log10 grid with step DLOGLAM (0 where unusable)
    w: np.ndarray  # weights (ivar), 0 where unusable
    K: int  # obs pixel i <-> template pixel i + K - s at shift s (log10(1+z) = s * DLOGLAM)
    frac: float  # fractional template-pixel offset of the obs grid
    scale: float
    P: np.ndarray  # (n_poly, N) Legendre polynomials over the grid
    sw: np.ndarray | None = None  # √w
    pw: np.ndarray | None = None  # P·w, PᵀWP and PᵀWf: the same at every shift (_weighted fills them)
    pwp: np.ndarray | None = None
    pwf: np.ndarray | None = None
    psw: np.ndarray | None = None  # P·√w and f·√w
    fsw: np.ndarray | None = None


def _prepare(spectrum: Spectrum, cfg: SearchConfig) -> _Data:
    wave = np.asarray(spectrum.wavelength, float)
    flux = np.asarray(spectrum.flux, float)
    ivar = np.asarray(spectrum.ivar, float)
    good = np.asarray(spectrum.good, bool) & np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & (wave > 0)
    if good.sum() < cfg.min_good_pixels:
        raise TooFewPixelsError(f"only {int(good.sum())} good pixels; the redshift search needs {cfg.min_good_pixels}")
    ll = np.log10(wave)
    d = np.diff(ll)
    d0 = tpl.DLOGLAM
    if np.all(np.abs(d - d0) < 0.02 * d0):  # already on an SDSS-like log grid: use the pixels as they are
        l0 = float(ll[0])
        f = np.where(good, flux, 0.0)
        w = np.where(good, ivar, 0.0)
    else:  # resample onto a log grid (linear interpolation; a pixel next to a bad one stays bad)
        lo, hi = ll[good][0], ll[good][-1]
        n = int((hi - lo) / d0) + 1
        l0 = lo
        g = lo + d0 * np.arange(n)
        f = np.interp(g, ll[good], flux[good])
        # inverse variance per new pixel: interpolated, scaled by how many old pixels it spans
        dens = np.interp(g, ll[1:], 1.0 / np.maximum(d, 1e-12)) * d0
        w = np.interp(g, ll[good], ivar[good]) * np.maximum(dens, 1e-3)
        near_bad = np.interp(g, ll, (~good).astype(float)) > 0
        w[near_bad] = 0.0
        f[near_bad] = 0.0
    pos = (l0 - tpl.LOGLAM_MIN) / d0
    K = int(math.floor(pos))
    frac = pos - K
    sel = w > 0
    scale = float(np.median(np.abs(f[sel]))) or 1.0
    f, w = f / scale, w * scale**2
    N = f.size
    x = np.linspace(-1.0, 1.0, N)
    P = np.array([np.polynomial.legendre.Legendre.basis(k)(x) for k in range(cfg.poly_order + 1)])
    return _Data(f=f, w=w, K=K, frac=frac, scale=scale, P=P)


_ALIGNED: OrderedDict = OrderedDict()  # resampled template sets of the last few grid offsets


def _aligned(flux: np.ndarray, frac: float) -> np.ndarray:
    """Templates resampled so their pixel j sits at loglam_min + (j + frac) * DLOGLAM (kept for the
    next spectrum on the same grid offset: one plate, one survey, one simulation)."""
    if frac < 1e-9:
        return flux
    key = (id(flux), frac)
    hit = _ALIGNED.get(key)
    if hit is not None and hit[0] is flux:  # the same array (held here, so its id is not reused)
        _ALIGNED.move_to_end(key)
        return hit[1]
    out = (1.0 - frac) * flux + frac * np.concatenate([flux[:, 1:], flux[:, -1:]], axis=1)
    out.setflags(write=False)
    _ALIGNED[key] = (flux, out)
    while len(_ALIGNED) > 12:
        _ALIGNED.popitem(last=False)
    return out


def _shift_range(data: _Data, M: int, z_lo: float, z_hi: float) -> tuple[int, int]:
    d0 = tpl.DLOGLAM
    s_lo = int(math.ceil(math.log10(1 + z_lo) / d0))
    s_hi = int(math.floor(math.log10(1 + z_hi) / d0))
    N = data.f.size
    # template must cover every obs pixel: 0 <= i + K - s < M for all i
    s_hi = min(s_hi, data.K)
    s_lo = max(s_lo, data.K + N - M)
    return s_lo, s_hi


def _z_of(s: float) -> float:
    return 10 ** (s * tpl.DLOGLAM) - 1.0


_FFT_CACHE: OrderedDict = OrderedDict()  # template FFTs of one (set, grid, shift window); a few kept
_FFT_CACHE_SIZE = 6


def _template_ffts(key, H: np.ndarray, nfft: int, iu) -> tuple[np.ndarray, np.ndarray]:
    """rfft of the template rows H and of their pairwise products, reused while the grid and the shift
    window stay the same (spectra of one plate, one survey or one simulation share them)."""
    from scipy.fft import rfft

    if key is not None and key in _FFT_CACHE:
        _FFT_CACHE.move_to_end(key)
        return _FFT_CACHE[key]
    out = rfft(H, nfft, axis=1), rfft(H[iu[0]] * H[iu[1]], nfft, axis=1)
    if key is not None:
        _FFT_CACHE[key] = out
        while len(_FFT_CACHE) > _FFT_CACHE_SIZE:
            _FFT_CACHE.popitem(last=False)
    return out


def _scan(data: _Data, T: np.ndarray, s_lo: int, s_hi: int, key=None, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """χ²(s) for s in [s_lo, s_hi] of the unconstrained fit f ≈ T(shifted)·a + P·b, via FFTs.

    The polynomial is eliminated first (its block PᵀWP is the same at every shift): with B the
    template–polynomial block, S = TᵀWT − B (PᵀWP)⁻¹ Bᵀ and r = TᵀWf − B (PᵀWP)⁻¹ PᵀWf,
    χ² = fᵀWf − (PᵀWf)ᵀ(PᵀWP)⁻¹PᵀWf − rᵀS⁻¹r, so each shift solves an nT × nT system, not
    (nT + nP) × (nT + nP). ``key`` names the template set and grid for the FFT cache; ``step`` > 1
    solves every step-th shift only (the FFTs give every shift anyway; the solves are the cost).
    """
    from scipy.fft import irfft, next_fast_len, rfft

    N = data.f.size
    c_lo, c_hi = data.K - s_hi, data.K - s_lo
    H = T[:, c_lo : c_hi + N]  # (K, L)
    L = H.shape[1]
    # circular correlation of length ≥ L: wrap-around only reaches the partial-overlap lags, never the
    # full-overlap ones kept below (indices N-1 … L-1), so L suffices instead of L + N - 1
    nfft = next_fast_len(L, real=True)
    w, f, P = data.w, data.f, data.P
    nT, nP = T.shape[0], P.shape[0]
    G = np.vstack([w[None, :], w * P, (w * f)[None, :]])  # rows: w, wP_m, wf
    FG = rfft(G[:, ::-1], nfft, axis=1)
    iu = np.triu_indices(nT)
    FH, FHH = _template_ffts(None if key is None else (key, c_lo, L, nfft), H, nfft, iu)
    sl = slice(N - 1, N - 1 + (c_hi - c_lo + 1), step)
    Aup = irfft(FHH * FG[0], nfft, axis=1)[:, sl]  # (npairs, nc)
    Bt = irfft(FH[:, None, :] * FG[None, 1 : 1 + nP, :], nfft, axis=2)[:, :, sl]  # (nT, nP, nc)
    bt = irfft(FH * FG[1 + nP], nfft, axis=1)[:, sl]  # (nT, nc)
    lags = np.arange(c_hi - c_lo + 1)[::step]
    nc = lags.size
    _, pwp, pwf = _weighted(data)
    App = pwp + (1e-9 * np.max(np.diag(pwp)) + 1e-12) * np.eye(nP)
    Ainv = np.linalg.inv(App)
    B = np.ascontiguousarray(Bt.transpose(2, 0, 1))  # (nc, nT, nP)
    BA = B @ Ainv
    S = np.empty((nc, nT, nT))
    S[:, iu[0], iu[1]] = Aup.T
    S[:, iu[1], iu[0]] = Aup.T
    S -= BA @ B.transpose(0, 2, 1)
    r = bt.T - BA @ pwf  # (nc, nT)
    # unit diagonal (Jacobi scaling) and a small ridge: templates that barely touch the window at a
    # shift make S nearly singular there
    dsc = 1.0 / np.sqrt(np.maximum(np.einsum("kii->ki", S), 1e-300))
    S *= dsc[:, :, None] * dsc[:, None, :]
    S[:, np.arange(nT), np.arange(nT)] += 1e-9
    r = r * dsc
    x = np.linalg.solve(S, r[..., None])[..., 0]
    chi2 = float(np.sum(w * f * f)) - float(pwf @ Ainv @ pwf) - np.einsum("ki,ki->k", x, r)
    # index k of the output is lag c = c_lo + k, i.e. shift s = K - c
    s = data.K - (c_lo + lags)
    order = np.argsort(s)
    return s[order], chi2[order]


def _minima(s: np.ndarray, chi2: np.ndarray, n: int, sep_pix: int) -> list[int]:
    """Indices of the n lowest local minima of chi2, at least sep_pix apart."""
    if chi2.size < 3:
        return [int(np.argmin(chi2))]
    loc = np.flatnonzero((chi2[1:-1] <= chi2[:-2]) & (chi2[1:-1] <= chi2[2:])) + 1
    loc = np.concatenate([loc, [0, chi2.size - 1]])
    loc = loc[np.argsort(chi2[loc])]
    out: list[int] = []
    for k in loc:
        if all(abs(int(s[k]) - int(s[j])) > sep_pix for j in out):
            out.append(int(k))
        if len(out) >= n:
            break
    return out


def _weighted(data: _Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The polynomial's pieces of the normal equations, the same at every shift: (P·w, PᵀWP, PᵀWf);
    also P·√w and f·√w (the NNLS builds its blocks from √w-weighted rows)."""
    if data.pw is None:
        data.sw = np.sqrt(data.w)
        data.pw = data.P * data.w
        data.pwp = data.pw @ data.P.T
        data.pwf = data.pw @ data.f
        data.psw = data.P * data.sw
        data.fsw = data.f * data.sw
    return data.pw, data.pwp, data.pwf


def _nnls(data: _Data, T: np.ndarray, s: int, drop: list[int] | None = None,
          full: bool = False) -> tuple[float, np.ndarray]:
    """Templates T (shifted by s) >= 0, polynomial free (as ± column pairs). Returns (chi2, coefficients).

    Solved on the normal equations: with M = [templates, polynomial] (N × m, columns scaled to unit
    norm), G = MᵀM = L Lᵀ and h = Mᵀb, ‖Mx − b‖² = ‖Lᵀx − L⁻¹h‖² + const, so the NNLS runs on an
    m × (m + nP) system instead of N × (m + nP) (N ≈ 4000 pixels, m ≈ 30). G and h are built from
    the template rows and the weights directly (the polynomial's blocks are the same at every shift),
    never from a copied design matrix. χ² is then computed on the pixels themselves, exactly.
    """
    from scipy.linalg import solve_triangular
    from scipy.optimize import nnls

    N = data.f.size
    nT = T.shape[0]
    c0 = data.K - s
    keep = np.ones(nT, bool)
    if drop:
        keep[drop] = False
    Tk = T[keep, c0 : c0 + N] if drop else T[:, c0 : c0 + N]  # (nK, N), a view when nothing is dropped
    nK = Tk.shape[0]
    P, w, f = data.P, data.w, data.f
    nP = P.shape[0]
    pw, pwp, pwf = _weighted(data)
    m = nK + nP
    G = np.empty((m, m))
    Tw = Tk * data.sw  # Tk·√w: numpy computes Tw Twᵀ as one symmetric rank-k update (half the work)
    G[:nK, :nK] = Tw @ Tw.T
    G[:nK, nK:] = Tw @ data.psw.T
    G[nK:, :nK] = G[:nK, nK:].T
    G[nK:, nK:] = pwp
    h = np.concatenate([Tw @ data.fsw, pwf])
    norms = np.sqrt(np.maximum(G.diagonal(), 0.0))
    norms[norms == 0] = 1.0
    Gn = G / norms[:, None] / norms[None, :]
    Gn.flat[:: m + 1] += 1e-10
    hn = h / norms
    try:
        if full:
            raise ValueError("the full problem was asked for")
        L = np.linalg.cholesky(Gn)  # lower triangle, zeros above
        c = solve_triangular(L, hn, lower=True, check_finite=False)
        R = L.T
        X = np.hstack([R[:, :nK], R[:, nK:], -R[:, nK:]])
        x, _ = nnls(X, c, maxiter=50 * X.shape[1])
    except (np.linalg.LinAlgError, ValueError):  # degenerate columns: the full problem, on the pixels
        sel = w > 0
        sw = np.sqrt(w[sel])
        Mn = (np.vstack([Tk, P])[:, sel] * sw).T / norms
        X = np.hstack([Mn[:, :nK], Mn[:, nK:], -Mn[:, nK:]])
        x, _ = nnls(X, f[sel] * sw, maxiter=50 * X.shape[1])
    with np.errstate(all="ignore"):
        y = np.concatenate([x[:nK], x[nK:nK + nP] - x[nK + nP:]]) / norms
        r = y[:nK] @ Tw + y[nK:] @ data.psw - data.fsw  # √w·(model − f), on the pixels
        chi2 = float(r @ r)
    if not full and not np.isfinite(chi2):  # an ill-conditioned Gram matrix: solve on the pixels
        return _nnls(data, T, s, drop, full=True)
    coef = np.zeros(nT + nP)
    coef[np.flatnonzero(keep)] = y[:nK]
    coef[nT:] = y[nK:]
    return chi2, coef


def _refine(data: _Data, T: np.ndarray, s0: int, s_lo: int, s_hi: int, half: int = 2, full: bool = False):
    """NNLS χ² at s0-half..s0+half (walking downhill up to 6 px), parabola through the minimum."""
    cache: dict[int, tuple[float, np.ndarray]] = {}

    def at(s: int):
        if s not in cache:
            cache[s] = _nnls(data, T, s, full=full)
        return cache[s]

    s = int(np.clip(s0, s_lo, s_hi))
    for _ in range(6):
        nb = [k for k in range(s - half, s + half + 1) if s_lo <= k <= s_hi]
        best = min(nb, key=lambda k: at(k)[0])
        if best == s:
            break
        s = best
    c0 = at(s)[0]
    z_s, err_s = float(s), None
    if s_lo < s < s_hi:
        cm, cp = at(s - 1)[0], at(s + 1)[0]
        curv = cm + cp - 2 * c0
        if curv > 0:
            off = 0.5 * (cm - cp) / curv
            if abs(off) <= 1:
                z_s = s + off
            err_s = math.sqrt(2.0 / curv)  # χ² = c0 + (curv/2) Δs²
    return s, z_s, err_s, c0, at(s)[1]


def _pz_modes(prediction: dict | None) -> list[float]:
    if not prediction:
        return []
    modes = list(prediction.get("modes") or [])
    if not modes and prediction.get("z") is not None:
        modes = [prediction["z"]]
    return [float(m) for m in modes]


def _feature_rest_A(name: str) -> float | None:
    from speclm.tools import lines as line_list

    key = name[6:] if name.startswith("broad ") else name
    members = dict(tpl.NARROW_GROUPS).get(key)
    try:
        return line_list.get(members[0][0] if members else key.replace("_narrow", "")).rest_A
    except SpeclmError:
        return None


def _feature_alias(features: list[dict], z: float) -> str | None:
    """Two features only: does another pair of lines with the same wavelength ratio explain them?"""
    from speclm.tools.redshift_check import alias_of_pair

    rest = [_feature_rest_A(f["feature"]) for f in features]
    if any(r is None for r in rest):
        return None
    pts = [(r, r * (1 + z), f["kind"] != "absorption") for r, f in zip(rest, features)]
    return alias_of_pair(pts[0], pts[1], z)


_BLAS = None


def find_redshift(spectrum: Spectrum, prediction: dict | None = None,
                  config: SearchConfig | None = None, *, line_check: bool = True) -> RedshiftAnswer:
    """The stated (spectral type, z) of a spectrum; see the module docstring for the method.

    prediction: the model's answer (dict with z, z_lo, z_hi and optionally ``modes``, the peaks of
    its p(z)), or None. Never raises for a fit problem: when no fit can run, the model's z is
    returned, not confident, with the reason in ``warnings``.

    The fit's linear algebra runs on one BLAS thread: its matrices are small (threads cost more than
    they give), and a multi-threaded BLAS sums in an order that depends on the thread count, which
    moved z_err in the 9th digit between a catalog's one-process and Dask-worker runs.
    """
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    with _BLAS.limit(limits=1, user_api="blas"):
        return _find_redshift(spectrum, prediction, config, line_check=line_check)


def _find_redshift(spectrum: Spectrum, prediction: dict | None, config: SearchConfig | None, *,
                   line_check: bool) -> RedshiftAnswer:
    t0 = time.perf_counter()
    cfg = config or SearchConfig()
    full_nnls = cfg.nnls == "full"
    pred = prediction or {}
    z_model = pred.get("z")
    base = dict(z_model=z_model, z_lo=pred.get("z_lo"), z_hi=pred.get("z_hi"))
    try:
        data = _prepare(spectrum, cfg)
    except SpeclmError as exc:
        if z_model is None:
            raise
        return RedshiftAnswer(z=float(z_model), z_err=None, spectype="GALAXY", z_source="model", confident=False,
                              reason=f"the template fit could not run ({exc})", warnings=[
                                  "The spectral type is assumed, not measured."],
                              alternatives=[], features=[], delta_chi2=None, chi2_nu=None, **base,
                              seconds=time.perf_counter() - t0)
    N = data.f.size
    dof = max(1, int((data.w > 0).sum()) - 30)
    ranges = {"GALAXY": (cfg.galaxy_z_min, cfg.galaxy_z_max), "QSO": (0.0, cfg.qso_z_max),
              "STAR": (-cfg.star_v_max_kms / C_KM_S, cfg.star_v_max_kms / C_KM_S)}
    sep = max(2, int(cfg.rival_kms / C_KM_S / (tpl.DLOGLAM * LN10)))
    cands: list[Candidate] = []
    fit_sets = {}
    for st in SPECTYPES:
        scan_set, fit_set = tpl.template_set(st, "scan"), tpl.template_set(st, "fit")
        Ts = _aligned(scan_set.flux, data.frac)
        Tf = _aligned(fit_set.flux, data.frac)
        s_lo, s_hi = _shift_range(data, Tf.shape[1], *ranges[st])
        if s_hi < s_lo:
            continue
        fit_sets[st] = (fit_set, Tf, s_lo, s_hi)
        s, chi2 = _scan(data, Ts, s_lo, s_hi, key=(st, round(data.frac, 9)),
                        step=cfg.qso_scan_step if st == "QSO" else 1)
        starts = [(int(s[k]), "scan") for k in _minima(s, chi2, 1 if st == "STAR" else cfg.n_candidates, sep)]
        if st == "GALAXY":
            for m in _pz_modes(prediction):
                sm = int(round(math.log10(1 + max(m, -0.004)) / tpl.DLOGLAM))
                if s_lo <= sm <= s_hi and all(abs(sm - x) > sep // 2 for x, _ in starts):
                    # the scan's lowest point within ±half a rival distance of the mode
                    win = (s >= sm - sep // 2) & (s <= sm + sep // 2)
                    starts.append((int(s[win][np.argmin(chi2[win])]), "model p(z) mode"))
        seen = set()
        for s0, origin in starts:
            sb, zs, errs, c2, coef = _refine(data, Tf, s0, s_lo, s_hi, full=full_nnls)
            if sb in seen:
                continue
            seen.add(sb)
            z = _z_of(zs)
            zerr = None if errs is None else (1 + z) * LN10 * tpl.DLOGLAM * errs
            cands.append(Candidate(spectype=st, z=z, z_err=zerr, chi2=c2, origin=origin, coef=coef, shift=sb))
    if not cands:
        raise TooFewPixelsError("the spectrum's wavelength range fits no template at any redshift")
    nu = max(1.0, min(c.chi2 for c in cands) / dof)
    for c in cands:
        c.score = c.chi2 + (cfg.qso_penalty * nu if c.spectype == "QSO" else 0.0)
        if c.z_err is not None:
            sys_kms = cfg.sys_err_qso_kms if c.spectype == "QSO" else cfg.sys_err_galaxy_kms
            c.z_err = math.hypot(c.z_err * math.sqrt(nu), sys_kms / C_KM_S * (1 + c.z))
    cands.sort(key=lambda c: c.score)

    def dv(a: Candidate, b: Candidate) -> float:
        return abs(math.log((1 + a.z) / (1 + b.z))) * C_KM_S

    def emission_features(c: Candidate) -> list[dict]:
        """Lines of c's fit whose removal costs Δχ²/ν ≥ feature_dchi2 (emission, narrow or broad)."""
        fit_set, Tf, _, _ = fit_sets[c.spectype]
        nT = len(fit_set.names)
        groups: dict[str, list[int]] = {}
        for i, nm in enumerate(fit_set.names):
            key = nm.split(" σ=")[0]
            if nm in fit_set.line_features or key in fit_set.line_features:
                groups.setdefault(key, []).append(i)
        out = []
        for key, idx in groups.items():
            if c.coef is None or np.all(c.coef[idx] <= 0):
                continue
            c_drop, _ = _nnls(data, Tf, c.shift, drop=idx, full=full_nnls)
            dchi = (c_drop - c.chi2) / nu
            if dchi >= cfg.feature_dchi2:
                out.append({"feature": key.replace("_narrow", ""),
                            "kind": "broad emission" if key.startswith("broad") else "emission",
                            "snr": round(math.sqrt(dchi), 1)})
        return out

    best = cands[0]
    features = emission_features(best)
    type_notes: list[str] = []
    demoted: list[Candidate] = []
    # A quasar is identified by its emission lines: a QSO fit that wins on continuum shape alone (no
    # line of it is significant; at high z its free Lyman-α forest piece can absorb any blue shape)
    # is not a quasar measurement, and the best fit of another type is stated instead, never confidently.
    if best.spectype == "QSO" and not features and any(c.spectype != "QSO" for c in cands):
        demoted.append(best)
        alt = next(c for c in cands if c.spectype != "QSO")
        type_notes.append(f"A quasar at z = {best.z:.3f} fits the continuum shape better (Δχ²/ν = "
                          f"{(alt.score - best.score) / nu:,.0f}) but no emission line supports it, so it is not "
                          f"taken as a quasar; the best {alt.spectype.lower()} fit is stated instead, unconfirmed.")
        best = alt
        features = emission_features(best)
    # A galaxy at |cz| below the stars' velocity range with no decisive emission line (≥ 5σ, i.e.
    # Δχ²/ν ≥ decisive_dchi2; weaker "lines" in a bright star are template mismatch) is, among survey
    # targets, a star: galaxies that close are rare, and our galaxy templates (stellar populations) fit
    # a single star better than the three star templates do. The star fit at that velocity is stated.
    star = next((c for c in cands if c.spectype == "STAR"), None)
    strong = [f for f in features if f["snr"] ** 2 >= cfg.decisive_dchi2]
    if (best.spectype == "GALAXY" and abs(best.z) * C_KM_S <= cfg.star_v_max_kms and star is not None
            and not strong and dv(star, best) <= cfg.rival_kms):
        features = []
        type_notes.append(f"At cz = {best.z * C_KM_S:+.0f} km/s with no emission line at 5σ this is taken as a star "
                          f"(galaxies this close are rare; the galaxy templates fit it better by Δχ²/ν = "
                          f"{(star.score - best.score) / nu:,.0f} because speclm's star templates are only the Sun, "
                          "Vega and blackbodies).")
        demoted.append(best)
        best = star
    pool = [c for c in cands if c is not best and c not in demoted]
    rivals = [c for c in pool if dv(c, best) > cfg.rival_kms]
    same_z_other = [c for c in pool if dv(c, best) <= cfg.rival_kms and c.spectype != best.spectype]
    margin = (rivals[0].score - best.score) / nu if rivals else None
    chk = None
    if line_check and best.spectype in ("GALAXY", "STAR"):
        from speclm.tools.redshift_check import check_redshift

        try:
            chk = check_redshift(spectrum, max(best.z, -0.0099), search_halfwidth=0.002)
            have = {f["feature"] for f in features}
            for m in chk.lines:
                if m.kind == "absorption" and m.name not in have:
                    features.append({"feature": m.name, "kind": "absorption", "snr": round(m.snr, 1)})
        except SpeclmError:
            chk = None
    features.sort(key=lambda f: -f["snr"])
    alts = []
    for c in sorted(pool + demoted, key=lambda c: c.score):
        if dv(c, best) <= cfg.rival_kms and c.spectype == best.spectype:
            continue
        alts.append({"z": round(c.z, 5), "spectype": c.spectype, "delta_chi2": round((c.score - best.score) / nu, 1),
                     "origin": c.origin})
        if len(alts) >= 4:
            break
    decisive = margin is None or margin >= cfg.decisive_dchi2
    enough = len(features) >= cfg.min_features
    alias = _feature_alias(features, best.z) if len(features) == 2 else None
    confident = decisive and enough and alias is None and not any(c.spectype == "QSO" for c in demoted)
    parts = [f"best of {len(cands)} candidates over GALAXY 0–{cfg.galaxy_z_max:g}, QSO 0–{cfg.qso_z_max:g}, STAR z≈0"]
    if margin is not None:
        parts.append(f"beats the next-best redshift (z = {rivals[0].z:.4f}, {rivals[0].spectype}) by "
                     f"Δχ²/ν = {margin:.0f} (decisive at ≥ {cfg.decisive_dchi2:g})")
    parts.append(f"{len(features)} supporting feature{'s' if len(features) != 1 else ''} at ≥3σ"
                 + (": " + ", ".join(f["feature"] for f in features[:6]) if features else ""))
    if same_z_other:
        o = same_z_other[0]
        parts.append(f"as a {o.spectype} at the same z it fits worse by Δχ²/ν = {(o.score - best.score) / nu:.0f}"
                     + (" after the quasar penalty" if o.spectype == "QSO" or best.spectype == "QSO" else ""))
    warnings: list[str] = list(type_notes)
    if alias:
        warnings.append(f"Not confident: {alias}.")
    if not decisive:
        warnings.append(f"Uncertain: another redshift fits almost as well (Δχ²/ν = {margin:.1f} < "
                        f"{cfg.decisive_dchi2:g}); alternatives: "
                        + ", ".join(f"z = {a['z']:.4f} ({a['spectype']}, Δχ²/ν {a['delta_chi2']:.0f})" for a in alts[:3]) + ".")
    if not enough:
        warnings.append(f"Only {len(features)} spectral feature{'s' if len(features) != 1 else ''} "
                        f"support this z (need {cfg.min_features}); a single line's identity is ambiguous.")
    forest_z = float(spectrum.wavelength[spectrum.good][0]) / tpl.LYA_REST_A - 1.0
    if best.spectype == "QSO" and best.z > forest_z + 0.1:
        confident = False
        warnings.append(f"At z = {best.z:.2f} the Lyman-α forest covers the blue part of the spectrum; the fit "
                        "models it only as a mean transmission, so this redshift is a guess, not a measurement.")
    zmax = float((prediction or {}).get("domain_z_max") or cfg.model_z_max)  # the adapter card's, when it says
    in_domain = best.spectype == "GALAXY" and best.z <= zmax
    if not in_domain:
        why = (f"it is a {best.spectype}" if best.spectype != "GALAXY" else f"z = {best.z:.3f} > {zmax:g}")
        warnings.append(f"Out of the model's domain ({why}): the redshift model was trained on simulated galaxies "
                        f"at 0 ≤ z ≤ {zmax:g} only, so its answer"
                        + (f" (z = {z_model:.3f})" if z_model is not None else "")
                        + " is not used; the template fit is "
                        + ("trusted because it is decisive and line-supported." if confident else "reported but not confirmed."))
    elif z_model is not None and abs(z_model - best.z) > 0.01 * (1 + best.z):
        warnings.append(f"The model's z = {z_model:.3f} disagrees with the fit (Δz = {z_model - best.z:+.3f}); "
                        "the fit is " + ("stated because the spectrum's lines support it." if confident
                                         else "stated, but neither is confirmed."))
    return RedshiftAnswer(z=round(best.z, 6), z_err=None if best.z_err is None else float(best.z_err),
                          spectype=best.spectype, z_source=f"template fit ({best.spectype.lower()})",
                          confident=bool(confident), reason="; ".join(parts), warnings=warnings,
                          alternatives=alts, features=features, delta_chi2=None if margin is None else round(margin, 1),
                          chi2_nu=round(nu, 3), in_model_domain=in_domain,
                          line_check=None if chk is None else chk.to_dict(), **base,
                          seconds=round(time.perf_counter() - t0, 3))
