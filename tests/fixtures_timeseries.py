"""A synthetic stack of dated scenes with planted signals the time series must recover.

`make_stack(root)` writes `T` dates of a `size` x `size` scene (all 13 bands at 10 m plus an SCL layer, one band
folder per date, the date in the folder and file names) split into `tile`-pixel blocks, one window each:
- a planted trend per block (`Plant.trend[w]`, 0 for most): NIR up and red down, linearly over the dates
  (greening), by `trend[w]` of the full change at the last date;
- planted anomalies (`Plant.anomalies`: (block, date) pairs): the block replaced by water-like values that date;
- planted clouds (`Plant.clouds`: (block, date) pairs): the block bright white and SCL = 9 (cloud) that date.
Every date gets a little seeded noise, so blocks without a trend still wander a bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from fixtures_scenes import RES, pattern, write_band

BANDS = tuple(RES)


@dataclass
class Plant:
    dates: list[date]
    blocks: int  # per side
    trend: np.ndarray  # [blocks * blocks] share of the full greening reached at the last date
    anomalies: set[tuple[int, int]] = field(default_factory=set)  # (block, date index)
    clouds: set[tuple[int, int]] = field(default_factory=set)


def default_plant(n_dates: int = 10, blocks: int = 4, seed: int = 0) -> Plant:
    rng = np.random.default_rng(seed)
    dates = [date(2020, 1, 15) + timedelta(days=36 * i) for i in range(n_dates)]
    n = blocks * blocks
    trend = np.zeros(n)
    trend[rng.choice(n, size=n // 2, replace=False)] = rng.choice([0.5, 1.0, 1.5], size=n // 2)
    flat = [b for b in range(n) if trend[b] == 0]
    anomalies = {(int(flat[i % len(flat)]), int(d)) for i, d in enumerate(rng.choice(np.arange(2, n_dates - 1),
                                                                                   size=3, replace=False))}
    clouds = set()
    while len(clouds) < 5:
        c = (int(rng.integers(n)), int(rng.integers(n_dates)))
        if c not in anomalies:
            clouds.add(c)
    return Plant(dates, blocks, trend, anomalies, clouds)


def make_stack(root: Path, plant: Plant | None = None, tile: int = 32, seed: int = 0) -> tuple[Path, Plant]:
    """Write the stack under `root/stack` (a folder of dated band folders); returns it and what was planted."""
    plant = plant or default_plant()
    size = plant.blocks * tile
    rng = np.random.default_rng(seed + 1)
    base = {b: pattern(b, size, size, 10).astype(np.float64) for b in BANDS}
    # each block its own brightness, so blocks differ from one another
    gain = 0.7 + 0.6 * rng.random((plant.blocks, plant.blocks))
    gain_px = np.kron(gain, np.ones((tile, tile)))
    folder = root / "stack"
    T = len(plant.dates)
    for t, d in enumerate(plant.dates):
        stamp = d.strftime("%Y%m%d")
        dd = folder / f"S2A_MSIL2A_{stamp}T100000"
        dd.mkdir(parents=True, exist_ok=True)
        frac = t / max(1, T - 1)
        scl = np.full((size, size), 4, np.uint8)  # 4 = vegetation
        for b in BANDS:
            arr = base[b] * gain_px
            for k in range(plant.blocks * plant.blocks):
                r, c = divmod(k, plant.blocks)
                sl = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
                g = plant.trend[k] * frac
                if b in ("B08", "B8A", "B07"):
                    arr[sl] *= 1.0 + 0.8 * g
                elif b in ("B04", "B03", "B02"):
                    arr[sl] *= 1.0 - 0.45 * g
                if (k, t) in plant.anomalies:
                    arr[sl] = 80.0 if b in ("B08", "B8A", "B11", "B12") else 350.0
                if (k, t) in plant.clouds:
                    arr[sl] = 7000.0
                    scl[sl] = 9
            arr = arr * (1.0 + 0.01 * rng.standard_normal(arr.shape))
            write_band(dd / f"T33UXP_{stamp}T100000_{b}.tif", np.clip(arr, 1, 10000).astype(np.uint16), 10)
        write_band(dd / f"T33UXP_{stamp}T100000_SCL.tif", scl, 10)
    return folder, plant
