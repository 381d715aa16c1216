"""Map layers of the workspace: products (COGs written by `spectraclip map`, `heatmap`, `change`, or a scene)
served as XYZ PNG tiles by rio-tiler, and what each says at one place.

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
        with Reader(str(p)) as src:
            bounds = tuple(float(v) for v in src.get_geographic_bounds(src.tms.rasterio_geographic_crs))
            minzoom, maxzoom = int(src.minzoom), int(src.maxzoom)
    except (RasterioError, RioTilerError, json.JSONDecodeError, TypeError) as exc:
        raise LayerError(f"--layer {p}: not a readable raster ({exc})") from exc
    return Layer(name=name, path=p, kind=kind, bounds=bounds, bands=bands, classes=classes,  # type: ignore[arg-type]
                 colormap=colormap, scale=scale, value_range=vrange, rgb=rgb, minzoom=max(0, minzoom - 6),
                 maxzoom=min(MAX_ZOOM, maxzoom + 3))


def open_layers(paths: Sequence[str | Path]) -> dict[str, Layer]:
    """The served layers by name (in the order given); LayerError for the first one that is not a raster."""
    out: dict[str, Layer] = {}
    for i, path in enumerate(paths):
        name = _name(i, Path(path), set(out))
        out[name] = open_layer(path, name)
    return out


def _ramp() -> dict[int, tuple[int, int, int, int]]:
    from rio_tiler.colormap import cmap

    return {int(k): tuple(int(c) for c in v) for k, v in cmap.get(RAMP).items()}  # type: ignore[misc]


TILE_CACHE = 2048  # rendered PNGs kept (LRU), keyed by layer file, z, x, y and band
_tiles: OrderedDict[tuple, bytes] = OrderedDict()
_tiles_lock = threading.Lock()
_readers = threading.local()  # one open rio-tiler Reader per layer file per thread (a dataset is not thread-safe)


def _reader(path: Path) -> Any:
    from rio_tiler.io import Reader

    cache = getattr(_readers, "open", None)
    if cache is None:
        cache = _readers.open = {}
    key = (str(path), path.stat().st_mtime_ns)
    src = cache.get(key)
    if src is None:
        src = cache[key] = Reader(str(path))
    return src


def render_tile(layer: Layer, z: int, x: int, y: int, band: int | None = None) -> bytes:
    """The PNG of tile z/x/y (web mercator) of `layer`; TileOutsideError where the layer has no pixels. Rendered
    tiles are kept in an LRU of TILE_CACHE entries; readers stay open per thread."""
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        raise TileOutsideError(f"tile {z}/{x}/{y} is not a web-mercator tile")
    if z < layer.minzoom or z > layer.maxzoom:
        raise TileOutsideError(f"layer {layer.name!r} serves zooms {layer.minzoom}..{layer.maxzoom}, not {z}")
    key = (str(layer.path), layer.kind, z, x, y, band)
    with _tiles_lock:
        hit = _tiles.get(key)
        if hit is not None:
            _tiles.move_to_end(key)
            return hit
    png = _render(layer, z, x, y, band)
    with _tiles_lock:
        _tiles[key] = png
        while len(_tiles) > TILE_CACHE:
            _tiles.popitem(last=False)
    return png


def _render(layer: Layer, z: int, x: int, y: int, band: int | None) -> bytes:
    from rio_tiler.errors import TileOutsideBounds

    src = _reader(layer.path)
    if not src.tile_exists(x, y, z):
        raise TileOutsideError(f"tile {z}/{x}/{y} is outside layer {layer.name!r}")
    try:
        if layer.kind == "classes":
            img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=1, resampling_method="nearest")
            img.array.mask |= img.array.data == NODATA_CLASS
            return img.render(img_format="PNG", colormap=layer.colormap)
        if layer.kind == "change":
            idx = layer.bands.index("change") + 1 if "change" in layer.bands else 2
            img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=idx, resampling_method="nearest")
            flags = np.nan_to_num(img.array.data.astype("float32")) > 0.5
            img.array = np.ma.MaskedArray(flags.astype("uint8"), mask=img.array.mask | ~flags)
            return img.render(img_format="PNG", colormap={1: (255, 32, 32, 200)})
        if layer.kind == "scene" and layer.rgb is not None:
            img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=layer.rgb)
            img = img.rescale(in_range=(layer.value_range,) * 3)
            return img.render(img_format="PNG")
        nb = len(layer.bands)
        idx = (nb if layer.kind == "timeseries" else 1) if band is None else band
        if not 1 <= idx <= nb:
            raise TileOutsideError(f"layer {layer.name!r} has bands 1..{nb}, not {idx}")
        img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=idx)
        img.array.mask |= ~np.isfinite(img.array.data)
        img = img.rescale(in_range=(layer.value_range,))
        return img.render(img_format="PNG", colormap=_ramp())
    except TileOutsideBounds as exc:
        raise TileOutsideError(f"tile {z}/{x}/{y} is outside layer {layer.name!r}") from exc


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


__all__ = ["Layer", "LayerError", "TileOutsideError", "open_layer", "open_layers", "point_values", "render_tile"]
