"""The FastAPI app: `POST /search`, `GET /items/{id}`, `GET /items/{id}/thumbnail.png`, `GET /healthz`,
the page at `/` and an offline API page at `/docs` (the OpenAPI schema at `/openapi.json`).

Safe by default: ids are looked up in the index and never become paths, request bodies and every
list/length/k are bounded, and any bad request gets a 4xx naming what was wrong.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from spectraclip.errors import SpectraclipError
from spectraclip.index.errors import UnknownItemError
from spectraclip.index.filters import Filters
from spectraclip.index.query import Query as IndexQuery
from spectraclip.index.query import run_query
from spectraclip.index.store import SearchIndex, open_index
from spectraclip.serve.schemas import (
    ErrorResponse,
    HealthResponse,
    ItemResponse,
    SearchRequest,
    SearchResponse,
)
from spectraclip.serve.thumbnails import ThumbnailCache, ThumbnailError, render_thumbnail

MAX_BODY_BYTES = 1_000_000
ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
                                           413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}


def static_dir() -> Path:
    """The folder of the page's HTML, JS and CSS inside the installed package."""
    return Path(str(resources.files("spectraclip.serve") / "static"))


class HitColumns:
    """The metadata columns a reply row shows, as numpy arrays made once per index (zero-copy views of the
    in-memory metadata where Arrow allows): a reply then indexes 50 rows instead of converting Arrow values to
    Python objects (which cost more than the search itself)."""

    def __init__(self, index: SearchIndex) -> None:
        names = index.meta.column_names
        self.index = index
        self.cols: dict[str, Any] = {}
        for c in ("lon", "lat", "minx", "miny", "maxx", "maxy"):
            if c in names:
                self.cols[c] = index.meta.column(c).combine_chunks().to_numpy(zero_copy_only=False)
        self.stamps = None
        if "timestamp" in names:
            col = index.meta.column("timestamp").combine_chunks()
            self.stamps = col.cast(pa.timestamp("s")).to_numpy(zero_copy_only=False)

    def rows(self, hits: list[Any], geometry: bool = False) -> list[dict[str, Any]]:
        """The reply rows of these hits (the fields of `HitModel`; WKT only when asked: it is costly)."""
        if not hits:
            return []
        rows = np.fromiter((h.row for h in hits), np.int64, len(hits))
        none = [None] * len(hits)

        def values(c: str) -> list[Any]:
            if c not in self.cols:
                return none
            v = self.cols[c][rows]
            return [None if x != x else x for x in v.tolist()]  # NaN (a null) -> None

        stamps = none
        if self.stamps is not None:
            t = self.stamps[rows]
            text = np.datetime_as_string(t, unit="s")
            stamps = [None if bad else f"{x}Z" for x, bad in zip(text.tolist(), np.isnat(t).tolist(), strict=True)]
        boxes = [None if None in box else list(box)
                 for box in zip(*(values(c) for c in ("minx", "miny", "maxx", "maxy")), strict=True)]
        wkts = none
        if geometry and "geometry" in self.index.meta.column_names:
            from shapely import wkb

            geoms = self.index.meta.column("geometry").take(pa.array(rows)).to_pylist()
            wkts = [None if g is None else wkb.loads(bytes(g)).wkt for g in geoms]
        return [{"rank": rank, "id": hit.id, "score": round(hit.score, 6), "timestamp": ts, "lon": lon, "lat": lat,
                 "bbox": box, "geometry": wkt}
                for rank, (hit, ts, lon, lat, box, wkt) in enumerate(
                    zip(hits, stamps, values("lon"), values("lat"), boxes, wkts, strict=True), start=1)]


class BoundedBody:
    """Pure ASGI middleware answering 413 to a body declared over `limit` bytes, before it is read (cheaper per
    request than Starlette's BaseHTTPMiddleware, which wraps every call in a task group)."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            size = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            if size is not None and (not size.isdigit() or int(size) > self.limit):
                reply = JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413)
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)


PREFAULT_MAX_BYTES = 2 * 1024**3


def prefault(vectors: Any, limit: int = PREFAULT_MAX_BYTES) -> int:
    """Touch one byte per page of the memory-mapped vectors (when they are at most `limit` bytes), so that the
    re-ranking reads of the first requests do not each take page faults; returns the bytes mapped in."""
    flat = np.asarray(vectors).reshape(-1).view(np.uint8)
    if flat.nbytes > limit:
        return 0
    int(flat[::4096].sum())
    return int(flat.nbytes)


def warm_up(index: SearchIndex, model: Any = None) -> float:
    """Run one search of each kind the service does (and one text encoding) and map the vectors in, so that
    imports, faiss and torch start-up and page faults are paid before the first request, not by it; returns the
    seconds it took."""
    import torch  # noqa: F401 - the exact path's import, paid here rather than by concurrent first requests

    from spectraclip.index.store import exact_search

    t0 = time.perf_counter()
    prefault(index.vectors)
    q = np.zeros((1, index.dim), np.float32)
    q[0, 0] = 1.0
    index.search(q, 1)
    exact_search(index.vectors, q, 1, np.arange(min(len(index), 8)))
    if model is not None:
        from spectraclip.zeroshot.text import encode_texts

        encode_texts(model, ["warm-up"])
    return time.perf_counter() - t0


def settle_heap() -> None:
    """Collect once, then freeze what is alive (the index's ids, the model, the libraries) out of the garbage
    collector's reach: a full collection of those ~270k objects paused a loaded service for 165 ms (measured).
    Called by the server process once its app is built, never by library users."""
    import gc

    gc.collect()
    gc.freeze()


def create_app(index_dir: str | Path, model: Any = None, *, force: bool = False,
               single_thread_faiss: bool = True, warm: bool = True, search_threads: int = 2,
               layers: Sequence[str | Path] = (), labels: str | Path | bool | None = None) -> FastAPI:
    """The search service over `index_dir`; `model` (same embedding space, checked now) encodes text and files.

    Without a model the service answers example, id and vector queries and refuses text with a 400.
    `single_thread_faiss` gives each request one faiss thread: the server's thread pool is the parallelism;
    `warm` runs one search (and text encoding) now, so that the first request does not pay for start-up.
    The workspace (`/map`): `layers` are rasters served as tiles (each checked now: `LayerError` names one that is
    not a readable raster); `labels` a labels database URL or file (None: the SQLite file beside the index;
    False: no labelling)."""
    from spectraclip.serve.labels import open_store
    from spectraclip.serve.layers import open_layers
    from spectraclip.serve.routes import add_workspace

    served = open_layers(list(layers))
    index = open_index(index_dir)
    if model is not None:
        index.check_model(model, force=force)
    if single_thread_faiss and index.faiss_index is not None:
        from spectraclip.index.faiss_import import import_faiss

        import_faiss().omp_set_num_threads(1)
    thumbs = ThumbnailCache()
    # searches run first come first served on `search_threads` threads: the event loop stays free to accept
    # connections and parse requests (a loop blocked by inline searches accepted new connections seconds late
    # under load), and two threads (faiss and numpy release the GIL; one can encode text while the other
    # searches) served 1.4x the searches/s of one, where the default pool's dozens time-sliced under the GIL
    searcher = ThreadPoolExecutor(max_workers=search_threads, thread_name_prefix="search")
    model_lock = threading.Lock()  # one text encoding at a time: torch already uses every core
    app = FastAPI(title="spectraclip search", version="1", docs_url=None, redoc_url=None,
                  description=f"Search {len(index)} items of {index_dir} by text, examples or vector.")
    app.state.index = index
    columns = HitColumns(index)
    app.state.thumbnails = thumbs
    app.state.warm_up_s = warm_up(index, model) if warm else None
    app.add_middleware(BoundedBody)

    @app.exception_handler(UnknownItemError)
    async def _unknown(_: Request, exc: UnknownItemError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(SpectraclipError)
    async def _bad(_: Request, exc: SpectraclipError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def _search(req: SearchRequest) -> bytes:
        t0 = time.perf_counter()
        filters = Filters.from_dict(req.filters.model_dump())
        query = IndexQuery(text=req.text, like=list(req.like), unlike=list(req.unlike), vector=req.vector, k=req.k,
                           filters=filters, unlike_weight=req.unlike_weight)
        if req.text and req.text.strip() and model is not None:
            with model_lock:
                hits = run_query(index, query, model, force=force)
        else:
            hits = run_query(index, query, model, force=force)
        mask = index.mask(filters)  # cached: the search above computed it
        candidates = None if mask is None else int(mask.sum())
        modality = "text" if (req.text or "").strip() and not req.like and req.vector is None else "image"
        return orjson.dumps({"hits": columns.rows(hits, req.geometry), "k": req.k, "candidates": candidates,
                             "modality": modality, "index_kind": index.kind,
                             "took_ms": round((time.perf_counter() - t0) * 1000, 3)})

    @app.post("/search", response_model=SearchResponse, responses=ERRORS)
    async def search(req: SearchRequest) -> Response:
        """Rank the index for text, positive/negative example ids, or a raw vector, after the filters."""
        body = await asyncio.get_running_loop().run_in_executor(searcher, _search, req)
        return Response(body, media_type="application/json")

    @app.get("/items/{item_id:path}/thumbnail.png", responses={**ERRORS, 200: {"content": {"image/png": {}}}})
    async def thumbnail(item_id: str, style: str = Query("natural", pattern="^(natural|false-colour)$")) -> Response:
        """The item's raster as a PNG (natural: B04,B03,B02; false-colour: B08,B04,B03), cached."""
        row = index.row_of(item_id)
        png = thumbs.get((row, style))
        if png is None:
            rec = index.meta.select(["path", "bands"]).slice(row, 1).to_pylist()[0]
            if not rec["path"]:
                return JSONResponse({"detail": f"item {item_id!r} records no raster path"}, status_code=404)
            try:
                png = await run_in_threadpool(render_thumbnail, rec["path"], rec["bands"], style)
            except ThumbnailError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=404)
            thumbs.put((row, style), png)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/items/{item_id:path}", response_model=ItemResponse, responses=ERRORS)
    async def item(item_id: str) -> ItemResponse:
        """All metadata of one item of the index."""
        row = index.row_of(item_id)
        rec = index.records([row])[0]
        return ItemResponse(id=item_id, metadata=rec)

    @app.get("/healthz", response_model=HealthResponse)
    async def healthz() -> HealthResponse:
        """Liveness plus what the service holds."""
        fp = index.fingerprints
        return HealthResponse(status="ok", items=len(index), dim=index.dim, index_kind=index.kind,
                              text_queries=model is not None, model_fingerprint=fp.model if fp else None,
                              preprocessing_fingerprint=fp.preprocessing if fp else None)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(static_dir() / "api.html", media_type="text/html")

    store = None if labels is False else open_store(index_dir, None if labels in (None, True) else labels)
    app.state.labels, app.state.layers = store, served
    if store is not None and warm:  # the ranking's float16 copy, built while the first labels are being made
        from spectraclip.serve.workspace import ranking_copy

        threading.Thread(target=ranking_copy, args=(index,), name="ranking-copy", daemon=True).start()
    def encode_target(text: str) -> np.ndarray:
        from spectraclip.zeroshot.text import encode_texts

        with model_lock:
            return np.asarray(encode_texts(model, [text]), np.float32)[0]

    add_workspace(app, index, served, store, static_dir(), encode_target if model is not None else None)

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    return app


__all__ = ["MAX_BODY_BYTES", "PREFAULT_MAX_BYTES", "BoundedBody", "HitColumns", "create_app", "prefault", "settle_heap",
           "static_dir", "warm_up"]
