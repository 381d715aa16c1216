"""Peak RSS of a time series over a synthetic stack of many dates (issue 31: the long table streams to the output).

    PYTHONPATH=src:tests python benchmarks/timeseries_memory.py [DATES] [SIZE] [STRIDE]

Builds DATES dates of SIZE x SIZE px (tests/fixtures_timeseries.py), runs `timeseries_stack` with the tiny-test
model, `--metric embedding --embeddings`, tile 16 and the given stride, and prints the windows, the rows and the
peak resident set size (resource.getrusage, KiB on Linux) after loading the model and at the end. Run it with
another PYTHONPATH to measure another version of the code (the memory of one process: run each version apart).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np


def main() -> None:
    n_dates = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    stride = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    from fixtures_timeseries import Plant, make_stack

    from spectraclip.apps.runner import SceneOptions
    from spectraclip.models.loading import load_model
    from spectraclip.timeseries.job import timeseries_stack

    blocks = size // 32
    dates = [date(2020, 1, 1) + timedelta(days=30 * t) for t in range(n_dates)]
    plant = Plant(dates, blocks, np.zeros(blocks * blocks), set(), set())
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = make_stack(Path(tmp), plant)
        model = load_model("tiny-test", bands="s2-l1c")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        opts = SceneOptions(tile=16, stride=stride, progress=False, device="cpu", batch_size=256,
                            precision="fp32", checkpoint_rows=64)
        res = timeseries_stack(model, [folder], Path(tmp) / "out", metric="embedding", embeddings=True,
                               options=opts, plots=False)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        import pyarrow.parquet as pq

        rows = pq.read_metadata(res.table).num_rows
    print(f"dates {n_dates}, {size}x{size} px, stride {stride}: {rows} rows; peak RSS after loading the model "
          f"{base / 1024:.0f} MiB, at the end {peak / 1024:.0f} MiB (+{(peak - base) / 1024:.0f} MiB); "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
