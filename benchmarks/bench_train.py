"""Training-step throughput and peak memory: SpectralCLIP ViT-B-16 with 10 bands at 224 (our step:
feature-cached contrastive step + clipping + AdamW), with and without gradient checkpointing, against
open_clip's own model forward/backward (+ ClipLoss + AdamW) on the same weights and batch; and our step under
bf16 autocast (the recipe's `run.precision: bf16`), to see whether it pays off on this CPU.

Each configuration runs in a fresh subprocess; peak memory is that process's max RSS (getrusage).
Usage: python benchmarks/bench_train.py [--batch 8] [--steps 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys

CONFIGS = {
    "open_clip fwd/bwd (baseline)": {"mode": "openclip", "ckpt": False},
    "spectraclip step": {"mode": "spectraclip", "ckpt": False},
    "spectraclip step + grad ckpt": {"mode": "spectraclip", "ckpt": True},
    "spectraclip step, bf16 autocast": {"mode": "spectraclip", "ckpt": False, "bf16": True},
}


def worker(mode: str, ckpt: bool, batch: int, steps: int, threads: int, bf16: bool = False) -> dict:
    import resource
    import time

    import torch

    torch.set_num_threads(threads)
    from open_clip.loss import ClipLoss

    from spectraclip.train.config import ModelRecipe, OptimRecipe
    from spectraclip.train.loop import contrastive_step
    from spectraclip.train.model_setup import build_model
    from spectraclip.train.optim import build_optimizer

    torch.manual_seed(0)
    model, _ = build_model(ModelRecipe(base="openclip:ViT-B-16", bands="msclip", grad_checkpointing=ckpt))
    g = torch.Generator().manual_seed(1)
    img = torch.randn(batch, 10, 224, 224, generator=g)
    tok = model.tokenize([f"a sentinel-2 image of field number {i}" for i in range(batch)])
    opt = build_optimizer(model, OptimRecipe(lr=1e-5))
    loss_fn = ClipLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        if mode == "openclip":  # open_clip's model called directly, as open_clip_train does
            f_i, f_t, scale = model.clip(img, tok)
            loss_fn(f_i, f_t, scale).backward()
        else:
            autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
            contrastive_step(model, loss_fn, [(img, tok)], autocast=autocast)
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"pairs_per_s": batch * steps / dt, "peak_rss_mb": rss_mb}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repeats per configuration; best kept")
    ap.add_argument("--worker", default=None)
    a = ap.parse_args()
    if a.worker:
        cfg = CONFIGS[a.worker]
        print(json.dumps(worker(cfg["mode"], cfg["ckpt"], a.batch, a.steps, a.threads, cfg.get("bf16", False))))
        return
    results: dict[str, dict] = {}
    for _ in range(a.rounds):  # A B C A B C: load drifting over time hits every configuration alike
        for name in CONFIGS:
            out = subprocess.run([sys.executable, __file__, "--worker", name, "--batch", str(a.batch),
                                  "--steps", str(a.steps), "--threads", str(a.threads)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            best = results.setdefault(name, r)
            best["pairs_per_s"] = max(best["pairs_per_s"], r["pairs_per_s"])
            best["peak_rss_mb"] = min(best["peak_rss_mb"], r["peak_rss_mb"])
    base = results["open_clip fwd/bwd (baseline)"]
    print(f"ViT-B-16, 10 bands, 224x224, batch {a.batch}, {a.steps} timed steps, {a.threads} thread(s), CPU, "
          f"best of {a.rounds} interleaved rounds")
    print(f"| {'configuration':<30} | pairs/s | ratio | peak RSS MB | ratio |")
    print(f"|{'-' * 32}|---------|-------|-------------|-------|")
    for name, r in results.items():
        print(f"| {name:<30} | {r['pairs_per_s']:7.2f} | {r['pairs_per_s'] / base['pairs_per_s']:5.2f} "
              f"| {r['peak_rss_mb']:11.0f} | {r['peak_rss_mb'] / base['peak_rss_mb']:5.2f} |")


if __name__ == "__main__":
    main()
