"""The service's fast paths: reply rows read from numpy columns match the metadata records (nulls included),
a slow search does not hold up the event loop, and the server's heap is frozen out of the collector."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from fixtures_index import clustered

pytest.importorskip("fastapi")


@pytest.fixture
def small_index(tmp_path):
    from shapely.geometry import box

    from spectraclip.embeddings import write_embeddings
    from spectraclip.index.build import build_index

    n = 40
    geoms = [box(i * 0.1, 45, i * 0.1 + 0.05, 45.05).wkb for i in range(n)]
    geoms[3] = None  # no footprint: no bbox, no lon/lat
    stamps = [datetime(2021, 1, 1 + i % 28, 10, 30, 5, tzinfo=UTC).isoformat() for i in range(n)]
    stamps[5] = None  # no date
    table = write_embeddings(tmp_path / "t.parquet", [f"s{i}" for i in range(n)], clustered(n, 16, seed=3),
                             {"geometry": geoms, "timestamp": stamps, "path": [None] * n},
                             {"dim": 16, "model_fingerprint": "m" * 16, "preprocessing_fingerprint": "p" * 16})
    build_index([table], tmp_path / "idx")
    return tmp_path / "idx"


def test_reply_rows_match_the_metadata_records(small_index):
    from spectraclip.index.store import Hit, open_index
    from spectraclip.serve.app import HitColumns

    index = open_index(small_index)
    hits = [Hit(r, index.ids[r], 0.5 - r / 100) for r in (7, 3, 5, 0)]
    rows = HitColumns(index).rows(hits)
    records = index.records([h.row for h in hits])
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and [r["id"] for r in rows] == ["s7", "s3", "s5", "s0"]
    for row, rec in zip(rows, records, strict=True):
        want_ts = rec["timestamp"]
        assert row["timestamp"] == (None if want_ts is None else want_ts[:19] + "Z")
        assert row["lon"] == rec["lon"] and row["lat"] == rec["lat"]
    assert rows[0]["timestamp"] == "2021-01-08T10:30:05Z" and rows[0]["bbox"] == pytest.approx([0.7, 45, 0.75, 45.05])
    assert rows[1]["bbox"] is None and rows[1]["lon"] is None  # the item without a footprint
    assert rows[2]["timestamp"] is None  # the item without a date
    assert rows[0]["geometry"] is None and HitColumns(index).rows(hits, geometry=True)[0]["geometry"].startswith(
        "POLYGON")
    assert HitColumns(index).rows([]) == []


def test_a_slow_search_does_not_block_the_event_loop(small_index, monkeypatch):
    import httpx

    import spectraclip.serve.app as app_mod

    real = app_mod.run_query

    def slow(*args, **kwargs):
        time.sleep(1.0)  # a long search: it runs on the search thread, not on the event loop
        return real(*args, **kwargs)

    monkeypatch.setattr(app_mod, "run_query", slow)
    app = app_mod.create_app(small_index, warm=False)

    async def scenario() -> tuple[float, float, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            t0 = time.perf_counter()

            async def search() -> float:
                r = await client.post("/search", json={"like": ["s1"], "k": 3})
                assert r.status_code == 200 and len(r.json()["hits"]) == 3
                return time.perf_counter() - t0

            async def health() -> tuple[float, int]:
                await asyncio.sleep(0.1)
                r = await client.get("/healthz")
                return time.perf_counter() - t0, r.status_code

            s, (h, status) = await asyncio.gather(search(), health())
            return s, h, status

    searched, healthy, status = asyncio.run(scenario())
    assert status == 200 and searched >= 1.0
    assert healthy < 0.8, f"/healthz waited {healthy:.2f} s for a search to finish"


def test_settle_heap_freezes_what_is_alive():
    from spectraclip.serve.app import settle_heap

    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
    assert np.isfinite(gc.get_count()[0])


def test_prefault_maps_small_vectors_and_skips_large_ones(small_index):
    from spectraclip.index.store import open_index
    from spectraclip.serve.app import prefault

    index = open_index(small_index)
    assert prefault(index.vectors) == index.vectors.nbytes
    assert prefault(index.vectors, limit=16) == 0  # an archive larger than the bound is left to page in lazily
