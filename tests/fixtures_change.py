"""Synthetic two-date scenes for the change tests: OSCD-like band folders (one file per band at native
resolution) of the smooth pattern of `fixtures_scenes` with a fixed texture, the second date with a bright
square (a "new building")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from fixtures_scenes import CRS, ORIGIN, RES, pattern, write_band

ALL = tuple(RES)
SQUARE = (40, 72, 24, 56)  # rows r0:r1, cols c0:c1 of the changed area on the 10 m grid


def land(band: str, n: int, res: float) -> np.ndarray:
    """Mostly land (the smooth pattern of `fixtures_scenes` shifted so that only a 150 m strip is water)."""
    shifted = pattern(band, n, n + 65 // max(1, int(res) // 10), res)
    return shifted[:, shifted.shape[1] - n:].astype(np.float64)


def changed(band: str, arr: np.ndarray, res: int, box: tuple[int, int, int, int] = SQUARE) -> np.ndarray:
    """`arr` with a bright, spectrally flat square (a roof) over `box` (10 m pixels)."""
    r0, r1, c0, c1 = (v * 10 // res for v in box)
    out = arr.copy()
    out[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)] = 3500 + 50 * (ALL.index(band) % 3)
    return out


def make_date(folder: Path, *, size10: int = 96, change: bool = False, bands: Sequence[str] = ALL,
              origin: tuple[float, float] = ORIGIN, pixel: float = 10.0, stamp: str = "20200101",
              box: tuple[int, int, int, int] = SQUARE) -> Path:
    """One date as a band folder `<folder>/S2A_MSIL1C_<stamp>T100000_T33UXP_<band>.tif`; `pixel` scales every
    band's pixel size (another grid), `origin` moves it."""
    folder.mkdir(parents=True, exist_ok=True)
    for b in bands:
        res = RES[b]
        n = size10 * 10 // res
        noise = np.random.default_rng(ALL.index(b)).normal(0.0, 60.0, (n, n))  # the same texture on both dates
        arr = np.clip(land(b, n, res) + noise, 1, 10000).astype(np.uint16)
        if change:
            arr = changed(b, arr, res, box)
        write_band(folder / f"S2A_MSIL1C_{stamp}T100000_T33UXP_{b}.tif", arr, res * pixel / 10.0, origin=origin)
    return folder


def make_pair(root: Path, name: str = "town", **after_kwargs) -> tuple[Path, Path]:
    """(before, after) band folders in OSCD's layout `images/<name>/imgs_1|imgs_2` (with a dates.txt)."""
    base = root / "images" / name
    before = make_date(base / "imgs_1", stamp="20200101")
    after = make_date(base / "imgs_2", change=True, stamp="20210101", **after_kwargs)
    (base / "dates.txt").write_text("date_1: 20200101\ndate_2: 20210101\n")
    return before, after


def write_mask(root: Path, name: str, size10: int = 96, box: tuple[int, int, int, int] | None = SQUARE,
               value: int | None = None) -> Path:
    """OSCD change mask `labels/<name>/<name>-cm.tif` (1 no change, 2 change over `box`), not georeferenced;
    `value` fills the whole mask instead."""
    lab = np.ones((size10, size10), np.uint8)
    if value is not None:
        lab[:] = value
    elif box is not None:
        r0, r1, c0, c1 = box
        lab[r0:r1, c0:c1] = 2
    path = root / "labels" / name / f"{name}-cm.tif"
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=size10, height=size10, count=1, dtype="uint8") as ds:
        ds.write(lab[None])
    return path


__all__ = ["ALL", "CRS", "SQUARE", "changed", "make_date", "make_pair", "write_mask"]


def labelled_root(root: Path, boxes: dict[str, tuple[int, int, int, int]]) -> Path:
    """An OSCD-layout folder of labelled pairs: per name, two dates with the change in `box` and its mask."""
    for name, box in boxes.items():
        base = root / "images" / name
        make_date(base / "imgs_1")
        make_date(base / "imgs_2", change=True, box=box)
        write_mask(root, name, box=box)
    return root
