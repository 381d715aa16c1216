"""The workspace's HTTP routes, added to the search service by `create_app`:

`GET /map` (the map page), `GET /layers`, `GET /tiles/{layer}/{z}/{x}/{y}.png[?band=]`, `GET /point?lon=&lat=`,
`GET /footprints?bbox=`, `POST /labels`, `GET /labels`, `POST /learn`, `GET /export/labels.geojson|.parquet`,
`GET /export/probe.json`. Layers are named, never paths; every field is bounded; bad requests get a 4xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from spectraclip.index.store import SearchIndex
from spectraclip.serve.labels import LabelDatabaseError, LabelStore
from spectraclip.serve.layers import Layer, TileOutsideError, cached_tile, point_values, render_tile, tile_key
from spectraclip.serve.workspace import (
    LearnResult,
    export_labels,
    footprints,
    item_at,
    learn,
    save_probe,
)

TILE_THREADS = min(8, 2 * (os.cpu_count() or 2))  # rendering holds the GIL half the time: a few threads per core
TILE_MAX_AGE = 600  # seconds a browser may reuse a tile; then it revalidates it (ETag: the file's mtime and size)


class LabelRequest(BaseModel):
    """One 👍/👎 (label positive/negative for a target) or a class name (no target), on an item or a place."""

    model_config = ConfigDict(extra="forbid")
    item_id: str | None = Field(None, max_length=1000)
    lon: float | None = Field(None, ge=-180, le=180)
    lat: float | None = Field(None, ge=-90, le=90)
    label: str = Field(..., min_length=1, max_length=200)
    target: str = Field("", max_length=200)
    who: str = Field("", max_length=200)
    query: str = Field("", max_length=1000)


class LearnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field("", max_length=200)
    bbox: list[float] | None = Field(None, min_length=4, max_length=4)
    k: int = Field(50, ge=1, le=1000)
    uncertain: int = Field(20, ge=0, le=1000)


def _bbox(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise HTTPException(400, f"bbox {text!r}: expected west,south,east,north numbers") from exc
    if len(vals) != 4:
        raise HTTPException(400, f"bbox {text!r}: expected 4 numbers")
    return vals


def add_workspace(app: FastAPI, index: SearchIndex, layers: dict[str, Layer], store: LabelStore | None,
                  static: Path, encode_text: Callable[[str], np.ndarray] | None = None) -> None:
    """Add the map and labelling routes to `app`; `encode_text` (the service's model) gives learn its text prior."""
    learned: dict[str, LearnResult] = {}
    learn_lock = threading.Lock()

    def _layer(name: str) -> Layer:
        lay = layers.get(name)
        if lay is None:
            raise HTTPException(404, f"no layer {name!r} (layers: {', '.join(layers) or 'none'})")
        return lay

    @app.exception_handler(LabelDatabaseError)
    async def _database(_: Request, exc: LabelDatabaseError) -> JSONResponse:
        # the database (e.g. a team's PostgreSQL server) failed a read or write: not the client's fault, and
        # nothing was acknowledged; the client may retry
        return JSONResponse({"detail": str(exc)}, status_code=503)

    def _store() -> LabelStore:
        if store is None:
            raise HTTPException(400, "this service was started without a labels database")
        return store

    @app.get("/map", include_in_schema=False)
    def map_page() -> FileResponse:
        return FileResponse(static / "map.html", media_type="text/html")

    @app.get("/layers")
    def list_layers() -> dict[str, Any]:
        """The served layers (kind, WGS84 bounds, legend) and the index's footprint extent."""
        ext = None
        if all(c in index.meta.column_names for c in ("minx", "miny", "maxx", "maxy")):
            import pyarrow.compute as pc

            vals = [pc.min_max(index.meta.column(c)) for c in ("minx", "miny", "maxx", "maxy")]
            ext = [vals[0]["min"].as_py(), vals[1]["min"].as_py(), vals[2]["max"].as_py(), vals[3]["max"].as_py()]
        return {"layers": [lay.legend() for lay in layers.values()], "index_bounds": ext,
                "labels": store is not None}

    tile_pool = ThreadPoolExecutor(TILE_THREADS, thread_name_prefix="tiles")

    @app.get("/tiles/{layer}/{z}/{x}/{y}.png", responses={200: {"content": {"image/png": {}}}, 304: {}})
    async def tile(request: Request, layer: str, z: int, x: int, y: int,
                   band: int | None = Query(None, ge=1, le=10000)) -> Response:
        """Tile z/x/y (web mercator, 256 px) of a served layer; 404 outside it. An ETag names the layer file's
        version and the tile: a browser's revalidation gets 304 without rendering."""
        lay = _layer(layer)
        try:
            key = tile_key(lay, z, x, y, band)
        except TileOutsideError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        etag = '"' + hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest() + '"'
        headers = {"Cache-Control": f"public, max-age={TILE_MAX_AGE}", "ETag": etag}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        png = cached_tile(key)  # a cached tile is answered here, not queued behind renders
        if png is None:
            try:
                png = await asyncio.get_running_loop().run_in_executor(tile_pool, render_tile, lay, z, x, y, band, key)
            except TileOutsideError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=404)
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/point")
    async def point(lon: float = Query(..., ge=-180, le=180), lat: float = Query(..., ge=-90, le=90)) -> dict:
        """What every layer says at lon/lat, and the index item whose footprint holds it."""
        def work() -> dict:
            out = {name: point_values(lay, lon, lat) for name, lay in layers.items()}
            return {"lon": lon, "lat": lat, "item": item_at(index, lon, lat), "layers": out}

        return await run_in_threadpool(work)

    @app.get("/footprints")
    async def get_footprints(bbox: str | None = Query(None, max_length=200),
                             limit: int = Query(2000, ge=1, le=5000)) -> Response:
        """The items' footprints (GeoJSON), those meeting `bbox` (west,south,east,north) when given."""
        import orjson

        box = _bbox(bbox)
        data = await run_in_threadpool(footprints, index, box, limit)
        return Response(orjson.dumps(data), media_type="application/geo+json")

    @app.post("/labels", status_code=201)
    async def add_label(req: LabelRequest) -> dict:
        """Store a label on an item (by id, or the item whose footprint holds lon/lat); 201 once on disk."""
        st = _store()
        item = req.item_id
        if item is None:
            if req.lon is None or req.lat is None:
                raise HTTPException(400, "give item_id, or lon and lat of a place on the map")
            item = item_at(index, req.lon, req.lat)
            if item is None:
                raise HTTPException(404, f"no item of the index covers lon {req.lon}, lat {req.lat}")
        index.row_of(item)  # UnknownItemError -> 404
        lab = await run_in_threadpool(st.add, item, req.label, target=req.target, who=req.who, query=req.query,
                                      lon=req.lon, lat=req.lat)
        return lab.to_dict()

    @app.get("/labels")
    async def get_labels(target: str | None = Query(None, max_length=200)) -> dict:
        """Every stored label (of one target), oldest first, and the targets labelled so far."""
        st = _store()
        labs = await run_in_threadpool(st.all, target)
        return {"labels": [lab.to_dict() for lab in labs], "targets": await run_in_threadpool(st.targets)}

    def _learn(req: LearnRequest) -> dict:
        with learn_lock:
            prior = encode_text(req.target) if encode_text is not None and req.target else None
            res = learn(index, _store(), target=req.target, bbox=tuple(req.bbox) if req.bbox else None, k=req.k,
                        n_uncertain=req.uncertain, prior=prior)
            learned[req.target] = res
        return res.to_dict()

    @app.post("/learn")
    async def post_learn(req: LearnRequest) -> dict:
        """Fit a probe on the labels of `target` (class names when empty), report its cross-validated accuracy and
        rank the index (or `bbox` of it): top candidates and the most uncertain items."""
        return await asyncio.get_running_loop().run_in_executor(None, _learn, req)

    def _result(target: str) -> LearnResult:
        res = learned.get(target)
        if res is None:
            res = learn(index, _store(), target=target)
            learned[target] = res
        return res

    @app.get("/export/labels.{fmt}")
    async def export(fmt: str, target: str = Query("", max_length=200)) -> Response:
        """Labels + the last probe's predictions for `target` as GeoJSON or GeoParquet."""
        if fmt not in ("geojson", "parquet"):
            raise HTTPException(404, f"export format {fmt!r}: geojson or parquet")
        st = _store()

        def work() -> bytes:
            try:
                res: LearnResult | None = _result(target)
            except Exception:  # too few labels to learn: export the labels alone
                res = None
            with tempfile.TemporaryDirectory() as tmp:
                out = export_labels(index, st, Path(tmp) / f"labels.{fmt}", res)
                return out.read_bytes()

        body = await run_in_threadpool(work)
        media = "application/geo+json" if fmt == "geojson" else "application/vnd.apache.parquet"
        return Response(body, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="labels.{fmt}"'})

    @app.get("/export/probe.json")
    async def export_probe(target: str = Query("", max_length=200)) -> Response:
        """The probe of `target` as a window probe (`spectraclip map --probe probe.json`)."""
        def work() -> bytes:
            res = _result(target)
            with tempfile.TemporaryDirectory() as tmp:
                return save_probe(res, index, Path(tmp) / "probe.json").read_bytes()

        body = await run_in_threadpool(work)
        return Response(body, media_type="application/json",
                        headers={"Content-Disposition": 'attachment; filename="probe.json"'})


__all__ = ["LabelRequest", "LearnRequest", "add_workspace"]
