"""Scene windows as items to embed: one item per cell of a scene's window grid (the Major TOM row shape).

A `WindowItem` holds its scene as plain data and its window, so it pickles to DataLoader workers, Ray
tasks and shard jobs; reading it opens the scene's band files once per process (a small cache of
`SceneReader`s) and reads only that window with `SceneReader.read`, the one window reader the scene apps use
too. A window the reader skips (all nodata, cloudy, unreadable) raises `io.scene.WindowSkipped`, an `InputError`
carrying the reader's reason key and message, so batch jobs report it like any bad item and as `map` does.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectraclip.bands import BandSet
from spectraclip.io.sample import Sample
from spectraclip.io.scene import Scene, SceneReader, SceneWindow, WindowSkipped, open_scene, window_grid

_SAFE_TIME = re.compile(r"(\d{8}T\d{6})")
_READERS: OrderedDict[tuple[str, str], SceneReader] = OrderedDict()  # (scene path, reader options) -> reader
READER_CACHE = 4  # scenes kept open per process: windows arrive grouped by scene, so a few suffice


@dataclass(frozen=True)
class WindowItem:
    """One window of a scene, read on demand: `id` is `<scene id>:<window index>`, like the reader's Samples."""

    id: str
    scene: dict[str, Any]
    window: dict[str, int]
    product_id: str
    timestamp: str | None = None
    reader: dict[str, Any] = field(default_factory=dict)  # SceneReader options (max_cloud, min_valid, margin)

    @property
    def path(self) -> str:
        return str(self.scene["path"])

    def __str__(self) -> str:
        return f"{self.path} window {self.window['index']}"

    def read(self, *, bands: BandSet | None = None, nodata: str = "error", radiometry: Any = None) -> Sample:
        """The window as a Sample (georeferenced on the scene's finest grid), with product id and timestamp; a
        window the reader skips raises `WindowSkipped` (its reason and message). The scene's bands were chosen
        when the windows were listed, so `bands`/`radiometry` do not apply (an `io.items.Item`)."""
        got = _reader(self.scene, {"max_cloud": 0.5, "min_valid": 0.0, **self.reader, "nodata": nodata}).read(
            SceneWindow.from_dict(self.window))
        sample = got.sample_or_raise()
        sample.meta["product_id"] = self.product_id
        if self.timestamp:
            sample.meta["timestamp"] = self.timestamp
        return sample

    def read_sample(self, nodata: str = "error") -> Sample:
        """Kept for callers of the earlier name: `read(nodata=...)`."""
        return self.read(nodata=nodata)


def _reader(scene: dict[str, Any], options: dict[str, Any]) -> SceneReader:
    """This process's open reader of `scene` with `options` (a few kept open: windows arrive grouped by scene)."""
    key = (str(scene["path"]), json.dumps(options, sort_keys=True))
    reader = _READERS.get(key)
    if reader is None:
        reader = SceneReader(Scene.from_dict(scene), **options)
        _READERS[key] = reader
        while len(_READERS) > READER_CACHE:
            _READERS.popitem(last=False)[1].close()
    else:
        _READERS.move_to_end(key)
    return reader


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
                 bands: BandSet | str | None = None, *, scl: str | Path | None = None,
                 **reader_options: Any) -> list[WindowItem]:
    """The windows of each scene in `paths` (GeoTIFF/COG, band folder, SAFE, STAC Item) on a grid of `tile`
    pixels every `stride` (default: `tile`, non-overlapping cells as in Major TOM grids). `reader_options`
    (`max_cloud`, `min_valid`, `margin`) go to the `SceneReader`, as `map`'s do; `nodata` is the run's."""
    out: list[WindowItem] = []
    for p in paths:
        scene = open_scene(p, bands, scl=scl)
        stamp = scene_timestamp(scene)
        spec = scene.to_dict()
        for w in window_grid(scene.height, scene.width, tile, stride or tile):
            out.append(WindowItem(f"{scene.id}:{w.index}", spec, w.to_dict(), scene.id, stamp, dict(reader_options)))
    return out


__all__ = ["WindowItem", "WindowSkipped", "scene_timestamp", "window_items"]
