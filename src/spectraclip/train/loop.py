"""The contrastive training loop: one process per device (DDP via torchrun/srun), open_clip's ClipLoss
(local_loss + gather_with_grad) or SigLipLoss, feature-cached gradient accumulation, clipping, mixed
precision, periodic validation and atomic checkpoints, and a model bundle at the end."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spectraclip.train.config import LossRecipe, Recipe
from spectraclip.train.distributed import DistInfo, all_reduce_mean, all_reduce_sum, cleanup_distributed

log = logging.getLogger(__name__)
FAULT_ENV = "SPECTRACLIP_FAULT_KILL_AFTER_STEP"  # tests: SIGKILL this process after the given step


@dataclass
class TrainResult:
    """What a run produced."""

    output: Path
    bundle: Path | None
    steps: int
    final_loss: float | None
    skipped_rows: int = 0
    unreadable: int = 0
    metrics: Path | None = None
    plot: Path | None = None
    last_checkpoint: Path | None = None
    validation: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainTask:
    """What differs between model kinds: the model, its data, one step's forward/backward, validation.

    `step(net, batch, autocast, scaler) -> loss` runs forward and backward of one optimiser step's batch;
    `validate(model, per_rank_batch) -> metrics`; `metrics` holds extra values of the last step to log.
    """

    model: Any
    lora: Any
    train_ds: Any
    val_ds: Any
    collate: Callable
    step: Callable[..., float]
    validate: Callable[[Any, int], dict[str, float]]
    ddp_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def make_loss(recipe: LossRecipe, info: DistInfo) -> torch.nn.Module:
    """open_clip's `ClipLoss` (InfoNCE) or `SigLipLoss`, set up for this process's rank."""
    from open_clip.loss import ClipLoss, SigLipLoss

    if recipe.kind == "siglip":
        return SigLipLoss(rank=info.rank, world_size=info.world_size)
    return ClipLoss(local_loss=recipe.local_loss, gather_with_grad=recipe.gather_with_grad, cache_labels=True,
                    rank=info.rank, world_size=info.world_size)


def contrastive_step(model: torch.nn.Module, loss_fn: torch.nn.Module,
                     micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                     autocast: Callable[[], Any] = contextlib.nullcontext, scaler: Any = None) -> float:
    """Forward/backward of one step's `(pixels, tokens)` micro-batches of a single-group model through the
    trainer's one objective (`train.objective.step`: feature-cached accumulation); returns the loss."""
    from spectraclip.train.objective import Objective, step

    group = _unwrap(model).groups[0]
    micro = [{"x": {group: img}, "present": None, "text": tok, "text_present": None} for img, tok in micro_batches]
    return step(model, Objective(loss_fn), micro, autocast, scaler)[0]


class TextFeatureCache:
    """Text features of captions, computed once each with the (frozen) text tower in eval mode.

    With `lock-text` (LiT) the text tower never changes, so re-encoding every caption at every step is
    wasted work (most of a small model's step time on a CPU).
    """

    def __init__(self, model: Any, batch_size: int = 128) -> None:
        self.model, self.batch_size = model, batch_size
        self.features: dict[str, torch.Tensor] = {}

    @staticmethod
    def applies(model: Any) -> bool:
        """True when no text-tower parameter is trainable (and the model accepts cached features)."""
        from spectraclip.models.freeze import tower_of

        return hasattr(model, "tokenize") and not any(
            p.requires_grad for n, p in model.named_parameters() if tower_of(n) == "text")

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        new = list(dict.fromkeys(c for c in captions if c not in self.features))
        if new:
            text_tower = [m for n, m in self.model.clip.named_children() if n not in ("visual",)]
            modes = [m.training for m in text_tower]
            for m in text_tower:
                m.eval()
            device = next(self.model.parameters()).device
            with torch.no_grad():
                for i in range(0, len(new), self.batch_size):
                    chunk = new[i:i + self.batch_size]
                    feats = self.model.encode_text(self.model.tokenize(chunk).to(device), normalize=True)
                    self.features.update(zip(chunk, feats.float().cpu(), strict=True))
            for m, mode in zip(text_tower, modes, strict=True):
                m.train(mode)
        return torch.stack([self.features[c] for c in captions])


def _precision(spec: str, device: torch.device) -> tuple[Callable[[], Any], Any, str]:
    if spec == "auto":
        spec = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if spec == "fp32":
        return contextlib.nullcontext, None, spec
    dtype = torch.bfloat16 if spec == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if spec == "fp16" and device.type == "cuda" else None

    def autocast():
        return torch.autocast(device_type=device.type, dtype=dtype)

    return autocast, scaler, spec


def _unwrap(model: torch.nn.Module) -> Any:
    return model.module if hasattr(model, "module") else model


def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Batches:
    """Per-epoch batch iterator for map-style manifests and streaming shards alike."""

    def __init__(self, dataset: Any, recipe: Recipe, info: DistInfo, collate: Callable) -> None:
        from spectraclip.train.data import GlobalBatchSampler

        self.dataset, self.info = dataset, info
        self.per_rank = recipe.data.batch_size // info.world_size
        self.streaming = isinstance(dataset, torch.utils.data.IterableDataset)
        kw: dict[str, Any] = {"num_workers": recipe.data.num_workers, "collate_fn": collate,
                              "persistent_workers": False}
        if self.streaming:
            from spectraclip.data.shards import INDEX_NAME

            n = recipe.data.samples_per_epoch
            idx = Path(str(dataset.spec)) / INDEX_NAME
            if n is None and idx.exists():
                import json

                n = json.loads(idx.read_text())["n_samples"]
            if n is None:
                raise ValueError("data.samples_per_epoch is required for shards without a shards.json index")
            self.steps = n // recipe.data.batch_size
            self.loader = torch.utils.data.DataLoader(dataset, batch_size=self.per_rank, drop_last=True, **kw)
        else:
            self.sampler = GlobalBatchSampler(len(dataset), recipe.data.batch_size, rank=info.rank,
                                              world_size=info.world_size, seed=recipe.run.seed)
            self.steps = self.sampler.steps_per_epoch()
            self.loader = torch.utils.data.DataLoader(dataset, batch_sampler=self.sampler, **kw)

    def epoch(self, epoch: int, start: int):
        self.dataset.set_epoch(epoch)
        if not self.streaming:
            self.sampler.set_epoch(epoch, start)
            yield from self.loader
            return
        done, skip = start, start
        while done < self.steps:
            got = False
            for batch in self.loader:
                got = True
                if skip:
                    skip -= 1
                    continue
                yield batch
                done += 1
                if done >= self.steps:
                    return
            if not got:
                raise RuntimeError(f"shards {self.dataset.spec} yielded no complete batch of {self.per_rank}")


def _validation_data(recipe: Recipe, transform: Any) -> Any:
    from spectraclip.train.data import is_shards, make_dataset

    if recipe.data.val:
        return make_dataset(recipe.data.val, transform, recipe.data, recipe.run.seed, None, training=False)
    if is_shards(recipe.data.train) or recipe.data.layout == "ssl4eo-v1.1":
        return None
    ds = make_dataset(recipe.data.train, transform, recipe.data, recipe.run.seed, recipe.data.val_split,
                      training=False)
    return ds if len(ds) else None


def _check_data_bands(ds: Any, bands: Any) -> None:
    if len(getattr(ds, "records", [None])) == 0:
        raise ValueError(f"no usable image-caption pairs in {getattr(ds, 'manifest', ds)}")
    ds.check_bands(bands)


class _PairsAsGroups:
    """Collate image-caption pairs of a single-group model into the trainer's one batch format."""

    def __init__(self, group: str) -> None:
        self.group = group

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        from spectraclip.data.captions import collate_pairs

        batch = collate_pairs(items)
        n = len(batch["ids"])
        batch["x"] = {self.group: batch.pop("pixels")}
        batch["present"] = {self.group: torch.ones(n, dtype=torch.bool)}
        batch["has_caption"] = torch.ones(n, dtype=torch.bool)
        return batch


def _caption_pairs(recipe: Recipe, siglip_bias: float | None) -> tuple[Any, Any, Any, Any, Callable]:
    """Model, LoRA handle and datasets of a single-group recipe (image-caption pairs, manifest or shards)."""
    from spectraclip.data.augment import SpectralAugment
    from spectraclip.train.data import TrainTransform, make_dataset
    from spectraclip.train.model_setup import build_model, normalization_for, set_normalization, target_bands

    run, dcfg = recipe.run, recipe.data
    # Data first (cheap, and a band the data lacks must fail before anything heavy happens).
    want = target_bands(recipe.model)
    train_ds = make_dataset(dcfg.train, None, dcfg, run.seed, dcfg.train_split, training=True)
    if want is not None:
        _check_data_bands(train_ds, want)
    _seed_all(run.seed)
    model, lora = build_model(recipe.model, siglip_bias)
    bands = model.bands
    if want is None:
        _check_data_bands(train_ds, bands)
    norm = normalization_for(recipe)
    if norm is not None:
        set_normalization(model, *norm)
    aug = None
    if dcfg.augment:
        aug = SpectralAugment(dcfg.hflip, dcfg.vflip, dcfg.rot90,
                              tuple(dcfg.crop_scale) if dcfg.crop_scale else None)
    train_ds.transform = TrainTransform(tuple(bands.names), model.transform, aug)
    val_ds = _validation_data(recipe, TrainTransform(tuple(bands.names), model.transform, None))
    return model, lora, train_ds, val_ds, _PairsAsGroups(model.groups[0])


def _task(recipe: Recipe, info: DistInfo) -> TrainTask:
    """The one training task: a model with one input group (image-caption pairs) or several (multi-file
    layouts, captions optional), the one objective (`train.objective`), feature-cached accumulation and DDP
    with cross-rank negatives for both, one validation."""
    from spectraclip.train.objective import Objective, split, step
    from spectraclip.train.validate import validate

    siglip_bias = recipe.loss.siglip_bias_init if recipe.loss.kind == "siglip" else None
    if recipe.model.kind == "multisensor":
        from spectraclip.train.multisensor import LayoutCollate, setup_multisensor

        _seed_all(recipe.run.seed)
        model, lora, train_ds, val_ds = setup_multisensor(recipe, siglip_bias)
        collate: Callable = LayoutCollate(model.config)
    else:
        model, lora, train_ds, val_ds, collate = _caption_pairs(recipe, siglip_bias)
    objective = Objective(make_loss(recipe.loss, info), info.world_size)
    text_cache = TextFeatureCache(model) if TextFeatureCache.applies(model) else None
    metrics: dict[str, float] = {}

    # decided once for the whole run, not per batch, so every DDP rank computes the same losses
    uses_text = bool(getattr(train_ds, "has_captions", True))

    def train_step(net: torch.nn.Module, batch: dict[str, Any], autocast: Callable[[], Any], scaler: Any) -> float:
        captions = batch["captions"]
        text = None
        if uses_text:
            # a frozen text tower gives the same features for the same caption: encode each caption once
            text = text_cache(captions) if text_cache is not None else model.tokenize(captions)
        micro = split(batch, text, recipe.optim.accum_steps, info.device)
        loss, logs = step(net, objective, micro, autocast, scaler)
        metrics.clear()
        metrics.update({k: v for k, v in logs.items() if k != "loss"})
        return loss

    def run_validation(m: Any, per_rank: int) -> dict[str, float]:
        vl = torch.utils.data.DataLoader(val_ds, batch_size=per_rank, collate_fn=collate,
                                         num_workers=recipe.data.num_workers)
        return validate(m, vl, Objective(make_loss(recipe.loss, DistInfo())), info.device)

    hf_text = bool(model.config.arch_config.get("text_cfg", {}).get("hf_model_name"))
    return TrainTask(model=model, lora=lora, train_ds=train_ds, val_ds=val_ds, collate=collate, step=train_step,
                     validate=run_validation, metrics=metrics,
                     ddp_kwargs={"find_unused_parameters": hf_text or model.config.multi})


def train(recipe: Recipe, *, resume: bool = False, hooks: Sequence[Callable] | None = None,
          console: Any = None) -> TrainResult:
    """Run a training recipe (in every process of a torchrun/srun launch); returns what rank 0 wrote.

    `model.kind: multisensor` trains a model with several input groups (see `train.multisensor`) through the
    same task, objective, step and validation."""
    from spectraclip.models.freeze import print_trainable
    from spectraclip.train import checkpoint as ckpt
    from spectraclip.train.distributed import init_distributed
    from spectraclip.train.logs import MetricsLog, plot_curves
    from spectraclip.train.optim import build_optimizer, build_scheduler
    from spectraclip.train.validate import zeroshot_hook

    run, dcfg = recipe.run, recipe.data
    if run.threads:
        torch.set_num_threads(run.threads)
    info = init_distributed(run.device)
    try:
        if dcfg.batch_size % (info.world_size * recipe.optim.accum_steps):
            raise ValueError(f"data.batch_size={dcfg.batch_size} must be divisible by processes × "
                             f"optim.accum_steps = {info.world_size} × {recipe.optim.accum_steps}")
        out = Path(run.output)
        ck_dir = out / "checkpoints"
        if resume and ckpt.latest_checkpoint(ck_dir) is None and info.is_main:
            log.warning("--resume: no checkpoint in %s; starting from scratch", ck_dir)

        job = _task(recipe, info)
        model, lora, train_ds, val_ds = job.model, job.lora, job.train_ds, job.val_ds
        model.to(info.device)
        skipped_rows = len(getattr(train_ds, "skipped", []))
        if info.is_main:
            print_trainable(model, recipe.model.freeze, console)
            for s in getattr(train_ds, "skipped", [])[:20]:
                log.warning("skipped manifest row %s: %s", s.where, s.reason)
        batches = _Batches(train_ds, recipe, info, job.collate)
        if batches.steps < 1:
            raise ValueError(f"data.train has fewer pairs than one batch of data.batch_size={dcfg.batch_size}")
        total_steps = run.max_steps or run.epochs * batches.steps

        optimizer = build_optimizer(model, recipe.optim)
        scheduler = build_scheduler(optimizer, recipe.optim, total_steps)
        autocast, scaler, precision = _precision(run.precision, info.device)
        step, epoch, in_epoch, unreadable = 0, 0, 0, 0
        mlog = MetricsLog(out, run.tensorboard, enabled=info.is_main)
        latest = ckpt.latest_checkpoint(ck_dir) if resume else None
        if latest is not None:
            state = ckpt.load_checkpoint(latest)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step, epoch, in_epoch = state["step"], state["epoch"], state["in_epoch"]
            unreadable = state.get("unreadable", 0) if info.is_main else 0
            ckpt.set_rng_state(state["rng"][info.rank] if info.rank < len(state["rng"]) else state["rng"][0])
            mlog.truncate_after(step)
            if info.is_main:
                log.info("resumed from %s at step %d", latest, step)

        net: torch.nn.Module = model
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(model, device_ids=[info.device] if info.device.type == "cuda" else None,
                      static_graph=recipe.model.grad_checkpointing, **job.ddp_kwargs)
        all_hooks = list(hooks or [])
        if run.zeroshot:
            all_hooks.append(zeroshot_hook(run.zeroshot, run.zeroshot_templates, run.zeroshot_root))

        def checkpoint_now() -> Path | None:
            states = [ckpt.rng_state()]
            if info.distributed:
                import torch.distributed as dist

                states = [None] * info.world_size
                dist.all_gather_object(states, ckpt.rng_state())
            path = None
            if info.is_main:
                path = ckpt.save_checkpoint(ck_dir, step, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                    "rng": states, "step": step, "epoch": epoch, "in_epoch": in_epoch,
                    "unreadable": unreadable, "recipe": recipe.to_dict()}, keep=run.keep_checkpoints)
            if info.distributed:
                torch.distributed.barrier()
            return path

        last_val: dict[str, float] = {}

        def validate_now() -> None:
            nonlocal last_val
            if info.is_main and (val_ds is not None or all_hooks):
                metrics: dict[str, float] = {}
                if val_ds is not None:
                    metrics.update(job.validate(model, batches.per_rank))
                for hook in all_hooks:
                    metrics.update(hook(model, step))
                if metrics:
                    last_val = metrics
                    mlog.log("val", step, metrics)
            if info.distributed:
                torch.distributed.barrier()

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                            disable=not (run.progress and info.is_main), console=console, transient=False)
        fault_step = int(os.environ.get(FAULT_ENV, "0") or 0)
        last_loss, last_ckpt = None, None
        t_last, pairs_since = time.perf_counter(), 0
        net.train()
        with progress:
            task = progress.add_task("train", total=total_steps, completed=step, info="")
            while step < total_steps:
                if in_epoch >= batches.steps:
                    epoch, in_epoch = epoch + 1, 0
                for batch in batches.epoch(epoch, in_epoch):
                    optimizer.zero_grad(set_to_none=True)
                    loss = job.step(net, batch, autocast, scaler)
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    if recipe.optim.grad_clip:
                        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                       recipe.optim.grad_clip)
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    lr = optimizer.param_groups[-1]["lr"]
                    scheduler.step()
                    with torch.no_grad():
                        model.clip.logit_scale.clamp_(0, math.log(100))
                    step, in_epoch = step + 1, in_epoch + 1
                    unreadable += int(batch["n_bad"])
                    pairs_since += dcfg.batch_size
                    if step % max(run.log_every, 1) == 0 or step == total_steps or step == 1:
                        last_loss = all_reduce_mean(loss, info)
                        dt = time.perf_counter() - t_last
                        rate = pairs_since / dt if dt > 0 else 0.0
                        mlog.log("train", step, {"epoch": epoch, "loss": last_loss, "lr": lr,
                                                 "pairs_per_s": rate,
                                                 "logit_scale": float(model.clip.logit_scale.detach().exp()),
                                                 **job.metrics})
                        progress.update(task, info=f"loss {last_loss:.4f}  lr {lr:.2e}  {rate:.1f} pairs/s")
                        t_last, pairs_since = time.perf_counter(), 0
                    progress.update(task, completed=step)
                    end_of_epoch = in_epoch >= batches.steps
                    if (run.val_every and step % run.val_every == 0) or (end_of_epoch and not run.val_every) \
                            or step == total_steps:
                        validate_now()
                    if (run.checkpoint_every and step % run.checkpoint_every == 0) or end_of_epoch \
                            or step == total_steps:
                        last_ckpt = checkpoint_now()
                    if fault_step and step == fault_step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    if step >= total_steps:
                        break
        unreadable = all_reduce_sum(unreadable, info)
        bundle = plot = None
        if info.is_main:
            final = model
            if lora is not None:
                from spectraclip.models.lora import merge_lora

                final = merge_lora(model, lora)
            provenance = {"training": {
                "recipe": recipe.to_dict(), "steps": step, "final_loss": last_loss, "precision": precision,
                "world_size": info.world_size, "validation": last_val,
                "data": {"train": dcfg.train, "val": dcfg.val, "pairs": len(train_ds) if hasattr(train_ds, "__len__")
                         else None, "skipped_rows": skipped_rows, "unreadable": unreadable}}}
            from spectraclip.models.checkpoints import save_bundle

            final.eval()
            if recipe.model.zeroshot_templates is not None:
                final.config.zeroshot["templates"] = recipe.model.zeroshot_templates
            bundle = save_bundle(final, out / "model", provenance=provenance)
            if run.plot and mlog.path.exists():
                plot = plot_curves(mlog.path, out / "training_curves.png")
            if skipped_rows or unreadable:
                log.warning("%d manifest rows skipped, %d unreadable images passed over", skipped_rows, unreadable)
        mlog.close()
        return TrainResult(out, bundle, step, last_loss, skipped_rows, unreadable, mlog.path if info.is_main else None,
                           plot, last_ckpt, last_val)
    finally:
        cleanup_distributed()
