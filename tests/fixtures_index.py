"""Index fixtures: real embeddings tables (tiny-test model on ../shared/data rasters) and synthetic
GeoParquet-style tables (clustered unit vectors with footprints, timestamps and labels)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from shapely.geometry import box

from spectraclip.embeddings import write_embeddings
from spectraclip.identity import Fingerprints

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EUROSAT_TEST = DATA / "eurosat-ms-mini" / "test"
L2A = DATA / "s2-l2a-examples"


def real_rasters() -> list[Path]:
    """The 54 EuroSAT test patches and the five L2A tiles (empty when the shared data is absent)."""
    if not EUROSAT_TEST.is_dir():
        return []
    return sorted(EUROSAT_TEST.glob("*/*.tif")) + sorted(L2A.glob("*.tif"))


def embed_real(model, out_dir: Path) -> list[Path]:
    """Two embeddings tables of real rasters made by the real embed path: EuroSAT (L1C) and L2A tiles."""
    from spectraclip.inference import embed_to_table

    meta = Fingerprints.of(model).to_metadata()
    eurosat = sorted(EUROSAT_TEST.glob("*/*.tif"))
    t1 = out_dir / "eurosat.parquet"
    embed_to_table(model, eurosat, t1, bands="eurosat-ms", progress=False, metadata=meta)
    t2 = out_dir / "l2a.parquet"
    embed_to_table(model, sorted(L2A.glob("*.tif")), t2, bands="s2-l2a", progress=False, metadata=meta)
    return [t1, t2]


def clustered(n: int, dim: int, clusters: int = 50, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors around random cluster centres (a stand-in for real embedding clouds)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + spread / np.sqrt(dim) * rng.normal(size=(n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_table(path: Path, n: int, dim: int, *, seed: int = 0, prefix: str = "s",
                    fingerprints: Fingerprints | None = Fingerprints("m" * 16, "p" * 16),
                    vectors: np.ndarray | None = None) -> Path:
    """A GeoParquet-style table: `geometry` WKB boxes on a lon/lat grid over Europe, daily `timestamp`s
    from 2020-01-01, a `split` column and `labels` lists."""
    rng = np.random.default_rng(seed)
    x = clustered(n, dim, seed=seed) if vectors is None else vectors
    lon = rng.uniform(-10, 30, n)
    lat = rng.uniform(35, 60, n)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    columns = {
        "geometry": [box(a, b, a + 0.05, b + 0.05).wkb for a, b in zip(lon, lat, strict=True)],
        "timestamp": [(t0 + timedelta(days=int(d))).isoformat() for d in rng.integers(0, 730, n)],
        "split": ["train" if i % 4 else "test" for i in range(n)],
        "labels": [["Forest"] if i % 3 == 0 else ["River", "Pasture"] for i in range(n)],
        "path": [None] * n,
    }
    meta = fingerprints.to_metadata() if fingerprints else {}
    write_embeddings(path, [f"{prefix}{i}" for i in range(n)], x, columns, {"dim": dim, **meta})
    return path


def session_real_index(tmp_path_factory, model) -> tuple[list[Path], Path]:
    """Real tables and their index, made once per test session (shared by the index, serve and page tests)."""
    from spectraclip.index.build import build_index

    base = tmp_path_factory.getbasetemp() / "real-index"
    tables = [base / "eurosat.parquet", base / "l2a.parquet"]
    if not (base / "idx" / "info.json").is_file():
        base.mkdir(parents=True, exist_ok=True)
        tables = embed_real(model, base)
        build_index(tables, base / "idx")
    return tables, base / "idx"


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 and a free port in a thread; yields the base URL, then stops."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
