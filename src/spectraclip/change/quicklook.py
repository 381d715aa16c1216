"""The change quicklook: BEFORE and AFTER in natural colour and the change (score, changed pixels in red) side
by side, read at reduced size (the COG's overviews) so a whole tile costs little memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from spectraclip.change.grid import PairGrid
from spectraclip.io.atomic import atomic_path
from spectraclip.io.scene import SceneReader

MAX_SIZE = 768


def _rgb(scene, shape: tuple[int, int]) -> np.ndarray | None:
    from PIL import Image

    from spectraclip.apps.quicklook import natural_colour

    with SceneReader(scene) as reader:
        rgb = natural_colour(reader, MAX_SIZE)
    if rgb is None:
        return None
    if rgb.shape[:2] != shape:
        rgb = np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0])))
    return rgb


def change_quicklook(pair: PairGrid, change_path: str | Path, png: str | Path, *, title: str = "",
                     truth: np.ndarray | None = None) -> Path:
    """Three panels (four with a reference mask `truth` on the change map's grid): before, after, change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    change_path, png = Path(change_path), Path(png)
    with rasterio.open(change_path) as ds:
        f = max(1.0, max(ds.height, ds.width) / MAX_SIZE)
        shape = (max(1, round(ds.height / f)), max(1, round(ds.width / f)))
        score = ds.read(1, out_shape=shape, resampling=Resampling.average)
        flag = ds.read(2, out_shape=shape, resampling=Resampling.nearest)
    before, after = _rgb(pair.before, shape), _rgb(pair.after, shape)
    panels = [("before", before), ("after", after)]
    n = 3 + (truth is not None)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2 * shape[0] / max(shape[1], 1) + 0.7), dpi=110,
                             squeeze=False, layout="constrained")
    for ax, (name, img) in zip(axes[0], panels, strict=False):
        ax.imshow(img if img is not None else np.zeros((*shape, 3), np.uint8))
        ax.set_title(name + ("" if img is not None else " (no B04/B03/B02)"), fontsize=9)
    ax = axes[0][2]
    ok = np.isfinite(score)
    lo, hi = (np.percentile(score[ok], [2, 99.5]) if ok.any() else (0.0, 1.0))
    im = ax.imshow(np.where(ok, score, np.nan), cmap="magma", vmin=lo, vmax=hi)
    red = np.zeros((*shape, 4), np.float32)
    red[flag > 0.5] = (0.0, 1.0, 1.0, 0.85)
    ax.imshow(red)
    share = float(np.nanmean(flag)) if np.isfinite(flag).any() else 0.0
    ax.set_title(f"change score, changed pixels in cyan ({100 * share:.1f}%)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="score")
    if truth is not None:
        from PIL import Image

        t = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize((shape[1], shape[0]))) > 127
        axes[0][3].imshow(t, cmap="gray")
        axes[0][3].set_title("reference change mask", fontsize=9)
    for a in axes[0]:
        a.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return png


__all__ = ["change_quicklook"]
