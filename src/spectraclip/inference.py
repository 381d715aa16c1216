"""Encoding images and text with a `SpectralCLIP`: batched loading, zero-shot class scores, text search.

Items (raster files, multi-file layout items, Samples) are read and prepared in DataLoader workers by the
model's picklable `Preprocessor`, for one input group or several. Bad inputs are skipped and reported;
programming errors stop the run. Encoding runs under `torch.inference_mode`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from spectraclip.bands import BandSet
from spectraclip.errors import InputError
from spectraclip.io.items import FileItem, as_items, item_ids  # noqa: F401 - item_ids: re-exported
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
        """Embeddings-table columns (path, band names, size, CRS, transform, bounds, centre lon/lat, the groups
        used, the bands filled, the product id of scene windows, the share of nodata pixels filled when any) and
        the Major TOM ones (WGS84 `geometry`
        footprint, centre_lat/lon, utm_crs, pixel_bbox, timestamp)."""
        from spectraclip.geo import major_tom_columns

        keys = ["path", "bands", "height", "width", "crs", "transform", "bounds", "lon", "lat", "filled_bands",
                "groups"]
        cols: dict[str, list[Any]] = {k: [m.get(k) for m in self.samples_meta] for k in keys}
        for key in ("sources", "product_id", "nodata_fraction"):  # multi-file items; scene windows (their product);
            # the share of nodata pixels filled under --nodata fill
            if any(m.get(key) for m in self.samples_meta):
                cols[key] = [m.get(key) for m in self.samples_meta]
        cols.update(major_tom_columns(self.samples_meta))
        labels = [m.get("labels") for m in self.samples_meta]
        if any(lbl is not None for lbl in labels):
            cols["labels"] = [list(lbl) if lbl is not None else None for lbl in labels]
        return cols


def georef_meta(sample: Sample) -> dict[str, Any]:
    """Georeference columns of a sample: CRS, affine transform, bounds and the centre in lon/lat (derived by
    `geo.native_bounds` and `geo.footprint_centre`)."""
    from spectraclip.geo import TIME_KEYS, footprint_centre, native_bounds

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
        meta["bounds"] = native_bounds(sample.transform, h, w)
        meta["lon"], meta["lat"] = footprint_centre(sample.crs, meta["bounds"]) or (None, None)
    if "labels" in sample.meta:
        meta["labels"] = sample.meta["labels"]
    # what the Major TOM columns need (geo.major_tom_columns): the acquisition time, the window of a product
    for key in (*TIME_KEYS, "window", "product_id"):
        if sample.meta.get(key) is not None:
            meta[key] = sample.meta[key]
    return meta


class _EncodeDataset(Dataset):
    """Reads items (`io.items.Item`: files, layout items, scene windows, Samples; each `read()`s a Sample) and
    prepares them for the model. Input errors
    (a bad raster, band, nodata) become per-item records the caller reports and skips; anything else is a
    programming error and stops the run."""

    def __init__(self, items: Sequence[Any], ids: Sequence[str], prepare: Callable[[Sample], Any],
                 bands: BandSet | None, nodata: str, radiometry: Any = None) -> None:
        self.items, self.ids, self.prepare = items, ids, prepare
        self.bands, self.nodata, self.radiometry = bands, nodata, radiometry

    def __len__(self) -> int:
        return len(self.items)

    def with_items(self, items: Sequence[Any], ids: Sequence[str]) -> _EncodeDataset:
        """The same read + prepare step over other items (a Ray task's batch of rows)."""
        return _EncodeDataset(items, ids, self.prepare, self.bands, self.nodata, self.radiometry)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name, item = self.ids[i], None
        try:
            item = self.items[i]  # reading a dataset's item may itself fail on bad input
            sample = item.read(bands=self.bands, nodata=self.nodata, radiometry=self.radiometry)
            prepared = self.prepare(sample)
        except InputError as exc:
            where = str(item) if isinstance(item, FileItem) else name  # a file is named by its path
            return {"id": where, "input": None, "meta": None, "error": f"{type(exc).__name__}: {exc}"}
        meta = georef_meta(sample)
        meta["filled_bands"] = ",".join(prepared.filled)
        meta["groups"] = ",".join(prepared.x)
        if sample.meta.get("nodata_fraction") and sample.meta.get("nodata_policy") == "fill":
            meta["nodata_fraction"], meta["nodata_policy"] = float(sample.meta["nodata_fraction"]), "fill"
        if sample.meta.get("sources"):  # a multi-file item: which file each modality came from
            meta["sources"] = json.dumps({m: str(v) for m, v in sample.meta["sources"].items() if v})
        return {"id": name if isinstance(item, FileItem) else sample.id, "input": prepared, "meta": meta,
                "error": None}


class LazySubset:
    """A lazy view of some indices of a dataset (nothing is read until asked)."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


class _Collate:
    """Stack prepared items per input group (picklable for DataLoader workers)."""

    def __init__(self, groups: Sequence[str]) -> None:
        self.groups = list(groups)

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        from spectraclip.models.inputs import collate_inputs

        ok = [b for b in batch if b["error"] is None]
        x, present = collate_inputs([b["input"] for b in ok], self.groups) if ok else ({}, {})
        return {"ids": [b["id"] for b in ok], "x": x, "present": present, "meta": [b["meta"] for b in ok],
                "failed": [(b["id"], b["error"]) for b in batch if b["error"] is not None]}


def list_items(items: Sequence[Any] | Any, skip_ids: set[str] | None = None) -> tuple[Any, list[str]]:
    """The items to encode (`io.items.Item`s: plain paths wrapped as `FileItem`s here, once) and their ids (paths
    relative to their common folder; an item's own `id`; a dataset's item list), without those in `skip_ids`.
    Every engine (local, Ray, shard i/n) lists items here."""
    if isinstance(items, (list, tuple)) or getattr(type(items), "__getitem__", None) is None:  # a listing
        items = as_items(list(items))
        ids = [str(x.id) for x in items]
    else:  # a dataset of Samples: ids from its item list when it has one
        listed = getattr(items, "items", None)
        ids = [str(getattr(x, "id", x)) for x in listed] if listed is not None and len(listed) == len(items) else \
            [str(i) for i in range(len(items))]
    if skip_ids:
        keep = [i for i, id_ in enumerate(ids) if id_ not in skip_ids]
        items = [items[i] for i in keep] if isinstance(items, (list, tuple)) else LazySubset(items, keep)
        ids = [ids[i] for i in keep]
    return items, ids


def prepare_dataset(model: SpectralCLIP, items: Sequence[Any], ids: Sequence[str], *,
                    bands: BandSet | str | None = None, nodata: str = "error", radiometry: Any = None) -> Dataset:
    """A map-style dataset whose `[i]` reads item `i` and prepares it for `model`: a record with its `id`,
    `input`, georeference `meta` and `error` (an InputError message, the item skipped). Picklable, so
    DataLoader workers and Ray tasks run the same read + preprocess step."""
    return _EncodeDataset(items, ids, model.preprocessor(), BandSet.parse(bands) if bands else None, nodata,
                          radiometry)


def collate_prepared(model: SpectralCLIP, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch of prepared records: inputs stacked per input group, their metas, and the failures."""
    return _Collate(model.groups)(records)


def encode_batch(model: SpectralCLIP, encoder: Any, batch: dict[str, Any],
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Embeddings `[n, D]` of a collated batch with `encoder` (`models.precision.prepare_for_inference`)."""
    if not batch["ids"]:
        return np.zeros((0, model.embed_dim), np.float32)
    device = torch.device(device)
    with torch.inference_mode():
        x = {g: t.to(device, torch.float32) for g, t in batch["x"].items()}
        present = {g: p.to(device) for g, p in batch["present"].items()}
        return encoder.encode_image(x, present=present).cpu().numpy()


def iter_encoded_batches(model: SpectralCLIP, items: Sequence[Any], *, bands: BandSet | str | None = None,
                         nodata: str = "error", batch_size: int | None = 32, num_workers: int = 0,
                         device: str | torch.device = "cpu", progress: bool = True,
                         skip_ids: set[str] | None = None, radiometry: Any = None, precision: str | None = "fp32"):
    """Yield `(ids, vectors, metas, failed)` per batch. `items` are raster paths, layout items (multi-file
    samples), Samples or a dataset of Samples; one path for one or many input groups. `precision`: fp32 (the
    library default), bf16, fp16, int8, or auto/None (the device's fastest mode that passes the accuracy gate,
    the CLI default; models/precision.py);
    `batch_size=None` fits it to the device (models/batching.py)."""
    from spectraclip.models.batching import choose_batch_size

    device = torch.device(device)
    items, ids = list_items(items, skip_ids)
    ds = prepare_dataset(model, items, ids, bands=bands, nodata=nodata, radiometry=radiometry)
    batch_size = batch_size or choose_batch_size(model, device, len(ds))
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=_Collate(model.groups),
                        persistent_workers=False, prefetch_factor=2 if num_workers else None)
    from spectraclip.models.precision import prepare_for_inference

    batches = iter(loader)  # loader workers start reading now, while the encoder is prepared (int8: compiled)
    encoder = prepare_for_inference(model, precision, device, batch_size)
    from tqdm.auto import tqdm

    with tqdm(total=len(ds), desc="encoding images", unit="img", disable=not progress) as bar:
        for batch in batches:
            vectors = encode_batch(model, encoder, batch, device)
            bar.update(len(batch["ids"]) + len(batch["failed"]))
            yield batch["ids"], vectors, batch["meta"], batch["failed"]


def encode_images(model: SpectralCLIP, items: Sequence[Any], *, bands: BandSet | str | None = None,
                  nodata: str = "error", batch_size: int | None = 32, num_workers: int = 0,
                  device: str | torch.device = "cpu", progress: bool = True,
                  on_error: ErrorCallback | None = None, radiometry: Any = None,
                  precision: str | None = "fp32") -> EncodedImages:
    """Encode raster paths, layout items or a dataset of Samples into L2-normalised embeddings, skipping
    bad inputs (reported to `on_error(where, message)`)."""
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    for b_ids, b_vec, b_meta, b_failed in iter_encoded_batches(
        model, items, bands=bands, nodata=nodata, batch_size=batch_size, num_workers=num_workers,
        device=device, progress=progress, radiometry=radiometry, precision=precision,
    ):
        ids += b_ids
        if len(b_ids):
            vecs.append(b_vec)
        metas += b_meta
        for where, msg in b_failed:
            failed.append((where, msg))
            (on_error or _log_error)(where, msg)
    vectors = np.concatenate(vecs) if vecs else np.zeros((0, model.embed_dim), np.float32)
    return EncodedImages(ids, vectors, metas, failed)


def _log_error(where: str, msg: str) -> None:
    log.warning("skipped %s: %s", where, msg)


def table_metadata(model: SpectralCLIP, precision: str, metadata: dict[str, Any] | None = None,
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """The metadata of an embeddings table made by `model`: bands, dimension (known up front, so a run where
    every item fails still writes a valid empty table), groups, precision (with, for a reduced one, the accuracy
    gate's result on this model and for int8 the calibration fingerprint) and the identity fingerprints."""
    from spectraclip.embeddings import identity_metadata
    from spectraclip.models.precision import precision_metadata

    return {"bands": ",".join(model.bands.names), "dim": model.embed_dim, "groups": model.groups,
            "large_rasters": "resize" if model.preprocessor().allow_resize else "error", "precision": precision,
            **precision_metadata(model, precision, device), **identity_metadata(model), **(metadata or {})}


def embed_to_table(model: SpectralCLIP, items: Sequence[Any], output: str | Path, *,
                   bands: BandSet | str | None = None, nodata: str = "error", batch_size: int | None = 32,
                   num_workers: int = 0, device: str | torch.device = "cpu", progress: bool = True,
                   metadata: dict[str, Any] | None = None, on_error: ErrorCallback | None = None,
                   radiometry: Any = None, precision: str | None = "fp32", skip_ids: set[str] | None = None):
    """Embed items (raster paths, or a layout dataset of multi-file samples) into an embeddings table,
    resumably: finished batches are kept across restarts. `skip_ids` leaves items out by id (those of other
    shards: ids are computed on the whole listing, so a shard's ids match the single-process table's).
    Returns (table, failed, number kept from before)."""
    from spectraclip.embeddings import PartWriter
    from spectraclip.models.batching import choose_batch_size
    from spectraclip.models.precision import resolve_precision

    batch_size = batch_size or choose_batch_size(model, device, len(items) if isinstance(items, Sized) else None)
    precision = resolve_precision(precision, device, batch_size, model=model)
    writer = PartWriter(output, metadata=table_metadata(model, precision, metadata, device))
    failed: list[tuple[str, str]] = []
    items = list(items) if isinstance(items, (list, tuple)) else items
    before = set(writer.done_ids)
    for ids, vecs, metas, b_failed in iter_encoded_batches(
        model, items, bands=bands, nodata=nodata, batch_size=batch_size, num_workers=num_workers,
        device=device, progress=progress, skip_ids=writer.done_ids | set(skip_ids or ()), radiometry=radiometry,
        precision=precision,
    ):
        if ids:
            writer.write(ids, vecs, EncodedImages(ids, vecs, metas).columns())
        for where, msg in b_failed:
            failed.append((where, msg))
            (on_error or _log_error)(where, msg)
    return writer.finish(), failed, len(before)
