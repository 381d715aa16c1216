"""Map layers of the workspace: products (COGs written by `spectraclip map`, `heatmap`, `change`, or a scene)
served as XYZ PNG tiles, and what each says at one place.

A tile (`read_tile`): its pixels' places in the layer's grid (projected on a 17 x 17 grid, interpolated), the
overview that fits its zoom, one window read with its mask, nearest-neighbour samples; then a paletted PNG
(`encode_png`). rio-tiler reads a layer's bounds and zoom range at start.

A layer's kind comes from its tags: `classes` -> a class map (band 1 the class index with its colour table,
bands 2.. the per-class probabilities); `spectraclip_change` -> change flags (band `change`) and scores;
`queries` -> similarities (one band per query, a colour ramp); a raster whose band descriptions name B04, B03
and B02 -> a natural-colour scene (a base layer that needs no network); anything else -> its first band on a ramp.
Layers are named by their position and file stem; a request names a layer, never a path.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.errors import SpectraclipError

TILE_SIZE = 256
MAX_ZOOM = 24
NODATA_CLASS = 255  # the class band's nodata (apps.maps.NODATA_CLASS; serve may not import it for a constant)
RAMP = "viridis"


class LayerError(SpectraclipError, ValueError):
    """A `--layer` that cannot be served; the message names the file."""


class TileOutsideError(SpectraclipError, LookupError):
    """A tile request outside a layer's extent or zoom range."""


@dataclass
class Layer:
    """One served raster: its name, file, kind and what the page needs to draw a legend."""

    name: str
    path: Path
    kind: str  # classes | change | similarity | timeseries | scene | raster
    bounds: tuple[float, float, float, float]  # WGS84 west, south, east, north
    bands: list[str]
    classes: list[str] = field(default_factory=list)
    colormap: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    scale: float = 1.0  # probability scale (255 for uint8 maps)
    value_range: tuple[float, float] = (0.0, 1.0)  # the ramp's range (similarity, raster, scene stretch)
    rgb: tuple[int, int, int] | None = None  # 1-based band indexes of a scene's natural colour
    minzoom: int = 0
    maxzoom: int = MAX_ZOOM
    warning: str = ""  # said at start (`spectraclip serve`): e.g. a large raster without overviews
    palette: Any = field(default=None, repr=False, compare=False)  # of its tiles, made at the first one

    def legend(self) -> dict[str, Any]:
        """What the page shows: kind, bounds, classes with their colours, the ramp and its range."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "bounds": list(self.bounds),
                               "bands": self.bands, "file": self.path.name, "minzoom": self.minzoom,
                               "maxzoom": self.maxzoom}
        if self.kind == "classes":
            out["classes"] = [{"index": i, "name": n, "colour": _hex(self.colormap.get(i, (0, 0, 0, 0)))}
                              for i, n in enumerate(self.classes)]
        elif self.kind == "change":
            out["classes"] = [{"index": 1, "name": "change", "colour": "#ff2020"}]
        else:
            out["ramp"] = RAMP if self.kind != "scene" else "natural colour"
            out["range"] = [round(float(v), 4) for v in self.value_range]
        return out


def _hex(rgba: tuple[int, ...]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgba[:3])


def _name(i: int, path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or f"layer{i}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _sample_range(ds: Any, band: int) -> tuple[float, float]:
    """2-98 percentiles of a band read from its smallest overview (or decimated), NaN and nodata left out."""
    h, w = ds.height, ds.width
    f = max(1, int(max(h, w) / 512))
    arr = ds.read(band, out_shape=(max(1, h // f), max(1, w // f)), masked=True).astype("float64")
    vals = arr.compressed() if np.ma.isMaskedArray(arr) else np.asarray(arr).ravel()
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [2, 98])
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def _is_date(text: str) -> bool:
    return re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) is not None


def open_layer(path: str | Path, name: str) -> Layer:
    """Read a raster's header and tags into a `Layer` (LayerError naming the file when it is not a raster)."""
    import rasterio
    from rasterio.errors import RasterioError
    from rio_tiler.errors import RioTilerError
    from rio_tiler.io import Reader

    p = Path(path)
    if not p.is_file():
        raise LayerError(f"--layer {p}: no such file")
    try:
        with rasterio.open(p) as ds:
            if ds.crs is None:
                raise LayerError(f"--layer {p}: the raster has no coordinate reference system, so it cannot be mapped")
            tags = ds.tags()
            bands = [d or f"band{i}" for i, d in enumerate(ds.descriptions, start=1)]
            colormap: dict[int, tuple[int, int, int, int]] = {}
            kind, classes, rgb, scale, vrange = "raster", [], None, 1.0, (0.0, 1.0)
            if "classes" in tags:
                kind, classes = "classes", [str(c) for c in json.loads(tags["classes"])]
                try:
                    colormap = {int(k): tuple(v) for k, v in ds.colormap(1).items()}  # type: ignore[misc]
                except ValueError:
                    raw = json.loads(tags.get("colormap_band1", "{}"))
                    colormap = {int(k): tuple(v) for k, v in raw.items()}  # type: ignore[misc]
                scale = float(tags.get("probability_scale", "255" if ds.dtypes[0] == "uint8" else "1"))
            elif "spectraclip_timeseries" in tags and bands and all(_is_date(b) for b in bands):
                kind = "timeseries"  # a time series' values COG: one band per date (the trend/anomaly COGs are not)
                vrange = _sample_range(ds, len(bands))
            elif "spectraclip_change" in tags:
                kind = "change"
            elif "queries" in tags:
                kind = "similarity"
                vrange = _sample_range(ds, 1)
            elif all(b in bands for b in ("B04", "B03", "B02")):
                kind = "scene"
                rgb = (bands.index("B04") + 1, bands.index("B03") + 1, bands.index("B02") + 1)
                los, his = zip(*(_sample_range(ds, b) for b in rgb), strict=True)
                vrange = (min(los), max(max(his), min(los) + 1500.0))
            else:
                vrange = _sample_range(ds, 1)
            warning = _overview_warning(p, ds, kind)
        with Reader(str(p)) as src:
            bounds = tuple(float(v) for v in src.get_geographic_bounds(src.tms.rasterio_geographic_crs))
            minzoom, maxzoom = int(src.minzoom), int(src.maxzoom)
    except (RasterioError, RioTilerError, json.JSONDecodeError, TypeError) as exc:
        raise LayerError(f"--layer {p}: not a readable raster ({exc})") from exc
    return Layer(name=name, path=p, kind=kind, bounds=bounds, bands=bands, classes=classes,  # type: ignore[arg-type]
                 colormap=colormap, scale=scale, value_range=vrange, rgb=rgb, minzoom=max(0, minzoom - 6),
                 maxzoom=min(MAX_ZOOM, maxzoom + 3), warning=warning)


NO_OVERVIEWS_ABOVE = 4 * TILE_SIZE  # a raster this large without overviews is slow to tile zoomed out


def _overview_warning(p: Path, ds: Any, kind: str) -> str:
    """Advice for a large raster without overviews (a zoomed-out tile then reads every pixel under it); "" else.
    Not fixed here: a sidecar .ovr written beside someone's file at start is slow for a large file, fails in a
    read-only folder and races a product being rewritten; our writer (io.cog) always writes overviews."""
    if ds.overviews(1) or max(ds.width, ds.height) <= NO_OVERVIEWS_ABOVE:
        return ""
    how = "nearest" if kind in ("classes", "change") else "average"
    return (f"--layer {p}: {ds.width} x {ds.height} px without overviews, so zoomed-out tiles read every pixel "
            f"under them (slow). Add them once with `gdaladdo -r {how} {p}` (or write a COG: `gdal_translate -of "
            "COG`); the products of `spectraclip map`, `heatmap`, `change` and `timeseries` have them.")


def open_layers(paths: Sequence[str | Path]) -> dict[str, Layer]:
    """The served layers by name (in the order given); LayerError for the first one that is not a raster."""
    out: dict[str, Layer] = {}
    for i, path in enumerate(paths):
        name = _name(i, Path(path), set(out))
        out[name] = open_layer(path, name)
    return out


TILE_CACHE = 2048  # rendered PNGs kept (LRU), keyed by layer file and its mtime, z, x, y and band
PNG_LEVEL = 1  # zlib level of the tiles: level 6 took several times longer for a few % smaller class tiles
_tiles: OrderedDict[tuple, bytes] = OrderedDict()
_tiles_lock = threading.Lock()
_inflight: dict[tuple, threading.Event] = {}  # a tile being rendered: concurrent requests for it wait for it
_readers = threading.local()  # per thread: open datasets of each layer file and level (a dataset is not thread-safe)


def _ramp_palette() -> np.ndarray:
    """The ramp as a 255-entry RGBA palette (index 255 is left transparent for no data)."""
    from rio_tiler.colormap import cmap

    lut = np.asarray([cmap.get(RAMP)[i] for i in range(256)], np.uint8)
    return lut[np.round(np.arange(255) * 255 / 254).astype(int)]


def _palette(layer: Layer) -> np.ndarray:
    """The 256 x RGBA palette a layer's one-band tiles are drawn in (made once per layer); 255 is transparent."""
    pal = layer.palette
    if pal is None:
        pal = np.zeros((256, 4), np.uint8)
        if layer.kind == "classes":
            for k, v in layer.colormap.items():
                if 0 <= k < 255:
                    pal[k, :len(v)] = v
                    if len(v) == 3:
                        pal[k, 3] = 255
        elif layer.kind == "change":
            pal[1] = (255, 32, 32, 200)
        else:
            pal[:255] = _ramp_palette()
        pal[255] = 0
        layer.palette = pal
    return pal


def encode_png(arr: np.ndarray, palette: np.ndarray | None = None, level: int = PNG_LEVEL) -> bytes:
    """A PNG of `arr`: [H, W] uint8 indexes into `palette` [N, 4] (RGBA; alpha as tRNS), or [H, W, 4] RGBA.
    No row filters and a low zlib level: a tile is encoded in well under a millisecond (GDAL's PNG driver
    through rio-tiler's `render` took ~3 ms and most of a tile's time)."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    h, w = arr.shape[:2]
    colour = 3 if palette is not None else 6
    rows = np.zeros((h, 1 + w * (1 if palette is not None else 4)), np.uint8)
    rows[:, 1:] = arr.reshape(h, -1)
    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))]
    if palette is not None:
        pal = np.asarray(palette, np.uint8)
        out.append(chunk(b"PLTE", pal[:, :3].tobytes()))
        alpha = pal[:, 3] if pal.shape[1] > 3 else np.full(len(pal), 255, np.uint8)
        last = int(np.flatnonzero(alpha != 255).max()) + 1 if (alpha != 255).any() else 0
        if last:
            out.append(chunk(b"tRNS", alpha[:last].tobytes()))
    out.append(chunk(b"IDAT", zlib.compress(rows.tobytes(), level)))
    out.append(chunk(b"IEND", b""))
    return b"".join(out)


_HALF = 20037508.342789244  # half the web-mercator world, metres
_GRID = 16  # the tile's pixel -> source pixel map is computed exactly every 16 px and interpolated in between


def _positions() -> tuple[np.ndarray, np.ndarray]:
    """Per tile pixel: the coarse grid cell it falls in and its fraction across it (linear interpolation)."""
    u = np.arange(TILE_SIZE) * _GRID / (TILE_SIZE - 1)
    k = np.minimum(u.astype(int), _GRID - 1)
    return k, u - k


_K, _T = _positions()
_T0, _T1 = (1 - _T).astype(np.float32), _T.astype(np.float32)


def _interpolate(grid: np.ndarray) -> np.ndarray:
    """A [_GRID + 1]^2 grid spread over [TILE_SIZE]^2 pixels, bilinearly (elementwise: a BLAS product spun
    OpenBLAS threads on a busy machine and took 30 ms)."""
    g = grid.astype(np.float32)
    a = g[_K] * _T0[:, None] + g[_K + 1] * _T1[:, None]
    return a[:, _K] * _T0 + a[:, _K + 1] * _T1


def _dataset(path: Path, mtime_ns: int, level: int | None) -> Any:
    """This thread's open dataset of `path` (`level`: an overview, 0 the first); reopened when the file changed."""
    import rasterio

    cache = getattr(_readers, "open", None)
    if cache is None:
        cache = _readers.open = {}
    key = (str(path), mtime_ns, level)
    ds = cache.get(key)
    if ds is None:
        for old in [k for k in cache if k[0] == key[0] and k[1] != mtime_ns]:  # a rewritten file: drop the old
            stale = cache.pop(old)
            if hasattr(stale, "close"):
                stale.close()
        ds = cache[key] = rasterio.open(path) if level is None else rasterio.open(path, overview_level=level)
    return ds


def _grid(path: Path, mtime_ns: int) -> tuple[Any, Any, list[int], list[tuple[float, float]]]:
    """A layer file's CRS (None when web mercator), inverse geotransform, overview factors and, per level (full
    size first), the scale of its pixels to the full-size ones: read once per thread and file version."""
    cache = _readers.open
    key = (str(path), mtime_ns, "grid")
    grid = cache.get(key)
    if grid is None:
        full = _dataset(path, mtime_ns, None)
        ovs = full.overviews(1)
        sizes = [(1.0, 1.0)]
        for i in range(len(ovs)):
            ds = _dataset(path, mtime_ns, i)
            sizes.append((ds.width / full.width, ds.height / full.height))
        grid = cache[key] = (None if full.crs.to_epsg() == 3857 else full.crs, ~full.transform, ovs, sizes)
    return grid


def _tile_lonlat(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    n = 2.0**z
    lat = [float(np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * v / n))))) for v in (y + 1, y)]
    return x / n * 360 - 180, lat[0], (x + 1) / n * 360 - 180, lat[1]


def read_tile(layer: Layer, mtime_ns: int, z: int, x: int, y: int,
              indexes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The bands `indexes` of `layer` on tile z/x/y (web mercator, TILE_SIZE px), nearest neighbour from the
    overview whose resolution is closest to the tile's and not coarser: (values [B, H, W], valid [H, W]).

    The source pixel of each tile pixel is projected exactly on a 17 x 17 grid and interpolated in between (a
    projection is smooth over a tile); only the window of blocks under the tile is read, with its mask (nodata,
    NaN, internal mask). TileOutsideError for a tile that does not meet the layer."""
    from rasterio.warp import transform as warp
    from rasterio.windows import Window

    w, s, e, n = layer.bounds
    tw, ts, te, tn = _tile_lonlat(z, x, y)
    if tw >= e or te <= w or ts >= n or tn <= s:
        raise TileOutsideError(f"tile {z}/{x}/{y} is outside layer {layer.name!r}")
    full = _dataset(layer.path, mtime_ns, None)
    crs, inv, overviews, sizes = _grid(layer.path, mtime_ns)
    step = 2 * _HALF / 2**z / TILE_SIZE
    pos = (np.arange(_GRID + 1) * (TILE_SIZE - 1) / _GRID + 0.5) * step
    gx, gy = np.meshgrid(-_HALF + x * TILE_SIZE * step + pos, _HALF - y * TILE_SIZE * step - pos)
    if crs is not None:
        sx, sy = warp("EPSG:3857", crs, gx.ravel().tolist(), gy.ravel().tolist())
        gx, gy = np.asarray(sx).reshape(gx.shape), np.asarray(sy).reshape(gy.shape)
    gc, gr = inv.a * gx + inv.b * gy + inv.c, inv.d * gx + inv.e * gy + inv.f  # source pixel coordinates
    scale = max(abs(gc[:, -1] - gc[:, 0]).mean(), abs(gr[-1] - gr[0]).mean()) / (TILE_SIZE - 1)
    level, f = None, 1.0
    for i, fac in enumerate(overviews):
        if fac <= scale * 1.01:
            level, f = i, fac
    ds = full if level is None else _dataset(layer.path, mtime_ns, level)
    sc, sr = sizes[0 if level is None else level + 1]
    col, row = _interpolate(gc * sc), _interpolate(gr * sr)
    c0, r0 = max(0, int(np.floor(col.min()))), max(0, int(np.floor(row.min())))
    c1, r1 = min(ds.width, int(np.floor(col.max())) + 1), min(ds.height, int(np.floor(row.max())) + 1)
    if c1 <= c0 or r1 <= r0:
        return (np.zeros((len(indexes), TILE_SIZE, TILE_SIZE), ds.dtypes[indexes[0] - 1]),
                np.zeros((TILE_SIZE, TILE_SIZE), bool))
    d = max(1, int(scale / f))  # no overview fine enough: decimate while reading
    win = Window(c0, r0, c1 - c0, r1 - r0)
    h, w = -(-(r1 - r0) // d), -(-(c1 - c0) // d)
    data = ds.read(list(indexes), window=win, out_shape=(len(indexes), h, w))
    mask = ds.read_masks(indexes[0], window=win, out_shape=(h, w))
    col -= c0
    row -= r0
    if d > 1:
        col /= d
        row /= d
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    flat = np.clip(row, 0, h - 1).astype(np.int32) * w + np.clip(col, 0, w - 1).astype(np.int32)
    out = data.reshape(len(indexes), -1)[:, flat]  # nearest: one gather of the tile's source pixels
    return out, inside & (mask.reshape(-1)[flat] > 0)


def _check(layer: Layer, z: int, x: int, y: int) -> None:
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        raise TileOutsideError(f"tile {z}/{x}/{y} is not a web-mercator tile")
    if z < layer.minzoom or z > layer.maxzoom:
        raise TileOutsideError(f"layer {layer.name!r} serves zooms {layer.minzoom}..{layer.maxzoom}, not {z}")


def tile_key(layer: Layer, z: int, x: int, y: int, band: int | None = None) -> tuple:
    """What a rendered tile depends on: the layer's file (and its mtime, so a rewritten product is not served
    stale), kind, tile and band. TileOutsideError for a tile that is not one, or out of the layer's zooms."""
    _check(layer, z, x, y)
    try:
        mtime = layer.path.stat().st_mtime_ns
    except OSError as exc:
        raise TileOutsideError(f"layer {layer.name!r}: its file {layer.path.name} is gone") from exc
    return (str(layer.path), mtime, layer.kind, z, x, y, band)


def cached_tile(key: tuple) -> bytes | None:
    """The PNG of a tile already rendered (`tile_key`), or None; cheap enough for the event loop."""
    with _tiles_lock:
        hit = _tiles.get(key)
        if hit is not None:
            _tiles.move_to_end(key)
        return hit


def render_tile(layer: Layer, z: int, x: int, y: int, band: int | None = None, key: tuple | None = None) -> bytes:
    """The PNG of tile z/x/y (web mercator) of `layer`; TileOutsideError where the layer has no pixels. Rendered
    tiles are kept in an LRU of TILE_CACHE entries (a tile requested again while it is being rendered waits for
    that render); readers stay open per thread. `key`: its `tile_key` when the caller has it already."""
    key = key or tile_key(layer, z, x, y, band)
    while True:
        with _tiles_lock:
            hit = _tiles.get(key)
            if hit is not None:
                _tiles.move_to_end(key)
                return hit
            busy = _inflight.get(key)
            if busy is None:
                busy = _inflight[key] = threading.Event()
                break
        busy.wait(60)  # another thread renders it (an error there: this one tries itself)
    try:
        png = _render(layer, key[1], z, x, y, band)
        with _tiles_lock:
            _tiles[key] = png
            while len(_tiles) > TILE_CACHE:
                _tiles.popitem(last=False)
        return png
    finally:
        with _tiles_lock:
            _inflight.pop(key, None)
        busy.set()


def _indexes(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Class values as palette indexes: 255 (transparent) where not valid or not a class."""
    if data.dtype == np.uint8:
        return np.where(valid, data, 255).astype(np.uint8)
    d = np.nan_to_num(np.asarray(data, "float32"), nan=255.0)
    return np.where(valid & (d >= 0) & (d < 255), d, 255).astype(np.uint8)


def _render(layer: Layer, mtime_ns: int, z: int, x: int, y: int, band: int | None) -> bytes:
    if layer.kind == "classes":
        v, valid = read_tile(layer, mtime_ns, z, x, y, [1])
        return encode_png(_indexes(v[0], valid), _palette(layer))
    if layer.kind == "change":
        v, valid = read_tile(layer, mtime_ns, z, x, y, [layer.bands.index("change") + 1 if "change" in layer.bands
                                                        else 2])
        flags = (np.nan_to_num(v[0].astype("float32")) > 0.5) & valid
        return encode_png(np.where(flags, 1, 255).astype(np.uint8), _palette(layer))
    lo, hi = layer.value_range
    if layer.kind == "scene" and layer.rgb is not None:
        v, valid = read_tile(layer, mtime_ns, z, x, y, list(layer.rgb))
        rgb = np.clip((v.astype("float32") - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        return encode_png(np.dstack([*rgb, np.where(valid, 255, 0).astype(np.uint8)]))
    nb = len(layer.bands)
    idx = (nb if layer.kind == "timeseries" else 1) if band is None else band
    if not 1 <= idx <= nb:
        raise TileOutsideError(f"layer {layer.name!r} has bands 1..{nb}, not {idx}")
    v, valid = read_tile(layer, mtime_ns, z, x, y, [idx])
    val = v[0].astype("float32")
    valid &= np.isfinite(val)
    scaled = np.clip((np.nan_to_num(val) - lo) * (254.0 / (hi - lo) if hi > lo else 0.0), 0, 254)
    return encode_png(np.where(valid, scaled, 255).astype(np.uint8), _palette(layer))


def point_values(layer: Layer, lon: float, lat: float) -> dict[str, Any] | None:
    """What `layer` says at lon/lat (None outside it): class and top-3 probabilities, change, similarities."""
    import rasterio
    from rasterio.warp import transform as warp
    from rasterio.windows import Window

    w, s, e, n = layer.bounds
    if not (w <= lon <= e and s <= lat <= n):
        return None
    with rasterio.open(layer.path) as ds:  # every band as stored (rio-tiler's point would apply alpha/masks)
        xs, ys = warp("EPSG:4326", ds.crs, [lon], [lat])
        row, col = ds.index(xs[0], ys[0])
        if not (0 <= row < ds.height and 0 <= col < ds.width):
            return None
        raw = ds.read(window=Window(col, row, 1, 1)).reshape(-1).astype("float64")
        if ds.nodata is not None and np.isfinite(ds.nodata):
            raw[raw == ds.nodata] = np.nan
    vals = raw
    if layer.kind == "classes":
        c = int(vals[0]) if np.isfinite(vals[0]) else NODATA_CLASS
        if c == NODATA_CLASS or c >= len(layer.classes):
            return {"kind": "classes", "class": None}
        probs = vals[1:1 + len(layer.classes)] / layer.scale
        top = np.argsort(-np.nan_to_num(probs, nan=-1))[:3]
        return {"kind": "classes", "class": layer.classes[c],
                "top": [{"class": layer.classes[i], "p": round(float(probs[i]), 4)}
                        for i in top if np.isfinite(probs[i])]}
    values = {b: (None if not np.isfinite(v) else round(float(v), 4)) for b, v in zip(layer.bands, vals, strict=False)}
    if all(v is None for v in values.values()):
        return None
    out: dict[str, Any] = {"kind": layer.kind, "values": values}
    if layer.kind == "timeseries":  # the trajectory: a value per date, None where the date was missing (cloud)
        out["trajectory"] = [{"date": b, "value": values.get(b)} for b in layer.bands]
    if layer.kind == "change":
        flag = values.get("change")
        out["change"] = None if flag is None else bool(flag > 0.5)
    return out


__all__ = ["Layer", "LayerError", "TileOutsideError", "cached_tile", "encode_png", "open_layer", "open_layers",
           "point_values", "read_tile", "render_tile", "tile_key"]
