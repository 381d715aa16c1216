"""Band folders: one single-band raster per band (BigEarthNet `<patch>_B04.tif`, SSL4EO-S12 `B4.tif`),
read at native resolutions and resampled to the finest grid."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from spectraclip.bands import CATALOG, BandError, BandSet, canonical_band_name
from spectraclip.io.errors import BandOrderError, CorruptRasterError, NoRastersError
from spectraclip.io.nodata import apply_nodata_policy
from spectraclip.io.radiometry import Radiometry, RadiometryError, from_tags, stack
from spectraclip.io.sample import Sample
from spectraclip.io.tiff import georef, open_raster, raster_radiometry, read_pixels

BAND_FILE_SUFFIXES = frozenset({".tif", ".tiff", ".jp2"})
# Only band-like tokens count in file names (never common names like "red"), so ordinary image
# names such as `Forest_12.tif` are not mistaken for bands.
_TOKEN_RE = re.compile(r"^(B\d{1,2}A?|VV|VH|COH_VV|COH_VH)$", re.IGNORECASE)
_CATALOG_ORDER = {name: i for i, name in enumerate(CATALOG)}


def band_name_from_filename(path: str | Path) -> str | None:
    """The canonical band a file name ends with (`x_B8A.tif` → B8A, `B4.tif` → B04, `p_VV.tif` → VV)."""
    parts = [p for p in re.split(r"[_\-.\s]+", Path(path).stem) if p]
    for cand in (Path(path).stem, "_".join(parts[-2:]), parts[-1] if parts else ""):
        if cand and _TOKEN_RE.match(cand):
            try:
                return canonical_band_name(cand)
            except BandError:
                continue
    return None


def band_files(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Band-named raster files directly in `folder` (band → file) and any band named by several files."""
    found: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in BAND_FILE_SUFFIXES and not f.name.startswith("."):
            name = band_name_from_filename(f)
            if name is not None:
                found.setdefault(name, []).append(f)
    single = {b: fs[0] for b, fs in found.items() if len(fs) == 1}
    dups = {b: fs for b, fs in found.items() if len(fs) > 1}
    return single, dups


def is_band_folder(folder: Path) -> bool:
    """A folder whose raster files name at least two distinct bands, each by exactly one file."""
    if not folder.is_dir():
        return False
    single, dups = band_files(folder)
    return len(single) >= 2 and not dups


def read_band_folder(
    folder: Path, bands: BandSet | str | Sequence[str] | None, nodata: str, radiometry: Radiometry | None = None
) -> Sample:
    """Read a band folder into one Sample on the finest band's grid (bilinear), georef from that band;
    radiometry is `radiometry` when given, else the band files' tags or the folder's metadata JSON."""
    if not any(folder.iterdir()):
        raise NoRastersError(folder, "empty folder")
    files, dups = band_files(folder)
    if dups:
        listing = "; ".join(f"{b}: {', '.join(f.name for f in fs)}" for b, fs in dups.items())
        raise BandOrderError(folder, f"several files name the same band ({listing})")
    if not files:
        raise NoRastersError(
            folder,
            "no band files found (expected one raster per band named like B04.tif, <patch>_B04.tif, "
            "<patch>_VV.tif)",
        )
    if bands is None:
        want = BandSet(tuple(sorted(files, key=_CATALOG_ORDER.__getitem__)))
    else:
        try:
            want = BandSet.parse(bands)
        except BandError as exc:
            raise BandOrderError(folder, f"bad --bands value: {exc}") from exc
        missing = [b for b in want if b not in files]
        if missing:
            raise BandOrderError(
                folder,
                f"no file for band(s) {', '.join(missing)}; the folder has {', '.join(sorted(files))}",
            )
    with contextlib.ExitStack() as stack:
        opened = {b: stack.enter_context(open_raster(f)) for b, f in files.items()}
        for b, ds in opened.items():
            if ds.count != 1:
                raise BandOrderError(files[b], f"has {ds.count} bands; a band folder needs one band per file")
        finest = max(opened, key=lambda b: (opened[b].height * opened[b].width, -_CATALOG_ORDER[b]))
        ref = opened[finest]
        shape = (ref.height, ref.width)
        crs, transform = georef(ref)
        radiometry = radiometry or _folder_radiometry(folder, want, opened, files)
        planes, masks, resampled, dtypes = [], [], [], {}
        for b in want:
            ds = opened[b]
            same = (ds.height, ds.width) == shape
            data, invalid = read_pixels(ds, files[b], [1], None if same else shape, Resampling.bilinear)
            planes.append(data[0])
            masks.append(invalid[0])
            dtypes[b] = ds.dtypes[0]
            if not same:
                resampled.append(b)
    pixels = np.stack(planes)
    meta: dict[str, Any] = {
        "source": "band-folder",
        "band_files": {b: files[b].name for b in want},
        "grid_band": finest,
        "resampled": resampled,
        "dtype": sorted(set(dtypes.values()))[0] if len(set(dtypes.values())) == 1 else dtypes,
        "radiometry": radiometry,
    }
    pixels, info, kept = apply_nodata_policy(pixels, np.stack(masks), want, folder, nodata)
    meta.update(info)
    return Sample(pixels, want, folder.name, str(folder), crs, transform, meta, kept)


def product_metadata(folder: Path) -> tuple[dict[str, Any], str]:
    """The product properties of a band folder's metadata JSON (SSL4EO-S12 / Earth Engine `metadata.json`,
    or a STAC item's `properties`) and its file name; empty when there is none."""
    for f in sorted(folder.glob("*.json")):
        if "metadata" not in f.name.lower() and "stac" not in f.name.lower():
            continue
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            props = data.get("properties")
            return ({**data, **props} if isinstance(props, dict) else data), f.name
    return {}, ""


def _folder_radiometry(
    folder: Path, want: BandSet, opened: dict[str, Any], files: dict[str, Path]
) -> Radiometry | None:
    """Every band file's own tags when each has some, else the folder's product metadata, else None."""
    parts = [raster_radiometry(opened[b], files[b], [1], [b]) for b in want]
    if all(p is not None for p in parts):
        return stack(parts, want.names, f"tags of the band files of {folder.name}")  # type: ignore[arg-type]
    props, name = product_metadata(folder)
    if not props:
        return None
    try:
        return from_tags(props, bands=want.names, source=f"{folder.name}/{name}")
    except RadiometryError as exc:
        raise CorruptRasterError(folder / name, f"unusable radiometry metadata ({exc})") from exc
