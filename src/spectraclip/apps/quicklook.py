"""PNG quicklooks of scene outputs: a class map with its legend, and heatmaps over natural colour. They read
the written COG at reduced size (its overviews), so a quicklook of a whole tile costs little memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from spectraclip.io.atomic import atomic_path

MAX_SIZE = 1024


def class_quicklook(map_path: str | Path, png: str | Path, *, title: str = "", max_size: int = MAX_SIZE,
                    background: np.ndarray | None = None) -> Path:
    """The class band of a map COG in its colour table, with a legend (class names and their share); with a
    natural-colour `background` (`natural_colour`) the scene is shown beside the map, so it can be checked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    map_path, png = Path(map_path), Path(png)
    with rasterio.open(map_path) as ds:
        names = json.loads(ds.tags().get("classes", "[]"))
        cmap = ds.colormap(1)
        f = max(1.0, max(ds.height, ds.width) / max_size)
        cls = ds.read(1, out_shape=(max(1, round(ds.height / f)), max(1, round(ds.width / f))),
                      resampling=Resampling.nearest).astype(np.int64)
    lut = np.zeros((256, 4), np.uint8)
    for k, rgba in cmap.items():
        lut[k] = rgba
    rgba = lut[np.clip(cls, 0, 255)]
    counts = np.bincount(cls[cls < 255].ravel(), minlength=len(names))
    total = max(1, int(counts.sum()))
    aspect = rgba.shape[0] / max(rgba.shape[1], 1)
    if background is None:
        fig, ax = plt.subplots(figsize=(8, 8 * aspect * 0.8 + 1), dpi=110)
    else:
        fig, (ax_bg, ax) = plt.subplots(1, 2, figsize=(13, 6.5 * aspect * 0.8 + 1), dpi=110)
        ax_bg.imshow(background, interpolation="bilinear")
        ax_bg.set_axis_off()
        ax_bg.set_title("natural colour (B04, B03, B02)", fontsize=10)
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    handles = [Patch(color=np.array(cmap[i][:3]) / 255, label=f"{n} ({100 * counts[i] / total:.0f}%)")
               for i, n in enumerate(names)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return png


def natural_colour(reader, max_size: int = MAX_SIZE) -> np.ndarray | None:
    """uint8 `[H, W, 3]` natural colour (B04, B03, B02) of a scene at reduced size, or None without those bands."""
    from spectraclip.io.render import stretch_rgb

    have = set(reader.scene.bands.names)
    if not {"B04", "B03", "B02"} <= have:
        return None
    rgb, _ = reader.read_overview(["B04", "B03", "B02"], max_size)
    return stretch_rgb(rgb * 1e-4, "percentile", joint=True, min_range=0.15)


def heatmap_quicklook(heat_path: str | Path, png: str | Path, background: np.ndarray | None, *,
                      max_size: int = MAX_SIZE) -> Path:
    """One panel per query: the similarity (normalised per query) over the natural-colour background."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heat_path, png = Path(heat_path), Path(png)
    with rasterio.open(heat_path) as ds:
        names = [d or f"query {i + 1}" for i, d in enumerate(ds.descriptions)]
        f = max(1.0, max(ds.height, ds.width) / max_size)
        shape = (ds.count, max(1, round(ds.height / f)), max(1, round(ds.width / f)))
        heat = ds.read(out_shape=shape, resampling=Resampling.bilinear)
    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 5), dpi=110, squeeze=False)
    for i, ax in enumerate(axes[0]):
        h = heat[i]
        ok = np.isfinite(h)
        lo, hi = (np.percentile(h[ok], [2, 98]) if ok.any() else (0.0, 1.0))
        if background is not None:
            bg = background
            if bg.shape[:2] != h.shape:
                from PIL import Image

                bg = np.asarray(Image.fromarray(bg).resize((h.shape[1], h.shape[0])))
            ax.imshow(bg)
        im = ax.imshow(np.where(ok, h, np.nan), cmap="inferno", vmin=lo, vmax=hi,
                       alpha=0.55 if background is not None else 1.0)
        ax.set_title(f"“{names[i]}”", fontsize=9)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="cosine similarity")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return png


__all__ = ["class_quicklook", "heatmap_quicklook", "natural_colour"]
