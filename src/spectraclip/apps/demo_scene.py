"""The demo's scene: one real Sentinel-2 L1C city image shipped in the package (OSCD *bercy*, Paris; see
`data/oscd_bercy/ATTRIBUTION.md`), extracted once into the cache, and the demo step that maps it with a model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spectraclip.errors import SpectraclipError
from spectraclip.io.archives import extract_once

ARCHIVE = Path(__file__).resolve().parents[1] / "data" / "oscd_bercy" / "oscd-bercy-imgs1.tar.xz"
SCENE_NAME = "oscd-bercy-imgs1"
N_BANDS = 13
ATTRIBUTION = ("OSCD bercy (Paris), 2016-11-30: contains modified Copernicus Sentinel-2 data; OSCD, Caye Daudt "
               "et al., IGARSS 2018")


class DemoSceneError(SpectraclipError, RuntimeError):
    """The shipped demo scene is missing or damaged; names the archive."""


def demo_scene_path(cache: str | os.PathLike[str] | None = None) -> Path:
    """The band folder of the shipped scene (13 `*_B??.tif`), extracted on first use (atomically)."""
    from spectraclip.data.eurosat_mini import cache_dir

    if not ARCHIVE.is_file():
        raise DemoSceneError(f"shipped scene {ARCHIVE} is missing; reinstall spectraclip")
    base = (Path(cache).expanduser() if cache is not None else cache_dir()) / SCENE_NAME
    return extract_once(ARCHIVE, base / "imgs_1", _is_complete, DemoSceneError,
                        f"{N_BANDS} band files under imgs_1/", member="imgs_1")


def _is_complete(folder: Path) -> bool:
    return len(list(folder.glob("*.tif"))) == N_BANDS


def map_demo_scene(model, out_dir: str | Path, *, classes: str = "eurosat", stride: int | None = None,
                   batch_size: int = 64, device: str = "cpu") -> dict[str, Any]:
    """Map the shipped scene with `model` (EuroSAT classes by default) into `out_dir/scene-map.tif` and its
    quicklook PNG with legend; returns what the demo report shows (paths, class shares, windows, seconds)."""
    import numpy as np
    import rasterio

    from spectraclip.apps.maps import map_scene
    from spectraclip.zeroshot.classes import parse_classes

    out = Path(out_dir) / "scene-map.tif"
    res = map_scene(model, demo_scene_path(), out, parse_classes(classes), stride=stride, batch_size=batch_size,
                    device=device, progress=False)
    with rasterio.open(res.path) as ds:
        cls = ds.read(1)
    counts = np.bincount(cls[cls != 255].ravel(), minlength=len(res.classes))
    shares = {n: float(c / max(1, counts.sum())) for n, c in zip(res.classes, counts, strict=True)}
    return {"map": str(res.path), "quicklook": str(res.quicklook), "classes": res.classes, "shares": shares,
            "windows": res.summary.encoded, "skipped": res.summary.skipped, "seconds": round(res.summary.seconds, 1),
            "attribution": ATTRIBUTION, "scene": "OSCD bercy (Paris), Sentinel-2 L1C, 2016-11-30"}


def scene_map_html(scene_map: dict[str, Any] | None) -> str:
    """The demo report's section for the mapped scene (quicklook with legend inlined), or "" when absent."""
    import base64
    from html import escape

    if not scene_map or not Path(scene_map.get("quicklook") or "").is_file():
        return ""
    png = base64.b64encode(Path(scene_map["quicklook"]).read_bytes()).decode("ascii")
    top = sorted(scene_map["shares"].items(), key=lambda kv: -kv[1])[:4]
    shares = ", ".join(f"{escape(k)} {100 * v:.0f}%" for k, v in top)
    return (f"<h2>A whole scene mapped with the MS model</h2><p>{escape(scene_map['scene'])}: "
            f"{scene_map['windows']} overlapping windows, zero-shot EuroSAT classes blended with a Hann window "
            f"(<code>spectraclip map</code>), {scene_map['seconds']:.0f} s. Largest classes: {shares}. "
            f"Map (COG): <code>{escape(scene_map['map'])}</code>.</p>"
            f"<img src='data:image/png;base64,{png}' alt='class map of the scene with legend' style='max-width:100%'>"
            f"<p><small>{escape(scene_map['attribution'])}. The OSCD change labels are not shipped.</small></p>")


__all__ = ["ARCHIVE", "ATTRIBUTION", "DemoSceneError", "demo_scene_path", "map_demo_scene", "scene_map_html"]
