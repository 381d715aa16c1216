"""Labelled scene pairs for the change probe and its evaluation, in OSCD's layout:
`images/<city>/imgs_1|imgs_2` (the two dates) and `labels/<city>/<city>-cm.tif` (the change mask on the grid
of the first date's 10 m bands; 1 = no change, 2 = change, other values unknown).

OSCD's change labels are CC BY-NC-SA: they are read from where the user keeps them, never shipped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from spectraclip.change.grid import ChangeInputError

NO_CHANGE, CHANGE = 1, 2


@dataclass(frozen=True)
class LabelledPair:
    """One labelled pair: its name, the two dates' scene folders and the change mask file."""

    name: str
    before: Path
    after: Path
    labels: Path


def find_pairs(root: str | Path, cities: list[str] | None = None) -> list[LabelledPair]:
    """The labelled pairs under an OSCD-layout `root` (cities with both dates and a mask), sorted by name."""
    root = Path(root)
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise ChangeInputError(f"{root}: not an OSCD-layout folder (needs images/<city>/imgs_1|imgs_2 and "
                               "labels/<city>/<city>-cm.tif)")
    out = []
    for d in sorted(p for p in images.iterdir() if p.is_dir()):
        if cities is not None and d.name not in cities:
            continue
        mask = labels / d.name / f"{d.name}-cm.tif"
        if (d / "imgs_1").is_dir() and (d / "imgs_2").is_dir() and mask.is_file():
            out.append(LabelledPair(d.name, d / "imgs_1", d / "imgs_2", mask))
    if cities is not None:
        missing = sorted(set(cities) - {p.name for p in out})
        if missing:
            raise ChangeInputError(f"{root}: no labelled pair for {', '.join(missing)}")
    if not out:
        raise ChangeInputError(f"{root}: no city with images/<city>/imgs_1, imgs_2 and labels/<city>/<city>-cm.tif")
    return out


def read_change_mask(path: str | Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(change, known) bool masks of a change label file on a grid of `shape` (the first date's 10 m grid).

    A mask of another shape, or one without any known pixel, is a ChangeInputError naming the file."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as ds:
                lab = ds.read(1)
        except rasterio.errors.RasterioIOError as exc:
            raise ChangeInputError(f"{path}: cannot read the change mask ({exc})") from exc
    if lab.shape != tuple(shape):
        raise ChangeInputError(f"{path}: change mask of {lab.shape[0]}x{lab.shape[1]} pixels, but the first date's "
                               f"grid is {shape[0]}x{shape[1]}")
    known = (lab == NO_CHANGE) | (lab == CHANGE)
    if not known.any():
        values = ", ".join(str(v) for v in np.unique(lab)[:8])
        raise ChangeInputError(f"{path}: empty change mask: no pixel is {NO_CHANGE} (no change) or {CHANGE} "
                               f"(change); values found: {values}")
    return lab == CHANGE, known


__all__ = ["CHANGE", "NO_CHANGE", "LabelledPair", "find_pairs", "read_change_mask"]
