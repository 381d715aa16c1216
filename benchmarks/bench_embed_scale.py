"""Embedding at scale on this machine: the Ray engine and `--shard 1/2 + 2/2` against one process, same run.

Items: the 270 EuroSAT-MS patches of `../shared/data/eurosat-ms-mini` (train + test; `--repeat K` copies them
K times into a temporary folder for a longer run). Model: `eurosat-vit-s-minilm` (the demo's small ViT, 64 px
input, random weights where the bundle is absent; speed does not depend on the values), fp32 on CPU.

Tables (ratios against the single process measured in the same run; rounds interleaved A B C A B C and the
best of each kept, since the machine is shared):
1. items/s of: the local engine (one process, `--workers 1` DataLoader reader, the CLI default; and with
   2 readers); the Ray
   engine (a local 2-CPU Ray started once, its start-up reported apart); shards 1/2 then 2/2 (one after
   the other) + merge. Each on 270 and on `--repeat` x 270 items, so the marginal rate (items/s once
   running) and the fixed start-up per run (Ray Data launching its actor pool) are told apart.
2. Where the time of one item goes (reading + resampling, preprocessing, encoding, writing the table): for
   the small model on the EuroSAT chips, and for the Llama3-MS-CLIP-Base architecture (ViT-B-16, 224 px)
   on 224-px windows of a generated Sentinel-2 L2A band folder (10/20/60 m files; the 20 m and 60 m bands
   resampled onto the 10 m grid per window, as `embed --windows` reads a SAFE product).

    python benchmarks/bench_embed_scale.py [--rounds 2] [--repeat 1] [--batch-size 32] [--ray-workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
EUROSAT = ROOT.parent / "shared" / "data" / "eurosat-ms-mini"
if not EUROSAT.is_dir():
    EUROSAT = Path("/work/shared/data/eurosat-ms-mini")
BANDS = "eurosat-ms"


def _files(repeat: int, tmp: Path) -> list[Path]:
    files = sorted(EUROSAT.rglob("*.tif"))
    if repeat <= 1:
        return files
    out = []
    for k in range(repeat):
        for f in files:
            dst = tmp / f"copy{k}" / f.relative_to(EUROSAT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst)
            out.append(dst)
    return out


def run_local(model, files, out: Path, batch: int, readers: int = 1) -> float:
    from spectraclip.inference import embed_to_table

    t = time.perf_counter()
    embed_to_table(model, files, out, bands=BANDS, batch_size=batch, num_workers=readers, progress=False)
    return time.perf_counter() - t


def run_ray(model, files, out: Path, batch: int, workers: int, cpus: float) -> tuple[float, float]:
    """(end-to-end seconds, steady-state seconds per item after the first batch)."""
    from spectraclip.distributed.ray_engine import embed_with_ray

    stats: dict[str, float] = {}
    t = time.perf_counter()
    embed_with_ray(model, files, out, bands=BANDS, batch_size=batch, workers=workers, cpus_per_worker=cpus,
                   progress=False, stats=stats)
    total = time.perf_counter() - t
    steady_items = stats["items"] - stats["first_batch_items"]
    steady = (stats["total_s"] - stats["first_batch_s"]) / max(1.0, steady_items)
    return total, steady


def run_shards(model, files, out: Path, batch: int) -> float:
    from spectraclip.distributed.merge import merge_parts
    from spectraclip.distributed.shards import ShardSpec, shard_ids, shard_metadata
    from spectraclip.inference import embed_to_table, list_items

    t = time.perf_counter()
    _, ids = list_items(files)
    parts = []
    for i in (1, 2):
        spec = ShardSpec(i, 2)
        mine = shard_ids(ids, spec)
        part = out.with_name(f"{out.stem}-{i}.parquet")
        embed_to_table(model, files, part, bands=BANDS, batch_size=batch, num_workers=1, progress=False,
                       metadata=shard_metadata(spec, ids, mine), skip_ids=set(ids) - set(mine))
        parts.append(part)
    merge_parts(parts, out)
    return time.perf_counter() - t


def band_folder(root: Path, size10: int) -> Path:
    """A Sentinel-2 L2A-like band folder: one GeoTIFF per band at its native 10/20/60 m grid (random DNs)."""
    import rasterio
    from rasterio.transform import Affine

    from spectraclip.bands import CATALOG, BandSet

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for b in BandSet.parse("s2-l2a"):
        res = int(CATALOG[b].resolution_m)
        n = size10 * 10 // res
        with rasterio.open(root / f"T33UXP_20240612T103031_{b}.tif", "w", driver="GTiff", width=n, height=n,
                           count=1, dtype="uint16", crs="EPSG:32633", tiled=True, blockxsize=256, blockysize=256,
                           transform=Affine(res, 0, 500000.0, 0, -res, 5000000.0)) as dst:
            dst.write(rng.integers(200, 4000, (1, n, n), dtype=np.uint16))
    return root


def split(model, items, read, batch: int) -> dict[str, float]:
    """Seconds per item spent reading (+ resampling, for scene windows), preprocessing, encoding and writing
    the table, one step after the other in this process."""
    from spectraclip.embeddings import write_embeddings
    from spectraclip.inference import EncodedImages, collate_prepared, encode_batch, georef_meta
    from spectraclip.models.precision import prepare_for_inference

    prep = model.preprocessor()
    t = {"read": 0.0, "preprocess": 0.0, "encode": 0.0, "write": 0.0}
    encoder = prepare_for_inference(model, "fp32", "cpu", batch)
    ids, vecs, metas = [], [], []
    for i in range(0, len(items), batch):
        recs = []
        for k, item in enumerate(items[i:i + batch]):
            t0 = time.perf_counter()
            sample = read(item)
            t1 = time.perf_counter()
            prepared = prep(sample)
            t["preprocess"] += time.perf_counter() - t1
            t["read"] += t1 - t0
            meta = georef_meta(sample)
            meta.update(filled_bands="", groups=",".join(prepared.x))
            recs.append({"id": f"item{i + k}", "input": prepared, "meta": meta, "error": None})
        t0 = time.perf_counter()
        b = collate_prepared(model, recs)
        vecs.append(encode_batch(model, encoder, b))
        t["encode"] += time.perf_counter() - t0
        ids += b["ids"]
        metas += b["meta"]
    t0 = time.perf_counter()
    v = np.concatenate(vecs)
    with tempfile.TemporaryDirectory() as tmp:
        write_embeddings(Path(tmp) / "t.parquet", ids, v, EncodedImages(ids, v, metas).columns())
    t["write"] = time.perf_counter() - t0
    return {k: v / len(items) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=4, help="the large run holds the 270 patches this many times")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--ray-workers", type=int, default=2)
    ap.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per Ray encoding actor")
    ap.add_argument("--vitb-items", type=int, default=32)
    ap.add_argument("--skip-vitb", action="store_true")
    args = ap.parse_args()
    console = Console()
    import ray
    import torch

    from spectraclip.distributed.ray_engine import runtime_env
    from spectraclip.models.loading import load_model

    model = load_model("eurosat-vit-s-minilm", bands=BANDS)
    engines = ("local", "local2", "ray", "shards")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        sizes = {"small": _files(1, tmp / "items"), "large": _files(args.repeat, tmp / "items")}
        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, runtime_env=runtime_env(), log_to_driver=False)
        ray_start = time.perf_counter() - t
        best = {(e, size): np.inf for e in engines for size in sizes}
        for r in range(args.rounds):
            for size, files in sizes.items():
                for name in engines:  # A B C, A B C: interleaved, the best of each kept
                    out = tmp / f"{name}-{size}-{r}.parquet"
                    if name.startswith("local"):
                        sec = run_local(model, files, out, args.batch_size, 2 if name == "local2" else 1)
                    elif name == "ray":
                        sec, _ = run_ray(model, files, out, args.batch_size, args.ray_workers, args.ray_cpus)
                    else:
                        sec = run_shards(model, files, out, args.batch_size)
                    best[name, size] = min(best[name, size], sec)
                    console.print(f"round {r + 1} {name} {len(files)} items: {sec:.2f} s")
        ray.shutdown()
    n_small, n_large = len(sizes["small"]), len(sizes["large"])
    marginal = {e: (n_large - n_small) / max(1e-9, best[e, "large"] - best[e, "small"]) for e in engines}
    startup = {e: max(0.0, best[e, "small"] - n_small / marginal[e]) for e in engines}
    base_e2e = n_large / best["local", "large"]
    tab = Table(title=f"embed EuroSAT patches, eurosat-vit-s-minilm fp32 CPU, batch {args.batch_size}, torch "
                      f"threads {torch.get_num_threads()}, best of {args.rounds} interleaved rounds")
    for c in ("engine", f"s ({n_small})", f"s ({n_large})", f"items/s ({n_large})", "ratio",
              "marginal items/s", "ratio", "start-up s"):
        tab.add_column(c, justify="right" if c != "engine" else "left")
    labels = {"local": "local (one process, 1 reader)", "local2": "local, 2 readers (--workers 2)",
              "ray": f"ray ({args.ray_workers} actors x {args.ray_cpus:g} CPU)",
              "shards": "--shard 1/2 then 2/2 + merge"}
    for e in engines:
        tab.add_row(labels[e], f"{best[e, 'small']:.2f}", f"{best[e, 'large']:.2f}",
                    f"{n_large / best[e, 'large']:.1f}", f"{n_large / best[e, 'large'] / base_e2e:.2f}",
                    f"{marginal[e]:.1f}", f"{marginal[e] / marginal['local']:.2f}", f"{startup[e]:.1f}")
    console.print(tab)
    console.print(f"marginal = ({n_large} - {n_small}) / (t_{n_large} - t_{n_small}): the rate once running; "
                  f"start-up = t_{n_small} - {n_small} / marginal. ray.init of the local 2-CPU Ray (once, not in "
                  f"any row): {ray_start:.1f} s; load average {os.getloadavg()[0]:.1f}")

    from spectraclip.bands import BandSet
    from spectraclip.io.readers import read_sample

    eurosat = sorted(EUROSAT.rglob("*.tif"))
    chip_bands = BandSet.parse(BANDS)
    rows = [("eurosat-vit-s-minilm, EuroSAT 64 px chips", model, eurosat, lambda f: read_sample(f, chip_bands), 32)]
    if not args.skip_vitb:
        from spectraclip.io.window_items import window_items
        from spectraclip.models.registry import config_from_entry, get_entry
        from spectraclip.models.spectral_clip import SpectralCLIP

        vitb = SpectralCLIP.from_config(config_from_entry(get_entry("Llama3-MS-CLIP-Base"))).eval()
        tmp = scratch_dir("bench_scale_")
        scene = band_folder(tmp / "S2_L2A_T33UXP", 224 * 4)  # 4 x 4 windows of 224 px (2.24 km)
        wins = window_items([scene], 224)[: args.vitb_items]
        rows.append(("ViT-B-16 (Llama3-MS-CLIP-Base arch), S2 L2A band folder, 224 px windows "
                     "(20/60 m bands resampled)", vitb, wins, lambda w: w.read_sample("error"), 8))
    tab = Table(title="where one item's time goes on this machine (ms per item, fp32 CPU, steps in turn)")
    for c in ("model, items", "read (+ resample)", "preprocess", "encode", "write table", "items/s"):
        tab.add_column(c, justify="right" if not c.startswith("model") else "left")
    for label, net, items, read, batch in rows:
        s = split(net, items, read, batch)
        total = sum(s.values())
        tab.add_row(f"{label} ({len(items)})", *(f"{1000 * s[k]:.2f}" for k in ("read", "preprocess", "encode",
                                                                              "write")), f"{1 / total:.1f}")
    console.print(tab)


if __name__ == "__main__":
    main()
