"""One GPU check in one table (issue #29): run it on one GPU (< 8 minutes on an H100), paste the table into
docs/benchmarks.md.

Rows, all measured in this process:
1. CUDA fp32 / bf16 / fp16 embeddings of the EuroSAT-MS patches (all 270 of ../shared/data/eurosat-ms-mini; synthetic
   inputs of the model's kind where the data is absent) through spectraclip's batch path, against CPU fp32 of
   the same model: min cosine and zero-shot top-1 agreement (the accuracy gate's proxy classes).
2. Throughput at batch 256 per mode vs open_clip's eager fp32 forward on the same GPU (same inputs).
3. One training step: ViT-B-16, batch 128, AMP (bf16, or fp16 with a grad scaler), gradient checkpointing,
   open_clip's ClipLoss: seconds per step and peak memory.
4. The batch size `models.batching.choose_batch_size` fits to this device.

Model: the Llama3-MS-CLIP-Base architecture (ViT-B-16, 10 bands, 224 px) with random weights.

    python benchmarks/gpu_check.py                     # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --small  # the same code on CPU in seconds (tests run this)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
EUROSAT = ROOT.parent / "shared" / "data" / "eurosat-ms-mini"
if not EUROSAT.is_dir():
    EUROSAT = Path("/work/shared/data/eurosat-ms-mini")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev: torch.device, reps: int) -> float:
    """Best seconds of `fn()` over `reps` runs after one warm-up."""
    fn()
    _sync(dev)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


def build_model(small: bool):
    from spectraclip.models.loading import load_model
    from spectraclip.models.registry import config_from_entry, get_entry
    from spectraclip.models.spectral_clip import SpectralCLIP

    torch.manual_seed(0)
    if small:
        return load_model("tiny-test", bands="msclip").eval()
    return SpectralCLIP.from_config(config_from_entry(get_entry("Llama3-MS-CLIP-Base"))).eval()


def accuracy_rows(model, dev: torch.device, modes: list[str], limit: int | None) -> list[dict]:
    """Each CUDA mode's embeddings of the patches vs CPU fp32."""
    from spectraclip.inference import encode_images
    from spectraclip.models import precision as P

    files = sorted(EUROSAT.rglob("*.tif"))[:limit] if EUROSAT.is_dir() else []
    cls = P.proxy_classes(model.to("cpu"))
    if files:
        what = f"{len(files)} EuroSAT-MS patches"

        def enc(mode: str, device: torch.device) -> np.ndarray:
            return encode_images(model, files, bands="eurosat-ms", batch_size=32, precision=mode, device=device,
                                 progress=False).vectors
    else:
        n = limit or 270
        pixels = P.calibration_pixels(model, n, P.HELDOUT_SEED)
        what = f"{n} synthetic inputs (no EuroSAT data here)"

        def enc(mode: str, device: torch.device) -> np.ndarray:
            e = P.prepare_for_inference(model, mode, device)
            with torch.inference_mode():
                return torch.cat([e.encode_image({g: t[i:i + 32].to(device) for g, t in pixels.items()}).cpu()
                                  for i in range(0, n, 32)]).numpy()
    ref = enc("fp32", torch.device("cpu"))
    rows = []
    for mode in modes:
        got = enc(mode, dev)
        model.to("cpu")
        cos = float((got * ref).sum(1).min())
        c = cls.numpy()
        agree = float(((got @ c.T).argmax(1) == (ref @ c.T).argmax(1)).mean())
        rows.append({"check": f"{dev.type} {mode} embeddings vs CPU fp32 ({what})", "min cosine": f"{cos:.5f}",
                     "agreement": f"{100 * agree:.1f}%"})
    return rows


def throughput_rows(model, dev: torch.device, modes: list[str], batch: int, reps: int) -> list[dict]:
    """Images/s per mode vs open_clip's eager fp32 forward, same inputs, same device."""
    from spectraclip.models import precision as P

    model.to(dev)
    x = P.calibration_pixels(model, batch, 7)[model.groups[0]].to(dev)

    def eager():
        with torch.no_grad():
            model.clip.encode_image(x)

    base = _timed(eager, dev, reps)
    rows = [{"check": f"open_clip eager fp32 forward, batch {batch} (baseline)", "images/s": f"{batch / base:.1f}",
             "vs eager": "1.00"}]
    for mode in modes:
        enc = P.prepare_for_inference(model, mode, dev)

        def run(enc=enc):
            with torch.inference_mode():
                enc.encode_image(x)

        t = _timed(run, dev, reps)
        rows.append({"check": f"spectraclip {mode}, batch {batch}", "images/s": f"{batch / t:.1f}",
                     "vs eager": f"{base / t:.2f}"})
    model.to("cpu")
    return rows


def train_row(model, dev: torch.device, batch: int, reps: int) -> dict:
    """One AMP training step with gradient checkpointing: seconds and peak memory."""
    from open_clip.loss import ClipLoss

    from spectraclip.models import precision as P

    model.to(dev).train()
    model.clip.set_grad_checkpointing(True)
    x = P.calibration_pixels(model, batch, 11)[model.groups[0]].to(dev)
    tokens = model.tokenize([f"a satellite image of field {i}." for i in range(batch)]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    amp = torch.bfloat16 if dev.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    loss_fn = ClipLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp):
            img, txt, scale = model(x, tokens)[:3]
            loss = loss_fn(img, txt, scale)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t = _timed(step, dev, reps)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    model.clip.set_grad_checkpointing(False)
    model.eval().to("cpu")
    return {"check": f"training step, batch {batch}, AMP {str(amp).split('.')[-1]}, gradient checkpointing",
            "images/s": f"{batch / t:.1f}", "seconds": f"{t:.3f}",
            "peak memory": "n/a (CPU)" if dev.type != "cuda" else f"{peak:.2f} GiB"}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny model, few inputs, small batches (CPU smoke run)")
    ap.add_argument("--dry-run", action="store_true", help="same as --device cpu --small")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.device, args.small = "cpu", True
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu --small (or --dry-run)")
    os.environ.setdefault("SPECTRACLIP_CACHE", "off")
    model = build_model(args.small)
    modes = ["fp32", "bf16", "fp16"] if dev.type == "cuda" else ["fp32", "bf16"]
    infer_batch, train_batch, reps = (8, 4, 2) if args.small else (256, 128, 5)
    from spectraclip.models.batching import choose_batch_size

    rows = accuracy_rows(model, dev, modes, 6 if args.small else None)
    rows += throughput_rows(model, dev, modes, infer_batch, reps)
    rows.append(train_row(model, dev, train_batch, reps))
    rows.append({"check": "choose_batch_size (fitted inference batch)", "images/s": "",
                 "seconds": "", "value": str(choose_batch_size(model, dev))})
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    cols = ["check", "min cosine", "agreement", "images/s", "vs eager", "seconds", "peak memory", "value"]
    print(f"gpu_check on {name}, torch {torch.__version__}, model {'tiny-test' if args.small else 'ViT-B-16 10 bands'}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r.get(c, "") for c in cols) + " |")
    return rows


if __name__ == "__main__":
    main()
