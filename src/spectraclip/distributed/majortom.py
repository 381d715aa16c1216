"""`embed` over Major TOM Core shards: rows stream through the one encode path (`inference.embed_to_table`, each
row read and decoded by a DataLoader worker), and the table gets the columns of the published Major TOM embedding
datasets (`data.majortom.EMBEDDING_COLUMNS`) beside ours (`id`, `vector`, fingerprints in the metadata), so code
written for the published embeddings reads it unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np


def _utm_footprint(bounds: list[float] | None) -> str | None:
    if not bounds:
        return None
    import shapely

    return shapely.box(*bounds).wkt


def add_major_tom_columns(path: str | Path, items_meta: dict[str, dict[str, Any]]) -> None:
    """Add `unique_id`, `embedding`, `product_id`, `grid_cell`, `grid_row_u`, `grid_col_r`, `utm_footprint` to an
    embeddings table (rewritten atomically, its metadata kept)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spectraclip.io.atomic import atomic_path

    t = pq.read_table(path)
    if t.num_rows == 0 or "bounds" not in t.column_names:
        return  # nothing was encoded (every row failed): the table stays as written
    ids = [str(x) for x in t.column("id").to_pylist()]
    metas = [items_meta.get(i, {}) for i in ids]
    vec = t.column("vector")
    footprints = [_utm_footprint(b) for b in t.column("bounds").to_pylist()]
    geoms = t.column("geometry").to_pylist()
    ts = [str(x) if x is not None else None for x in t.column("timestamp").to_pylist()]
    uniq = []
    for g, stamp, m, v in zip(geoms, ts, metas, vec.to_pylist(), strict=True):
        key = f"{g!r}_{stamp}_{m.get('product_id')}_{np.asarray(v, np.float32).tobytes().hex()}"
        uniq.append(hashlib.sha256(key.encode()).hexdigest())
    extra = {
        "unique_id": pa.array(uniq, pa.string()),
        "embedding": vec,
        "product_id": pa.array([m.get("product_id") for m in metas], pa.string()),
        "grid_cell": pa.array([m.get("grid_cell") for m in metas], pa.string()),
        "grid_row_u": pa.array([m.get("grid_row_u") for m in metas], pa.int16()),
        "grid_col_r": pa.array([m.get("grid_col_r") for m in metas], pa.int16()),
        "utm_footprint": pa.array(footprints, pa.string()),
    }
    for name, col in extra.items():
        if name in t.column_names:
            t = t.drop_columns([name])
        t = t.append_column(name, col)
    with atomic_path(path) as tmp:
        pq.write_table(t, tmp)


def is_core_shard(path: str | Path) -> bool:
    """True for a Parquet file with the columns of a Major TOM Core shard (`product_id`, `grid_cell`, bands)."""
    import pyarrow.parquet as pq

    p = Path(path)
    if p.suffix.lower() != ".parquet" or not p.is_file():
        return False
    try:
        names = set(pq.read_schema(p).names)
    except Exception:  # noqa: BLE001 - anything unreadable is not a shard
        return False
    return {"product_id", "grid_cell"} <= names and any(n.startswith("B") or n in ("vv", "vh") for n in names)


def shard_paths(paths: list[str | Path]) -> list[str]:
    """The Core shards among `paths` (files, URLs, or folders searched for `*.parquet` shards, sorted);
    `metadata.parquet` and other Parquet files are left out of folders."""
    out: list[str] = []
    for p in paths:
        s = str(p)
        if "://" in s and not s.startswith("file://"):
            out.append(s)
        elif Path(s).is_dir():
            out += [str(f) for f in sorted(Path(s).rglob("*.parquet")) if is_core_shard(f)]
        else:
            out.append(s)
    if not out:
        from spectraclip.data.majortom import MajorTomError

        raise MajorTomError(f"no Major TOM Core shard (.parquet with product_id, grid_cell and band columns) in "
                            f"{', '.join(map(str, paths))}")
    return out


def major_tom_items(paths: list[str | Path], metadata: str | Path | None = None):
    """The rows of the Core shards in `paths` (see `shard_paths`) as items of the one encode path."""
    from spectraclip.data.majortom import core_items

    return core_items(shard_paths(paths), metadata)


def finish_major_tom(output: str | Path, items: list[Any]) -> None:
    """After any engine (local, Ray, shard i/n) wrote `output` from `items`: add the published Major TOM columns."""
    add_major_tom_columns(output, {it.id: it.meta for it in items})


def embed_major_tom(model: Any, shards: list[str], output: str | Path, *, metadata: str | Path | None = None,
                    **kwargs: Any):
    """Embed every row of Major TOM Core shards into `output` in the Major TOM embedding layout (plus ours).
    `kwargs` go to `inference.embed_to_table` (batch size, workers, device, precision...). Returns its result."""
    from spectraclip.inference import embed_to_table

    items = major_tom_items(list(shards), metadata)
    kwargs.setdefault("bands", model.bands)
    result = embed_to_table(model, items, output, **kwargs)
    finish_major_tom(output, items)
    return result


__all__ = ["add_major_tom_columns", "embed_major_tom", "finish_major_tom", "is_core_shard", "major_tom_items",
           "shard_paths"]
