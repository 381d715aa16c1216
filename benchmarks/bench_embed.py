"""Embedding throughput on this CPU: `spectraclip embed` end to end vs the model forward alone vs a
float32 matmul roofline measured in the same run.

Model: open_clip ViT-B-16 with a 10-band (`msclip`) patch embedding at 224 px (random weights:
speed does not depend on the values). Inputs: real Sentinel-2 L2A tiles (224x224x12) from
`../shared/data/s2-l2a-examples` (or the copies in the package tests), repeated to N files.

    python benchmarks/bench_embed.py [--images 32] [--batch-size 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(repeats: int = 8) -> float:
    """Best float32 GEMM throughput (GFLOP/s) over square and ViT-shaped products: this CPU's roofline."""
    shapes = [(2048, 2048, 2048), (3072, 3072, 3072), (8 * 197, 768, 3072), (8 * 197, 3072, 768)]
    best_rate = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best_rate = max(best_rate, 2 * m * k * n / (time.perf_counter() - t0) / 1e9)
    return best_rate


def forward_flops(model, batch: torch.Tensor) -> float:
    """FLOPs of one image-tower forward, counted by torch's FlopCounterMode.

    Counted in train mode with autograd on: in inference mode nn.MultiheadAttention runs a fused
    kernel the counter does not see (a third of ViT-B-16's FLOPs). Dropout is 0, so the ops match.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    model.train()
    with counter:
        model.encode_image(batch)
    model.eval()
    return counter.get_total_flops() / batch.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from spectraclip.inference import embed_to_table
    from spectraclip.models.loading import load_model

    src = sorted((ROOT.parent / "shared" / "data" / "s2-l2a-examples").glob("*.tif"))
    if not src:
        raise SystemExit("needs ../shared/data/s2-l2a-examples (real L2A tiles)")
    model = load_model("ViT-B-16", bands="msclip").eval()
    console = Console()
    console.print(f"threads={args.threads} images={args.images} batch={args.batch_size} workers={args.workers}")

    peak = matmul_gflops()
    x = torch.randn(args.batch_size, len(model.bands), 224, 224)
    flops = forward_flops(model, x[:1])

    with torch.inference_mode():
        model.encode_image(x)  # warm-up
        n_fwd = max(args.images // args.batch_size, 2)
        t0 = time.perf_counter()
        for _ in range(n_fwd):
            model.encode_image(x)
        fwd_ips = n_fwd * args.batch_size / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.images):
            dst = Path(tmp) / f"tile_{i:04d}.tif"
            shutil.copy(src[i % len(src)], dst)
            files.append(dst)
        t0 = time.perf_counter()
        table, failed, _ = embed_to_table(model, files, Path(tmp) / "emb.parquet", bands="s2-l2a",
                                          batch_size=args.batch_size, num_workers=args.workers, progress=False)
        e2e_s = time.perf_counter() - t0
        assert len(table) == args.images and not failed
    e2e_ips = args.images / e2e_s

    t = Table(title="ViT-B-16, 10 bands, 224 px, fp32 CPU")
    for col in ("measure", "value", "ratio"):
        t.add_column(col, justify="right" if col != "measure" else "left")
    roof_ips = peak * 1e9 / flops
    t.add_row("fp32 matmul roofline (GFLOP/s)", f"{peak:.1f}", "")
    t.add_row("forward FLOPs / image (GFLOP)", f"{flops / 1e9:.2f}", "")
    t.add_row("roofline images/s (peak / FLOPs)", f"{roof_ips:.2f}", "1.00")
    t.add_row("model forward alone, images/s", f"{fwd_ips:.2f}", f"{fwd_ips / roof_ips:.2f} of roofline")
    t.add_row("`embed` end to end, images/s", f"{e2e_ips:.2f}",
              f"{e2e_ips / roof_ips:.2f} of roofline, {e2e_ips / fwd_ips:.2f} of forward")
    console.print(t)


if __name__ == "__main__":
    main()
