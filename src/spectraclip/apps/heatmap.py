"""Text heatmaps of whole scenes: dense patch-token similarity to free-text queries (training-free, see
`apps.dense`), blended over overlapping windows and written as a float32 COG with one band per query (the
query in the band description), plus a PNG overlay on natural colour."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spectraclip.apps.maps import MapError
from spectraclip.apps.runner import DEFAULT_MAX_SKIPPED, SceneJob, SceneOptions, run_model
from spectraclip.apps.scene_job import JobSummary
from spectraclip.io.cog import BlockWriter
from spectraclip.io.scene import Scene, SceneReader
from spectraclip.models.device import model_device
from spectraclip.zeroshot.text import encode_texts


@dataclass
class HeatmapResult:
    """A written heatmap: its path, queries, overlay PNG and the job summary."""

    path: Path
    queries: list[str]
    summary: JobSummary
    quicklook: Path | None = None

    def to_xarray(self) -> Any:
        """The written raster as an `xarray.DataArray` `(band, y, x)` with band names, coordinates and tags
        (`io.cog.read_xarray`)."""
        from spectraclip.io.cog import read_xarray

        return read_xarray(self.path)

    def plot(self, query: int | str = 0, ax: Any = None, title: str | None = None) -> Any:
        """Show one query's similarity (a band of the heatmap) with a colour bar (matplotlib), torchgeo-style.

        Args:
            query: the query, by index or text (default the first).
            ax: a matplotlib axes to draw into (default: a new figure).
            title: the title (default: the query).

        Returns:
            The matplotlib figure.
        """
        import matplotlib.pyplot as plt
        import rasterio

        index = self.queries.index(query) if isinstance(query, str) else int(query)
        with rasterio.open(self.path) as ds:
            sim = ds.read(index + 1)
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 5))
        else:
            fig = ax.figure
        shown = ax.imshow(sim, cmap="magma", interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
        ax.set_axis_off()
        ax.set_title(title if title is not None else f"\u201c{self.queries[index]}\u201d", fontsize=9)
        return fig


class _QueryWindows:
    def __init__(self, dense: Any, text: torch.Tensor, cls_lambda: float) -> None:
        self.dense, self.text, self.cls_lambda = dense, text.to(dense.device), cls_lambda

    def __call__(self, x, present, windows):
        sim = self.dense.window_similarity(x, present, self.text, cls_lambda=self.cls_lambda)
        h, w = windows[0].height, windows[0].width
        up = F.interpolate(sim.float(), size=(h, w), mode="bilinear", align_corners=False)
        return up.cpu().numpy(), sim.float().mean((2, 3)).cpu().numpy()


class _HeatmapHead:
    """The heatmap head: patch similarity per query, one float32 band each (NaN where no window speaks)."""

    kind = "heatmap"
    resampling = "average"

    def __init__(self, fn: _QueryWindows, queries: list[str], tags: dict[str, str], key: dict[str, Any]) -> None:
        self.fn, self.queries, self.tags, self._key, self.channels = fn, queries, tags, key, len(queries)

    def __call__(self, x, present, windows):
        return self.fn(x, present, windows)

    def key(self) -> dict[str, Any]:
        return self._key

    def writer(self, job: SceneJob) -> BlockWriter:
        sc = job.scene
        return BlockWriter(job.output, height=sc.height, width=sc.width, count=len(self.queries), dtype="float32",
                           crs=sc.crs, transform=sc.transform, nodata=float("nan"), descriptions=self.queries,
                           tags=self.tags)

    def write_strip(self, writer: BlockWriter, top: int, values: np.ndarray, wsum: np.ndarray) -> None:
        writer.write(top, np.where(wsum[None] > 0, values, np.nan).astype(np.float32))


def heatmap_scene(model, scene: str | Path | Scene, output: str | Path, queries: Sequence[str], *,
                  tile: int | None = None, stride: int | None = None, cls_lambda: float = 0.0,
                  attention: str = "qq", weight: str = "hann", quicklook: bool = True, bands: Any = None,
                  scl: str | Path | None = None, nodata: str = "fill", max_cloud: float = 0.5,
                  batch_size: int | None = None, num_workers: int = 0, device: str | None = None, progress: bool = True,
                  precision: str | None = "fp32", checkpoint_rows: int = 512,
                  missing_bands: str | None = None,
                  radiometry: str | None = None, max_skipped: float = DEFAULT_MAX_SKIPPED, cloud_mask: str = "auto",
                  options: SceneOptions | None = None) -> HeatmapResult:
    """Write the patch-level cosine similarity of `scene` to each query into `output` (float32 COG, NaN where
    no window speaks), blended over windows of `tile` pixels every `stride`. Resumable like `map_scene`, with the
    same shared options (`apps.runner.SceneOptions`, or `options`) and the same refusal of a run that skipped
    more than `max_skipped` of its windows; the model is not changed."""
    queries = [q.strip() for q in queries if q and q.strip()]
    if not queries:
        raise MapError("give at least one --query")
    opts = options or SceneOptions(tile=tile, stride=stride, weight=weight, bands=bands, scl=scl, nodata=nodata,
                                   max_cloud=max_cloud, batch_size=batch_size, num_workers=num_workers,
                                   device=device, precision=precision, progress=progress,
                                   checkpoint_rows=checkpoint_rows,
                                   missing_bands=missing_bands, radiometry=radiometry, max_skipped=max_skipped,
                                   cloud_mask=cloud_mask)
    from spectraclip.apps.dense import prepare_dense

    with run_model(model, opts.device) as net:
        job = SceneJob.open(net, scene, output, opts)
        dense = prepare_dense(net, opts.precision, model_device(net), attention, job.options.batch_size)
        fn = _QueryWindows(dense, torch.from_numpy(encode_texts(net, list(queries))), cls_lambda)
        key = {"queries": queries, "cls_lambda": cls_lambda, "attention": attention, "precision": dense.mode}
        tags = {"queries": json.dumps(queries),
                "spectraclip_heatmap": json.dumps({"tile": job.tile, "stride": job.stride, "cls_lambda": cls_lambda,
                                                   "attention": attention, "model": net.config.arch,
                                                   "precision": dense.mode,
                                                   "missing_bands": job.prepare.missing_bands,
                                                   "radiometry": opts.radiometry})}
        summary = job.run_head(_HeatmapHead(fn, queries, tags, key))
    out = job.output
    ql = None
    if quicklook:
        from spectraclip.apps.quicklook import heatmap_quicklook, natural_colour

        with SceneReader(job.scene) as reader:
            bg = natural_colour(reader)
        ql = heatmap_quicklook(out, out.with_suffix(".png"), bg)
    return HeatmapResult(out, queries, summary, ql)


__all__ = ["HeatmapResult", "heatmap_scene"]
