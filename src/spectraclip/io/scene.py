"""Whole scenes as windows: named bands in one file or one file per band (SAFE, OSCD, BigEarthNet, STAC),
a grid of windows over the finest band's grid, and windowed reads that produce one `Sample` per window.

Only a window plus a margin is read from each band file; coarser bands (20 m, 60 m) are resampled onto
the finest grid for that window alone, so memory does not grow with the scene. A window that is all
nodata (or mostly cloud, where a scene classification layer is given) is skipped with its reason.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.windows import Window

from spectraclip.bands import CATALOG, BandError, BandSet, canonical_band_name
from spectraclip.errors import InputError, SpectraclipError
from spectraclip.io.bandfolder import BAND_FILE_SUFFIXES, band_name_from_filename
from spectraclip.io.errors import CorruptRasterError
from spectraclip.io.geotiff import resolve_bands
from spectraclip.io.radiometry import Radiometry, as_radiometry
from spectraclip.io.sample import Sample

# Sentinel-2 scene classification (SCL) classes counted as cloud: shadow, medium/high cloud, cirrus
SCL_CLOUD = (3, 8, 9, 10)
_RES_SUFFIX = re.compile(r"[_\-](\d{2})m$", re.IGNORECASE)
_CATALOG_ORDER = {name: i for i, name in enumerate(CATALOG)}


class SceneError(SpectraclipError, ValueError):
    """A scene that cannot be mapped as given (bands on different grids, a missing band or asset, a scene
    smaller than one tile); the message names the file, band or asset at fault."""


@dataclass(frozen=True)
class BandSource:
    """Where one band of a scene lives: a raster file (or GDAL path) and its 1-based band index there."""

    band: str
    path: str
    index: int = 1


@dataclass(frozen=True)
class SceneWindow:
    """One window of the grid: pixel offsets and size on the scene's (finest) grid, and its grid cell."""

    index: int
    row: int
    col: int
    height: int
    width: int
    grid_row: int
    grid_col: int

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "row": self.row, "col": self.col, "height": self.height,
                "width": self.width, "grid_row": self.grid_row, "grid_col": self.grid_col}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> SceneWindow:
        return cls(*(int(d[k]) for k in ("index", "row", "col", "height", "width", "grid_row", "grid_col")))

    @property
    def name(self) -> str:
        return f"window {self.index} (row {self.row}, col {self.col}, {self.height}x{self.width})"


@dataclass
class Scene:
    """A scene's bands (by name), where each is read from, and the finest grid they are resampled onto."""

    path: str
    id: str
    sources: dict[str, BandSource]
    height: int
    width: int
    crs: str | None
    transform: tuple[float, ...]
    grid_band: str
    scl: BandSource | None = None
    nodata: dict[str, float | None] = field(default_factory=dict)
    kind: str = "raster"

    @property
    def bands(self) -> BandSet:
        return BandSet(tuple(self.sources))

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform[:6])

    def select(self, bands: BandSet | str | Sequence[str]) -> Scene:
        """This scene restricted to `bands` (by name, in that order); a missing band is a SceneError naming it."""
        want = BandSet.parse(bands)
        missing = [b for b in want if b not in self.sources]
        if missing:
            raise SceneError(f"{self.path}: no band {', '.join(missing)} in this scene; it has "
                             f"{', '.join(self.sources)}")
        return Scene(self.path, self.id, {b: self.sources[b] for b in want}, self.height, self.width, self.crs,
                     self.transform, self.grid_band, self.scl, {b: self.nodata.get(b) for b in want}, self.kind)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that reopens this scene in another process (`Scene.from_dict`)."""
        return {"path": self.path, "id": self.id, "height": self.height, "width": self.width, "crs": self.crs,
                "transform": list(self.transform), "grid_band": self.grid_band, "kind": self.kind,
                "sources": {b: [s.path, s.index] for b, s in self.sources.items()},
                "scl": [self.scl.path, self.scl.index] if self.scl else None, "nodata": dict(self.nodata)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        return cls(d["path"], d["id"], {b: BandSource(b, p, int(i)) for b, (p, i) in d["sources"].items()},
                   int(d["height"]), int(d["width"]), d["crs"], tuple(d["transform"]), d["grid_band"],
                   BandSource("SCL", *d["scl"]) if d.get("scl") else None, dict(d.get("nodata") or {}), d["kind"])


# -- opening scenes --------------------------------------------------------------------------------------
def _open(path: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except Exception as exc:  # rasterio raises several unrelated types for bad files
        raise CorruptRasterError(path, f"cannot open as a raster ({exc})") from exc


def _band_from_name(path: Path) -> str | None:
    """Band named by a file name, also SAFE L2A names ending in the resolution (`..._B02_10m.jp2`)."""
    stem = _RES_SUFFIX.sub("", path.stem)
    return band_name_from_filename(path.with_name(stem + path.suffix))


def _folder_band_files(folder: Path) -> tuple[dict[str, Path], Path | None]:
    """Band files of a band folder (flat, or SAFE `GRANULE/*/IMG_DATA[/R10m|R20m|R60m]`): for each band the
    finest-resolution file; and the scene classification layer (SCL) when one is there."""
    granules = sorted(folder.glob("GRANULE/*/IMG_DATA"))
    roots = granules[:1] if granules else [folder]
    if len(granules) > 1:
        raise SceneError(f"{folder}: {len(granules)} granules in one SAFE folder; give one GRANULE/<id> folder")
    candidates: dict[str, list[tuple[float, Path]]] = {}
    scl: tuple[float, Path] | None = None
    for root in roots:
        subdirs = [root / r for r in ("R10m", "R20m", "R60m") if (root / r).is_dir()]
        for d in subdirs or [root]:
            for f in sorted(d.iterdir()):
                if not f.is_file() or f.suffix.lower() not in BAND_FILE_SUFFIXES or f.name.startswith("."):
                    continue
                m = _RES_SUFFIX.search(f.stem)
                res = float(m.group(1)) if m else 0.0
                if re.search(r"(^|[_\-])SCL([_\-]|$)", f.stem, re.IGNORECASE):
                    if scl is None or res < scl[0]:
                        scl = (res, f)
                    continue
                band = _band_from_name(f)
                if band is not None:
                    candidates.setdefault(band, []).append((res, f))
    files: dict[str, Path] = {}
    for band, cands in candidates.items():
        cands.sort(key=lambda rf: rf[0])
        if len(cands) > 1 and cands[0][0] == cands[1][0]:
            raise SceneError(f"{folder}: several files name band {band} ({cands[0][1].name}, {cands[1][1].name})")
        files[band] = cands[0][1]
    return files, scl[1] if scl else None


def _stac_sources(item_path: Path) -> tuple[dict[str, str], str | None]:
    """Band -> GDAL path of a STAC Item's assets, matched through `eo:bands` names / common names or keys."""
    try:
        item = json.loads(item_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SceneError(f"{item_path}: not a readable STAC Item JSON ({exc})") from exc
    if item.get("type") != "Feature" or "assets" not in item:
        raise SceneError(f"{item_path}: not a STAC Item (needs type 'Feature' and 'assets')")
    out: dict[str, str] = {}
    scl: str | None = None
    for key, asset in item["assets"].items():
        href = asset.get("href")
        if not href:
            continue
        if href.startswith(("http://", "https://")):
            gdal_path = "/vsicurl/" + href
        elif href.startswith("s3://"):
            gdal_path = "/vsis3/" + href[5:]
        else:
            local = Path(href[7:] if href.startswith("file://") else href)
            gdal_path = str(local if local.is_absolute() else (item_path.parent / local).resolve())
        if key.upper() == "SCL":
            scl = gdal_path
            continue
        names = [b.get("name") for b in asset.get("eo:bands", [])] or [key]
        commons = [b.get("common_name") for b in asset.get("eo:bands", [])]
        if len(names) != 1:
            continue  # multi-band assets (visual/TCI) are not single-band sources
        for cand in (names[0], commons[0] if commons else None, key):
            if not cand:
                continue
            try:
                band = canonical_band_name(str(cand))
            except BandError:
                continue
            if band in CATALOG:
                out.setdefault(band, gdal_path)
                break
    if not out:
        raise SceneError(f"{item_path}: no asset of this STAC Item names a known band (eo:bands or asset keys)")
    return out, scl


def _check_resolves(band: str, path: str, where: str) -> None:
    if path.startswith("/vsi"):
        return  # checked when opened
    if not Path(path).exists():
        raise SceneError(f"{where}: asset of band {band} does not resolve: {path} does not exist")


def _scene_from_band_files(path: Path, files: dict[str, str], scl: str | None, kind: str,
                           bands: BandSet | None) -> Scene:
    if bands is not None:
        missing = [b for b in bands if b not in files]
        if missing:
            raise SceneError(f"{path}: no file for band(s) {', '.join(missing)}; the scene has "
                             f"{', '.join(sorted(files, key=_CATALOG_ORDER.__getitem__))}")
        order = list(bands)
    else:
        order = sorted(files, key=_CATALOG_ORDER.__getitem__)
    for b in order:
        _check_resolves(b, files[b], str(path))
    info: dict[str, tuple] = {}
    for b in order:
        with _open(files[b]) as ds:
            if ds.count != 1:
                raise SceneError(f"{files[b]}: band {b} file has {ds.count} bands; one band per file expected")
            info[b] = (ds.height, ds.width, ds.crs, ds.transform, ds.bounds, ds.nodata)
    finest = max(order, key=lambda b: (info[b][0] * info[b][1], -_CATALOG_ORDER[b]))
    h, w, crs, transform, bounds, _ = info[finest]
    for b in order:
        bh, bw, bcrs, btr, bb, _ = info[b]
        if (bcrs or None) != (crs or None):
            raise SceneError(f"{files[b]}: band {b} is in {bcrs} but band {finest} ({files[finest]}) is in {crs}; "
                             "all bands of a scene must share one CRS")
        tol = max(abs(btr.a), abs(btr.e))
        if any(abs(x - y) > tol for x, y in zip(bb, bounds, strict=True)):
            raise SceneError(f"{files[b]}: band {b} covers {tuple(round(v, 6) for v in bb)} but band {finest} "
                             f"covers {tuple(round(v, 6) for v in bounds)}; bands must share one footprint (grid)")
    sources = {b: BandSource(b, files[b], 1) for b in order}
    scl_src = BandSource("SCL", scl, 1) if scl else None
    name = path.stem if path.is_file() else path.name
    if re.fullmatch(r"imgs_\d|IMG_DATA|R\d+m", name):  # OSCD / SAFE inner folders: name the scene by its parent
        name = f"{path.parent.name}/{name}"
    return Scene(str(path), name, sources, h, w,
                 crs.to_string() if crs else None, tuple(float(v) for v in tuple(transform)[:6]), finest, scl_src,
                 {b: info[b][5] for b in order}, kind)


def open_scene(path: str | Path, bands: BandSet | str | Sequence[str] | None = None, *,
               scl: str | Path | None = None) -> Scene:
    """Open a scene: a multi-band GeoTIFF/COG/VRT (bands from its descriptions or `bands`), a band folder
    (flat, OSCD `imgs_1`, BigEarthNet, SAFE), or a STAC Item JSON. `scl` names a scene classification layer
    used to skip cloudy windows (found automatically in SAFE L2A folders and STAC `SCL` assets)."""
    p = Path(path)
    want = BandSet.parse(bands) if bands is not None else None
    if not str(path).startswith("/vsi") and not p.exists():
        raise SceneError(f"{p}: no such file or folder")
    if p.is_dir():
        files, found_scl = _folder_band_files(p)
        if len(files) < 1:
            raise SceneError(f"{p}: no band files (named like *_B04.tif, B4.tif, *_B04_10m.jp2) in this folder")
        scene = _scene_from_band_files(p, {b: str(f) for b, f in files.items()},
                                       str(scl or found_scl) if (scl or found_scl) else None, "band-folder", want)
    elif p.suffix.lower() == ".json":
        assets, found_scl = _stac_sources(p)
        scene = _scene_from_band_files(p, assets, str(scl) if scl else found_scl, "stac", want)
    else:
        with _open(str(p)) as ds:
            have, indexes = resolve_bands(p, ds.count, ds.descriptions, want)
            crs = ds.crs.to_string() if ds.crs else None
            sources = {b: BandSource(b, str(p), i) for b, i in zip(have, indexes, strict=True)}
            nodata = {b: ds.nodatavals[s.index - 1] for b, s in sources.items()}
            scene = Scene(str(p), p.stem, sources, ds.height, ds.width, crs,
                          tuple(float(v) for v in tuple(ds.transform)[:6]), next(iter(sources)),
                          BandSource("SCL", str(scl), 1) if scl else None, nodata, "raster")
    if scene.scl is not None:
        _check_resolves("SCL", scene.scl.path, scene.path)
    return scene


# -- the window grid -------------------------------------------------------------------------------------
def _starts(size: int, tile: int, stride: int) -> list[int]:
    """Window offsets along one axis: every `stride`, the last one flush with the edge (no gap, no overhang)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def window_grid(height: int, width: int, tile: int, stride: int | None = None) -> list[SceneWindow]:
    """Windows of `tile` pixels every `stride` (default half a tile) covering a `height` x `width` grid; the
    last row/column of windows is flush with the edge. A scene smaller than one tile is a SceneError."""
    stride = stride or max(1, tile // 2)
    if tile < 1 or stride < 1:
        raise SceneError(f"--tile {tile} / --stride {stride}: both must be positive")
    if stride > tile:
        raise SceneError(f"--stride {stride} is larger than --tile {tile}: parts of the scene would not be mapped")
    if height < tile or width < tile:
        raise SceneError(f"the scene is {height}x{width} pixels, smaller than one {tile}-pixel window; give a smaller "
                         f"--tile (at most {min(height, width)}) or use `spectraclip classify` on it as one chip")
    rows, cols = _starts(height, tile, stride), _starts(width, tile, stride)
    out, i = [], 0
    for gr, r in enumerate(rows):
        for gc, c in enumerate(cols):
            out.append(SceneWindow(i, r, c, tile, tile, gr, gc))
            i += 1
    return out


# -- windowed reading ------------------------------------------------------------------------------------
SKIP_REASONS = ("nodata", "cloud", "error")


class WindowSkipped(InputError):
    """A window the scene reader skips; `reason` is one of SKIP_REASONS and the message names the scene, the
    window and why (`WindowRead.message`), so every job reports a skipped window the same way."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass
class WindowRead:
    """What reading one window gave: the Sample, or why the window is skipped (`skipped`: the reason key, one of
    SKIP_REASONS; `message`: `"<scene> <window>: <why>"`)."""

    window: SceneWindow
    sample: Sample | None
    valid: np.ndarray | None  # bool [H, W]: pixels with data in every band
    skipped: str | None = None  # reason key: nodata | cloud | error
    message: str | None = None

    @classmethod
    def skip(cls, scene: Scene, window: SceneWindow, reason: str, why: str,
             valid: np.ndarray | None = None) -> WindowRead:
        """The one way a window is skipped: its reason key and the message naming scene, window and why."""
        assert reason in SKIP_REASONS, reason
        return cls(window, None, valid, reason, f"{scene.path} {window.name}: {why}")

    def sample_or_raise(self) -> Sample:
        """The Sample, or `WindowSkipped` with this read's reason and message (for item-by-item jobs)."""
        if self.sample is None:
            raise WindowSkipped(self.skipped or "error", self.message or f"{self.window.name}: skipped")
        return self.sample


class SceneReader:
    """Reads windows of a `Scene` (opening each band file once per process); use as a context manager."""

    def __init__(self, scene: Scene, *, margin: int = 8, nodata: str = "fill", max_cloud: float = 0.5,
                 min_valid: float = 0.0, radiometry: str | Radiometry | None = None) -> None:
        """`radiometry` (a Radiometry or a `--radiometry` value) says what the scene's values are; each window's
        `meta["radiometry"]` carries it, so the model's preprocessor converts them to its units (None: as the
        model was trained)."""
        if nodata not in ("error", "fill", "ignore"):
            raise SceneError(f"--nodata {nodata!r}: choose error, fill or ignore")
        self.radiometry = as_radiometry(radiometry)
        self.scene, self.margin, self.nodata = scene, int(margin), nodata
        self.max_cloud, self.min_valid = float(max_cloud), float(min_valid)
        self._stack: contextlib.ExitStack | None = None
        self._ds: dict[str, Any] = {}
        self._maps: dict[str, tuple[float, float, float, float]] = {}
        self._groups: list[tuple[str, list[int], list[int]]] | None = None

    def __enter__(self) -> SceneReader:
        self._stack = contextlib.ExitStack()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self._ds = None, {}

    def _dataset(self, path: str) -> Any:
        if self._stack is None:
            self._stack = contextlib.ExitStack()
        if path not in self._ds:
            self._ds[path] = self._stack.enter_context(_open(path))
        return self._ds[path]

    def _map(self, path: str, ds: Any) -> tuple[float, float, float, float]:
        """Scale and offset from scene-grid pixels to the pixels of a coarser band file (same footprint)."""
        if path not in self._maps:
            sc, bt = self.scene.affine, ds.transform
            self._maps[path] = (sc.a / bt.a, (sc.c - bt.c) / bt.a, sc.e / bt.e, (sc.f - bt.f) / bt.e)
        return self._maps[path]

    def _read_block(self, path: str, indexes: list[int], rows: tuple[int, int], cols: tuple[int, int],
                    resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
        """Bands `indexes` of one file over fine-grid rows/cols (clipped to the scene), resampled onto the fine
        grid when the file is coarser: float32 `[n, h, w]` and the invalid (NaN / masked) pixels."""
        ds = self._dataset(path)
        (r0, r1), (c0, c1) = rows, cols
        shape = (len(indexes), r1 - r0, c1 - c0)
        sc = self.scene
        masked = any(_has_mask(ds, i) for i in indexes)
        if (ds.height, ds.width) == (sc.height, sc.width):
            win = Window(c0, r0, shape[2], shape[1])
            data = ds.read(indexes, window=win, out_dtype="float32")
            mask = ds.read_masks(indexes, window=win) if masked else None
        else:
            sx, ox, sy, oy = self._map(path, ds)
            win = Window(c0 * sx + ox, r0 * sy + oy, (c1 - c0) * sx, (r1 - r0) * sy)
            data = ds.read(indexes, window=win, out_shape=shape, resampling=resampling, out_dtype="float32")
            mask = (ds.read_masks(indexes, window=win, out_shape=shape, resampling=Resampling.nearest)
                    if masked else None)
        invalid = np.isnan(data)
        if mask is not None:
            invalid |= mask == 0
        return data, invalid

    def _file_groups(self) -> list[tuple[str, list[int], list[int]]]:
        """(path, band indexes in the file, positions in the scene's band order) per file, read in one call."""
        if self._groups is None:
            groups: dict[str, tuple[list[int], list[int]]] = {}
            for pos, src in enumerate(self.scene.sources.values()):
                g = groups.setdefault(src.path, ([], []))
                g[0].append(src.index)
                g[1].append(pos)
            self._groups = [(p, idx, pos) for p, (idx, pos) in groups.items()]
        return self._groups

    def read(self, window: SceneWindow) -> WindowRead:
        """The window as a `Sample` on the fine grid (its own transform, `meta["window"]`), or a skip reason.

        Each band is read over the window plus `margin` (clipped to the scene; coarse bands resampled
        bilinearly there, so window edges see the same values as a whole-scene read), then cut back."""
        sc, m = self.scene, self.margin
        r0, c0 = max(0, window.row - m), max(0, window.col - m)
        r1 = min(sc.height, window.row + window.height + m)
        c1 = min(sc.width, window.col + window.width + m)
        n = len(sc.sources)
        planes = np.empty((n, r1 - r0, c1 - c0), np.float32)
        invalid = np.empty((n, r1 - r0, c1 - c0), bool)
        path = ""
        try:
            for path, idx, pos in self._file_groups():
                data, bad = self._read_block(path, idx, (r0, r1), (c0, c1), Resampling.bilinear)
                planes[pos], invalid[pos] = data, bad
        except Exception as exc:  # noqa: BLE001 - GDAL decode errors surface with several types
            if isinstance(exc, SpectraclipError) and not isinstance(exc, CorruptRasterError):
                raise
            bands = [b for b, s in sc.sources.items() if s.path == path]
            return WindowRead.skip(sc, window, "error", f"cannot read band(s) {', '.join(bands)} ({path}): {exc}")
        # cut the margin back, pad past the scene edge (only when the scene is smaller than a window)
        y, x = window.row - r0, window.col - c0
        h, w = window.height, window.width
        px = planes[:, y:y + h, x:x + w]
        bad = invalid[:, y:y + h, x:x + w]
        for i, b in enumerate(sc.sources):
            nd = sc.nodata.get(b)
            if nd is not None and not math.isnan(nd):
                bad[i] |= px[i] == nd
        if px.shape[1:] != (h, w):
            ph, pw = h - px.shape[1], w - px.shape[2]
            px = np.pad(px, ((0, 0), (0, ph), (0, pw)))
            bad = np.pad(bad, ((0, 0), (0, ph), (0, pw)), constant_values=True)
        valid = ~bad.any(0)
        frac_valid = float(valid.mean())
        if frac_valid == 0.0 or frac_valid < self.min_valid:
            return WindowRead.skip(sc, window, "nodata", f"{100 * (1 - frac_valid):.0f}% nodata", valid)
        if sc.scl is not None:
            cloud = self._cloud_fraction(window)
            if cloud > self.max_cloud:
                return WindowRead.skip(sc, window, "cloud", f"{100 * cloud:.0f}% cloud (SCL)", valid)
        if bad.any():
            if self.nodata == "error":
                counts = {b: int(bad[i].sum()) for i, b in enumerate(sc.sources) if bad[i].any()}
                return WindowRead.skip(sc, window, "error", "NaN or nodata pixels in band(s) "
                                       f"{', '.join(f'{k}={v}' for k, v in counts.items())} (--nodata fill maps it "
                                       "anyway)", valid)
            if self.nodata == "fill":
                for i in range(px.shape[0]):
                    if bad[i].any():
                        ok = ~bad[i]
                        px[i][bad[i]] = px[i][ok].mean() if ok.any() else 0.0
        aff = sc.affine @ Affine.translation(window.col, window.row)
        meta = {"window": window.to_dict(), "scene": sc.path, "source": "scene", "valid_fraction": frac_valid}
        if self.radiometry is not None:
            meta["radiometry"] = self.radiometry
        sample = Sample(np.ascontiguousarray(px, dtype=np.float32), sc.bands, f"{sc.id}:{window.index}", sc.path,
                        sc.crs, tuple(float(v) for v in tuple(aff)[:6]), meta)
        return WindowRead(window, sample, valid)

    def cloud_fraction(self, window: SceneWindow) -> float:
        """Share of the window's pixels the scene's cloud layer marks as cloud (0 without a layer)."""
        return self._cloud_fraction(window) if self.scene.scl is not None else 0.0

    def cloud_mask(self, window: SceneWindow) -> np.ndarray | None:
        """bool `[h, w]`: the window's pixels the scene's cloud layer marks as cloud or shadow (None without a
        layer). The per-pixel form of `cloud_fraction`, for readers that mask pixels instead of skipping."""
        if self.scene.scl is None:
            return None
        sc = self.scene
        rows = (window.row, min(sc.height, window.row + window.height))
        cols = (window.col, min(sc.width, window.col + window.width))
        data, _ = self._read_block(sc.scl.path, [sc.scl.index], rows, cols, Resampling.nearest)
        return np.isin(data[0].astype(np.int64), SCL_CLOUD)

    def _cloud_fraction(self, window: SceneWindow) -> float:
        mask = self.cloud_mask(window)
        assert mask is not None
        return float(mask.mean())

    def read_overview(self, bands: Sequence[str], max_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """`bands` of the whole scene downsampled to at most `max_size` pixels on a side (for quicklooks), and
        its validity mask; uses overviews when the files have them."""
        sc = self.scene
        f = max(1.0, max(sc.height, sc.width) / max_size)
        shape = (max(1, round(sc.height / f)), max(1, round(sc.width / f)))
        planes, bad = [], []
        for b in bands:
            src = sc.sources[b]
            ds = self._dataset(src.path)
            planes.append(ds.read(src.index, out_shape=shape, resampling=Resampling.average, out_dtype="float32"))
            bad.append(np.isnan(planes[-1]))
        return np.stack(planes), ~np.stack(bad).any(0)


def _has_mask(ds: Any, index: int) -> bool:
    from rasterio.enums import MaskFlags

    return MaskFlags.all_valid not in ds.mask_flag_enums[index - 1]


def iter_windows(scene: Scene, windows: Sequence[SceneWindow], **reader_options: Any) -> Iterator[WindowRead]:
    """Read `windows` of `scene` one after another (one reader, band files opened once)."""
    with SceneReader(scene, **reader_options) as reader:
        for w in windows:
            yield reader.read(w)


__all__ = ["SCL_CLOUD", "SKIP_REASONS", "BandSource", "Scene", "SceneError", "SceneReader", "SceneWindow",
           "WindowRead", "WindowSkipped", "iter_windows", "open_scene", "window_grid"]
