"""Load test of `spectraclip serve` on loopback: concurrent clients, a bounded number of requests, a mix of
good and bad requests, against a synthetic index (clustered vectors with footprints, dates and a label
column). Prints latency percentiles per request kind, status counts, and whether every bad request got a 4xx.

The server runs in its own process (uvicorn, one worker, the app of `create_app`), so client and server
do not share a GIL; the baseline row is `GET /healthz` (the HTTP round trip alone), measured in the same run.

    python benchmarks/bench_serve_load.py [--items 100000] [--dim 512] [--clients 50] [--requests 5000] [--k 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LoadResult:
    """Per-kind latencies (ms), status counts, and the requests that broke the contract."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    bad_status: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0


def request_mix(ids: list[str], dim: int, k: int, seed: int = 0) -> list[tuple[str, bool, str, str, dict]]:
    """Request templates: (kind, is_bad, method, path, httpx kwargs); 7 good kinds, 10 bad kinds."""
    rng = np.random.default_rng(seed)

    def vec() -> list[float]:
        return rng.normal(size=dim).astype(np.float32).round(4).tolist()

    def some_id() -> str:
        return ids[int(rng.integers(len(ids)))]

    good = [
        ("vector", "POST", "/search", lambda: {"json": {"vector": vec(), "k": k}}),
        ("like", "POST", "/search", lambda: {"json": {"like": [some_id()], "k": k}}),
        ("like+unlike", "POST", "/search", lambda: {"json": {"like": [some_id(), some_id()], "unlike": [some_id()],
                                                             "k": k}}),
        ("vector+bbox+date", "POST", "/search", lambda: {"json": {"vector": vec(), "k": k, "filters": {
            "bbox": [0, 40, 10, 50], "start": "2020-06-01", "end": "2021-05-31"}}}),
        ("like+equals", "POST", "/search", lambda: {"json": {"like": [some_id()], "k": k,
                                                             "filters": {"equals": {"split": "test"}}}}),
        ("item", "GET", None, lambda: {}),
        ("healthz", "GET", "/healthz", lambda: {}),
    ]
    bad = [
        ("bad:malformed-json", "POST", "/search", lambda: {"content": b'{"vector": [1,2', "headers": {
            "content-type": "application/json"}}),
        ("bad:unknown-id", "POST", "/search", lambda: {"json": {"like": ["no-such-item"], "k": k}}),
        ("bad:huge-k", "POST", "/search", lambda: {"json": {"vector": vec(), "k": 10**7}}),
        ("bad:empty-query", "POST", "/search", lambda: {"json": {"k": k}}),
        ("bad:wrong-dim", "POST", "/search", lambda: {"json": {"vector": [1.0, 2.0, 3.0]}}),
        ("bad:bbox", "POST", "/search", lambda: {"json": {"vector": vec(), "filters": {"bbox": [0, 50, 10, 40]}}}),
        ("bad:column", "POST", "/search", lambda: {"json": {"like": [some_id()],
                                                            "filters": {"equals": {"nope": 1}}}}),
        ("bad:traversal", "GET", "/items/..%2F..%2F..%2Fetc%2Fpasswd/thumbnail.png", lambda: {}),
        ("bad:unknown-item", "GET", "/items/no-such-item", lambda: {}),
        ("bad:long-text", "POST", "/search", lambda: {"json": {"text": "beach " * 200}}),
    ]
    return [(kind, kind.startswith("bad:"), method, path, make) for kind, method, path, make in good + bad]


async def run_load(base_url: str, ids: list[str], dim: int, *, clients: int = 50, requests: int = 5000,
                   k: int = 50, bad_fraction: float = 0.25, seed: int = 0) -> LoadResult:
    """Send `requests` requests from `clients` concurrent connections; every 1/bad_fraction-th is a bad one."""
    import httpx

    mix = request_mix(ids, dim, k, seed)
    good = [m for m in mix if not m[1]]
    bad = [m for m in mix if m[1]]
    rng = np.random.default_rng(seed + 1)
    plan = []
    for _ in range(requests):
        pool = bad if rng.random() < bad_fraction else good
        kind, is_bad, method, path, make = pool[int(rng.integers(len(pool)))]
        kwargs = make()
        if kind == "item":
            path = f"/items/{ids[int(rng.integers(len(ids)))]}"
        plan.append((kind, is_bad, method, path, kwargs))
    result = LoadResult()
    queue: asyncio.Queue = asyncio.Queue()
    for p in plan:
        queue.put_nowait(p)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                kind, is_bad, method, path, kwargs = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                r = await client.request(method, path, **kwargs)
                status = r.status_code
            except httpx.HTTPError as exc:
                status = 0
                result.violations.append(f"{kind}: {type(exc).__name__} {exc}")
            result.latencies[kind].append((time.perf_counter() - t0) * 1000)
            result.statuses[status] += 1
            if is_bad:
                result.bad_status[kind][status] += 1
                if not 400 <= status < 500:
                    result.violations.append(f"{kind} got {status}")
            elif status != 200:
                result.violations.append(f"{kind} {path} got {status}")

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    result.seconds = time.perf_counter() - t0
    return result


def percentiles(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def print_table(result: LoadResult, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    base = percentiles(result.latencies["healthz"])[0] if result.latencies.get("healthz") else float("nan")
    table = Table(title=title)
    for col in ("request", "n", "p50 ms", "p99 ms", "max ms", "p50 / healthz p50", "statuses"):
        table.add_column(col, justify="left" if col in ("request", "statuses") else "right")
    for kind in sorted(result.latencies, key=lambda s: (s.startswith("bad:"), s)):
        p50, p99, mx = percentiles(result.latencies[kind])
        st = result.bad_status.get(kind) or {}
        table.add_row(kind, str(len(result.latencies[kind])), f"{p50:.1f}", f"{p99:.1f}", f"{mx:.1f}",
                      f"{p50 / base:.1f}x", " ".join(f"{s}:{c}" for s, c in sorted(st.items())))
    searches = [v for kname, vals in result.latencies.items() if not kname.startswith("bad:")
                and kname not in ("item", "healthz") for v in vals]
    p50, p99, mx = percentiles(searches)
    table.add_row("[b]all good searches[/]", str(len(searches)), f"{p50:.1f}", f"{p99:.1f}", f"{mx:.1f}",
                  f"{p50 / base:.1f}x", "")
    Console().print(table)
    total = sum(result.statuses.values())
    five = sum(c for s, c in result.statuses.items() if s >= 500 or s == 0)
    print(f"{total} requests in {result.seconds:.1f} s ({total / result.seconds:.0f} req/s); statuses "
          f"{dict(sorted(result.statuses.items()))}; 5xx/connection errors: {five}; "
          f"contract violations: {len(result.violations)}")
    for v in result.violations[:10]:
        print("  violation:", v)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), a measure the machine's load does not skew."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_synthetic_index(out: Path, items: int, dim: int, seed: int = 0) -> tuple[list[str], dict]:
    """A synthetic table (clustered vectors, footprints over Europe, dates, split) and its index (auto kind)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures_index import synthetic_table

    from spectraclip.index.build import build_index

    table = synthetic_table(out / "table.parquet", items, dim, seed=seed)
    report = build_index([table], out / "idx")
    return [f"s{i}" for i in range(items)], {"kind": report.plan.factory, "build_s": report.seconds}


SERVER = """
import sys, uvicorn
from spectraclip.serve.app import create_app
uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            timeout_keep_alive=30)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--index", type=Path, help="index folder: built there when absent, reused when present")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.index and (args.index / "info.json").is_file():
            info = json.loads((args.index / "info.json").read_text())
            import pyarrow.parquet as pq

            ids = pq.read_table(args.index / "metadata.parquet", columns=["id"]).column("id").to_pylist()
            idx, built = args.index, {"kind": info["plan"]["factory"], "build_s": info["build_seconds"]}
        else:
            t0 = time.perf_counter()
            work = args.index.parent if args.index else Path(tmp)
            ids, built = build_synthetic_index(work, args.items, args.dim)
            idx = work / "idx"
            if args.index and args.index != idx:
                idx.rename(args.index)
                idx = args.index
            print(f"built {built['kind']} over {args.items} x {args.dim} in {time.perf_counter() - t0:.1f} s")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(idx), str(port)], env=env)
        try:
            import httpx

            for _ in range(600):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            server_cpu0, client_cpu0 = process_cpu(proc.pid), time.process_time()
            result = asyncio.run(run_load(f"http://127.0.0.1:{port}", ids, args.dim, clients=args.clients,
                                          requests=args.requests, k=args.k))
            server_cpu, client_cpu = process_cpu(proc.pid) - server_cpu0, time.process_time() - client_cpu0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print_table(result, f"{args.clients} clients, {args.requests} requests, k={args.k}, {len(ids)} items "
                            f"x {args.dim} ({built['kind']}), {os.cpu_count()} cores")
        n = sum(result.statuses.values())
        per = 1000 * server_cpu / n
        print(f"server CPU {server_cpu:.1f} s = {per:.2f} ms per request (client {1000 * client_cpu / n:.2f} ms); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. On 2 idle cores the server alone "
              f"would sustain ~{2000 / per:.0f} req/s, i.e. ~{args.clients * per / 2:.0f} ms mean latency at "
              f"{args.clients} in flight (Little's law)")


if __name__ == "__main__":
    main()
