"""Per-scene cloud and shadow masks: the one `--cloud-mask auto|scl|s2cloudless|none` of every scene command.

A mask is a scene classification layer (`Scene.scl`), so the one window reader (`io.scene.SceneReader`) skips a
window whose cloud share exceeds `max_cloud` with the reason `cloud`, whichever mask made it:
- `scl`: Sentinel-2 L2A's SCL band (found in SAFE L2A folders and STAC `SCL` assets, or given with `--scl`);
  classes 3 (cloud shadow), 8, 9 (cloud medium / high probability) and 10 (cirrus) count as cloud.
- `s2cloudless`: for L1C scenes, the s2cloudless pixel classifier (Sentinel Hub; its LightGBM model ships inside
  the pip package, so it runs offline) on the scene's ten L1C bands it needs, read at reduced resolution (at most
  `S2CLOUDLESS_SIZE` pixels a side, ~60-120 m for a full tile: the classifier was trained for 10-160 m). The
  mask is written as an SCL-coded GeoTIFF (9 = cloud, 0 = clear) beside the job's state. It detects clouds,
  not cloud shadows.
- `auto` (the default): the SCL layer when the scene has one (L2A); else, for an L1C scene (`is_l1c`: its
  processing level says L1C - a SAFE folder named `MSIL1C`, a STAC item's `s2:processing_level` /
  `processing:level` - or it has B10, a band only L1C products carry, and no SCL), s2cloudless when the scene has
  all ten bands it needs (`S2CLOUDLESS_BANDS`); else no mask. `mask_used(scene)` says which one a scene got.
- `none`: no mask, even where the scene has an SCL layer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from spectraclip.io.scene import BandSource, Scene, SceneError, SceneReader

CLOUD_MASKS: tuple[str, ...] = ("auto", "scl", "s2cloudless", "none")
S2CLOUDLESS_BANDS: tuple[str, ...] = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
S2CLOUDLESS_SIZE = 1024
S2CLOUDLESS_THRESHOLD = 0.4
SCL_CLEAR, SCL_CLOUD_HIGH = 0, 9


def check_cloud_mask(mode: str) -> str:
    """`mode` when it is one of CLOUD_MASKS, else a SceneError naming the option."""
    if mode not in CLOUD_MASKS:
        raise SceneError(f"--cloud-mask {mode!r}: choose one of {', '.join(CLOUD_MASKS)}")
    return mode


def apply_cloud_mask(scene: Scene, mode: str, work_dir: str | Path | None = None) -> Scene:
    """`scene` with the cloud layer `mode` asks for (see the module doc). `s2cloudless` needs the scene's ten L1C
    bands (open the scene with all its bands) and writes its mask into `work_dir` (reused when already there)."""
    check_cloud_mask(mode)
    if mode == "none":
        return _with_scl(scene, None)
    if mode == "auto":
        if scene.scl is not None or not is_l1c(scene) or any(b not in scene.sources for b in S2CLOUDLESS_BANDS):
            return scene
        if work_dir is None:
            import tempfile

            work_dir = Path(tempfile.gettempdir()) / "spectraclip-s2cloudless"
        mode = "s2cloudless"
    if mode == "scl":
        if scene.scl is None:
            raise SceneError(f"--cloud-mask scl: {scene.path} has no scene classification layer (SCL); give one "
                             "with --scl, use an L2A SAFE folder / STAC item with an SCL asset, or --cloud-mask "
                             "s2cloudless for L1C scenes")
        return scene
    missing = [b for b in S2CLOUDLESS_BANDS if b not in scene.sources]
    if missing:
        raise SceneError(f"--cloud-mask s2cloudless: {scene.path} lacks band(s) {', '.join(missing)}; s2cloudless "
                         f"needs the L1C bands {', '.join(S2CLOUDLESS_BANDS)}")
    if work_dir is None:
        raise SceneError("--cloud-mask s2cloudless needs a folder for its mask (the job's parts folder)")
    digest = hashlib.sha256(json.dumps(scene.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]
    out = Path(work_dir) / f"s2cloudless_{digest}.tif"
    if not out.is_file():
        s2cloudless_mask(scene, out)
    return _with_scl(scene, BandSource("SCL", str(out.resolve()), 1))


def _processing_level(scene: Scene) -> str | None:
    """`L1C` / `L2A` from the scene's metadata (a SAFE folder's name, a STAC item's processing level), or None."""
    text = Path(scene.path).name.upper()
    for level in ("L1C", "L2A"):
        if f"MSI{level}" in text:
            return level
    if scene.kind == "stac" and scene.path.endswith(".json"):
        try:
            props = json.loads(Path(scene.path).read_text(encoding="utf-8")).get("properties", {})
        except (OSError, ValueError, AttributeError):
            props = {}
        for key in ("s2:processing_level", "processing:level", "sentinel:product_type", "s2:product_type"):
            value = str(props.get(key) or "").upper().replace("LEVEL-", "L").replace("-", "")
            for level in ("L1C", "L2A"):
                if level in value:
                    return level
    return None


def is_l1c(scene: Scene) -> bool:
    """Whether `scene` is Sentinel-2 L1C (top of atmosphere): its processing level when its metadata says one,
    else the presence of B10 (cirrus, which L2A products drop) and the absence of an SCL layer."""
    level = _processing_level(scene)
    if level is not None:
        return level == "L1C"
    return "B10" in scene.sources and scene.scl is None


def mask_used(scene: Scene) -> str:
    """Which cloud mask a scene returned by `apply_cloud_mask` carries: `scl`, `s2cloudless` or `none`."""
    if scene.scl is None:
        return "none"
    return "s2cloudless" if Path(scene.scl.path).name.startswith("s2cloudless_") else "scl"


def _with_scl(scene: Scene, scl: BandSource | None) -> Scene:
    return Scene(scene.path, scene.id, dict(scene.sources), scene.height, scene.width, scene.crs, scene.transform,
                 scene.grid_band, scl, dict(scene.nodata), scene.kind)


def s2cloudless_probability(scene: Scene, max_size: int = S2CLOUDLESS_SIZE) -> tuple[np.ndarray, float]:
    """s2cloudless cloud probability `[h, w]` of `scene` read at most `max_size` pixels a side (NaN where a band
    has no data), and the reduction factor. Values are taken as L1C digital numbers / 10000 (the classifier's
    top-of-atmosphere reflectance); an offset of 1000 (processing baseline >= 04.00) is removed when the values'
    low percentile says it is there."""
    from s2cloudless import S2PixelCloudDetector

    with SceneReader(scene) as reader:
        px, ok = reader.read_overview(list(S2CLOUDLESS_BANDS), max_size)
    f = max(1.0, max(scene.height, scene.width) / max_size)
    for i, b in enumerate(S2CLOUDLESS_BANDS):
        nd = scene.nodata.get(b)
        if nd is not None and not np.isnan(nd):
            ok &= px[i] != nd
    ok &= (px > 0).all(0)
    valid = px[:, ok]
    offset = 1000.0 if valid.size and np.percentile(valid[S2CLOUDLESS_BANDS.index("B02")], 1) >= 1000 else 0.0
    refl = np.clip((px - offset) / 10000.0, 0.0, 1.0).transpose(1, 2, 0)[None].astype(np.float32)
    detector = S2PixelCloudDetector(threshold=S2CLOUDLESS_THRESHOLD, all_bands=False)  # probabilities only
    prob = detector.get_cloud_probability_maps(refl)[0].astype(np.float32)
    prob[~ok] = np.nan
    return prob, f


def s2cloudless_mask(scene: Scene, out: str | Path, max_size: int = S2CLOUDLESS_SIZE) -> Path:
    """Write the s2cloudless mask of `scene` as an SCL-coded uint8 GeoTIFF on a reduced grid of the scene's
    footprint (9 cloud, 0 clear): the probability averaged over 3x3 pixels > 0.4, dilated by one pixel (the
    classifier's own rule, on the reduced grid)."""
    import rasterio
    from rasterio.transform import Affine
    from scipy.ndimage import binary_dilation, uniform_filter

    from spectraclip.io.atomic import atomic_path

    prob, _ = s2cloudless_probability(scene, max_size)
    h, w = prob.shape
    p = np.nan_to_num(prob, nan=0.0)
    smooth = uniform_filter(p, size=3) if min(h, w) > 3 else p
    cloud = binary_dilation(smooth > S2CLOUDLESS_THRESHOLD, iterations=1)
    codes = np.where(cloud, SCL_CLOUD_HIGH, SCL_CLEAR).astype(np.uint8)
    a = scene.affine
    transform = a @ Affine.scale(scene.width / w, scene.height / h)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", height=h, width=w, count=1, dtype="uint8", crs=scene.crs,
                           transform=transform) as dst:
            dst.write(codes[None])
            dst.update_tags(source="s2cloudless", threshold=str(S2CLOUDLESS_THRESHOLD),
                            cloud_share=f"{float(cloud.mean()):.4f}")
    return out


__all__ = ["CLOUD_MASKS", "S2CLOUDLESS_BANDS", "apply_cloud_mask", "check_cloud_mask", "is_l1c", "mask_used",
           "s2cloudless_mask", "s2cloudless_probability"]
