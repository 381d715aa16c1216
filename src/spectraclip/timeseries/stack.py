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

from spectraclip.change.grid import align_pair, parse_date, scene_date
from spectraclip.io.clouds import apply_cloud_mask
from spectraclip.io.scene import Scene, SceneError, open_scene


class StackError(SceneError):
    """A stack that cannot be built as given (a date not found, fewer than two dates, no shared band ...)."""


@dataclass
class DatedScene:
    """One date of the stack: its scene on the stack's grid (model bands only) and where it came from."""

    date: date
    scene: Scene
    source: str


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
               bands: Any = None, cloud_mask: str = "auto", missing_policy: str = "error") -> Stack:
    """The stack of `inputs` on one grid: dated, sorted by date, each with its cloud layer, restricted to the
    model bands every date has. Fewer than two dates, or two scenes of one date, is a StackError."""
    from spectraclip.change.grid import shared_bands

    work = Path(work)
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
        if pair.offset != (0, 0) or (pair.before.height, pair.before.width) != (ref.height, ref.width):
            raise StackError(f"{src} ({d}) covers only part of {opened[0][2]}: a stack needs every date to cover the "
                             f"earliest one's footprint ({'; '.join(pair.notes)})")
        if i == 0:
            out.append(DatedScene(d, pair.before, src))
        else:
            out.append(DatedScene(d, pair.after, src))
            if pair.reprojected:
                notes.append(f"{src} ({d}) reprojected onto the grid of {opened[0][2]}")
    return Stack(out, use, list(dict.fromkeys(notes)))


__all__ = ["DatedScene", "Stack", "StackError", "expand_inputs", "load_stack", "scene_date_of"]
