"""Major TOM Core shards as items, and the Major TOM embedding layout (github.com/ESA-PhiLab/Major-TOM).

A Core shard (e.g. Core-S2L2A `images/part_NNNNN.parquet`) holds one row per grid cell and product: `product_id`,
`grid_cell`, `product_datetime`, a PNG `thumbnail`, and one GeoTIFF file (bytes) per band column (`B01` … `B12`,
`B8A`, `cloud_mask`), each band at its native resolution. Its `metadata.parquet` adds `grid_row_u`, `grid_col_r`,
`timestamp`, `centre_lat/lon`, `crs`, `parquet_url`, `parquet_row`. A row is read (only the band columns asked
for, one row group) and decoded when the encode path calls `item.read`, so shards stream through DataLoader
workers; a shard may be a local path or a URL (read through fsspec).

The published embedding datasets (Core-S2L2A-SSL4EO, Core-S2RGB-SigLIP, ...) have the columns in
`EMBEDDING_COLUMNS` (MajorTOM/embedder/MajorTOM_Embedder.py): `unique_id`, `embedding`, `timestamp`, `product_id`,
`grid_cell`, `grid_row_u`, `grid_col_r`, `geometry`, `centre_lat`, `centre_lon`, `utm_footprint`, `utm_crs`,
`pixel_bbox`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.bands import BandSet
from spectraclip.errors import SpectraclipError
from spectraclip.io.sample import RasterError, Sample

EMBEDDING_COLUMNS = ("unique_id", "embedding", "timestamp", "product_id", "grid_cell", "grid_row_u", "grid_col_r",
                     "geometry", "centre_lat", "centre_lon", "utm_footprint", "utm_crs", "pixel_bbox")
_NOT_BANDS = {"product_id", "grid_cell", "product_datetime", "thumbnail", "cloud_mask", "timestamp"}


class MajorTomError(SpectraclipError, ValueError):
    """A Major TOM file that is not in the expected layout; the message names it."""


def parse_grid_cell(cell: str) -> tuple[int, int]:
    """`"433U_1040R"` → (433, 1040); D (down) and L (left) are negative."""
    m = re.fullmatch(r"(\d+)([UD])_(\d+)([LR])", str(cell))
    if not m:
        raise MajorTomError(f"grid cell {cell!r} is not of the form <row>U|D_<col>L|R")
    row = int(m.group(1)) * (1 if m.group(2) == "U" else -1)
    col = int(m.group(3)) * (1 if m.group(4) == "R" else -1)
    return row, col


def _open(url: str):
    if "://" in url and not url.startswith("file://"):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url.removeprefix("file://"), "rb")


def decode_tif(data: bytes) -> tuple[np.ndarray, str | None, tuple[float, ...]]:
    from rasterio.io import MemoryFile

    with MemoryFile(data) as mem, mem.open(driver="GTiff") as f:
        return f.read(1), (f.crs.to_string() if f.crs else None), tuple(f.transform)[:6]


@dataclass(frozen=True)
class MajorTomItem:
    """One row of a Core shard (the item protocol). `meta`: product_id, grid_cell, grid_row_u/col_r, timestamp."""

    shard: str
    row: int
    row_group: int
    offset: int  # row within its row group
    id: str
    band_names: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __str__(self) -> str:
        return f"{self.shard}[{self.row}]"

    def read(self, *, bands: BandSet | None = None, nodata: str = "error", radiometry: Any = None) -> Sample:
        import pyarrow.parquet as pq

        names = list(bands.names) if bands is not None else list(self.band_names)
        missing = [b for b in names if b not in self.band_names]
        if missing:
            have = ", ".join(self.band_names)
            raise RasterError(str(self), f"band(s) {', '.join(missing)} not in the shard ({have})")
        with _open(self.shard) as fh:
            rg = pq.ParquetFile(fh).read_row_group(self.row_group, columns=names)
        layers, crs, transform = [], None, None
        for b in names:
            arr, c, t = decode_tif(rg.column(b)[self.offset].as_py())
            layers.append(arr)
            if transform is None or abs(t[0]) < abs(transform[0]):  # the finest band gives the grid
                crs, transform = c, t
        h = max(a.shape[0] for a in layers)
        w = max(a.shape[1] for a in layers)
        out = np.empty((len(layers), h, w), np.float32)
        for i, a in enumerate(layers):  # nearest-neighbour upsampling, as the published embedder does
            if a.shape != (h, w):
                yi = (np.arange(h) * a.shape[0] // h)[:, None]
                xi = (np.arange(w) * a.shape[1] // w)[None, :]
                a = a[yi, xi]
            out[i] = a
        meta = {"source": "major-tom", **self.meta}
        return Sample(out, BandSet(tuple(names)), self.id, self.shard, crs, transform, meta)


def _metadata_by_key(metadata: str | Path | None) -> dict[tuple[str, str], dict[str, Any]]:
    if metadata is None:
        return {}
    import pyarrow.parquet as pq

    t = pq.read_table(metadata, columns=None)
    out = {}
    for rec in t.to_pylist():
        out[(str(rec.get("grid_cell")), str(rec.get("product_id")))] = rec
    return out


def core_items(shards: list[str] | str, metadata: str | Path | None = None) -> list[MajorTomItem]:
    """Items of Core shards (paths or URLs); only the small columns are read here. `metadata` (the dataset's
    `metadata.parquet`) gives each row its timestamp and grid row/column; without it they come from the cell name
    and `product_datetime`."""
    import pyarrow.parquet as pq

    shards = [shards] if isinstance(shards, str) else list(shards)
    meta = _metadata_by_key(metadata)
    items: list[MajorTomItem] = []
    for shard in shards:
        with _open(shard) as fh:
            pf = pq.ParquetFile(fh)
            cols = pf.schema_arrow.names
            for need in ("product_id", "grid_cell"):
                if need not in cols:
                    raise MajorTomError(f"{shard}: column {need!r} missing; not a Major TOM Core shard")
            band_names = tuple(c for c in cols if c not in _NOT_BANDS and re.fullmatch(r"B\d\d|B8A|v[vh]", c))
            row = 0
            for g in range(pf.num_row_groups):
                small = pf.read_row_group(g, columns=[c for c in ("product_id", "grid_cell", "product_datetime")
                                                      if c in cols]).to_pylist()
                for off, rec in enumerate(small):
                    cell, pid = str(rec["grid_cell"]), str(rec["product_id"])
                    m = meta.get((cell, pid), {})
                    r, c = (m["grid_row_u"], m["grid_col_r"]) if "grid_row_u" in m else parse_grid_cell(cell)
                    ts = m.get("timestamp") or rec.get("product_datetime")
                    items.append(MajorTomItem(shard, row, g, off, f"{cell}_{pid}", band_names,
                                              {"product_id": pid, "grid_cell": cell, "grid_row_u": int(r),
                                               "grid_col_r": int(c), "timestamp": str(ts) if ts else None}))
                    row += 1
    return items


def is_published_embeddings(path: str | Path) -> bool:
    """True for a Parquet file in the published Major TOM embedding layout (`unique_id`, `embedding`) that is not
    one of our tables (no `vector`); reads the schema only."""
    import pyarrow.parquet as pq

    p = Path(path)
    if p.suffix.lower() != ".parquet" or not p.is_file():
        return False
    try:
        names = set(pq.read_schema(p).names)
    except Exception:  # noqa: BLE001 - unreadable: not such a file
        return False
    return {"unique_id", "embedding"} <= names and "vector" not in names


PUBLISHED_HINT = ("it carries no model fingerprint, so nothing says which model made it; name that model and say "
                  "you vouch for it: --model NAME --published")


def read_published_columns(path: str | Path) -> dict[str, list[Any]]:
    """The descriptive columns of a published embedding file (geometry as WKB, timestamp, centre, grid, product),
    those present, in row order: what an index keeps beside each vector."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    keep = [c for c in EMBEDDING_COLUMNS if c in names and c not in ("embedding", "unique_id")]
    t = pq.read_table(path, columns=keep)
    return {c: t.column(c).to_pylist() for c in keep}


def read_published_embeddings(path: str | Path, model: str) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """(ids, vectors, metadata) of a published Major TOM embedding file. These files carry no fingerprint of ours,
    so the model that made them must be named (`model`); the metadata records it as declared, not verified."""
    import pyarrow.parquet as pq

    if not model:
        raise MajorTomError(f"{path}: a published Major TOM embedding file needs the model named explicitly "
                            "(--major-tom-model NAME); it carries no model fingerprint")
    t = pq.read_table(path)
    missing = [c for c in ("unique_id", "embedding") if c not in t.column_names]
    if missing:
        raise MajorTomError(f"{path}: column(s) {', '.join(missing)} missing; not a Major TOM embedding file")
    vectors = np.asarray(t.column("embedding").to_pylist(), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1)
    ids = [str(x) for x in t.column("unique_id").to_pylist()]
    meta = {"model_declared": model, "source_format": "major-tom-embeddings", "source": str(path)}
    return ids, vectors, meta


__all__ = ["EMBEDDING_COLUMNS", "PUBLISHED_HINT", "MajorTomError", "MajorTomItem", "core_items", "decode_tif",
           "is_published_embeddings", "parse_grid_cell", "read_published_columns", "read_published_embeddings"]
