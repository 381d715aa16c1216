"""Load test of `spectraclip serve` on loopback: concurrent clients, a bounded number of requests, a mix of
good and bad requests, against a synthetic index (clustered vectors with footprints, dates and a label
column). Prints latency percentiles per request kind, status counts, and whether every bad request got a 4xx.

The server is `spectraclip serve` in its own process(es) (`--workers`); the baseline row is `GET /healthz` (the
HTTP round trip alone), measured in the same run. Two clients:

- the Python client (asyncio streams over keep-alive connections, requests encoded before the run) checks the
  contract request by request: every good request a 200, every bad one a 4xx, no 5xx, with latency per request
  kind. Until 2 Dec it used httpx, which cost ~4 ms of CPU per request on the same 2 cores as the server and
  made the client its own bottleneck (p99 ~1 s while wrk measured ~160 ms against the same server).
- `wrk` (C, Debian package `wrk`; `make bench-deps`), driven by a generated Lua script sending the same mix,
  measures the server's latency distribution at the same concurrency for ~0.1 ms of client CPU per request;
  it counts statuses by class (it cannot pair a reply with its request kind).

    python benchmarks/bench_serve_load.py [--items 100000] [--dim 512] [--clients 50] [--requests 5000] [--k 50]
        [--workers 1,2] [--client both|python|wrk] [--passes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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


def request_plan(ids: list[str], dim: int, k: int, requests: int, bad_fraction: float = 0.25,
                 seed: int = 0) -> list[tuple[str, bool, str, str, dict]]:
    """`requests` concrete requests (kind, is_bad, method, path, httpx kwargs), a `bad_fraction` of them bad."""
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
    return plan


def _lua_string(text: str) -> str:
    eq = "="
    while f"]{eq}]" in text:
        eq += "="
    return f"[{eq}[{text}]{eq}]"


def wrk_script(plan: list[tuple[str, bool, str, str, dict]], per_thread: int, done_dir: Path) -> str:
    """A wrk Lua script cycling through `plan` (each thread from its own offset), stopping each thread after
    `per_thread` replies (and dropping a file in `done_dir`: wrk's main thread sleeps out `-d` otherwise, so the
    harness interrupts it once every thread is done), and printing statuses and latency percentiles as JSON."""
    rows = []
    for _kind, _bad, method, path, kwargs in plan:
        body = kwargs.get("content")
        if body is None and "json" in kwargs:
            body = json.dumps(kwargs["json"])
        body = body.decode() if isinstance(body, bytes) else body
        rows.append("{" + f"m={_lua_string(method)}, p={_lua_string(path)}, "
                    f"b={_lua_string(body) if body is not None else 'nil'}" + "}")
    return "\n".join([
        "local reqs = {" + ",\n".join(rows) + "}",
        "local threads = {}",
        "local n_threads = 0",
        "function setup(thread) n_threads = n_threads + 1; thread:set('offset', n_threads * 7919); "
        "table.insert(threads, thread) end",
        "local sent, got = 0, 0",
        "statuses = {}",
        "local headers = {['Content-Type'] = 'application/json'}",
        "function request()",
        "  local r = reqs[(offset + sent) % #reqs + 1]",
        "  sent = sent + 1",
        "  if r.b then return wrk.format(r.m, r.p, headers, r.b) end",
        "  return wrk.format(r.m, r.p)",
        "end",
        "function response(status, hdrs, body)",
        "  statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1",
        "  got = got + 1",
        f"  if got == {per_thread} then",
        f"    local f = io.open({_lua_string(str(done_dir))} .. '/' .. tostring(offset), 'w'); f:close()",
        "    wrk.thread:stop()",
        "  end",
        "end",
        "function done(summary, latency, requests)",
        "  local parts = {}",
        "  local total = {}",
        "  for _, t in ipairs(threads) do",
        "    local st = t:get('statuses')",
        "    for code, n in pairs(st) do total[code] = (total[code] or 0) + n end",
        "  end",
        "  for code, n in pairs(total) do table.insert(parts, string.format('\"%s\": %d', code, n)) end",
        "  local e = summary.errors",
        "  io.write(string.format('WRK_RESULT {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, "
        "\"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d, \"errors\": %d, \"statuses\": {%s}}\\n', "
        "summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), "
        "latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, "
        "table.concat(parts, ', ')))",
        "end",
    ])


def run_wrk(base_url: str, plan: list[tuple[str, bool, str, str, dict]], *, clients: int, requests: int,
            threads: int = 2, workdir: Path) -> dict:
    """Run wrk with `clients` connections over `threads` threads until `requests` replies; its JSON summary."""
    import signal

    per_thread = max(1, requests // threads)
    done = Path(tempfile.mkdtemp(dir=workdir, prefix="wrk-done-"))
    script = workdir / "mix.lua"
    script.write_text(wrk_script(plan, per_thread, done))
    cmd = ["wrk", "-t", str(threads), "-c", str(clients), "-d", "900s", "--timeout", "30s", "-s", str(script),
           base_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while proc.poll() is None and len(list(done.iterdir())) < threads:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # every thread has its replies: wrk prints its summary and exits
    out = proc.communicate(timeout=60)[0]
    if "WRK_RESULT " not in out:
        raise SystemExit(f"wrk failed: {out[-2000:]}")
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_RESULT "))
    return json.loads(line[len("WRK_RESULT "):])


def encode_request(method: str, path: str, kwargs: dict, host: str) -> bytes:
    """One HTTP/1.1 keep-alive request, encoded once before the run (a `request_plan` entry's httpx kwargs)."""
    body = json.dumps(kwargs["json"]).encode() if "json" in kwargs else kwargs.get("content", b"")
    headers = {"Host": host, **kwargs.get("headers", {})}
    if "json" in kwargs:
        headers["Content-Type"] = "application/json"
    if method == "POST":
        headers["Content-Length"] = str(len(body))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server keeps the connection) of one HTTP/1.1 response (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:] if ln)}
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(x[:-2] for x in parts)
    else:
        body = await reader.readexactly(int(fields.get(b"content-length", b"0")))
    return status, body, fields.get(b"connection", b"").lower() != b"close"


async def run_load(base_url: str, ids: list[str], dim: int, *, clients: int = 50, requests: int = 5000,
                   k: int = 50, bad_fraction: float = 0.25, seed: int = 0) -> LoadResult:
    """Send `requests` requests from `clients` concurrent keep-alive connections (a 1/bad_fraction share bad)
    and check each reply's status against its request kind. The requests are encoded before the run and the
    replies read with asyncio streams: ~0.3 ms of client CPU per request instead of httpx's ~4 ms, which on
    2 shared cores had made the client, not the server, the bottleneck of its own latencies."""
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    plan = request_plan(ids, dim, k, requests, bad_fraction, seed)
    result = LoadResult()
    queue: asyncio.Queue = asyncio.Queue()
    for kind, is_bad, method, path, kwargs in plan:
        queue.put_nowait((kind, is_bad, path, encode_request(method, path, kwargs, f"{host}:{port}")))

    async def worker() -> None:
        reader = writer = None
        while True:
            try:
                kind, is_bad, path, data = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(data)
                status, body, keep = await asyncio.wait_for(read_response(reader), 60)
                if not keep:
                    writer.close()
                    reader = writer = None
                if status == 200 and path == "/search" and b'"hits"' not in body:
                    result.violations.append(f"{kind}: a 200 without hits")
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status = 0
                result.violations.append(f"{kind}: {type(exc).__name__} {exc}")
                if writer is not None:
                    writer.close()
                reader = writer = None
            result.latencies[kind].append((time.perf_counter() - t0) * 1000)
            result.statuses[status] += 1
            if is_bad:
                result.bad_status[kind][status] += 1
                if not 400 <= status < 500:
                    result.violations.append(f"{kind} got {status}")
            elif status != 200:
                result.violations.append(f"{kind} {path} got {status}")
        if writer is not None:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
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
    """User + system CPU seconds of a process and its children so far (Linux /proc): a measure the machine's
    load does not skew (uvicorn's worker processes are children of the server)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        me = int(stat.parent.name)
        if me == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def build_synthetic_index(out: Path, items: int, dim: int, seed: int = 0) -> tuple[list[str], dict]:
    """A synthetic table (footprints over Europe, dates, split) of clustered vectors varying along 32-dim
    subspaces (like real CLIP embeddings; bench_index.py's generator) and its index (auto kind, tuned)."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_index import clustered
    from fixtures_index import synthetic_table

    from spectraclip.index.build import build_index

    vectors = clustered(items, dim, seed=seed, intrinsic=32)
    table = synthetic_table(out / "table.parquet", items, dim, seed=seed, vectors=vectors)
    report = build_index([table], out / "idx")
    return [f"s{i}" for i in range(items)], {"kind": report.plan.factory, "build_s": report.seconds}


def start_server(index_dir: Path, workers: int, *, capture_output: bool = False) -> tuple[subprocess.Popen, str]:
    """`spectraclip serve INDEX --workers N` on a free loopback port; returns once /healthz answers
    (`capture_output`: the server's stdout and stderr go to `proc.stdout`, else they are discarded)."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "spectraclip.cli.main", "serve", str(index_dir), "--port",
                             str(port), "--workers", str(workers)], env=env,
                            stdout=subprocess.PIPE if capture_output else subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if capture_output else None)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    time.sleep(1.0 if workers > 1 else 0)  # let every worker finish its warm-up
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--workers", default="1,2", help="server worker processes to compare (comma list)")
    ap.add_argument("--client", default="both", choices=("both", "python", "wrk"))
    ap.add_argument("--passes", type=int, default=3, help="passes of each client on one server (the first on a "
                    "fresh one)")
    ap.add_argument("--index", type=Path, help="index folder: built there when absent, reused when present")
    args = ap.parse_args()
    use_wrk = args.client in ("both", "wrk")
    if use_wrk and shutil.which("wrk") is None:
        print("wrk is not installed (apt install wrk, or make bench-deps): the wrk rows are skipped")
        use_wrk = False
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
        plan = request_plan(ids, args.dim, args.k, args.requests)
        summary = []
        for workers in [int(w) for w in args.workers.split(",")]:
            if args.client in ("both", "python"):
                proc, url = start_server(idx, workers)
                try:
                    for rnd in range(1, args.passes + 1):  # pass 1 on a fresh server, then warm passes
                        server_cpu0, client_cpu0 = process_cpu(proc.pid), time.process_time()
                        result = asyncio.run(run_load(url, ids, args.dim, clients=args.clients,
                                                      requests=args.requests, k=args.k))
                        server_cpu = process_cpu(proc.pid) - server_cpu0
                        client_cpu = time.process_time() - client_cpu0
                        label = f"python, {workers} worker(s), pass {rnd}{' (fresh)' if rnd == 1 else ''}"
                        print_table(result, f"Python client, {label}: {args.clients} clients, {args.requests} "
                                            f"requests, k={args.k}, {len(ids)} items x {args.dim} ({built['kind']}), "
                                            f"{os.cpu_count()} cores")
                        n = sum(result.statuses.values())
                        searches = [v for kname, vals in result.latencies.items() if not kname.startswith("bad:")
                                    and kname not in ("item", "healthz") for v in vals]
                        every = [v for vals in result.latencies.values() for v in vals]
                        p50, p99, _ = percentiles(searches)
                        a50, a99, _ = percentiles(every)
                        summary.append((label, n, n / result.seconds, a50, a99,
                                        sum(c for st, c in result.statuses.items() if st >= 500 or st == 0),
                                        len(result.violations), 1000 * server_cpu / n, 1000 * client_cpu / n,
                                        p50, p99))
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
            if use_wrk:
                proc, url = start_server(idx, workers)
                try:
                    for rnd in range(1, args.passes + 1):  # pass 1 on a fresh server, then warm passes
                        cpu0 = process_cpu(proc.pid)
                        w = run_wrk(url, plan, clients=args.clients, requests=args.requests, workdir=Path(tmp))
                        server_cpu = process_cpu(proc.pid) - cpu0
                        n = w["requests"]
                        five = sum(c for st, c in w["statuses"].items() if int(st) >= 500) + w["errors"]
                        print(f"wrk, {workers} worker(s), pass {rnd}: {n} requests in {w['duration_us'] / 1e6:.1f} s; "
                              f"statuses {dict(sorted(w['statuses'].items()))}; socket errors {w['errors']}")
                        label = f"wrk, {workers} worker(s), pass {rnd}{' (fresh)' if rnd == 1 else ''}"
                        summary.append((label, n, n / (w["duration_us"] / 1e6), w["p50_us"] / 1000,
                                        w["p99_us"] / 1000, five, None, 1000 * server_cpu / n, None, None, None))
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{args.clients} concurrent clients, mixed good/bad requests (25 % bad), k={args.k}, "
                            f"{len(ids)} x {args.dim} ({built['kind']}); load average {os.getloadavg()[0]:.1f}")
        for col in ("client, server", "requests", "req/s", "p50 ms", "p99 ms", "searches p50 ms", "searches p99 ms",
                    "5xx + socket errors", "contract violations", "server CPU ms/req", "client CPU ms/req"):
            table.add_column(col, justify="left" if col.startswith("client,") else "right")
        for row in summary:
            table.add_row(row[0], str(row[1]), f"{row[2]:.0f}", f"{row[3]:.1f}", f"{row[4]:.1f}",
                          "" if row[9] is None else f"{row[9]:.1f}", "" if row[10] is None else f"{row[10]:.1f}",
                          str(row[5]),
                          "" if row[6] is None else str(row[6]), f"{row[7]:.2f}",
                          "" if row[8] is None else f"{row[8]:.2f}")
        Console(width=200).print(table)
        print("p50/p99: every request of the mix; searches: the good POST /search requests only (the Python client "
              "pairs replies with request kinds, wrk cannot).")


if __name__ == "__main__":
    main()
