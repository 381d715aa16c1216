"""The time series' pictures: the trajectories of chosen places, and the trend map."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.io.scene import Scene, SceneWindow


def place_window(grid: Scene, windows: Sequence[SceneWindow], lon: float, lat: float) -> SceneWindow | None:
    """The window whose centre is nearest to (lon, lat), or None when the place is off the grid."""
    x, y = lon, lat
    if grid.crs:
        from rasterio.warp import transform

        xs, ys = transform("EPSG:4326", grid.crs, [lon], [lat])
        x, y = xs[0], ys[0]
    col, row = ~grid.affine @ (x, y)
    if not (0 <= row < grid.height and 0 <= col < grid.width):
        return None
    return min(windows, key=lambda w: (w.row + w.height / 2 - row) ** 2 + (w.col + w.width / 2 - col) ** 2)


def _places(grid: Scene, windows: Sequence[SceneWindow], series: dict[str, np.ndarray], stats: dict[str, Any],
            at: Sequence[tuple[float, float]]) -> list[tuple[str, SceneWindow]]:
    out = []
    for lon, lat in at:
        w = place_window(grid, windows, lon, lat)
        if w is not None:
            out.append((f"{lon:.4f},{lat:.4f}", w))
    if not out:  # no place given (or none on the grid): the three most monotonic trends (largest |Kendall tau|)
        name = "embedding_distance" if "embedding_distance" in series else next(iter(series))
        taus = np.array([abs(tr.tau) if np.isfinite(tr.tau) else -1.0 for tr in stats[name]["trends"]])
        for i in np.argsort(-taus, kind="stable")[:3]:
            out.append((f"window {windows[i].index} (strongest trend)", windows[i]))
    return out


def plot_trajectories(path: Path, grid: Scene, windows: Sequence[SceneWindow], dates: Sequence[date],
                      series: dict[str, np.ndarray], stats: dict[str, Any],
                      at: Sequence[tuple[float, float]] = ()) -> Path:
    """One panel per series: each place's values over the dates (gaps where the date is missing: cloud or no
    data), its Theil-Sen line, anomalous dates circled in red and change points as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    places = _places(grid, windows, series, stats, at)
    t = np.array([(d - dates[0]).days / 365.25 for d in dates])
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.8 * len(series)), squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], series.items(), strict=True):
        st = stats[name]
        for k, (label, w) in enumerate(places):
            y = s[w.index]
            colour = f"C{k}"
            ax.plot(dates, y, "o-", color=colour, label=label, ms=4)
            tr = st["trends"][w.index]
            if np.isfinite(tr.slope):
                ok = np.isfinite(y)
                icpt = np.median(y[ok] - tr.slope * t[ok])
                ax.plot(dates, icpt + tr.slope * t, "--", color=colour, lw=1,
                        label=f"slope {tr.slope:+.3g}/yr, p={tr.p_value:.2g}")
            anom = st["anomaly"][w.index]
            if anom.any():
                ax.scatter([dates[i] for i in np.flatnonzero(anom)], y[anom], s=90, facecolors="none",
                           edgecolors="red", zorder=3)
            for cp in st["changepoints"][w.index]:
                ax.axvline(dates[cp], color=colour, ls=":", lw=1)
            missing = ~np.isfinite(y)
            if missing.any():
                ax.scatter([dates[i] for i in np.flatnonzero(missing)], [np.nanmin(s)] * int(missing.sum()),
                           marker="x", color=colour, s=25)
        ax.set_title(f"{name} (x: missing, red circle: anomaly, dotted: change point)", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_trend(path: Path, trend_cog: Path, grid: Scene, at: Sequence[tuple[float, float]] = (),
               title: str = "trend", max_size: int = 1024) -> Path:
    """The trend COG's slope (diverging colours, symmetric around 0) with p < 0.05 outlined, and the places."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(trend_cog) as ds:
        f = max(1.0, max(ds.height, ds.width) / max_size)
        shape = (max(1, round(ds.height / f)), max(1, round(ds.width / f)))
        slope = ds.read(1, out_shape=shape, resampling=Resampling.average)
        p = ds.read(2, out_shape=shape, resampling=Resampling.average)
    lim = float(np.nanmax(np.abs(slope))) if np.isfinite(slope).any() else 1.0
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(slope, cmap="RdBu_r", vmin=-lim, vmax=lim)
    if np.isfinite(p).any():
        ax.contour(np.nan_to_num(p, nan=1.0) < 0.05, levels=[0.5], colors="k", linewidths=0.8)
    for lon, lat in at:
        x, y = lon, lat
        if grid.crs:
            from rasterio.warp import transform

            xs, ys = transform("EPSG:4326", grid.crs, [lon], [lat])
            x, y = xs[0], ys[0]
        col, row = ~grid.affine @ (x, y)
        ax.plot(col / f, row / f, "k*", ms=12)
    fig.colorbar(im, ax=ax, label="slope per year (black outline: p < 0.05)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["place_window", "plot_trajectories", "plot_trend"]


def plot_cloud_masks(path: Path, stack: Any, max_size: int = 256) -> Path | None:
    """Each date in natural colour with its cloud layer (the one the reader skips windows by) in red: to look at
    what the mask marked. None when no date has a cloud layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from rasterio.enums import Resampling

    from spectraclip.apps.quicklook import natural_colour
    from spectraclip.io.scene import SCL_CLOUD, SceneReader

    if not any(d.scene.scl is not None for d in stack.dates):
        return None
    n = len(stack.dates)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for ax, d in zip(axes[0], stack.dates, strict=True):
        with SceneReader(d.scene) as reader:
            rgb = natural_colour(reader, max_size)
        if rgb is not None:
            ax.imshow(rgb)
        if d.scene.scl is not None:
            shape = rgb.shape[:2] if rgb is not None else (max_size, max_size)
            with rasterio.open(d.scene.scl.path) as ds:
                codes = ds.read(d.scene.scl.index, out_shape=shape, resampling=Resampling.nearest)
            cloud = np.isin(codes, SCL_CLOUD)
            overlay = np.zeros((*shape, 4), np.float32)
            overlay[cloud] = (1.0, 0.0, 0.0, 0.45)
            ax.imshow(overlay)
            ax.set_title(f"{d.date.isoformat()}: {100 * cloud.mean():.1f}% cloud", fontsize=8)
        else:
            ax.set_title(f"{d.date.isoformat()}: no cloud layer", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
