"""Reading SSL4EO-S12 v1.1 samples per second in one process (fixture files at the published 264 px size), and
Major TOM decode+embed vs embed of GeoTIFFs of the same pixels (ratio, same process, tiny-test model).
    PYTHONPATH=src:tests python benchmarks/archives_throughput.py [--size 1068] [--skip-ssl4eo]
`--size` is the 10 m side of the Major TOM rows (the published Core rows are 1068 px); the model squeezes each
row into its input (resize allowed) in both paths, so the ratio measures reading and decoding."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scratch import scratch_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    import argparse

    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64, help="10 m side of the Major TOM rows (published: 1068)")
    ap.add_argument("--skip-ssl4eo", action="store_true")
    args = ap.parse_args()
    from fixtures_archives import make_captions, make_major_tom_core, make_ssl4eo_v11

    from spectraclip.data.ssl4eo_v11 import Ssl4eoV11Dataset

    torch.set_num_threads(1)
    tmp = scratch_dir("archives_throughput_")
    if not args.skip_ssl4eo:
        split = make_ssl4eo_v11(tmp / "s", size=264, files=4)
        caps = make_captions(tmp / "c", files=4)
        ds = Ssl4eoV11Dataset(split, captions=caps, max_cloud=0.6)
        n, t0 = 0, time.perf_counter()
        for epoch in range(10):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                ds[i]
                n += 1
        rate = n / (time.perf_counter() - t0)
        print(f"SSL4EO-S12 v1.1 L2A 12x264x264 int16 + caption, one worker: {rate:.0f} samples/s")

    from test_data_majortom import _write_tifs  # noqa: E402

    from spectraclip.data.majortom import core_items
    from spectraclip.distributed.majortom import embed_major_tom
    from spectraclip.inference import embed_to_table
    from spectraclip.models.loading import load_model

    model = load_model("tiny-test").set_input_options(allow_resize=True)
    shard, meta = make_major_tom_core(tmp / "mt", size=args.size)
    tifs = _write_tifs(core_items([str(shard)], meta), tmp / "tif", size=args.size)
    best = {}
    for name in ("geotiff", "majortom"):
        times = []
        for r in range(3):
            out = tmp / f"{name}{r}.parquet"
            t0 = time.perf_counter()
            if name == "geotiff":
                embed_to_table(model, tifs, out, batch_size=3, progress=False)
            else:
                embed_major_tom(model, [str(shard)], out, metadata=meta, batch_size=3, progress=False)
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    print(f"3 rows 12x{args.size}x{args.size}: GeoTIFF embed {best['geotiff']:.3f}s, "
          f"Major TOM decode+embed {best['majortom']:.3f}s, "
          f"ratio {best['majortom'] / best['geotiff']:.2f}")


if __name__ == "__main__":
    main()
