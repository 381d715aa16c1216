"""Text heatmaps of whole scenes: dense patch-token similarity to free-text queries (training-free, see
`apps.dense`), blended over overlapping windows and written as a float32 COG with one band per query (the
query in the band description), plus a PNG overlay on natural colour."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spectraclip.apps.maps import MapError, _job_key, _scene_for
from spectraclip.apps.scene_job import JobSummary, can_resume, run_windows
from spectraclip.io.cog import BlockWriter
from spectraclip.io.scene import Scene, SceneReader, window_grid
from spectraclip.zeroshot.text import encode_texts


@dataclass
class HeatmapResult:
    """A written heatmap: its path, queries, overlay PNG and the job summary."""

    path: Path
    queries: list[str]
    summary: JobSummary
    quicklook: Path | None = None


class _QueryWindows:
    def __init__(self, dense: Any, text: torch.Tensor, cls_lambda: float) -> None:
        self.dense, self.text, self.cls_lambda = dense, text.to(dense.device), cls_lambda

    def __call__(self, x, present, windows):
        sim = self.dense.window_similarity(x, present, self.text, cls_lambda=self.cls_lambda)
        h, w = windows[0].height, windows[0].width
        up = F.interpolate(sim.float(), size=(h, w), mode="bilinear", align_corners=False)
        return up.cpu().numpy(), sim.float().mean((2, 3)).cpu().numpy()


def heatmap_scene(model, scene: str | Path | Scene, output: str | Path, queries: Sequence[str], *,
                  tile: int | None = None, stride: int | None = None, cls_lambda: float = 0.0,
                  attention: str = "qq", weight: str = "hann", quicklook: bool = True, bands: Any = None,
                  scl: str | Path | None = None, nodata: str = "fill", max_cloud: float = 0.5,
                  batch_size: int = 32, num_workers: int = 0, device: str = "cpu", progress: bool = True,
                  precision: str | None = "fp32", checkpoint_rows: int = 512,
                  stop_after_rows: int | None = None) -> HeatmapResult:
    """Write the patch-level cosine similarity of `scene` to each query into `output` (float32 COG, NaN where
    no window speaks), blended over windows of `tile` pixels every `stride`. Resumable like `map_scene`."""
    queries = [q.strip() for q in queries if q and q.strip()]
    if not queries:
        raise MapError("give at least one --query")
    dev = torch.device(device)
    model.eval().to(dev)
    sc = _scene_for(model, scene, bands, scl)
    tile = int(tile or model.image_size)
    stride = int(stride or max(1, tile // 2))
    windows = window_grid(sc.height, sc.width, tile, stride)
    from spectraclip.apps.dense import prepare_dense

    dense = prepare_dense(model, precision, dev, attention, batch_size)
    fn = _QueryWindows(dense, torch.from_numpy(encode_texts(model, list(queries))), cls_lambda)
    out = Path(output)
    parts = out.with_name(out.name + ".parts")
    key = _job_key("heatmap", model, sc, tile, stride, {"queries": queries, "cls_lambda": cls_lambda,
                                                       "attention": attention, "weight": weight, "nodata": nodata,
                                                       "max_cloud": max_cloud, "precision": dense.mode})
    writer = BlockWriter(out, height=sc.height, width=sc.width, count=len(queries), dtype="float32", crs=sc.crs,
                         transform=sc.transform, nodata=float("nan"), descriptions=queries,
                         tags={"queries": json.dumps(queries),
                               "spectraclip_heatmap": json.dumps({"tile": tile, "stride": stride,
                                                                  "cls_lambda": cls_lambda, "attention": attention,
                                                                  "model": model.config.arch,
                                                                  "precision": dense.mode})})
    writer.open(resume=can_resume(parts, key))

    def on_strip(top: int, values: np.ndarray, wsum: np.ndarray) -> None:
        writer.write(top, np.where(wsum[None] > 0, values, np.nan).astype(np.float32))

    try:
        summary = run_windows(sc, windows, model.preprocessor(), model.groups, fn, len(queries), on_strip,
                              state_dir=parts, job_key=key, sync=writer.sync, weight=weight, batch_size=batch_size,
                              num_workers=num_workers, progress=progress,
                              reader_options={"nodata": nodata, "max_cloud": max_cloud},
                              checkpoint_rows=checkpoint_rows, stop_after_rows=stop_after_rows)
    finally:
        writer.close()
    writer.finish(resampling="average")
    shutil.rmtree(parts, ignore_errors=True)
    ql = None
    if quicklook:
        from spectraclip.apps.quicklook import heatmap_quicklook, natural_colour

        with SceneReader(sc) as reader:
            bg = natural_colour(reader)
        ql = heatmap_quicklook(out, out.with_suffix(".png"), bg)
    return HeatmapResult(out, queries, summary, ql)


__all__ = ["HeatmapResult", "heatmap_scene"]
