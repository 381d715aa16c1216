"""Score a product of the scene apps (class map, heatmap, change map) against a reference raster.

The reference is brought onto the product's grid (rasterio reproject, nearest). Its values become product classes
through a mapping (`1=water,0=other`: reference value = product class name); values the mapping leaves out, and
the reference's nodata, are not scored. Without a mapping the reference values are the product's class indices.

What the product's classes are comes from its tags:
- a class map (`spectraclip map`): band 1, the classes in the `classes` tag (255 = unmapped);
- a change map (`spectraclip change`): band 2, classes `unchanged`, `changed`;
- a heatmap (`spectraclip heatmap`): band `band` (default 1) above `threshold` (required), classes
  `not <query>`, `<query>`; any other single-band raster likewise with classes `below`, `above`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.errors import SpectraclipError

MAP_NODATA = 255


class ReferenceScoreError(SpectraclipError, ValueError):
    """A product or reference that cannot be scored (no overlap, unknown class, missing threshold ...)."""


@dataclass
class ReferenceScore:
    """Per-class IoU / F1 / precision / recall, the confusion matrix (rows reference, columns product)."""

    classes: list[str]
    confusion: np.ndarray
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    accuracy: float = float("nan")
    mean_iou: float = float("nan")
    pixels: int = 0
    product_kind: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"product_kind": self.product_kind, "classes": self.classes, "pixels": self.pixels,
                "accuracy": self.accuracy, "mean_iou": self.mean_iou, "per_class": self.per_class,
                "confusion": self.confusion.tolist()}


def confusion_counts(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None,
                     n_classes: int = 2) -> np.ndarray:
    """The one pixel count of every scorer: the confusion matrix `[k, k]` (rows `truth`, columns `pred`) over the
    pixels where `valid` holds and both labels are class indices (negative = not scored). Boolean masks count as
    classes 0 (False) and 1 (True)."""
    p, t = np.asarray(pred).astype(np.int64), np.asarray(truth).astype(np.int64)
    ok = (p >= 0) & (t >= 0) & (p < n_classes) & (t < n_classes)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    k = n_classes
    return np.bincount(t[ok] * k + p[ok], minlength=k * k).reshape(k, k)


def scores_from_counts(confusion: np.ndarray) -> list[dict[str, float]]:
    """Per class (in index order): IoU, F1, precision, recall (NaN where undefined) and support (pixels of the
    class in the reference), from a confusion matrix of `confusion_counts`."""
    cm = np.asarray(confusion, np.int64)
    out = []
    for i in range(cm.shape[0]):
        tp, fp, fn = int(cm[i, i]), int(cm[:, i].sum() - cm[i, i]), int(cm[i, :].sum() - cm[i, i])
        div = lambda a, b: a / b if b else float("nan")  # noqa: E731
        out.append({"iou": div(tp, tp + fp + fn), "f1": div(2 * tp, 2 * tp + fp + fn), "precision": div(tp, tp + fp),
                    "recall": div(tp, tp + fn), "support": int(cm[i, :].sum())})
    return out


def parse_reference_classes(spec: str | None) -> dict[float, str] | None:
    """`1=water,0=other` -> {1.0: "water", 0.0: "other"}."""
    if not spec:
        return None
    out: dict[float, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        value, sep, name = part.partition("=")
        bad = f"--reference-classes {spec!r}: write VALUE=CLASS pairs, e.g. 1=water,0=other"
        try:
            out[float(value)] = name.strip()
        except ValueError:
            raise ReferenceScoreError(bad) from None
        if not sep or not name.strip():
            raise ReferenceScoreError(bad)
    return out


def _product_labels(ds: Any, threshold: float | None, band: int | None) -> tuple[np.ndarray, list[str], str]:
    """The product's class index per pixel (-1 = not mapped), its class names and its kind."""
    tags = ds.tags()
    if "spectraclip_change" in tags:
        flag = ds.read(band or 2).astype(np.float64)
        return np.where(np.isfinite(flag), flag, -1).astype(np.int64), ["unchanged", "changed"], "change"
    if "classes" in tags and threshold is None:
        cls = ds.read(band or 1).astype(np.int64)
        names = json.loads(tags["classes"])
        return np.where((cls == MAP_NODATA) | (cls >= len(names)), -1, cls), list(names), "map"
    if threshold is None:
        raise ReferenceScoreError(f"{ds.name}: neither a class map nor a change map; give --threshold to score band "
                             f"{band or 1} above it")
    b = band or 1
    v = ds.read(b).astype(np.float64)
    queries = json.loads(tags["queries"]) if "queries" in tags else None
    names = [f"not {queries[b - 1]}", queries[b - 1]] if queries else ["below", "above"]
    return np.where(np.isfinite(v), (v > threshold).astype(np.int64), -1), names, "heatmap" if queries else "raster"


def score_product(product: str | Path, reference: str | Path, *, reference_classes: str | dict | None = None,
                  threshold: float | None = None, band: int | None = None,
                  reference_nodata: float | None = None) -> ReferenceScore:
    """Score `product` against `reference` (see the module doc); `reference_nodata` adds to the file's nodata."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    mapping = (parse_reference_classes(reference_classes) if isinstance(reference_classes, str | None)
               else dict(reference_classes))
    with rasterio.open(product) as ds:
        pred, names, kind = _product_labels(ds, threshold, band)
        grid = (ds.crs, ds.transform, ds.height, ds.width)
    with rasterio.open(reference) as rs:
        ref = np.full((grid[2], grid[3]), np.nan, np.float64)
        reproject(rasterio.band(rs, 1), ref, dst_transform=grid[1], dst_crs=grid[0], dst_nodata=np.nan,
                  resampling=Resampling.nearest)
        nodatas = [v for v in (rs.nodata, reference_nodata) if v is not None]
    known = np.isfinite(ref)
    for nd in nodatas:
        known &= ref != nd
    truth = np.full(ref.shape, -1, np.int64)
    if mapping is None:
        ok = known & (ref >= 0) & (ref < len(names)) & (ref == np.round(ref))
        truth[ok] = ref[ok].astype(np.int64)
    else:
        unknown = sorted(set(mapping.values()) - set(names))
        if unknown:
            raise ReferenceScoreError(f"--reference-classes names {', '.join(unknown)}, which {product} does not have "
                                 f"(its classes: {', '.join(names)})")
        for value, name in mapping.items():
            truth[known & (ref == value)] = names.index(name)
    scored = (truth >= 0) & (pred >= 0)
    if not scored.any():
        raise ReferenceScoreError(f"{reference}: no pixel of the reference (mapped to a class) meets a mapped pixel of "
                             f"{product}")
    cm = confusion_counts(pred, truth, scored, len(names))
    per = dict(zip(names, scores_from_counts(cm), strict=True))
    ious = [v["iou"] for v in per.values() if v["support"] > 0 and np.isfinite(v["iou"])]
    mean_iou = float(np.mean(ious)) if ious else float("nan")
    return ReferenceScore(names, cm, per, float(np.trace(cm) / cm.sum()), mean_iou, int(scored.sum()), kind)


__all__ = ["ReferenceScoreError", "ReferenceScore", "confusion_counts", "parse_reference_classes", "score_product",
           "scores_from_counts"]
