"""The few-shot change probe: a gradient-boosted classifier on per-pixel bi-temporal features (both dates'
standardised bands, their difference, the change vector at several smoothings, the window and patch-token
embedding change), fitted on the change masks of other scenes.

Pixels are sampled from the same windows the map is computed in (every change pixel, a fixed share of the
others). The classifier is fitted on that sample unweighted (sample weights made scikit-learn's binning
~50x slower); the decision threshold absorbs the changed class balance: it is chosen without the scene
being mapped, by grouped cross-validation over the training scenes (one group per scene), maximising their
F1 with the no-change pixels weighted back to their true frequency.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from spectraclip.change.grid import ChangeInputError

NEGATIVE_RATE = 0.05  # share of no-change pixels kept per window (weighted by 1 / rate)
MAX_ITER = 150
MAX_PER_SCENE = 40_000  # sampled pixels kept per labelled scene
SEED = 0


@dataclass
class PixelSamples:
    """Sampled pixels of one labelled scene pair: features `[N, F]`, labels `[N]` (True = change), weights."""

    name: str
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    n_change_pixels: int = 0
    n_pixels: int = 0


class PixelSampler:
    """Collects probe training pixels from windows (a `ChangeWindows` feature hook): `labels` is the change
    mask on the common grid (True = change, False = no change, masked = unknown). Memory stays bounded: past
    4 x `max_pixels` the pixels kept so far are thinned to 2 x `max_pixels` (class totals kept by weights)."""

    def __init__(self, labels: np.ndarray, known: np.ndarray, rate: float = NEGATIVE_RATE, seed: int = SEED,
                 max_pixels: int = MAX_PER_SCENE) -> None:
        self.labels, self.known, self.rate, self.max_pixels = labels, known, rate, int(max_pixels)
        self.rng = np.random.default_rng(seed)
        self.taken = np.zeros(labels.shape, bool)  # each pixel is sampled from one window only (the first)
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []
        self.ws: list[np.ndarray] = []
        self.count = 0

    def __call__(self, window, feats: np.ndarray, valid: np.ndarray) -> None:
        r, c, h, w = window.row, window.col, window.height, window.width
        lab = np.zeros((h, w), bool)
        kn = np.zeros((h, w), bool)
        lh, lw = self.labels.shape
        hh, ww = max(0, min(h, lh - r)), max(0, min(w, lw - c))
        lab[:hh, :ww] = self.labels[r:r + hh, c:c + ww]
        kn[:hh, :ww] = self.known[r:r + hh, c:c + ww]
        fresh = np.zeros((h, w), bool)
        fresh[:hh, :ww] = ~self.taken[r:r + hh, c:c + ww]
        self.taken[r:r + hh, c:c + ww] = True
        keep = kn & valid & fresh & (lab | (self.rng.random((h, w)) < self.rate))
        if keep.any():
            y = lab[keep]
            self.xs.append(feats[:, keep].T.copy())
            self.ys.append(y)
            self.ws.append(np.where(y, 1.0, 1.0 / self.rate))
            self.count += len(y)
            if self.count > 4 * self.max_pixels:
                x, y, wt = self._thin(2 * self.max_pixels)
                self.xs, self.ys, self.ws, self.count = [x], [y], [wt], len(y)

    def _thin(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At most `n` of the pixels kept (a random subset; each class's weights rescaled to its total)."""
        x, y, w = np.concatenate(self.xs), np.concatenate(self.ys), np.concatenate(self.ws)
        if len(y) <= n:
            return x, y, w
        pick = np.sort(self.rng.choice(len(y), n, replace=False))
        for cls in (True, False):
            tot, sub = w[y == cls].sum(), w[pick][y[pick] == cls].sum()
            if sub > 0:
                w[y == cls] *= tot / sub
        return x[pick], y[pick], w[pick]

    def samples(self, name: str) -> PixelSamples:
        """The sampled pixels, at most `max_pixels`."""
        if not self.xs:
            raise ChangeInputError(f"{name}: no labelled pixel in any window")
        x, y, w = self._thin(self.max_pixels)
        return PixelSamples(name, x, y, w, int(self.labels[self.known].sum()), int(self.known.sum()))


def one_thread():
    """OpenMP limited to one thread: scikit-learn's gradient boosting beside torch on a shared 2-core machine ran
    18x slower with its default thread count (measured: 13.9 s against 0.76 s for one small fit)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


def _estimator(seed: int = SEED, max_iter: int = MAX_ITER):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=31,
                                          l2_regularization=1.0, random_state=seed, early_stopping=False)


def best_f1_threshold(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising the weighted F1 of `p > threshold` over a grid of 99 thresholds."""
    best = (0.5, -1.0)
    for t in np.linspace(0.01, 0.99, 99):
        pred = p > t
        tp = float(w[pred & y].sum())
        fp = float(w[pred & ~y].sum())
        fn = float(w[~pred & y].sum())
        f1 = 2 * tp / max(2 * tp + fp + fn, 1e-12)
        if f1 > best[1]:
            best = (float(t), f1)
    return best


@dataclass
class ChangeProbe:
    """A fitted change probe: `predict_proba(features [N, F]) -> [N]` and its decision threshold."""

    estimator: Any
    threshold: float
    features: list[str]
    scenes: list[str]
    n_train: int
    inner_f1: float | None = None
    notes: list[str] = field(default_factory=list)
    kind: ClassVar[str] = "gbm"

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        with one_thread():
            p = self.estimator.predict_proba(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))[:, 1]
        return p.astype(np.float32)

    def fingerprint(self) -> str:
        return hashlib.sha256(pickle.dumps((self.estimator, self.threshold))).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "scenes": self.scenes, "n_train": self.n_train,
                "inner_f1": self.inner_f1, "estimator": type(self.estimator).__name__, "max_iter": MAX_ITER,
                "negative_rate": NEGATIVE_RATE, "notes": self.notes}


def fit_change_probe(samples: Sequence[PixelSamples], features: Sequence[str], *, seed: int = SEED,
                     max_iter: int = MAX_ITER) -> ChangeProbe:
    """Fit the probe on the scenes' pixels; the threshold is the F1-best one on out-of-scene predictions
    (each training scene predicted by a probe fitted on the others; 0.5 with a single scene)."""
    notes: list[str] = []
    usable = []
    for s in samples:
        if not s.y.any():
            notes.append(f"{s.name}: its label mask has no change pixel; its pixels train as no-change only")
        usable.append(s)
    if not usable or not any(s.y.any() for s in usable):
        raise ChangeInputError("the training label masks hold no change pixel at all: a change probe needs some "
                               f"(scenes: {', '.join(s.name for s in samples)})")
    x = np.concatenate([s.x for s in usable])
    y = np.concatenate([s.y for s in usable])
    w = np.concatenate([s.w for s in usable])
    groups = np.concatenate([np.full(len(s.y), i) for i, s in enumerate(usable)])
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    threshold, inner = 0.5, None
    with_change = [i for i, s in enumerate(usable) if s.y.any()]
    if len(usable) >= 2 and with_change:
        oof = np.zeros(len(y), np.float32)
        k = min(3, len(usable))
        folds = [list(range(len(usable)))[i::k] for i in range(k)]
        for held in folds:
            te = np.isin(groups, held)
            if te.all() or not y[~te].any():
                continue
            with one_thread():
                est = _estimator(seed, max_iter).fit(x[~te], y[~te])
                oof[te] = est.predict_proba(x[te])[:, 1]
        threshold, inner = best_f1_threshold(oof, y, w)
    with one_thread():
        est = _estimator(seed, max_iter).fit(x, y)
    return ChangeProbe(est, threshold, list(features), [s.name for s in samples], int(len(y)), inner, notes)


__all__ = ["ChangeProbe", "PixelSampler", "PixelSamples", "best_f1_threshold", "fit_change_probe"]
