"""The workspace: the map page's endpoints (layers as XYZ tiles, footprints, what is at a place) and the
labelling loop (label, learn, rank, export), as library functions and as routes added to the search service.

Library: `learn(index, store, target=..., bbox=...)` -> `LearnResult`; `export_labels(index, store, path)`
(GeoParquet or GeoJSON by suffix); `save_probe(result, index, path)` (a window probe for `map --probe`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.errors import SpectraclipError
from spectraclip.index.filters import Filters
from spectraclip.index.store import SearchIndex
from spectraclip.probe.active import LinearProbe, Ranking, fit_linear_probe, rank_vectors, scan_copy
from spectraclip.serve.labels import NEGATIVE, POSITIVE, LabelStore, labels_for

MAX_FOOTPRINTS = 5000


class WorkspaceError(SpectraclipError, ValueError):
    """A workspace request that cannot be answered (no labels, unknown target, bad bbox)."""


@dataclass
class LearnResult:
    """A fitted probe and the index (or a bbox of it) ranked by it."""

    target: str
    probe: LinearProbe
    ranking: Ranking
    ids: list[str]  # of the index, to name ranking rows

    def to_dict(self, k: int | None = None) -> dict[str, Any]:
        r = self.ranking
        top = [{"id": self.ids[int(i)], "p": round(float(p), 5)} for i, p in zip(r.top_rows, r.top_scores, strict=True)]
        unc = [{"id": self.ids[int(i)], "p": round(float(p), 5)}
               for i, p in zip(r.uncertain_rows, r.uncertain_scores, strict=True)]
        return {"target": self.target, "classes": self.probe.classes,
                "positive": self.probe.classes[self.probe.positive],
                "counts": self.probe.counts, "n_train": self.probe.n_train, "cv_accuracy": self.probe.cv_accuracy,
                "cv_folds": self.probe.cv_folds, "scored": r.scored, "top": top[:k] if k else top, "uncertain": unc}


def _ids(index: SearchIndex) -> list[str]:
    ids = getattr(index, "_workspace_ids", None)
    if ids is None:
        ids = index.meta.column("id").to_pylist()
        index._workspace_ids = ids  # type: ignore[attr-defined]
    return ids


_SCAN_LOCK = threading.Lock()


def ranking_copy(index: SearchIndex) -> Any:
    """The index's float16 scan copy for ranking (`probe.active.scan_copy`; None for small indexes), built once
    per loaded index: the service starts building it in the background when labelling is on, so the first
    "learn" does not pay for it; concurrent callers wait for the one build."""
    with _SCAN_LOCK:
        if not hasattr(index, "_workspace_scan"):
            index._workspace_scan = scan_copy(index.vectors)  # type: ignore[attr-defined]
        return index._workspace_scan  # type: ignore[attr-defined]


def learn(index: SearchIndex, store: LabelStore, *, target: str = "", bbox: tuple[float, ...] | None = None,
          k: int = 50, n_uncertain: int = 20, seed: int = 0, prior: np.ndarray | None = None) -> LearnResult:
    """Fit a probe on the labelled items' embeddings (positive vs negative for `target`, or the class names when
    `target` is empty), cross-validate it and rank the index (only items whose footprint meets `bbox`, when
    given), leaving the labelled items out. `prior`: the target's text embedding (the service encodes it when it
    has a model), the anchor of the probe (`probe.active.fit_linear_probe`)."""
    items, labels = labels_for(store, target)
    if not items:
        raise WorkspaceError(f"no labels for target {target!r}" if target else "no class-name labels")
    rows = [index.row_of(i) for i in items]
    vecs = np.stack([index.row_vector(r) for r in rows])
    probe = fit_linear_probe(vecs, labels, positive=POSITIVE if target else None, seed=seed,
                             prior=prior if target else None)
    mask = index.mask(Filters(bbox=tuple(bbox))) if bbox else None
    sel = None if mask is None else np.flatnonzero(mask)
    ranking = rank_vectors(probe, index.vectors, sel, k=k, n_uncertain=n_uncertain, exclude=rows,
                           scan=ranking_copy(index))
    return LearnResult(target, probe, ranking, _ids(index))


def save_probe(result: LearnResult, index: SearchIndex, path: str | Path) -> Path:
    """The probe as a `spectraclip.window-probe` JSON (with the index's fingerprints) for `map --probe`, written by
    the window probe's own writer (`apps.probe_head.WindowProbe.save`)."""
    from spectraclip.apps.probe_head import WindowProbe

    fp = index.fingerprints
    probe = result.probe
    classes = list(probe.classes)
    if result.target:  # name the classes after the target so a map says "solar farm" / "not solar farm"
        classes = [f"not {result.target}" if c == NEGATIVE else result.target if c == POSITIVE else c
                   for c in classes]
    return WindowProbe(classes, probe.coef, probe.intercept, fp.to_metadata() if fp else {},
                       probe.n_train).save(path)


def labels_frame(index: SearchIndex, store: LabelStore, result: LearnResult | None = None):
    """A GeoDataFrame (WGS84) of every label with its item's footprint, plus the probe's probability of its
    positive class for each labelled item and the ranked candidates (`kind` = label | candidate)."""
    import geopandas as gpd
    from shapely import wkb

    rows: list[dict[str, Any]] = []
    for lab in store.all():
        rows.append({"kind": "label", **lab.to_dict()})
    if result is not None:
        for i, p in zip(result.ranking.top_rows, result.ranking.top_scores, strict=True):
            rows.append({"kind": "candidate", "item_id": result.ids[int(i)], "label": None,
                         "target": result.target, "p_positive": float(p)})
    geoms = []
    has_geom = "geometry" in index.meta.column_names
    pos_of = {}
    if result is not None:
        labelled = [r for r in rows if r["kind"] == "label" and r["item_id"] in index_ids(index)]
        if labelled:
            vec = np.stack([index.row_vector(index.row_of(r["item_id"])) for r in labelled])
            pos_of = dict(zip((r["item_id"] for r in labelled),
                              result.probe.proba(vec)[:, result.probe.positive].tolist(), strict=True))
    for r in rows:
        if r["kind"] == "label" and result is not None:
            r["p_positive"] = pos_of.get(r["item_id"])
        g = None
        if has_geom and r["item_id"] in index_ids(index):
            raw = index.meta.column("geometry")[index.row_of(r["item_id"])].as_py()
            g = wkb.loads(bytes(raw)) if raw is not None else None
        geoms.append(g)
    frame = gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")
    if "created" in frame:
        frame["created"] = frame["created"].astype("float64")
    return frame


def index_ids(index: SearchIndex) -> set[str]:
    s = getattr(index, "_workspace_idset", None)
    if s is None:
        s = set(_ids(index))
        index._workspace_idset = s  # type: ignore[attr-defined]
    return s


def export_labels(index: SearchIndex, store: LabelStore, path: str | Path, result: LearnResult | None = None) -> Path:
    """Write labels (+ the probe's predictions when `result`) as GeoParquet (.parquet) or GeoJSON (.geojson)."""
    p = Path(path)
    frame = labels_frame(index, store, result)
    tmp = p.with_name(p.name + ".tmp")
    if p.suffix == ".parquet":
        frame.to_parquet(tmp)
    elif p.suffix in (".geojson", ".json"):
        tmp.write_text(frame.to_json(drop_id=True), encoding="utf-8")
    else:
        raise WorkspaceError(f"-o {p}: write .parquet (GeoParquet) or .geojson")
    tmp.replace(p)
    return p


def item_at(index: SearchIndex, lon: float, lat: float) -> str | None:
    """The item whose footprint bbox holds lon/lat (the nearest centre among several), or None."""
    cols = index.meta.column_names
    if not all(c in cols for c in ("minx", "miny", "maxx", "maxy")):
        return None
    cache = getattr(index, "_workspace_boxes", None)
    if cache is None:
        cache = np.stack([index.meta.column(c).combine_chunks().to_numpy(zero_copy_only=False).astype("float64")
                          for c in ("minx", "miny", "maxx", "maxy")], 1)
        index._workspace_boxes = cache  # type: ignore[attr-defined]
    inside = np.flatnonzero((cache[:, 0] <= lon) & (lon <= cache[:, 2]) & (cache[:, 1] <= lat) & (lat <= cache[:, 3]))
    if not len(inside):
        return None
    cx = (cache[inside, 0] + cache[inside, 2]) / 2
    cy = (cache[inside, 1] + cache[inside, 3]) / 2
    return _ids(index)[int(inside[np.argmin((cx - lon) ** 2 + (cy - lat) ** 2)])]


def footprints(index: SearchIndex, bbox: tuple[float, ...] | None = None, limit: int = MAX_FOOTPRINTS) -> dict:
    """A GeoJSON FeatureCollection of the items' footprint boxes (those meeting `bbox`), at most `limit`."""
    cols = index.meta.column_names
    if not all(c in cols for c in ("minx", "miny", "maxx", "maxy")):
        return {"type": "FeatureCollection", "features": [], "total": 0}
    mask = index.mask(Filters(bbox=tuple(bbox))) if bbox else None
    rows = np.arange(len(index)) if mask is None else np.flatnonzero(mask)
    total = len(rows)
    rows = rows[:limit]
    if getattr(index, "_workspace_boxes", None) is None:
        item_at(index, 0.0, 0.0)
    boxes = index._workspace_boxes[rows]  # type: ignore[attr-defined]
    ids = _ids(index)
    feats = []
    for r, (a, b, c, d) in zip(rows.tolist(), boxes.tolist(), strict=True):
        if a != a:
            continue
        feats.append({"type": "Feature", "id": ids[r], "properties": {"id": ids[r]},
                      "geometry": {"type": "Polygon", "coordinates": [[[a, b], [c, b], [c, d], [a, d], [a, b]]]}})
    return {"type": "FeatureCollection", "features": feats, "total": total}


__all__ = ["LearnResult", "WorkspaceError", "export_labels", "footprints", "item_at", "labels_frame", "learn",
           "save_probe"]
