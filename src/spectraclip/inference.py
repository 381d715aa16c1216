"""Encoding images and text with a `SpectralCLIP`: batched loading, zero-shot class scores, text search.

Images are read and preprocessed in DataLoader workers; bad items are skipped and reported,
never fatal. Encoding runs under `torch.inference_mode` in fp32 on CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from spectraclip.bands import BandSet
from spectraclip.io.sample import Sample

if TYPE_CHECKING:
    from spectraclip.models import SpectralCLIP

log = logging.getLogger(__name__)

ErrorCallback = Callable[[str, str], None]


@dataclass
class EncodedImages:
    """L2-normalised image embeddings with the ids and georeference of the items that succeeded."""

    ids: list[str]
    vectors: np.ndarray
    samples_meta: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def columns(self) -> dict[str, list[Any]]:
        """Embeddings-table columns (path, band names, size, CRS, transform, bounds, centre lon/lat)."""
        keys = ["path", "bands", "height", "width", "crs", "transform", "bounds", "lon", "lat"]
        cols: dict[str, list[Any]] = {k: [m.get(k) for m in self.samples_meta] for k in keys}
        labels = [m.get("labels") for m in self.samples_meta]
        if any(lbl is not None for lbl in labels):
            cols["labels"] = [list(lbl) if lbl is not None else None for lbl in labels]
        return cols


def item_ids(paths: Sequence[str | Path]) -> list[str]:
    """Stable ids for raster items: the path relative to their common folder, without extension."""
    paths = [Path(p).resolve() for p in paths]
    if not paths:
        return []
    if len(paths) == 1:
        return [_strip_suffix(paths[0].name)]
    root = Path(os.path.commonpath([str(p) for p in paths]))
    return [_strip_suffix(str(p.relative_to(root))) for p in paths]


def _strip_suffix(name: str) -> str:
    for suffix in (".tiff", ".tif", ".npz", ".npy", ".jp2"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def georef_meta(sample: Sample) -> dict[str, Any]:
    """Georeference columns of a sample: CRS, affine transform, bounds and the centre in lon/lat."""
    _, h, w = sample.pixels.shape
    meta: dict[str, Any] = {
        "path": str(Path(sample.path).resolve()) if sample.path else None,
        "bands": ",".join(sample.bands.names),
        "height": int(h),
        "width": int(w),
        "crs": sample.crs,
        "transform": list(sample.transform) if sample.transform else None,
        "bounds": None,
        "lon": None,
        "lat": None,
    }
    if sample.transform and sample.crs:
        from rasterio.transform import Affine, array_bounds
        from rasterio.warp import transform as warp

        aff = Affine(*sample.transform[:6])
        left, bottom, right, top = array_bounds(h, w, aff)  # west, south, east, north
        meta["bounds"] = [left, bottom, right, top]
        try:
            xs, ys = warp(sample.crs, "EPSG:4326", [(left + right) / 2], [(bottom + top) / 2])
            meta["lon"], meta["lat"] = float(xs[0]), float(ys[0])
        except Exception as exc:  # an exotic CRS: keep the native georeference only
            log.debug("no lon/lat for %s: %s", sample.path, exc)
    if "labels" in sample.meta:
        meta["labels"] = sample.meta["labels"]
    return meta


class _EncodeDataset(Dataset):
    """Reads (paths) or fetches (datasets) samples and preprocesses them for the model; errors become records."""

    def __init__(self, items: Sequence[Any], ids: Sequence[str] | None, preprocess: Callable[[Sample], torch.Tensor],
                 bands: BandSet | None, nodata: str) -> None:
        self.items = items
        self.ids = ids
        self.preprocess = preprocess
        self.bands = bands
        self.nodata = nodata

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name = self.ids[i] if self.ids is not None else str(i)
        try:
            if self.ids is not None:  # a path
                from spectraclip.io.readers import read_sample

                sample = read_sample(self.items[i], self.bands, nodata=self.nodata)
            else:
                sample = self.items[i]
                name = sample.id
            pixels = self.preprocess(sample)
            return {"id": name, "pixels": pixels, "meta": georef_meta(sample), "error": None}
        except Exception as exc:  # reported and skipped by the caller
            where = str(self.items[i]) if self.ids is not None else name
            return {"id": where, "pixels": None, "meta": None, "error": f"{type(exc).__name__}: {exc}"}


def _collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [b for b in batch if b["error"] is None]
    return {
        "ids": [b["id"] for b in ok],
        "pixels": torch.stack([b["pixels"] for b in ok]) if ok else None,
        "meta": [b["meta"] for b in ok],
        "failed": [(b["id"], b["error"]) for b in batch if b["error"] is not None],
    }


def iter_encoded_batches(model: SpectralCLIP, items: Sequence[Any], *, bands: BandSet | str | None = None,
                         nodata: str = "error", batch_size: int = 32, num_workers: int = 0,
                         device: str | torch.device = "cpu", progress: bool = True,
                         skip_ids: set[str] | None = None):
    """Yield `(ids, vectors, metas, failed)` per batch; `items` are raster paths or a dataset of Samples."""
    device = torch.device(device)
    is_paths = isinstance(items, (list, tuple)) and all(isinstance(x, (str, Path)) for x in items)
    ids = item_ids(items) if is_paths else None
    if ids is not None and skip_ids:
        keep = [i for i, id_ in enumerate(ids) if id_ not in skip_ids]
        items = [items[i] for i in keep]
        ids = [ids[i] for i in keep]
    if ids is not None:
        items = [str(p) for p in items]
    ds = _EncodeDataset(items, ids, model.preprocess, BandSet.parse(bands) if bands else None, nodata)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate,
                        persistent_workers=False, prefetch_factor=2 if num_workers else None)
    model.eval().to(device)
    from tqdm.auto import tqdm

    with torch.inference_mode(), tqdm(total=len(ds), desc="encoding images", unit="img",
                                      disable=not progress) as bar:
        for batch in loader:
            if batch["pixels"] is not None:
                feats = model.encode_image(batch["pixels"].to(device, torch.float32), normalize=True)
                vectors = feats.float().cpu().numpy()
            else:
                vectors = np.zeros((0, 0), np.float32)
            bar.update(len(batch["ids"]) + len(batch["failed"]))
            yield batch["ids"], vectors, batch["meta"], batch["failed"]


def encode_images(model: SpectralCLIP, items: Sequence[Any], *, bands: BandSet | str | None = None,
                  nodata: str = "error", batch_size: int = 32, num_workers: int = 0,
                  device: str | torch.device = "cpu", progress: bool = True,
                  on_error: ErrorCallback | None = None) -> EncodedImages:
    """Encode raster paths (or a dataset of Samples) into L2-normalised embeddings, skipping bad items."""
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    for b_ids, b_vec, b_meta, b_failed in iter_encoded_batches(
        model, items, bands=bands, nodata=nodata, batch_size=batch_size, num_workers=num_workers,
        device=device, progress=progress,
    ):
        ids += b_ids
        if len(b_ids):
            vecs.append(b_vec)
        metas += b_meta
        for where, msg in b_failed:
            failed.append((where, msg))
            (on_error or _log_error)(where, msg)
    dim = vecs[0].shape[1] if vecs else 0
    vectors = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
    return EncodedImages(ids, vectors, metas, failed)


def _log_error(where: str, msg: str) -> None:
    log.warning("skipped %s: %s", where, msg)


def encode_texts(model: SpectralCLIP, texts: Sequence[str], *, batch_size: int = 64,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """L2-normalised text embeddings `[len(texts), D]`."""
    device = torch.device(device)
    model.eval().to(device)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            tokens = model.tokenize(list(texts[i: i + batch_size])).to(device)
            out.append(model.encode_text(tokens, normalize=True).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass
class SearchHit:
    rank: int
    id: str
    score: float
    path: str | None


def text_search(model: SpectralCLIP, image_vectors: np.ndarray, ids: Sequence[str], queries: Sequence[str],
                top_k: int = 10, paths: Sequence[str | None] | None = None,
                device: str | torch.device = "cpu") -> dict[str, list[SearchHit]]:
    """Rank images by cosine similarity to each free-text query; returns the top-k hits per query."""
    q = encode_texts(model, queries, device=device)
    sims = q @ image_vectors.T
    k = min(top_k, sims.shape[1])
    out: dict[str, list[SearchHit]] = {}
    for qi, query in enumerate(queries):
        order = np.argsort(-sims[qi], kind="stable")[:k]
        out[query] = [SearchHit(r + 1, ids[j], float(sims[qi, j]), paths[j] if paths else None)
                      for r, j in enumerate(order)]
    return out


def embed_to_table(model: SpectralCLIP, paths: Sequence[str | Path], output: str | Path, *,
                   bands: BandSet | str | None = None, nodata: str = "error", batch_size: int = 32,
                   num_workers: int = 0, device: str | torch.device = "cpu", progress: bool = True,
                   metadata: dict[str, Any] | None = None,
                   on_error: ErrorCallback | None = None):
    """Embed raster items into an embeddings table, resumably: finished batches are kept across restarts."""
    from spectraclip.embeddings import PartWriter

    # the dimension is known up front, so a run where every item fails still writes a valid (empty) table
    meta = {"bands": ",".join(model.bands.names), "dim": model.embed_dim, **(metadata or {})}
    writer = PartWriter(output, metadata=meta)
    failed: list[tuple[str, str]] = []
    skipped = len(writer.done_ids)
    for ids, vecs, metas, b_failed in iter_encoded_batches(
        model, list(paths), bands=bands, nodata=nodata, batch_size=batch_size, num_workers=num_workers,
        device=device, progress=progress, skip_ids=writer.done_ids,
    ):
        if ids:
            writer.write(ids, vecs, EncodedImages(ids, vecs, metas).columns())
        for where, msg in b_failed:
            failed.append((where, msg))
            (on_error or _log_error)(where, msg)
    return writer.finish(), failed, skipped
