"""Scene windows as items to embed: one item per cell of a scene's window grid (the Major TOM row shape).

A `WindowItem` holds its scene as plain data and its window, so it pickles to DataLoader workers, Ray
tasks and shard jobs; reading it opens the scene's band files once per process (a small cache of
`SceneReader`s) and reads only that window. Windows skipped by the reader (all nodata, cloudy, unreadable)
raise `WindowSkipped`, an `InputError`, so batch jobs report them like any bad item.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectraclip.bands import BandSet
from spectraclip.errors import InputError
from spectraclip.io.sample import Sample
from spectraclip.io.scene import Scene, SceneReader, SceneWindow, open_scene, window_grid

_SAFE_TIME = re.compile(r"(\d{8}T\d{6})")
_READERS: OrderedDict[tuple[str, str], SceneReader] = OrderedDict()
READER_CACHE = 4  # scenes kept open per process: windows arrive grouped by scene, so a few suffice


class WindowSkipped(InputError):
    """A window the scene reader skips (all nodata, mostly cloud, unreadable); the message says which and why."""


@dataclass(frozen=True)
class WindowItem:
    """One window of a scene, read on demand: `id` is `<scene id>:<window index>`, like the reader's Samples."""

    id: str
    scene: dict[str, Any]
    window: dict[str, int]
    product_id: str
    timestamp: str | None = None

    @property
    def path(self) -> str:
        return str(self.scene["path"])

    def __str__(self) -> str:
        return f"{self.path} window {self.window['index']}"

    def read_sample(self, nodata: str = "error") -> Sample:
        """The window as a Sample (georeferenced on the scene's finest grid), with product id and timestamp."""
        key = (self.path, nodata)
        reader = _READERS.get(key)
        if reader is None:
            reader = SceneReader(Scene.from_dict(self.scene), nodata=nodata)
            _READERS[key] = reader
            while len(_READERS) > READER_CACHE:
                _READERS.popitem(last=False)[1].close()
        else:
            _READERS.move_to_end(key)
        w = self.window
        got = reader.read(SceneWindow(w["index"], w["row"], w["col"], w["height"], w["width"], w["grid_row"],
                                      w["grid_col"]))
        if got.sample is None:
            raise WindowSkipped(f"{self.path}: {got.message or got.skipped}")
        got.sample.meta["product_id"] = self.product_id
        if self.timestamp:
            got.sample.meta["timestamp"] = self.timestamp
        return got.sample


def scene_timestamp(scene: Scene) -> str | None:
    """The acquisition time of a scene: a STAC Item's `properties.datetime`, or the `YYYYMMDDTHHMMSS` of a
    Sentinel-2 product name (SAFE folders, granule and band file names); None when neither says."""
    if scene.kind == "stac":
        try:
            props = json.loads(Path(scene.path).read_text(encoding="utf-8")).get("properties", {})
        except (OSError, ValueError):
            props = {}
        if props.get("datetime"):
            return str(props["datetime"])
    for text in [scene.path, *(s.path for s in scene.sources.values())]:
        m = _SAFE_TIME.search(Path(text).name) or _SAFE_TIME.search(text)
        if m:
            t = m.group(1)
            return f"{t[:4]}-{t[4:6]}-{t[6:8]}T{t[9:11]}:{t[11:13]}:{t[13:15]}Z"
    return None


def window_items(paths: Sequence[str | Path], tile: int, stride: int | None = None,
                 bands: BandSet | str | None = None) -> list[WindowItem]:
    """The windows of each scene in `paths` (GeoTIFF/COG, band folder, SAFE, STAC Item) on a grid of `tile`
    pixels every `stride` (default: `tile`, non-overlapping cells as in Major TOM grids)."""
    out: list[WindowItem] = []
    for p in paths:
        scene = open_scene(p, bands)
        stamp = scene_timestamp(scene)
        spec = scene.to_dict()
        for w in window_grid(scene.height, scene.width, tile, stride or tile):
            out.append(WindowItem(f"{scene.id}:{w.index}", spec, w.to_dict(), scene.id, stamp))
    return out


__all__ = ["WindowItem", "WindowSkipped", "scene_timestamp", "window_items"]
