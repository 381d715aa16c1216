"""Water IoU on the hand-labelled Sen1Floods11 chip (../shared/data/sen1floods11-chip), in one run:

- NDWI > 0 (green vs NIR), the classic index baseline;
- per model (the demo's MS and RGB twins by default): the plain average of 64-px window zero-shot probabilities
  at stride 16 (no blending: the reference the map tool must not lose to), `spectraclip map` (Hann blending),
  `map --dense` (per-patch classes), `heatmap` (water query vs land query) and `map --probe` with a probe fitted
  on the 216 labelled EuroSAT-MS training chips shipped with the package (none from this chip).

Water = class SeaLake or River of the ten EuroSAT classes. Nothing here is tuned on this chip.

    PYTHONPATH=src python benchmarks/bench_water.py [--ms DIR --rgb DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
CHIP = ROOT.parent / "shared" / "data" / "sen1floods11-chip"
WATER = ("River", "SeaLake")
WATER_QUERIES = ("a satellite image of a lake or a river", "a satellite image of land")


def iou(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    p, t = pred[valid], truth[valid]
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else float("nan")


def water_from_map(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        names = json.loads(ds.tags()["classes"])
        cls = ds.read(1)
    return np.isin(cls, [names.index(c) for c in WATER if c in names])


def fit_eurosat_probe(model, out: Path) -> Path:
    """A window probe on the shipped EuroSAT-MS training chips (216 labelled 64-px chips)."""
    from spectraclip.apps.probe_head import fit_probe
    from spectraclip.data.registry import load_dataset
    from spectraclip.inference import encode_images

    ds = load_dataset("eurosat-ms-mini", None, split="train")
    enc = encode_images(model, ds, progress=False, batch_size=32)
    by_id = {it.id: it.labels[0] for it in ds.items}
    return fit_probe(model, enc.vectors, [by_id[i] for i in enc.ids]).save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ms", default=str(ROOT / "spectraclip-demo" / "models" / "ms"))
    ap.add_argument("--rgb", default=str(ROOT / "spectraclip-demo" / "models" / "rgb"))
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip", default="", help="comma list of modes to skip (plain,map,dense,heatmap,probe)")
    args = ap.parse_args()
    if not CHIP.exists():
        raise SystemExit(f"{CHIP} not found: this benchmark needs the shared data")
    from spectraclip.apps.heatmap import heatmap_scene
    from spectraclip.apps.maps import map_scene
    from spectraclip.models.loading import load_model
    from spectraclip.zeroshot.classes import parse_classes

    scene = CHIP / "S2" / "Spain_7370579_S2Hand.tif"
    with rasterio.open(CHIP / "Labels" / "Spain_7370579_LabelHand.tif") as ds:
        label = ds.read(1)
    valid = label >= 0
    truth = label == 1
    with rasterio.open(scene) as ds:
        names = [d.upper().replace("B0", "B") for d in ds.descriptions]
        green = ds.read(names.index("B3") + 1).astype(np.float64)
        nir = ds.read(names.index("B8") + 1).astype(np.float64)
    ndwi = (green - nir) / np.maximum(green + nir, 1e-6)
    rows: list[tuple[str, str, float, float]] = [("NDWI > 0", "index", iou(ndwi > 0, truth, valid), 0.0)]
    classes = parse_classes("eurosat")
    skip = set(filter(None, args.skip.split(",")))
    tmp = Path(tempfile.mkdtemp(prefix="bench_water_"))
    common = {"tile": args.tile, "stride": args.stride, "progress": False, "quicklook": False, "batch_size": 64}
    for label_, ckpt in (("MS twin", args.ms), ("RGB twin", args.rgb)):
        if not Path(ckpt).exists():
            print(f"# {label_}: {ckpt} missing, skipped")
            continue
        model = load_model(checkpoint=ckpt)
        modes = [("plain average (uniform, no blending)", "plain", {"weight": "uniform"}),
                 ("spectraclip map (Hann blend)", "map", {}),
                 ("spectraclip map --dense", "dense", {"dense": True})]
        for name, key, kw in modes:
            if key in skip:
                continue
            t0 = time.perf_counter()
            res = map_scene(model, scene, tmp / f"{label_}-{key}.tif", classes, **common, **kw)
            rows.append((label_, name, iou(water_from_map(res.path), truth, valid), time.perf_counter() - t0))
        if "heatmap" not in skip:
            t0 = time.perf_counter()
            res = heatmap_scene(model, scene, tmp / f"{label_}-heat.tif", list(WATER_QUERIES), tile=args.tile,
                                stride=args.stride, progress=False, quicklook=False, batch_size=64)
            with rasterio.open(res.path) as ds:
                h = ds.read()
            rows.append((label_, "spectraclip heatmap (water > land query)", iou(h[0] > h[1], truth, valid),
                         time.perf_counter() - t0))
        if "probe" not in skip:
            t0 = time.perf_counter()
            probe = fit_eurosat_probe(model, tmp / f"{label_}-probe.json")
            res = map_scene(model, scene, tmp / f"{label_}-probe.tif", None, probe=probe, **common)
            rows.append((label_, "spectraclip map --probe (216 EuroSAT chips)",
                         iou(water_from_map(res.path), truth, valid), time.perf_counter() - t0))
    print(f"\nWater IoU on Sen1Floods11 Spain_7370579 ({100 * truth[valid].mean():.0f}% water, "
          f"{valid.sum()} labelled pixels); windows {args.tile} px, stride {args.stride}\n")
    print(f"| {'model':<9} | {'method':<46} | water IoU | seconds |")
    print(f"|{'-' * 11}|{'-' * 48}|----------:|--------:|")
    for m, meth, v, s in rows:
        print(f"| {m:<9} | {meth:<46} | {v:9.3f} | {s:7.1f} |")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps([{"model": m, "method": meth, "iou": v, "seconds": s}
                                               for m, meth, v, s in rows], indent=2))


if __name__ == "__main__":
    main()
