"""What a window's series over the dates says: its trend (Theil-Sen slope, Mann-Kendall significance), its
anomalous dates (robust z-score against the window's own profile) and its change points (ruptures).

A series is `[T]` values at times `t` (years since the first date); NaN is a missing date (cloud, nodata) and
takes no part: nothing is interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAD_SCALE = 1.4826
ANOMALY_Z = 3.5  # Iglewicz and Hoaglin's cut for the modified z-score
MIN_TREND_POINTS = 3
MIN_CHANGEPOINT_POINTS = 6


@dataclass(frozen=True)
class Trend:
    """Theil-Sen slope per year (with its 95 % interval), Kendall's tau and its two-sided p-value (the
    Mann-Kendall test), and the number of dates with a value."""

    slope: float
    low: float
    high: float
    tau: float
    p_value: float
    n: int


NO_TREND = Trend(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0)


def trend(t: np.ndarray, y: np.ndarray) -> Trend:
    """The trend of `y` over `t` on the dates with a value; fewer than MIN_TREND_POINTS gives NaNs."""
    from scipy.stats import kendalltau, theilslopes

    ok = np.isfinite(y) & np.isfinite(t)
    n = int(ok.sum())
    if n < MIN_TREND_POINTS or np.ptp(t[ok]) == 0:
        return Trend(*([float("nan")] * 5), n)
    ts = theilslopes(y[ok], t[ok])
    if np.ptp(y[ok]) == 0:
        return Trend(float(ts[0]), float(ts[2]), float(ts[3]), 0.0, 1.0, n)
    kt = kendalltau(t[ok], y[ok])
    return Trend(float(ts[0]), float(ts[2]), float(ts[3]), float(kt.statistic), float(kt.pvalue), n)


def robust_z(y: np.ndarray, floor: float) -> np.ndarray:
    """(y - median) / max(1.4826 MAD, floor) over the dates with a value (NaN stays NaN). `floor` keeps a flat
    series from turning noise into anomalies (e.g. a share of the spread of all windows)."""
    from spectraclip.change.scene import robust_stats  # the change score's robust statistics (heavy module)

    if np.isfinite(y).sum() < 3:
        return np.full_like(y, np.nan, dtype=np.float64)
    med, scale = robust_stats(np.asarray(y, np.float64), floor)
    return (y - med) / scale


def detrended_z(t: np.ndarray, y: np.ndarray, slope: float, floor: float) -> np.ndarray:
    """The robust z-score of the residual after the window's Theil-Sen trend (when it has one), so a steady
    trend is not called anomalous at its ends."""
    r = y - (slope * t if np.isfinite(slope) else 0.0)
    return robust_z(r, floor)


def change_points(y: np.ndarray, penalty: float | None = None, scale: float | None = None) -> list[int]:
    """Indexes (into `y`, dates with a value only) where a new segment starts: ruptures' PELT with an L2 cost and
    the penalty 2 sigma^2 log(n) (sigma from the MAD of successive differences / sqrt 2, or `scale`). Fewer than
    MIN_CHANGEPOINT_POINTS dates with a value gives none."""
    import ruptures as rpt

    idx = np.flatnonzero(np.isfinite(y))
    if idx.size < MIN_CHANGEPOINT_POINTS:
        return []
    v = y[idx].astype(np.float64)
    if scale is None:
        d = np.diff(v)
        scale = MAD_SCALE * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0)
    sigma = max(float(scale), 1e-6)
    pen = penalty if penalty is not None else 2.0 * sigma * sigma * np.log(idx.size) * 2.0
    bkps = rpt.Pelt(model="l2", min_size=2, jump=1).fit(v[:, None]).predict(pen=pen)
    return [int(idx[b]) for b in bkps[:-1]]


__all__ = ["ANOMALY_Z", "NO_TREND", "Trend", "change_points", "detrended_z", "robust_z", "trend"]
