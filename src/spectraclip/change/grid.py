"""Two dates on one grid: the bands both scenes share (by name), the overlap of their footprints, and the
AFTER scene reprojected onto BEFORE's finest grid when CRS or transform differ.

Reprojection is lazy: each band of a scene that is not already on the common grid becomes a GDAL warped VRT
(a small XML file) on that grid, so windows are still read one at a time and memory stays bounded. When the
footprints overlap only partly, the common grid is the part of BEFORE's grid inside both (said in `notes`).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from spectraclip.io.scene import BandSource, Scene, SceneError

_DATE = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?:T\d{6})?(?!\d)")


class ChangeInputError(SceneError):
    """Two scenes that cannot be compared as given (no overlap, no shared band, a bad label mask)."""


@dataclass
class PairGrid:
    """BEFORE and AFTER read on one common grid (same height, width, CRS, transform), and what it took."""

    before: Scene
    after: Scene
    bands: list[str]
    offset: tuple[int, int]  # (row, col) of the common grid in BEFORE's own grid
    before_shape: tuple[int, int]
    overlap: float  # share of BEFORE's area that the common grid covers
    reprojected: bool
    dates: tuple[date | None, date | None] = (None, None)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"bands": self.bands, "offset": list(self.offset), "before_shape": list(self.before_shape),
                "overlap": round(self.overlap, 6), "reprojected": self.reprojected,
                "dates": [d.isoformat() if d else None for d in self.dates], "notes": self.notes}


def scene_date(scene: Scene) -> date | None:
    """Acquisition date of a scene: from `dates.txt` beside an OSCD `imgs_N` folder, else its file names."""
    p = Path(scene.path)
    m = re.fullmatch(r"imgs_(\d)", p.name)
    dates_file = p.parent / "dates.txt"
    if m and dates_file.is_file():
        for line in dates_file.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == f"date_{m.group(1)}":
                d = parse_date(value.strip())
                if d:
                    return d
    for text in [p.name, *(Path(s.path).name for s in scene.sources.values())]:
        d = parse_date(text)
        if d:
            return d
    return None


def parse_date(text: str) -> date | None:
    """The first valid YYYYMMDD date in `text` (`20170829`, `..._20170829T102021_...`), None without one."""
    for m in _DATE.finditer(text):
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
    return None


def _bounds(scene: Scene, crs: str | None) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of `scene` in `crs`."""
    a = scene.affine
    xs = [a.c, a.c + a.a * scene.width]
    ys = [a.f, a.f + a.e * scene.height]
    left, right, bottom, top = min(xs), max(xs), min(ys), max(ys)
    if crs and scene.crs and crs != scene.crs:
        from rasterio.warp import transform_bounds

        return tuple(transform_bounds(scene.crs, crs, left, bottom, right, top, densify_pts=21))  # type: ignore
    return left, bottom, right, top


def _same_grid(a: Scene, b: Scene) -> bool:
    if (a.height, a.width) != (b.height, b.width) or (a.crs or None) != (b.crs or None):
        return False
    tol = 1e-6 * max(abs(a.transform[0]), abs(a.transform[4]))
    return all(abs(x - y) <= max(tol, 1e-9) for x, y in zip(a.transform[:6], b.transform[:6], strict=True))


def _warp_band(src: BandSource, out: Path, crs: str | None, transform: Affine, height: int, width: int,
               nodata: float | None, resampling: Resampling = Resampling.bilinear) -> Path:
    """A warped VRT of one band on the common grid (bilinear; nearest for class layers), written atomically."""
    from rasterio.shutil import copy as rio_copy
    from rasterio.vrt import WarpedVRT

    from spectraclip.io.atomic import atomic_path

    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src.path) as ds:
            fill = nodata if nodata is not None else 0.0
            opts: dict[str, Any] = {"crs": crs or ds.crs, "transform": transform, "width": width, "height": height,
                                    "resampling": resampling, "nodata": fill, "src_nodata": fill}
            with WarpedVRT(ds, **opts) as vrt, atomic_path(out) as tmp:
                rio_copy(vrt, tmp, driver="VRT")
    return out


def _on_grid(scene: Scene, folder: Path, tag: str, crs: str | None, transform: Affine, height: int,
             width: int) -> Scene:
    """`scene` with every band warped onto the grid (one VRT per band, all at the grid's resolution)."""
    sources: dict[str, BandSource] = {}
    nodata: dict[str, float | None] = {}
    for b, s in scene.sources.items():
        nd = scene.nodata.get(b)
        nd = None if nd is not None and math.isnan(nd) else nd
        if s.index != 1:
            raise ChangeInputError(f"{scene.path}: band {b} is band {s.index} of a multi-band file on another grid; "
                                   "reprojecting multi-band files is not supported, give a band folder")
        vrt = _warp_band(s, folder / f"{tag}_{b}.vrt", crs, transform, height, width, nd)
        sources[b] = BandSource(b, str(vrt.resolve()), 1)
        nodata[b] = nd if nd is not None else 0.0
    scl = None
    if scene.scl is not None:  # the cloud layer travels with the scene (nearest: its values are classes)
        vrt = _warp_band(scene.scl, folder / f"{tag}_SCL.vrt", crs, transform, height, width, None, Resampling.nearest)
        scl = BandSource("SCL", str(vrt.resolve()), 1)
    return Scene(scene.path, scene.id, sources, height, width, crs, tuple(float(v) for v in tuple(transform)[:6]),
                 scene.grid_band, scl, nodata, scene.kind)


def align_pair(before: Scene, after: Scene, bands: list[str], work_dir: str | Path) -> PairGrid:
    """BEFORE and AFTER restricted to `bands` on one grid: BEFORE's finest grid, cut to the part inside both
    footprints; AFTER reprojected there (warped VRTs in `work_dir`) unless it is on that grid already."""
    b_sel, a_sel = before.select(bands), after.select(bands)
    dates = (scene_date(before), scene_date(after))
    notes: list[str] = []
    if dates[0] and dates[1] and dates[1] < dates[0]:
        notes.append(f"dates in the wrong order: AFTER ({after.path}, {dates[1]}) is earlier than BEFORE "
                     f"({before.path}, {dates[0]}); the change is computed as given (AFTER minus BEFORE)")
    if _same_grid(b_sel, a_sel):
        return PairGrid(b_sel, a_sel, bands, (0, 0), (before.height, before.width), 1.0, False, dates, notes)
    if (before.crs is None) != (after.crs is None):
        raise ChangeInputError(f"{before.path} and {after.path}: one is georeferenced and the other is not; "
                               "they cannot be brought onto one grid")
    if before.crs is None:
        raise ChangeInputError(f"{before.path} ({before.height}x{before.width}) and {after.path} "
                               f"({after.height}x{after.width}) are not georeferenced and not on the same grid")
    bl, bb, br, bt = _bounds(before, before.crs)
    al, ab, ar, at = _bounds(after, before.crs)
    left, bottom, right, top = max(bl, al), max(bb, ab), min(br, ar), min(bt, at)
    if left >= right or bottom >= top:
        raise ChangeInputError(f"{before.path} and {after.path} do not overlap: BEFORE covers "
                               f"{tuple(round(v, 6) for v in (bl, bb, br, bt))} and AFTER "
                               f"{tuple(round(v, 6) for v in (al, ab, ar, at))} in {before.crs}")
    inv = ~before.affine
    cols, rows = zip(*(inv @ (x, y) for x, y in ((left, top), (right, bottom))), strict=True)
    eps = 1e-6
    r0 = max(0, math.ceil(min(rows) - eps))
    r1 = min(before.height, math.floor(max(rows) + eps))
    c0 = max(0, math.ceil(min(cols) - eps))
    c1 = min(before.width, math.floor(max(cols) + eps))
    if r1 - r0 < 1 or c1 - c0 < 1:
        raise ChangeInputError(f"{before.path} and {after.path} overlap in less than one pixel of BEFORE's grid")
    h, w = r1 - r0, c1 - c0
    overlap = (h * w) / float(before.height * before.width)
    transform = before.affine @ Affine.translation(c0, r0)
    folder = Path(work_dir)
    if (r0, c0, h, w) != (0, 0, before.height, before.width):
        a_area = (ar - al) * (at - ab)
        notes.append(f"partial overlap: the change map covers the intersection only, {h}x{w} pixels at row {r0}, "
                     f"col {c0} of BEFORE's grid ({100 * overlap:.1f}% of BEFORE, "
                     f"{100 * (right - left) * (top - bottom) / max(a_area, 1e-30):.1f}% of AFTER)")
        b_grid = _on_grid(b_sel, folder, "before", before.crs, transform, h, w)
    else:
        b_grid = b_sel
    notes.append(f"AFTER reprojected onto BEFORE's grid ({after.crs}, {after.height}x{after.width} -> "
                 f"{before.crs}, {h}x{w}; bilinear)")
    a_grid = _on_grid(a_sel, folder, "after", before.crs, transform, h, w)
    return PairGrid(b_grid, a_grid, bands, (r0, c0), (before.height, before.width), overlap, True, dates, notes)


def warp_onto(scene: Scene, grid: Scene, work_dir: str | Path, tag: str = "warped") -> Scene:
    """`scene` (every band and its cloud layer) on `grid`'s whole grid through warped VRTs in `work_dir`; pixels
    outside `scene`'s footprint are nodata (a time-series date covering part of the stack's grid)."""
    return _on_grid(scene, Path(work_dir), tag, grid.crs, grid.affine, grid.height, grid.width)


def shared_bands(model_bands: list[str], before: Scene, after: Scene, missing_policy: str) -> tuple[list[str],
                                                                                                     list[str]]:
    """(bands to read from both dates, notes): the model's bands that both scenes have, matched by name.

    A model band one date lacks is dropped from both (so the dates stay comparable) and filled per the model's
    missing-band policy; with the policy `error` that is a ChangeInputError naming the band and the scene."""
    have_b, have_a = set(before.bands.names), set(after.bands.names)
    notes: list[str] = []
    use = [b for b in model_bands if b in have_b and b in have_a]
    gone = {b: [s.path for s, have in ((before, have_b), (after, have_a)) if b not in have] for b in model_bands
            if b not in use}
    if not use:
        raise ChangeInputError(f"no band the model takes ({', '.join(model_bands)}) is in both scenes: BEFORE "
                               f"{before.path} has {', '.join(before.bands.names)}; AFTER {after.path} has "
                               f"{', '.join(after.bands.names)}")
    if gone:
        desc = "; ".join(f"{b} (missing in {', '.join(p)})" for b, p in gone.items())
        if missing_policy == "error":
            raise ChangeInputError(f"the model needs band(s) the two scenes do not both have: {desc}. Give scenes "
                                   "with these bands, or --missing-bands fill to fill them per the model's policy")
        notes.append(f"band(s) not in both dates, filled per the model's missing-band policy for both: {desc}")
    extra_b = sorted(have_b - have_a)
    extra_a = sorted(have_a - have_b)
    if extra_b or extra_a:
        notes.append("bands matched by name; only in BEFORE: " + (", ".join(extra_b) or "none") +
                     "; only in AFTER: " + (", ".join(extra_a) or "none"))
    return use, notes


def band_stats(scene: Scene, bands: list[str], max_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-band median and robust spread (1.4826 MAD; the standard deviation where that is 0) `[C]` of a scene
    from a reduced read (overviews when present), over pixels with data in every band: the per-date
    standardisation of the change vector."""
    from spectraclip.io.scene import SceneReader

    with SceneReader(scene) as reader:
        px, ok = reader.read_overview(bands, max_size)
    for i, b in enumerate(bands):
        nd = scene.nodata.get(b)
        if nd is not None and not math.isnan(nd):
            ok &= px[i] != nd
    if not ok.any():
        raise ChangeInputError(f"{scene.path}: no pixel with data in every band ({', '.join(bands)})")
    v = px[:, ok].astype(np.float64)
    med = np.median(v, axis=1)
    mad = 1.4826 * np.median(np.abs(v - med[:, None]), axis=1)
    scale = np.where(mad > 0, mad, v.std(1))  # robust, so the changed area itself barely moves the statistics
    return med.astype(np.float32), np.maximum(scale, 1e-6).astype(np.float32)


__all__ = ["ChangeInputError", "PairGrid", "align_pair", "band_stats", "parse_date", "scene_date", "shared_bands",
           "warp_onto"]
