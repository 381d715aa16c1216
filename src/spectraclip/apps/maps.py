"""Thematic maps of whole scenes: sliding-window zero-shot (or few-shot probe) classification blended with a
Hann window weight, written as a Cloud-Optimized GeoTIFF on the scene's grid: band 1 the class index (uint8,
colour table, class names in the metadata), then one probability band per class (uint8 x 255 or float32).

`map_scene` is the library entry point; `spectraclip map` is its CLI. Window-level mode gives each window
its class probabilities; `dense=True` uses patch-token features (see `apps.dense`) for a per-patch map.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F

from spectraclip.apps.runner import DEFAULT_MAX_SKIPPED, SceneJob, SceneOptions, run_model
from spectraclip.apps.scene_job import JobSummary
from spectraclip.errors import SpectraclipError
from spectraclip.io.cog import BlockWriter
from spectraclip.io.scene import Scene, SceneReader
from spectraclip.models.device import model_device
from spectraclip.zeroshot.classes import ClassSpec
from spectraclip.zeroshot.classifier import MAX_LOGIT_SCALE, ZeroShotClassifier

NODATA_CLASS = 255
PROBABILITY_TYPES: tuple[str, ...] = ("uint8", "float32")
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (44, 160, 44), (214, 39, 40), (148, 103, 189), (255, 127, 14), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (152, 223, 138),
    (255, 152, 150), (197, 176, 213), (255, 187, 120), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229))
_NAMED_COLOURS = {"SeaLake": (31, 78, 180), "River": (23, 190, 230), "Forest": (20, 110, 30),
                  "Pasture": (150, 220, 100), "AnnualCrop": (240, 210, 80), "PermanentCrop": (200, 150, 60),
                  "HerbaceousVegetation": (120, 170, 60), "Residential": (220, 60, 60),
                  "Industrial": (130, 60, 160), "Highway": (90, 90, 90)}


class MapError(SpectraclipError, ValueError):
    """A map request that cannot run (no classes, too many classes, a probe of another model ...)."""


def colour_table(names: Sequence[str]) -> dict[int, tuple[int, int, int, int]]:
    """The class band's colour table: a fixed colour per known EuroSAT class, a palette colour otherwise."""
    table = {i: (*(_NAMED_COLOURS.get(n) or PALETTE[i % len(PALETTE)]), 255) for i, n in enumerate(names)}
    table[NODATA_CLASS] = (0, 0, 0, 0)
    return table


@dataclass
class MapResult:
    """A written map: its path, classes, quicklook and vector files, and the job summary."""

    path: Path
    classes: list[str]
    summary: JobSummary
    quicklook: Path | None = None
    vector: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_xarray(self) -> Any:
        """The written raster as an `xarray.DataArray` `(band, y, x)` with band names, coordinates and tags
        (`io.cog.read_xarray`)."""
        from spectraclip.io.cog import read_xarray

        return read_xarray(self.path)

    def plot(self, ax: Any = None, title: str | None = None) -> Any:
        """Show the class band with the map's colours and a legend (matplotlib), torchgeo-style.

        Args:
            ax: a matplotlib axes to draw into (default: a new figure).
            title: the title (default: the map's file name).

        Returns:
            The matplotlib figure.
        """
        import matplotlib.pyplot as plt
        import rasterio
        from matplotlib.patches import Patch

        with rasterio.open(self.path) as ds:
            cls = ds.read(1)
        colours = colour_table(self.classes)
        rgba = np.zeros((*cls.shape, 4), np.uint8)
        for value, colour in colours.items():
            rgba[cls == value] = colour
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 5))
        else:
            fig = ax.figure
        ax.imshow(rgba, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title if title is not None else self.path.name, fontsize=9)
        present = set(np.unique(cls).tolist())
        handles = [Patch(color=np.array(colours[i][:3]) / 255, label=n) for i, n in enumerate(self.classes)
                   if i in present]
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
        return fig


class _ZeroShotWindows:
    """Window-level class probabilities: softmax(scale x cosine) to the class text embeddings, or a probe."""

    def __init__(self, encoder: Any, classifier: ZeroShotClassifier | None, probe: Any) -> None:
        self.encoder, self.probe, self.device = encoder, probe, encoder.device
        self.class_emb = classifier.class_emb.to(self.device) if classifier is not None else None
        self.scale = classifier.scale if classifier is not None else MAX_LOGIT_SCALE

    def __call__(self, x, present, windows):
        x = {g: t.to(self.device) for g, t in x.items()}
        present = {g: p.to(self.device) for g, p in present.items()}
        emb = self.encoder.encode_image(x, present if self.encoder.model.config.multi else None)
        if self.probe is not None:
            probs = self.probe.predict_proba(emb.cpu().numpy())
        else:
            probs = (self.scale * emb @ self.class_emb.T).softmax(-1).cpu().numpy()
        return probs.astype(np.float32), probs.astype(np.float32)


class _DenseWindows:
    """Per-patch class probabilities from dense patch features, upsampled bilinearly to the window."""

    def __init__(self, dense: Any, classifier: ZeroShotClassifier, cls_lambda: float) -> None:
        self.dense, self.class_emb = dense, classifier.class_emb.to(dense.device)
        self.scale, self.cls_lambda = classifier.scale, cls_lambda

    def __call__(self, x, present, windows):
        sim = self.dense.window_similarity(x, present, self.class_emb, cls_lambda=self.cls_lambda)
        h, w = windows[0].height, windows[0].width
        logits = F.interpolate(sim.float() * self.scale, size=(h, w), mode="bilinear", align_corners=False)
        probs = logits.softmax(1)
        return probs.cpu().numpy(), probs.mean((2, 3)).cpu().numpy()


def _probability_strip(values: np.ndarray, wsum: np.ndarray, probabilities: str) -> tuple[np.ndarray, np.ndarray]:
    """Blended probabilities `[K, n, W]` -> the map's bands `[1 + K, n, W]` and the validity mask `[n, W]`."""
    valid = wsum > 0
    cls = np.where(valid, values.argmax(0), NODATA_CLASS).astype(np.uint8)
    if probabilities == "uint8":
        probs = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
        return np.concatenate([cls[None], probs]), valid
    probs = np.where(valid[None], values, np.nan).astype(np.float32)
    return np.concatenate([cls[None].astype(np.float32), probs]), valid


class _MapHead:
    """The map head: per-window (or per-patch) class probabilities -> class band + probability bands."""

    kind = "map"
    resampling = "nearest"

    def __init__(self, fn: Any, names: list[str], classes: list[ClassSpec], probabilities: str, tags: dict[str, str],
                 key: dict[str, Any]) -> None:
        self.fn, self.names, self.classes, self.probabilities = fn, names, classes, probabilities
        self.tags, self._key, self.channels = tags, key, len(names)

    def __call__(self, x, present, windows):
        return self.fn(x, present, windows)

    def key(self) -> dict[str, Any]:
        return self._key

    def writer(self, job: SceneJob) -> BlockWriter:
        sc = job.scene
        return BlockWriter(job.output, height=sc.height, width=sc.width, count=1 + len(self.names),
                           dtype=self.probabilities, crs=sc.crs, transform=sc.transform,
                           nodata=None if self.probabilities == "uint8" else float("nan"),
                           descriptions=["class", *[f"p_{n}" for n in self.names]],
                           colormap=colour_table(self.names), tags=self.tags)

    def write_strip(self, writer: BlockWriter, top: int, values: np.ndarray, wsum: np.ndarray) -> None:
        bands_out, valid = _probability_strip(values, wsum, self.probabilities)
        writer.write(top, bands_out)
        if self.probabilities == "uint8":
            writer.write_mask(top, valid)


def map_scene(model, scene: str | Path | Scene, output: str | Path, classes: Sequence[ClassSpec] | None = None, *,
              probe: str | Path | None = None, templates: str | None = None, tile: int | None = None,
              stride: int | None = None, dense: bool = False, probabilities: str = "uint8",
              vector: str | Path | None = None, quicklook: bool = True, weight: str = "hann",
              bands: Any = None, scl: str | Path | None = None, nodata: str = "fill", max_cloud: float = 0.5,
              batch_size: int | None = None, num_workers: int = 0, device: str | None = None, progress: bool = True,
              cls_lambda: float = 0.0, attention: str = "qq", precision: str | None = "fp32",
              checkpoint_rows: int = 512, missing_bands: str | None = None,
              radiometry: str | None = None, max_skipped: float = DEFAULT_MAX_SKIPPED, cloud_mask: str = "auto",
              options: SceneOptions | None = None) -> MapResult:
    """Map `scene` into `output` (COG): the class index band then per-class probabilities, blended over
    overlapping windows of `tile` pixels (default the model input) every `stride` (default half a tile).
    `probe` (a saved window probe) replaces the text prompts; resumable (a rerun continues a killed run).
    `templates` None uses the model's declared template set (`zeroshot.default_templates`); the map's tags
    record the templates and the logit scale of its probabilities.
    `precision` is the image encoding's (`models.precision`; auto = the device's fastest that passes the gate).
    The shared scene options (`apps.runner.SceneOptions`: `missing_bands`, `radiometry`, `max_skipped`, ...) come
    as keywords or as `options` (which then wins). A run that encoded nothing, or skipped more than
    `max_skipped` of its windows, raises `SkippedWindowsError` and leaves no map. `device` None: the model's;
    the model itself is not changed (see `apps.runner`)."""
    opts = options or SceneOptions(tile=tile, stride=stride, weight=weight, bands=bands, scl=scl, nodata=nodata,
                                   max_cloud=max_cloud, batch_size=batch_size, num_workers=num_workers,
                                   device=device, precision=precision, progress=progress,
                                   checkpoint_rows=checkpoint_rows,
                                   missing_bands=missing_bands, radiometry=radiometry, max_skipped=max_skipped,
                                   cloud_mask=cloud_mask)
    with run_model(model, opts.device) as net:
        return _map(net, scene, output, classes, opts, probe=probe, templates=templates, dense=dense,
                    probabilities=probabilities, vector=vector, quicklook=quicklook, cls_lambda=cls_lambda,
                    attention=attention)


def _map(model, scene: str | Path | Scene, output: str | Path, classes: Sequence[ClassSpec] | None,
         opts: SceneOptions, *, probe: str | Path | None, templates: str | None, dense: bool, probabilities: str,
         vector: str | Path | None, quicklook: bool, cls_lambda: float, attention: str) -> MapResult:
    from spectraclip.apps.probe_head import load_probe

    if probabilities not in PROBABILITY_TYPES:
        raise MapError(f"--probabilities {probabilities!r}: choose one of {', '.join(PROBABILITY_TYPES)}")
    dev = model_device(model)
    head = None
    if probe is not None:
        if dense:
            raise MapError("--probe and --dense do not combine: a window probe classifies whole windows")
        head = load_probe(probe, model)
        classes = [ClassSpec(c, c) for c in head.classes]
    if not classes:
        raise MapError("give the map's classes (--classes / --classes-file) or a --probe")
    classes = list(classes)
    job = SceneJob.open(model, scene, output, opts)
    zs = None if head is not None else ZeroShotClassifier.build(model, classes, templates)
    if dense:
        from spectraclip.apps.dense import prepare_dense

        enc: Any = prepare_dense(model, opts.precision, dev, attention, job.options.batch_size)
        fn: Any = _DenseWindows(enc, zs, cls_lambda)
    else:
        from spectraclip.models.precision import prepare_for_inference

        enc = prepare_for_inference(model, opts.precision, dev, job.options.batch_size)
        fn = _ZeroShotWindows(enc, zs, head)
    names = [c.name for c in classes]
    zs_meta = zs.metadata() if zs is not None else {"templates": None, "logit_scale": None}
    key = {"classes": [c.__dict__ for c in classes], "dense": dense, "probe": str(probe) if probe else None,
           "templates": zs_meta["templates"], "templates_sha256": zs_meta.get("templates_sha256"),
           "probabilities": probabilities, "cls_lambda": cls_lambda, "attention": attention, "precision": enc.mode}
    tags = {"classes": json.dumps(names), "prompts": json.dumps([c.prompt for c in classes]),
            "spectraclip_map": json.dumps({"tile": job.tile, "stride": job.stride, "weight": opts.weight,
                                           "dense": dense, "probe": str(probe) if probe else None,
                                           "templates": zs_meta["templates"],
                                           "templates_origin": zs_meta.get("templates_origin"),
                                           "logit_scale": zs_meta["logit_scale"],
                                           "model": model.config.arch, "precision": enc.mode,
                                           "missing_bands": job.prepare.missing_bands,
                                           "radiometry": opts.radiometry}),
            "probability_scale": "255" if probabilities == "uint8" else "1"}
    summary = job.run_head(_MapHead(fn, names, classes, probabilities, tags, key))
    out, sc = job.output, job.scene
    vec_path = None
    if vector is not None and summary.records is not None:
        vec_path = write_window_vectors(vector, sc, job.windows, summary.records, names)
    ql = None
    if quicklook:
        from spectraclip.apps.quicklook import class_quicklook, natural_colour

        with SceneReader(sc) as reader:
            bg = natural_colour(reader)
        ql = class_quicklook(out, out.with_suffix(".png"), title=f"{sc.id}: {model.config.arch}"
                             f"{' (probe)' if probe else ' (dense)' if dense else ''}", background=bg)
    return MapResult(out, names, summary, ql, vec_path, extra={"zeroshot": zs_meta})


def write_window_vectors(path: str | Path, scene: Scene, windows: Sequence[Any], records: tuple[np.ndarray, np.ndarray],
                         names: Sequence[str]) -> Path:
    """A GeoParquet of the encoded windows: polygon (scene CRS), window offsets, class and per-class probability."""
    import geopandas as gpd
    from shapely.geometry import box

    from spectraclip.io.atomic import atomic_path

    idx, probs = records
    order = np.argsort(idx, kind="stable")
    idx, probs = idx[order], probs[order]
    by_index = {w.index: w for w in windows}
    aff = scene.affine
    geoms, rows = [], []
    for i, p in zip(idx.tolist(), probs, strict=True):
        w = by_index[i]
        x0, y0 = aff @ (w.col, w.row)
        x1, y1 = aff @ (w.col + w.width, w.row + w.height)
        geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        rows.append({"window": i, "row": w.row, "col": w.col, "size": w.height, "class": names[int(np.argmax(p))],
                     **{f"p_{n}": float(v) for n, v in zip(names, p, strict=True)}})
    gdf = gpd.GeoDataFrame(rows, geometry=geoms, crs=scene.crs)
    out = Path(path)
    with atomic_path(out) as tmp:
        gdf.to_parquet(tmp)
    return out


__all__ = ["NODATA_CLASS", "PROBABILITY_TYPES", "MapError", "MapResult", "colour_table", "map_scene",
           "write_window_vectors"]
