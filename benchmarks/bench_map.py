"""`spectraclip map` on a whole Sentinel-2 tile: peak memory and windows/s against plain embedding of the same
windows, in one run.

Makes a 10980 x 10980 x 13 uint16 tiled, uncompressed GeoTIFF (~3.1 GB, a deterministic pattern, in /tmp,
deleted at the end), then runs, each in a fresh child process (peak RSS from the child's rusage):

- `embed`: the same windows read by the scene reader and encoded by the library's batch path
  (`inference.iter_encoded_batches` over the window Samples), vectors discarded: the encoding-only baseline;
- `map`: `apps.maps.map_scene` on the scene (read + encode + Hann blend + strip writes + COG conversion).

Targets: peak RSS of `map` < 4 GB; windows/s of `map` >= 0.9 x `embed`.

    PYTHONPATH=src python benchmarks/bench_map.py [--tile 256] [--stride 256] [--size 10980] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def make_scene(path: Path, size: int) -> Path:
    """A tiled (512 px), uncompressed, band-interleaved GeoTIFF written block row by block row."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    prof = {"driver": "GTiff", "width": size, "height": size, "count": len(BANDS), "dtype": "uint16",
            "crs": "EPSG:32633", "transform": from_origin(300000, 5000040, 10, 10), "tiled": True,
            "blockxsize": 512, "blockysize": 512, "interleave": "band", "BIGTIFF": "YES"}
    with rasterio.open(path, "w", **prof) as dst:
        for i, b in enumerate(BANDS, start=1):
            dst.set_band_description(i, b)
        xx = np.arange(size)
        for r0 in range(0, size, 512):
            h = min(512, size - r0)
            yy = np.arange(r0, r0 + h)[:, None]
            base = (1500 + 700 * np.sin(xx[None] / 300.0) * np.cos(yy / 410.0))
            block = np.stack([(base + 90 * k + 40 * ((xx[None] // 700 + yy // 900) % 3)) for k in range(len(BANDS))])
            dst.write(block.astype(np.uint16), window=Window(0, r0, size, h))
    return path


def _child(mode: str, scene: str, out: str, tile: int, stride: int, batch: int, workers: int) -> None:
    """Runs in a child process: one mode, prints a JSON line with windows and seconds."""
    import torch

    from spectraclip.apps.maps import map_scene
    from spectraclip.io.scene import SceneReader, open_scene, window_grid
    from spectraclip.models.loading import load_model
    from spectraclip.zeroshot.classes import parse_classes

    torch.set_num_threads(2)
    model = load_model("tiny-test", bands="s2-l1c")
    classes = parse_classes("water,forest,town,crops")
    if mode == "map":
        t0 = time.perf_counter()
        res = map_scene(model, scene, out, classes, tile=tile, stride=stride, batch_size=batch, num_workers=workers,
                        progress=False, quicklook=False)
        dt = time.perf_counter() - t0
        print(json.dumps({"mode": mode, "windows": res.summary.encoded, "seconds": dt,
                          "job_seconds": res.summary.seconds}))
        return
    from spectraclip.inference import iter_encoded_batches

    sc = open_scene(scene).select(model.bands)
    windows = window_grid(sc.height, sc.width, tile, stride)
    if tile > 2 * model.image_size:
        model.set_input_options(allow_resize=True)

    class WindowSamples:  # a dataset of Samples: the scene windows, read lazily (per worker)
        def __init__(self) -> None:
            self.items = [f"{sc.id}:{w.index}" for w in windows]
            self.reader = None

        def __len__(self) -> int:
            return len(windows)

        def __getitem__(self, i: int):
            if self.reader is None:
                self.reader = SceneReader(sc)
            return self.reader.read(windows[i]).sample

    t0 = time.perf_counter()
    n = 0
    for ids, _vec, _meta, _failed in iter_encoded_batches(model, WindowSamples(), batch_size=batch,
                                                          num_workers=workers, progress=False):
        n += len(ids)
    print(json.dumps({"mode": mode, "windows": n, "seconds": time.perf_counter() - t0}))


def run_child(mode: str, args: argparse.Namespace, scene: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--scene", str(scene), "--out", str(out), "--tile",
           str(args.tile), "--stride", str(args.stride), "--batch", str(args.batch), "--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env={**os.environ})
    stdout = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{mode} failed ({proc.returncode}):\n{stdout}")
    res = json.loads(stdout.strip().splitlines()[-1])
    res["peak_rss_gb"] = usage.ru_maxrss / 1024 ** 2  # KiB -> GiB
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--stride", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the generated scene")
    ap.add_argument("--child", default=None)
    ap.add_argument("--scene", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.scene, args.out, args.tile, args.stride, args.batch, args.workers)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_map_", dir="/tmp"))
    scene = tmp / f"scene_{args.size}.tif"
    t0 = time.perf_counter()
    make_scene(scene, args.size)
    print(f"# generated {scene} ({scene.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")
    try:
        rows = [run_child("embed", args, scene, tmp / "unused.tif"), run_child("map", args, scene, tmp / "map.tif")]
        base = rows[0]["windows"] / rows[0]["seconds"]
        print(f"\n{args.size} x {args.size} x 13 scene, tile {args.tile}, stride {args.stride}, model tiny-test "
              f"(32 px input), batch {args.batch}, workers {args.workers}\n")
        print("| run   | windows | seconds | windows/s | ratio vs embed | peak RSS (GB) |")
        print("|-------|--------:|--------:|----------:|---------------:|--------------:|")
        for r in rows:
            wps = r["windows"] / r["seconds"]
            print(f"| {r['mode']:<5} | {r['windows']:7d} | {r['seconds']:7.1f} | {wps:9.1f} | {wps / base:14.2f} | "
                  f"{r['peak_rss_gb']:13.2f} |")
        m = rows[1]
        print(f"\nmap: {m['job_seconds']:.1f} s in the window job (read, encode, blend, strip writes), "
              f"{m['seconds'] - m['job_seconds']:.1f} s in class prompts + COG conversion")
    finally:
        if not args.keep:
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()


if __name__ == "__main__":
    main()
