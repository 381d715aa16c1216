"""The service under concurrent load (in-process server on loopback): 20 clients, 400 mixed requests on a
10,000-item IVF-PQ index; no 5xx, every bad request a 4xx, every good one a 200. Latency targets are
measured by benchmarks/bench_serve_load.py, not here."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from fixtures_index import running_server, synthetic_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_serve_load import run_load, start_server  # noqa: E402

pytest.importorskip("httpx")
pytestmark = pytest.mark.slow  # a 10,000-item IVF-PQ index under 400 requests; two worker processes


def test_concurrent_mixed_requests_never_5xx(tmp_path):
    from spectraclip.index.build import build_index
    from spectraclip.serve.app import create_app

    table = synthetic_table(tmp_path / "t.parquet", 10_000, 64)
    build_index([table], tmp_path / "idx", kind="ivfpq")
    ids = [f"s{i}" for i in range(10_000)]
    with running_server(create_app(tmp_path / "idx")) as url:
        result = asyncio.run(run_load(url, ids, 64, clients=20, requests=400, k=50, bad_fraction=0.3))
    assert result.violations == []
    assert sum(result.statuses.values()) == 400
    assert not any(s >= 500 or s == 0 for s in result.statuses)
    bad = sum(sum(c.values()) for c in result.bad_status.values())
    assert bad > 60 and len(result.bad_status) >= 8  # most bad kinds were exercised
    assert all(400 <= s < 500 for c in result.bad_status.values() for s in c)


def test_serve_with_two_worker_processes_answers_from_both(tmp_path):
    """`spectraclip serve --workers 2`: the settings reach each worker (own index, own model); both answer."""
    import httpx

    from spectraclip.index.build import build_index

    table = synthetic_table(tmp_path / "t.parquet", 2_000, 32)
    build_index([table], tmp_path / "idx")
    proc, url = start_server(tmp_path / "idx", 2, capture_output=True)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            replies = [client.post("/search", json={"like": ["s1"], "k": 5}) for _ in range(20)]
            assert all(r.status_code == 200 for r in replies)
            hits = [h["id"] for h in replies[0].json()["hits"]]
            assert len(hits) == 5 and "s1" not in hits  # the example itself is not a result
            assert all([h["id"] for h in r.json()["hits"]] == hits for r in replies)  # every worker agrees
            assert client.post("/search", json={"k": 5}).status_code == 400
            assert client.post("/search", json={"text": "a beach", "k": 5}).status_code == 400  # no model
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0].decode()
    assert "with 2 worker processes" in out, out
