"""The labels database on PostgreSQL (a team's server), beyond the round trip, learn/export, 20 concurrent clients and
SIGKILL tests that tests/test_serve_workspace.py runs on both backends: a URL that cannot be used fails at start,
naming the URL with its password hidden and what to install or check; several servers creating the table at
once; the latest label wins under concurrent writers; `serve --workers 2` on one database.

The server is real: the session's `postgres` fixture (tests/fixtures_postgres.py) runs Debian's initdb + pg_ctl
in a temporary folder; tests needing it skip with the reason where it cannot be started."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("rio_tiler")
import fixtures_workspace as fw  # noqa: E402
from fixtures_postgres import free_port  # noqa: E402

from spectraclip.serve.labels import LabelDatabaseError, LabelStore, normalise_url  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return fw.synthetic_index(tmp_path_factory.mktemp("pgws"), n=60)


def test_urls_take_the_psycopg_driver():
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("labels.sqlite").startswith("sqlite:////")


def test_unreachable_server_fails_fast_naming_the_url_without_password():
    pytest.importorskip("psycopg")
    url = f"postgresql://ana:s3cret@127.0.0.1:{free_port()}/labels"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(LabelDatabaseError) as err:
        LabelStore(url)
    msg = str(err.value)
    assert time.monotonic() - t0 < 5
    assert url.replace("s3cret", "***") in msg and "s3cret" not in msg
    assert "cannot be opened" in msg and "is the server running" in msg


def test_missing_driver_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    with pytest.raises(LabelDatabaseError) as err:
        LabelStore("postgresql://ana:s3cret@db.example/labels")
    msg = str(err.value)
    assert "postgresql://ana:***@db.example/labels" in msg and "s3cret" not in msg
    assert "driver is not installed" in msg and "spectraclip[team]" in msg and "psycopg[binary]" in msg
    with pytest.raises(LabelDatabaseError, match="not a database URL"):
        LabelStore("nosuchdb://x")


def test_cli_refuses_a_bad_database_at_start(index_dir):
    pytest.importorskip("psycopg")
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    url = f"postgresql://ana:s3cret@127.0.0.1:{free_port()}/labels"
    for args in (["labels", "list", str(index_dir)], ["serve", str(index_dir), "--workers", "2"]):
        t0 = time.monotonic()
        out = CliRunner().invoke(app, [*args, "--labels-db", url])
        assert out.exit_code == 2, out.output
        assert "***" in out.output and "s3cret" not in out.output and "cannot be opened" in out.output
        assert time.monotonic() - t0 < 10  # `serve` never started its workers


def test_wrong_database_on_a_real_server(postgres):
    with pytest.raises(LabelDatabaseError, match='database "nope" does not exist') as err:
        LabelStore(postgres.url("nope"))
    assert postgres.url("nope") in str(err.value)


def test_commits_are_durable_even_where_the_database_says_otherwise(postgres):
    """A database set to synchronous_commit=off would acknowledge labels a crash can lose: the store's sessions
    turn it back on."""
    import psycopg
    import sqlalchemy as sa

    url = postgres.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET synchronous_commit = off")
        with psycopg.connect(url) as other:
            assert other.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    store = LabelStore(url)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "on"
    store.close()


def test_servers_starting_at_once_create_the_table_once(postgres):
    """Eight stores opened at the same moment on an empty database (as `serve --workers 8` starts): none fails."""
    url = postgres.create_database()
    gate = threading.Barrier(8)

    def open_one(_: int) -> int:
        gate.wait()
        store = LabelStore(url)
        try:
            return store.add("w1", "positive", target="t").id
        finally:
            store.close()

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(open_one, range(8)))
    assert sorted(ids) == list(range(1, 9))
    assert LabelStore(url).count() == 8


def test_latest_label_wins_under_concurrent_writers(postgres):
    """20 writers at once (no lock: PostgreSQL takes them in parallel), each relabelling its own item 10 times and
    all of them one shared item: each writer's labels get increasing ids, its item ends with its last label, and
    the shared item with the label of the highest acknowledged id."""
    store = LabelStore(postgres.create_database())
    assert store._write is None  # writes are not serialised in the process

    def writer(c: int) -> list[tuple[int, str, str]]:
        acked = []
        for j in range(10):
            label = "positive" if (c + j) % 2 else "negative"
            acked.append((store.add(f"w{c}", label, target="t", who=f"c{c}").id, f"w{c}", label))
            acked.append((store.add("shared", label, target="t", who=f"c{c}").id, "shared", label))
        return acked

    with ThreadPoolExecutor(20) as pool:
        per_writer = list(pool.map(writer, range(20)))
    ids = [a[0] for acked in per_writer for a in acked]
    assert len(ids) == 400 == len(set(ids)) == store.count()
    latest = store.latest("t")
    for c, acked in enumerate(per_writer):
        assert [a[0] for a in acked] == sorted(a[0] for a in acked)
        last = [a for a in acked if a[1] == f"w{c}"][-1]
        assert latest[(f"w{c}", "t")].id == last[0] and latest[(f"w{c}", "t")].label == last[2]
    top = max((a for acked in per_writer for a in acked if a[1] == "shared"), key=lambda a: a[0])
    assert latest[("shared", "t")].id == top[0] and latest[("shared", "t")].label == top[2]
    store.close()


def test_database_down_gives_503_and_the_service_recovers(postgres, index_dir):
    """The database server stops while the service runs: a label gets a 503 (not acknowledged), /healthz stays
    up, and once the database is back labels are stored again (stale pooled connections are replaced)."""
    from fastapi.testclient import TestClient

    from spectraclip.serve.app import create_app

    url = postgres.create_database()
    client = TestClient(create_app(index_dir, labels=url, warm=False))
    body = {"item_id": "w1", "label": "positive", "target": "t"}
    assert client.post("/labels", json=body).status_code == 201
    postgres.crash()
    try:
        r = client.post("/labels", json=body)
        assert r.status_code == 503 and "could not store a label" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200
    finally:
        postgres.start()
    assert client.post("/labels", json=body).status_code == 201
    ids = [lab["id"] for lab in client.get("/labels").json()["labels"]]
    assert len(ids) == 2 and ids[0] < ids[1]  # after crash recovery the sequence skips ahead (WAL logs 32 values)


@pytest.mark.slow  # two server processes each import the library: ~25 s on a busy 2-core machine
def test_serve_with_two_workers_on_one_database(postgres, index_dir):
    """`serve --workers 2` on an empty database: both workers create the table at once, every label is stored."""
    import httpx

    url, port = postgres.create_database(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "spectraclip.cli.main", "serve", str(index_dir), "--port",
                             str(port), "--workers", "2", "--labels-db", url],
                            env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.2)

        def client(c: int) -> list[int]:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as h:
                return [h.post("/labels", json={"item_id": f"w{c}", "label": "positive", "target": "t"}).json()["id"]
                        for _ in range(5)]

        with ThreadPoolExecutor(8) as pool:
            acked = [i for ids in pool.map(client, range(8)) for i in ids]
    finally:
        proc.terminate()
        proc.wait(30)
    assert len(set(acked)) == 40 and LabelStore(url).count() == 40
