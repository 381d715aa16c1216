"""Read rasters into `Sample`s: multi-band GeoTIFFs, band folders and .npy/.npz arrays; find and iterate
over the readable items of files and folders, skipping and reporting bad ones."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from spectraclip.bands import BandSet
from spectraclip.errors import InputError
from spectraclip.io.arrays import ARRAY_SUFFIXES, read_array
from spectraclip.io.bandfolder import BAND_FILE_SUFFIXES, is_band_folder, read_band_folder
from spectraclip.io.errors import (
    BandOrderError,
    CorruptRasterError,
    InvalidPixelsError,
    NoRastersError,
    RasterError,
)
from spectraclip.io.geotiff import read_geotiff
from spectraclip.io.nodata import NODATA_POLICIES, check_policy
from spectraclip.io.radiometry import Radiometry, as_radiometry
from spectraclip.io.sample import Sample

log = logging.getLogger(__name__)

RASTER_SUFFIXES = BAND_FILE_SUFFIXES | ARRAY_SUFFIXES
PathLike = str | os.PathLike[str]
BandsSpec = BandSet | str | Sequence[str] | None
ErrorHandler = Callable[[Path, Exception], None]


def read_sample(
    path: PathLike,
    bands: BandsSpec = None,
    *,
    nodata: str = "error",
    radiometry: str | Radiometry | None = None,
) -> Sample:
    """Read one raster file, band folder or .npy/.npz into a float32 [C,H,W] Sample with named bands.

    Band order comes from `bands` (preset, comma list or BandSet), else the file's band descriptions
    (or band file names in a folder); anything else is a BandOrderError, never a guess. `nodata` says
    what NaN / declared-nodata pixels do: "error" (raise), "fill" (band mean of valid pixels), "ignore"
    (kept, marked in `Sample.invalid`). Pixels stay in the file's raw units; `meta["radiometry"]` says
    what they mean: `radiometry` (a Radiometry or a `--radiometry` value) when given, else what the
    file's tags or metadata say, else None (unknown).
    """
    check_policy(nodata)
    radiometry = as_radiometry(radiometry)
    p = Path(path)
    if not p.exists():
        raise NoRastersError(p, "no such file or folder")
    if p.is_dir():
        return read_band_folder(p, bands, nodata, radiometry)
    if not os.access(p, os.R_OK):
        raise CorruptRasterError(p, "file is not readable (permission denied)")
    if p.stat().st_size == 0:
        raise CorruptRasterError(p, "file is empty (0 bytes)")
    if p.suffix.lower() in ARRAY_SUFFIXES:
        return read_array(p, bands, nodata, radiometry)
    return read_geotiff(p, bands, nodata, radiometry)


def _walk(folder: Path, out: dict[Path, Path]) -> None:
    """Add the band folders and raster files under `folder` to `out`, not descending into band folders."""
    if is_band_folder(folder):
        out.setdefault(folder.resolve(), folder)
        return
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            _walk(child, out)
        elif child.suffix.lower() in RASTER_SUFFIXES:
            out.setdefault(child.resolve(), child)


def find_items(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Expand files and folders into readable items: raster files and band folders (one item each), sorted.

    A file named explicitly is kept whatever its suffix (reading it reports any problem); folders are
    searched recursively for .tif/.tiff/.jp2/.npy/.npz files and band folders.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = [Path(p) for p in paths]
    found: dict[Path, Path] = {}
    for p in paths:
        if not p.exists():
            raise NoRastersError(p, "no such file or folder")
        if p.is_dir():
            _walk(p, found)
        else:
            found.setdefault(p.resolve(), p)
    if not found:
        where = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise NoRastersError(
            where, f"no rasters ({', '.join(sorted(RASTER_SUFFIXES))}) or band folders found"
        )
    return sorted(found.values(), key=str)


def _warn(path: Path, exc: Exception) -> None:
    log.warning("skipping %s: %s", path, exc)


def iter_samples(
    paths: PathLike | Iterable[PathLike],
    bands: BandsSpec = None,
    *,
    nodata: str = "error",
    radiometry: str | Radiometry | None = None,
    on_error: ErrorHandler | None = None,
) -> Iterator[Sample]:
    """Read every item of `find_items(paths)` (arguments as `read_sample`); a bad item is reported to
    `on_error(path, exc)` (default: a logged warning) and skipped, so one bad file never stops a folder run."""
    check_policy(nodata)
    radiometry = as_radiometry(radiometry)
    report = on_error or _warn
    for item in find_items(paths):
        try:
            sample = read_sample(item, bands, nodata=nodata, radiometry=radiometry)
        except InputError as exc:  # a bad item is reported and skipped; anything else is a bug and stops
            report(item, exc)
            continue
        yield sample


__all__ = [
    "NODATA_POLICIES",
    "RASTER_SUFFIXES",
    "BandOrderError",
    "CorruptRasterError",
    "InvalidPixelsError",
    "NoRastersError",
    "RasterError",
    "find_items",
    "iter_samples",
    "read_sample",
]
