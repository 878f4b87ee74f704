"""A k-nearest-neighbours redshift regressor on the same binned vectors the model reads.

Why a kNN: an LLM reading spectra as text is only interesting if it beats the dumbest method that
sees exactly the same information. kNN on the preprocessed vectors (same training spectra, same
PreprocessConfig as the adapter's card) has no architecture, no training and one knob, so the
gap between it and the model is what the language model adds.

Choices (documented because they change the number):
- distance: Euclidean on per-bin standardised vectors (training mean/std), or on L2-normalised
  vectors (a pure shape comparison); which one, and k from {1, 3, 5, 10, 20, 40}, are chosen by
  a small K-fold cross-validation on the training set minimising MAE (``KNNConfig``);
- prediction: the median of the k neighbours' redshifts (robust to one wrong neighbour);
- 68% interval: z ± the 68th percentile of |out-of-fold CV error| of the chosen (k, scaling), so it
  is calibrated on held-out training spectra (the neighbours' own spread is not: with the k = 1
  that the CV often picks it collapses to a point); with a fixed k and scaling (no CV) it falls
  back to the 16th..84th percentile of the neighbours' redshifts.
numpy only; distances in chunks so memory stays ~chunk × n_train floats.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError


@dataclass(frozen=True)
class KNNConfig(Config):
    """How the kNN baseline is fitted."""

    k_grid: tuple = setting((1, 3, 5, 10, 20, 40), "Candidate k values; the CV picks one (a single value = fixed k).")
    metrics: tuple = setting(("standardize", "l2"), "Candidate vector scalings: 'standardize' (per-bin z-score) and/or 'l2'.")
    folds: int = setting(3, "Cross-validation folds on the training set (used only when there is a choice).")
    cv_max: int = setting(6000, "At most this many training spectra take part in the CV (speed).")
    chunk: int = setting(512, "Query rows per distance block (memory: chunk × n_train floats).")
    seed: int = setting(0, "Seed of the CV fold assignment.")

    def __post_init__(self):
        if not self.k_grid or any(int(k) < 1 for k in self.k_grid):
            raise ConfigError("knn k_grid must hold positive integers")
        if not self.metrics or any(m not in ("standardize", "l2") for m in self.metrics):
            raise ConfigError("knn metrics must be 'standardize' and/or 'l2'")
        if self.folds < 2:
            raise ConfigError("knn folds must be >= 2")


def _clean(X: np.ndarray, z: np.ndarray | None = None):
    X = np.asarray(X, dtype=np.float64)
    good = np.isfinite(X).all(axis=1)
    if z is not None:
        good &= np.isfinite(np.asarray(z, dtype=np.float64))
    return good


class _Scaler:
    def __init__(self, kind: str, X: np.ndarray):
        self.kind = kind
        if kind == "standardize":
            self.mu = X.mean(0)
            sd = X.std(0)
            self.sd = np.where(sd > 0, sd, 1.0)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.kind == "standardize":
            return (X - self.mu) / self.sd
        n = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(n > 0, n, 1.0)


def _neighbours(A: np.ndarray, B: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Indices (len(B), k) of the k nearest rows of A for each row of B, nearest first."""
    k = min(k, len(A))
    a2 = (A**2).sum(1)
    out = np.empty((len(B), k), dtype=np.int64)
    for i in range(0, len(B), chunk):
        b = B[i : i + chunk]
        d = a2[None, :] - 2.0 * b @ A.T  # |b|^2 is constant per row: irrelevant for ranking
        idx = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(A) else np.tile(np.arange(len(A)), (len(b), 1))
        order = np.take_along_axis(d, idx, 1).argsort(1)
        out[i : i + chunk] = np.take_along_axis(idx, order, 1)
    return out


class KNNRedshift:
    """``fit(X, z)`` then ``predict(X) -> (z, z_lo, z_hi)``; rows of X with NaN predict NaN."""

    def __init__(self, config: KNNConfig | None = None):
        self.config = config or KNNConfig()
        self.k: int | None = None
        self.metric: str | None = None
        self.cv: list[dict] = []
        self.halfwidth68: float | None = None

    def fit(self, X: np.ndarray, z: np.ndarray) -> "KNNRedshift":
        X = np.asarray(X, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        good = _clean(X, z)
        X, z = X[good], z[good]
        if len(X) < 2:
            raise ConfigError(f"the kNN baseline needs at least 2 training spectra, got {len(X)}")
        self.n_train = len(X)
        self.halfwidth68 = None
        self.train_median = float(np.median(z))
        self.k, self.metric = self._select(X, z)
        self._scale = _Scaler(self.metric, X)
        self._A = self._scale(X)
        self._z = z
        return self

    def _select(self, X, z) -> tuple[int, str]:
        cfg = self.config
        ks = sorted({int(k) for k in cfg.k_grid})
        if len(ks) == 1 and len(cfg.metrics) == 1:
            return min(ks[0], len(X)), cfg.metrics[0]
        rng = np.random.default_rng(cfg.seed)
        sub = rng.permutation(len(X))[: cfg.cv_max]
        Xs, zs = X[sub], z[sub]
        folds = np.arange(len(sub)) % cfg.folds
        kmax = min(max(ks), len(sub) - int(np.ceil(len(sub) / cfg.folds)))
        ks = [k for k in ks if k <= max(kmax, 1)] or [1]
        self.cv = []
        for metric in cfg.metrics:
            err = {k: [] for k in ks}
            for f in range(cfg.folds):
                tr, te = folds != f, folds == f
                if not te.any() or tr.sum() < 1:
                    continue
                sc = _Scaler(metric, Xs[tr])
                nb = _neighbours(sc(Xs[tr]), sc(Xs[te]), max(ks), cfg.chunk)
                zn = zs[tr][nb]
                for k in ks:
                    err[k].append(np.abs(np.median(zn[:, :k], axis=1) - zs[te]))
            for k in ks:
                if err[k]:
                    e = np.concatenate(err[k])
                    self.cv.append({"metric": metric, "k": k, "mae": float(np.mean(e)),
                                    "abs_err_q68": float(np.percentile(e, 68)),
                                    "abs_err_q95": float(np.percentile(e, 95)),
                                    "abs_err_q99": float(np.percentile(e, 99))})
        best = min(self.cv, key=lambda r: r["mae"])
        self.halfwidth68 = best["abs_err_q68"]
        self.halfwidths = {95: best["abs_err_q95"], 99: best["abs_err_q99"]}
        return best["k"], best["metric"]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.k is None:
            raise ConfigError("KNNRedshift.predict called before fit")
        X = np.asarray(X, dtype=np.float64)
        good = _clean(X)
        zp = np.full(len(X), np.nan)
        lo, hi = zp.copy(), zp.copy()
        if good.any():
            nb = _neighbours(self._A, self._scale(X[good]), self.k, self.config.chunk)
            zn = self._z[nb]
            zp[good] = np.median(zn, axis=1)
            if self.halfwidth68 is not None:
                lo[good] = np.maximum(zp[good] - self.halfwidth68, 0.0)
                hi[good] = zp[good] + self.halfwidth68
            else:
                lo[good] = np.percentile(zn, 16, axis=1)
                hi[good] = np.percentile(zn, 84, axis=1)
        return zp, lo, hi

    def interval(self, zp: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The kNN's ``level``% interval (95 or 99) around its answers: z ± that percentile of |CV error|."""
        hw = getattr(self, "halfwidths", {}).get(level)
        if hw is None:
            return None
        return np.maximum(zp - hw, 0.0), zp + hw

    def describe(self) -> dict:
        interval = (f"z ± {self.halfwidth68:.4f} (68th percentile of |CV error|)" if self.halfwidth68 is not None
                    else "16th-84th percentile of the neighbours' z")
        return {"method": "kNN: median of the k nearest training spectra's z", "interval": interval, "k": self.k, "metric": self.metric, "n_train": getattr(self, "n_train", None),
                "cv": self.cv, "k_grid": list(self.config.k_grid), "folds": self.config.folds}
