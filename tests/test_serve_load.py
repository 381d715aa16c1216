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
from bench_serve_load import run_load  # noqa: E402

pytest.importorskip("httpx")


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
