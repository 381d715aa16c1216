"""Workspace speed: ranking N vectors with a linear probe (`probe.active.rank_vectors`), and map tiles served to
20 concurrent clients (uvicorn in a thread on 127.0.0.1, httpx clients, a bounded number of requests).

    PYTHONPATH=src:tests python benchmarks/bench_workspace.py [--n 1000000] [--dim 512] [--requests 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(v), q))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=400)
    args = ap.parse_args()
    import warnings

    warnings.simplefilter("ignore")  # rio-tiler's NoOverviewWarning per tile
    from spectraclip.probe.active import fit_linear_probe, rank_vectors, rank_vectors_softmax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    lab = ["positive" if i % 3 == 0 else "negative" for i in range(30)]
    probe = fit_linear_probe(x[:30], lab, positive="positive")
    res = {}
    for name, fn in (("old: [N,2] softmax", rank_vectors_softmax), ("new: one dot product", rank_vectors)) * 2:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            r = fn(probe, x, k=50, n_uncertain=20, exclude=range(30))
            times.append((time.perf_counter() - t0) * 1000)
        res[name] = (statistics.median(times), r)  # the second pass of each (warm) is kept
        print(f"rank {args.n} x {args.dim} ({name}): p50 {statistics.median(times):.1f} ms, "
              f"min {min(times):.1f} ms, max {max(times):.1f} ms ({args.repeats} runs)")
    (a, ra), (b, rb) = res.values()
    print(f"ranking ratio old/new {a / b:.2f}x; same top 50: {bool((ra.top_rows == rb.top_rows).all())}")
    del x

    import httpx
    import morecantile
    from fixtures_index import running_server
    from fixtures_workspace import class_map, heat_map, synthetic_index

    from spectraclip.serve.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        idx = synthetic_index(d / "ws")
        layers = [class_map(d / "map.tif", size=2048, res=0.00025), heat_map(d / "heat.tif", size=2048, res=0.00025)]
        tms = morecantile.tms.get("WebMercatorQuad")
        tiles = [(name, t) for z in (11, 12, 13) for name in ("map", "heat")
                 for t in tms.tiles(5.0, 49.5, 5.5, 50.0, [z])]
        with running_server(create_app(idx, layers=layers, labels=False, warm=False)) as url:
            lat: list[float] = []
            codes: dict[int, int] = {}

            def worker(c: int) -> None:
                with httpx.Client(base_url=url, timeout=60) as h:
                    for j in range(args.requests // args.clients):
                        name, t = tiles[(c * 7919 + j * 31) % len(tiles)]
                        t0 = time.perf_counter()
                        r = h.get(f"/tiles/{name}/{t.z}/{t.x}/{t.y}.png")
                        lat.append((time.perf_counter() - t0) * 1000)
                        codes[r.status_code] = codes.get(r.status_code, 0) + 1

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(worker, range(args.clients)))
            wall = time.perf_counter() - t0
        print(f"tiles: {len(lat)} requests from {args.clients} concurrent clients in {wall:.1f} s "
              f"({len(lat) / wall:.0f}/s): p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms; statuses {codes}")


if __name__ == "__main__":
    main()
