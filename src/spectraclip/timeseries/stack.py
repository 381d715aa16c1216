"""A stack of dated scenes of one area, brought onto one grid and read in the same windows.

Inputs (`load_stack`): scene paths (GeoTIFF/COG/VRT, band folders, SAFE folders, STAC Items), a folder of such
scenes (an SSL4EO-S12 location folder: one sub-folder per season), an OSCD city folder (`imgs_1`, `imgs_2`,
`dates.txt`), or a STAC ItemCollection JSON file. Each scene's date comes from, in this order: a STAC item's
`datetime`; OSCD's `dates.txt`; a `metadata.json` beside the bands (SSL4EO-S12: the name of its folder, or
`system:time_start`); a date in the folder's or the band files' names (`20200604T054639`, `..._20170829`); the
files' TIFF tags (`TIFFTAG_DATETIME`, `ACQUISITION_DATE`). A scene whose date cannot be found is an error naming
the file. Every date is brought onto the earliest date's grid with `change.grid.align_pair` (the bands all dates
share, by name; reprojected through warped VRTs when CRS or transform differ), with its own cloud layer
(`io.clouds.apply_cloud_mask`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from spectraclip.change.grid import align_pair, parse_date, scene_date, warp_onto
from spectraclip.io.clouds import apply_cloud_mask, mask_used
from spectraclip.io.scene import Scene, SceneError, open_scene


class StackError(SceneError):
    """A stack that cannot be built as given (a date not found, fewer than two dates, no shared band ...)."""


@dataclass
class DatedScene:
    """One date of the stack: its scene on the stack's grid (model bands only) and where it came from."""

    date: date
    scene: Scene
    source: str
    cloud_mask: str = "none"  # the mask used (io.clouds.mask_used): scl | s2cloudless | none
    footprint: tuple[int, int, int, int] | None = None  # (row0, row1, col0, col1) with data; None: the whole grid


@dataclass
class Stack:
    """The dates of one area on one grid (`grid` is the earliest date's scene, restricted to the shared bands)."""

    dates: list[DatedScene]
    bands: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def grid(self) -> Scene:
        return self.dates[0].scene

    def to_dict(self) -> dict[str, Any]:
        return {"dates": [d.date.isoformat() for d in self.dates], "sources": [d.source for d in self.dates],
                "cloud_masks": [d.cloud_mask for d in self.dates],
                "footprints": [list(d.footprint) if d.footprint else None for d in self.dates],
                "bands": self.bands, "scenes": [d.scene.to_dict() for d in self.dates]}


def _date_of(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, int | float):  # epoch milliseconds (Earth Engine's system:time_start)
        return datetime.utcfromtimestamp(float(value) / 1000.0).date()
    text = str(value)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return parse_date(text.replace("-", ""))


def _tiff_date(scene: Scene) -> date | None:
    import rasterio

    src = next(iter(scene.sources.values()))
    if src.path.startswith("/vsi"):
        return None
    try:
        with rasterio.open(src.path) as ds:
            tags = ds.tags()
    except Exception:  # noqa: BLE001 - a date is looked for, the scene itself is opened elsewhere
        return None
    for key in ("ACQUISITION_DATE", "DATATAKE_SENSING_START", "SENSING_TIME", "TIFFTAG_DATETIME", "datetime"):
        if tags.get(key):
            text = tags[key].replace(":", "-", 2) if key == "TIFFTAG_DATETIME" else tags[key]
            d = _date_of(text.split(" ")[0])
            if d:
                return d
    return None


def scene_date_of(scene: Scene) -> date | None:
    """The acquisition date of one scene from its metadata (see the module doc), None when none is found."""
    p = Path(scene.path)
    if scene.kind == "stac":
        try:
            props = json.loads(p.read_text(encoding="utf-8")).get("properties", {})
        except (OSError, json.JSONDecodeError):
            props = {}
        for key in ("datetime", "start_datetime"):
            d = _date_of(props.get(key))
            if d:
                return d
    folder = p if p.is_dir() else p.parent
    meta = folder / "metadata.json"
    if not re.fullmatch(r"imgs_\d", p.name) and meta.is_file():
        try:
            m = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            m = {}
        for key in ("datetime", "date", "system:time_start", "SENSING_TIME", "acquisition_date"):
            d = _date_of(m.get(key))
            if d:
                return d
    return scene_date(scene) or _tiff_date(scene)


def _item_collection(path: Path, work: Path) -> list[Path]:
    """One STAC Item JSON per feature of an ItemCollection (relative hrefs made absolute), written into `work`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    feats = data.get("features") or []
    if not feats:
        raise StackError(f"{path}: a STAC ItemCollection without features")
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(feats):
        for asset in (f.get("assets") or {}).values():
            href = asset.get("href", "")
            if href and not re.match(r"^[a-z0-9]+://", href) and not href.startswith("/"):
                asset["href"] = str((path.parent / href).resolve())
        item = work / f"item_{i:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', str(f.get('id', i)))}.json"
        item.write_text(json.dumps(f))
        out.append(item)
    return out


@dataclass(frozen=True)
class StacSearch:
    """A STAC API search (`--stac-api URL --collection C --bbox W,S,E,N --datetime A/B`): its ItemCollection is
    saved and read like an ItemCollection file."""

    url: str
    collection: str
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    max_items: int = 100


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """`--bbox W,S,E,N` (degrees) -> the box; None for None."""
    if not value:
        return None
    try:
        w, s, e, n = (float(v) for v in value.split(","))
    except ValueError as exc:
        raise StackError(f"--bbox {value!r}: give W,S,E,N in degrees, e.g. 2.2,48.8,2.4,48.9") from exc
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise StackError(f"--bbox {value!r}: need W < E within -180..180 and S < N within -90..90")
    return w, s, e, n


def stac_search(search: StacSearch, work: str | Path) -> Path:
    """Run `search` against its STAC API (pystac-client) and save the ItemCollection in `work`
    (`stac_search.json`); more than `max_items` items is an error (narrow the box or the period)."""
    try:
        from pystac_client import Client
    except ImportError as exc:  # pragma: no cover - an optional dependency
        raise StackError("--stac-api needs pystac-client: pip install 'spectraclip[all]' or pystac-client") from exc
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(search.url)
        found = client.search(collections=[search.collection], bbox=list(search.bbox) if search.bbox else None,
                              datetime=search.datetime, max_items=search.max_items + 1)
        items = found.item_collection()
    except (APIError, OSError, ValueError) as exc:
        raise StackError(f"--stac-api {search.url}: the search of collection {search.collection!r} failed: "
                         f"{exc}") from exc
    if len(items) > search.max_items:
        raise StackError(f"--stac-api {search.url}: more than {search.max_items} items of {search.collection!r} "
                         "match; narrow --bbox or --datetime")
    if not len(items):
        raise StackError(f"--stac-api {search.url}: no item of {search.collection!r} matches bbox {search.bbox} "
                         f"and datetime {search.datetime}")
    out = Path(work) / "stac_search.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(items.to_dict(transform_hrefs=False)))
    return out


def _is_scene_folder(p: Path) -> bool:
    from spectraclip.io.bandfolder import BAND_FILE_SUFFIXES

    return p.is_dir() and (any(f.suffix.lower() in BAND_FILE_SUFFIXES for f in p.iterdir() if f.is_file())
                           or (p / "GRANULE").is_dir())


def expand_inputs(inputs: Sequence[str | Path], work: Path) -> list[Path]:
    """The scene paths of the stack's inputs (see the module doc)."""
    paths: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise StackError(f"{p}: no such file or folder")
        if p.is_file() and p.suffix.lower() == ".json":
            try:
                kind = json.loads(p.read_text(encoding="utf-8")).get("type")
            except (OSError, json.JSONDecodeError) as exc:
                raise StackError(f"{p}: not a readable JSON file ({exc})") from exc
            paths.extend(_item_collection(p, work / "items") if kind == "FeatureCollection" else [p])
        elif p.is_dir() and (p / "imgs_1").is_dir() and (p / "imgs_2").is_dir():  # an OSCD city
            paths.extend(sorted(p.glob("imgs_[0-9]")))
        elif p.is_dir() and not _is_scene_folder(p):  # a folder of scenes (SSL4EO-S12: one per season)
            subs = sorted(c for c in p.iterdir() if _is_scene_folder(c) or c.suffix.lower() in (".tif", ".tiff",
                                                                                                 ".vrt", ".json"))
            if not subs:
                raise StackError(f"{p}: no scenes in this folder (band folders, GeoTIFFs or STAC Items)")
            paths.extend(subs)
        else:
            paths.append(p)
    return paths


def load_stack(inputs: Sequence[str | Path], model_bands: Sequence[str], work: str | Path, *,
               bands: Any = None, cloud_mask: str = "auto", missing_policy: str = "error",
               search: StacSearch | None = None) -> Stack:
    """The stack of `inputs` (and of a STAC API `search`) on one grid: dated, sorted by date, each with its cloud
    layer, restricted to the model bands every date has. Fewer than two dates, or two scenes of one date, is a
    StackError."""
    from spectraclip.change.grid import shared_bands

    work = Path(work)
    inputs = list(inputs) + ([stac_search(search, work)] if search is not None else [])
    paths = expand_inputs(inputs, work)
    opened: list[tuple[date, Scene, str]] = []
    for p in paths:
        sc = open_scene(p, None if cloud_mask in ("s2cloudless", "auto") else bands)
        d = scene_date_of(sc)
        if d is None:
            raise StackError(f"{p}: no acquisition date found (looked in STAC datetime, OSCD dates.txt, "
                             "metadata.json, the folder and band file names such as ..._20200604T054639..., and "
                             "the TIFF tags); rename it with a YYYYMMDD date or give a STAC Item with a datetime")
        sc = apply_cloud_mask(sc, cloud_mask, work / "clouds")
        if bands is not None and cloud_mask in ("s2cloudless", "auto"):
            sc = sc.select(bands)
        opened.append((d, sc, str(p)))
    if len(opened) < 2:
        raise StackError(f"a time series needs at least two dated scenes; got {len(opened)} from "
                         f"{', '.join(map(str, inputs))}")
    opened.sort(key=lambda t: t[0])
    seen: dict[date, str] = {}
    for d, _, src in opened:
        if d in seen:
            raise StackError(f"two scenes of {d.isoformat()}: {seen[d]} and {src}; give one scene per date")
        seen[d] = src
    ref = opened[0][1]
    use, notes = list(model_bands), []
    for _, sc, _ in opened[1:]:
        use_i, notes_i = shared_bands(use, ref, sc, missing_policy)
        use, notes = use_i, notes + notes_i
    out: list[DatedScene] = []
    for i, (d, sc, src) in enumerate(opened):
        pair = align_pair(ref, sc, use, work / "grid" / f"date_{i:03d}")
        footprint = None
        if pair.offset != (0, 0) or (pair.before.height, pair.before.width) != (ref.height, ref.width):
            # a date covering part of the earliest one: put on the earliest date's whole grid (no data outside
            # its footprint); its windows outside the footprint are missing at that date
            r0, c0 = pair.offset
            footprint = (r0, r0 + pair.before.height, c0, c0 + pair.before.width)
            scene = warp_onto(sc.select(use), ref, work / "grid" / f"date_{i:03d}", "date")
            notes.append(f"{src} ({d}) covers {100 * pair.overlap:.1f}% of the earliest date's grid (rows "
                         f"{footprint[0]}-{footprint[1]}, cols {footprint[2]}-{footprint[3]}): windows outside it are "
                         "missing at that date (status outside)")
        else:
            scene = pair.before if i == 0 else pair.after
        if i and pair.reprojected:
            notes.append(f"{src} ({d}) reprojected onto the grid of {opened[0][2]}")
        out.append(DatedScene(d, scene, src, mask_used(sc), footprint))
    return Stack(out, use, list(dict.fromkeys(notes)))


__all__ = ["DatedScene", "Stack", "StackError", "StacSearch", "expand_inputs", "load_stack", "parse_bbox",
           "scene_date_of", "stac_search"]
