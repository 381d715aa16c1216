"""Multi-group training in the shared trainer (`model.kind: multisensor`): the batch source (co-registered
S2 / S1 / coherence items of an SSL4EO-S12 folder, BigEarthNet S1+S2 patches or a manifest, optionally with
captions), the multi-group `SpectralCLIP` a recipe starts from, its objective (pairwise group InfoNCE plus
image-text), its training step and its validation.

Everything else — AdamW + warm-up/cosine, freezing, DDP, checkpoints/resume, logs, the final bundle —
is the trainer's own (`train.loop`). Recipe keys used here:

    model: {kind: multisensor, base: tiny-test | <open_clip ViT> | <multisensor bundle>,
            modalities: {s2: s2-l2a, s1: s1}, modality_dropout: 0.3, channel_dropout: 0.1,
            init_new_bands: zero | mean, freeze: all | lock-text | projection | attention}
    data: {layout: auto | ssl4eo | bigearthnet-s1s2 | manifest, train: PATH, val: PATH (optional)}
    normalization: {s2: {mean: {...}, std: {...}}, s1: ...}   # as `spectraclip stats --write-recipe` writes

A new model takes the base model's open_clip ViT trunk and text tower; each modality gets its own patch
embedding whose slices for bands the base knows are copied by band name, the others initialised per
`model.init_new_bands`. Normalisation comes from `normalization:` (else it is computed from data.train).
In DDP each process contrasts modalities within its own share of the batch (gradients are averaged).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectraclip.bands import GROUP_ORDER, BandSet, check_group, group_of_band
from spectraclip.errors import InputError
from spectraclip.io.layouts import LayoutItem, layout_items, read_item
from spectraclip.io.sample import RasterError
from spectraclip.models.inputs import InputGroup, collate_inputs
from spectraclip.models.spectral_clip import ModelConfig, SpectralCLIP
from spectraclip.train.config import Recipe, RecipeError

MODALITIES = GROUP_ORDER

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ data
def split_items(items: Sequence[LayoutItem], split: str | None) -> list[LayoutItem]:
    """Items whose `meta["split"]` is `split` (items without a split count as `train`); None keeps all."""
    if split is None:
        return list(items)
    return [it for it in items if (it.meta.get("split") or "train") == split]


def _captions(meta: dict[str, Any]) -> list[str]:
    caps = meta.get("captions", meta.get("caption"))
    if caps is None or (isinstance(caps, float) and np.isnan(caps)):
        return []
    if isinstance(caps, str):
        return [caps] if caps.strip() else []
    return [str(c) for c in caps if str(c).strip()]


class MultiSensorTrainDataset(torch.utils.data.Dataset):
    """Multi-sensor items for the trainer: `ds[i]` is `{"x": {modality: [C_m, S, S]}, "caption", "id", "n_bad"}`.

    Only the model's modalities are read; bands a modality lacks are filled with their mean (as at
    inference). All modalities of an item get the same random flip/rotation/crop; randomness and the
    caption drawn come from a per-(seed, epoch, index) generator, so runs resume exactly. An unreadable
    item is logged and replaced by the next readable one; `n_bad` counts the items passed over.
    """

    def __init__(self, items: Sequence[LayoutItem], config: Any = None, augment: Any = None, seed: int = 0,
                 source: str = "") -> None:
        self.items = list(items)
        self.config = config.config if isinstance(config, SpectralCLIP) else config
        self.preprocessor = config.preprocessor() if isinstance(config, SpectralCLIP) else None
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.source = source
        self.skipped: list[Any] = []  # the trainer reports skipped rows; items are never skipped up front

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def caption(self, index: int) -> str | None:
        """The caption drawn for `index` this epoch (None when the item has none)."""
        from spectraclip.data.captions import item_seed

        caps = _captions(self.items[index].meta)
        if len(caps) <= 1:
            return caps[0] if caps else None
        return caps[int(np.random.default_rng(item_seed(self.seed, self.epoch, index)).integers(len(caps)))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        from spectraclip.data.captions import item_seed

        n_bad = 0
        mods = list(self.config.groups)
        prepare = self.preprocessor
        for k in range(min(len(self.items), 64)):
            i = (index + k) % len(self.items)
            item = self.items[i]
            try:
                sample = read_item(item, modalities=[m for m in mods if m in item.paths] or mods)
                x = prepare(sample).x
            except (InputError, OSError) as exc:
                log.warning("skipping unreadable multi-sensor item %s: %s", item.id, exc)
                n_bad += 1
                continue
            if self.augment is not None:
                g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, i) ^ 0x5EED)
                names = list(x)
                stacked = self.augment(torch.cat([x[m] for m in names]), g)
                x = dict(zip(names, stacked.split([x[m].shape[0] for m in names]), strict=True))
                x = {m: t.contiguous() for m, t in x.items()}
            return {"x": x, "caption": self.caption(i), "id": item.id, "n_bad": n_bad}
        raise RasterError(self.source or "multi-sensor data", f"no readable item among {n_bad} from item {index}")


def collate_multisensor(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch: `x[m]` `[B, C_m, S, S]` (zeros where absent), `present[m]` bool `[B]`, captions ("" where
    none) with `has_caption`, ids and the count of unreadable items passed over."""
    from spectraclip.models.inputs import PreparedInput

    x, present = collate_inputs([PreparedInput(it["x"]) for it in items], MODALITIES)
    return {"x": x, "present": present, "captions": [it["caption"] or "" for it in items],
            "has_caption": torch.tensor([it["caption"] is not None for it in items], dtype=torch.bool),
            "ids": [it["id"] for it in items], "n_bad": sum(int(it.get("n_bad", 0)) for it in items)}


def read_items(spec: str, layout: str) -> list[LayoutItem]:
    """The items of a data spec read as `layout` (a layout error becomes a RecipeError naming data.layout)."""
    from spectraclip.io.layouts import MultiSensorLayoutError

    try:
        return layout_items(spec, layout)[1]
    except MultiSensorLayoutError as exc:
        raise RecipeError(f"data.layout={layout!r}: {exc}") from exc


# ----------------------------------------------------------------------------------------------- model
def modality_bands(spec: dict[str, Any] | None, items: Sequence[LayoutItem]) -> dict[str, list[str]]:
    """Bands per modality: from `model.modalities`, else those of the first item of each modality in the data."""
    if spec:
        out = {}
        for m, bands in spec.items():
            mod = check_group(m)
            names = list(BandSet.parse(bands).names)
            wrong = [b for b in names if group_of_band(b) != mod]
            if wrong:
                raise RecipeError(f"model.modalities.{m}: band(s) {', '.join(wrong)} are not {mod} bands")
            out[mod] = names
        return {m: out[m] for m in MODALITIES if m in out}
    from spectraclip.io.readers import read_sample

    out = {}
    for m in MODALITIES:
        it = next((it for it in items if m in it.paths), None)
        if it is not None:
            out[m] = list(read_sample(it.paths[m], it.bands.get(m), nodata="ignore").bands.names)
    if not out:
        raise RecipeError("data.train holds no s2, s1 or coherence item")
    return out


def normalization_stats(recipe: Recipe, bands: dict[str, list[str]]) -> dict[str, Any]:
    """Per-modality `BandStats` from the recipe's `normalization:` block, else computed from data.train."""
    from spectraclip.data.stats import StatsError, compute_stats, stats_from_json

    if recipe.normalization:
        try:
            stats = {check_group(m): s for m, s in stats_from_json(recipe.normalization, "normalization:").items()}
        except (StatsError, ValueError) as exc:
            raise RecipeError(f"recipe key 'normalization': {exc}") from exc
        missing = [m for m in bands if m not in stats]
        if missing:
            raise RecipeError(f"recipe key 'normalization' has no statistics for modality {missing[0]!r}; "
                              "compute them with `spectraclip stats DATA --write-recipe RECIPE`")
        return stats
    log.info("no normalization: block in the recipe; computing band statistics from %s", recipe.data.train)
    return compute_stats([recipe.data.train], modalities=list(bands), max_items=256, progress=False)


def transplant(source: Any, config: ModelConfig, init_new_bands: str = "zero") -> SpectralCLIP:
    """A multi-group `SpectralCLIP` of `config` carrying `source`'s (a single-group SpectralCLIP) trunk, text
    tower and temperature; each group's patch embedding copies the source's slice of every band it knows (by
    name), other bands start at zero or at the mean of the source's slices."""
    model = SpectralCLIP.from_config(config)
    sd = {k: v for k, v in source.clip.state_dict().items() if k != "visual.conv1.weight"}
    missing, unexpected = model.clip.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise RecipeError(f"model.base {config.provenance.get('init_from')!r} does not fit a multi-sensor trunk "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    w = source.clip.visual.conv1.weight.detach()
    src_bands = list(source.bands.names)
    with torch.no_grad():
        for g in config.inputs:
            pe = model.patch_embeds[g.name].weight
            for i, b in enumerate(g.bands):
                if b in src_bands:
                    pe[:, i] = w[:, src_bands.index(b)]
                else:
                    pe[:, i] = w.mean(1) if init_new_bands == "mean" else 0.0
    return model


def build_multisensor_model(recipe: Recipe, items: Sequence[LayoutItem]) -> Any:
    """The multi-group SpectralCLIP a `kind: multisensor` recipe trains, frozen per `model.freeze`."""
    from spectraclip.models.checkpoints import is_bundle, load_bundle, read_bundle_config
    from spectraclip.models.freeze import apply_freeze
    from spectraclip.models.loading import load_model
    from spectraclip.train.model_setup import _base_name

    mr = recipe.model
    for key, bad in (("bands", mr.bands is not None), ("text", bool(mr.text)), ("freeze", mr.freeze == "lora")):
        if bad:
            raise RecipeError(f"recipe key 'model.{key}'={getattr(mr, key)!r} is not supported with "
                              "model.kind: multisensor (use model.modalities for bands; freeze: all, lock-text, "
                              "projection or attention)")
    base = Path(mr.base).expanduser()
    if base.is_dir() and is_bundle(base) and read_bundle_config(base).multi:
        model = load_bundle(base)
        have = {g.name: g.bands for g in model.config.inputs}
        if mr.modalities and modality_bands(mr.modalities, items) != have:
            raise RecipeError(f"model.modalities differ from those of the bundle {base}: {have}")
        model.config.modality_dropout, model.config.channel_dropout = mr.modality_dropout, mr.channel_dropout
    else:
        bands = modality_bands(mr.modalities, items)
        stats = normalization_stats(recipe, bands)
        groups = [InputGroup.from_stats(m, b, stats[m]) for m, b in bands.items()]
        source = load_model(_base_name(mr))
        if source.config.multi:
            raise RecipeError(f"model.base {mr.base}: use a multi-sensor bundle as it is (without model.modalities)")
        arch_config = deepcopy(source.config.arch_config)
        if arch_config.get("custom_text") or arch_config.get("text_cfg", {}).get("hf_model_name"):
            raise RecipeError(f"model.base {mr.base}: a multi-sensor model needs open_clip's own text transformer")
        config = ModelConfig(
            arch=source.config.arch, arch_config=arch_config, inputs=groups, image_size=source.config.image_size,
            resize=source.config.resize, crop=source.config.crop, missing_bands="fill",
            modality_dropout=mr.modality_dropout, channel_dropout=mr.channel_dropout,
            provenance={"init_from": mr.base, "init_new_bands": mr.init_new_bands,
                        "normalization": {m: stats[m].source for m in bands}})
        model = transplant(source, config, mr.init_new_bands)
    apply_freeze(model, mr.freeze)
    if mr.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    model.train()
    return model


# ------------------------------------------------------------------------------------- step, validation
def make_step(model: Any, device: torch.device, metrics: dict[str, float]) -> Callable[..., float]:
    """The trainer's step function: forward (`training_step`) and backward of one batch."""

    def step(net: torch.nn.Module, batch: dict[str, Any], autocast: Callable[[], Any], scaler: Any) -> float:
        x = {m: t.to(device, non_blocking=True) for m, t in batch["x"].items()}
        present = {m: p.to(device) for m, p in batch["present"].items()}
        text = text_present = None
        if int(batch["has_caption"].sum()) >= 2:
            text = model.tokenize(batch["captions"]).to(device)
            text_present = batch["has_caption"].to(device)
        with autocast():
            loss, logs = training_step(net, x, present, text, text_present=text_present)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        metrics.clear()
        metrics.update({k: v for k, v in logs.items() if k != "loss"})
        return float(loss.detach())

    return step


@torch.inference_mode()
def validate_multisensor(model: Any, loader: Any, device: torch.device) -> dict[str, float]:
    """Pairwise InfoNCE over the whole validation set (no dropout) and cross-modal recall@1/5 per pair."""
    from spectraclip.train.validate import recall_at_k

    was_training = model.training
    model.eval()
    embs: dict[str, list[torch.Tensor]] = {}
    pres: dict[str, list[torch.Tensor]] = {}
    n = 0
    for batch in loader:
        b = len(batch["ids"])
        emb, p, _ = model.encode_groups({m: t.to(device) for m, t in batch["x"].items()},
                                 {m: t.to(device) for m, t in batch["present"].items()}, dropout=False)
        for m in MODALITIES:
            embs.setdefault(m, []).append(emb[m].float().cpu() if m in emb else torch.zeros(b, model.embed_dim))
            pres.setdefault(m, []).append(p[m].cpu() if m in p else torch.zeros(b, dtype=torch.bool))
        n += b
    model.train(was_training)
    if not n:
        return {}
    e = {m: torch.cat(v) for m, v in embs.items()}
    pr = {m: torch.cat(v) for m, v in pres.items()}
    e = {m: v for m, v in e.items() if pr[m].any()}
    loss, pairs = multimodal_infonce(e, pr, model.clip.logit_scale.exp().cpu())
    out = {"val_loss": float(loss), "val_items": float(n)}
    for pair in pairs:
        a, b = pair.split("-")
        both = pr[a] & pr[b]
        r = recall_at_k(e[a][both] @ e[b][both].T)
        out.update({f"{pair}_r1": r["i2t_r1"], f"{pair}_r5": r["i2t_r5"]})
    return out


def setup_multisensor(recipe: Recipe, info: Any) -> Any:
    """The trainer's task for `model.kind: multisensor` (data, model, step, validation; see `loop.TrainTask`)."""
    from spectraclip.data.augment import SpectralAugment
    from spectraclip.train.loop import TrainTask

    dcfg = recipe.data
    if recipe.optim.accum_steps != 1:
        raise RecipeError("recipe key 'optim.accum_steps': gradient accumulation is not supported with "
                          "model.kind: multisensor; use 1")
    if recipe.loss.kind != "clip":
        raise RecipeError("recipe key 'loss.kind': model.kind: multisensor trains with InfoNCE (clip) only")
    all_items = read_items(dcfg.train, dcfg.layout)
    train_items = split_items(all_items, dcfg.train_split)
    if not train_items:
        raise RecipeError(f"data.train {dcfg.train} has no item of split {dcfg.train_split!r}")
    model = build_multisensor_model(recipe, train_items)
    aug = None
    if dcfg.augment:
        aug = SpectralAugment(dcfg.hflip, dcfg.vflip, dcfg.rot90, tuple(dcfg.crop_scale) if dcfg.crop_scale else None)
    train_ds = MultiSensorTrainDataset(train_items, model, aug, recipe.run.seed, dcfg.train)
    val_items = read_items(dcfg.val, dcfg.layout) if dcfg.val else split_items(all_items, dcfg.val_split)
    val_ds = MultiSensorTrainDataset(val_items, model, None, recipe.run.seed, dcfg.val or dcfg.train) \
        if val_items else None
    metrics: dict[str, float] = {}

    def validate(m: Any, per_rank: int) -> dict[str, float]:
        if val_ds is None:
            return {}
        loader = torch.utils.data.DataLoader(val_ds, batch_size=per_rank, collate_fn=collate_multisensor,
                                             num_workers=dcfg.num_workers)
        return validate_multisensor(m, loader, info.device)

    return TrainTask(model=model, lora=None, train_ds=train_ds, val_ds=val_ds, collate=collate_multisensor,
                     step=make_step(model, info.device, metrics), validate=validate,
                     ddp_kwargs={"find_unused_parameters": True}, metrics=metrics)


# -------------------------------------------------------------------------------------------- loss
def multimodal_infonce(emb: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                       logit_scale: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean open_clip `ClipLoss` over every pair of modalities, each on the samples that have both
    (pairs with fewer than two such samples are skipped). Returns (loss, {"s2-s1": value, ...})."""
    from open_clip.loss import ClipLoss

    loss_fn = ClipLoss()
    losses, logs = [], {}
    for a, b in itertools.combinations([m for m in MODALITIES if m in emb], 2):
        both = present[a] & present[b]
        if int(both.sum()) < 2:
            continue
        value = loss_fn(emb[a][both], emb[b][both], logit_scale)
        losses.append(value)
        logs[f"{a}-{b}"] = float(value.detach())
    if not losses:
        zero = logit_scale * 0.0
        return zero, logs
    return torch.stack(losses).mean(), logs


def training_step(model: Any, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None,
                  text: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  text_present: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch: pairwise group InfoNCE, plus a CLIP loss between the fused image embedding and
    caption embeddings when `text` is given (on the rows of `text_present`, default all, if >= 2). Runs the
    model through its (DDP-wrapped) forward so gradients synchronise."""
    from open_clip.loss import ClipLoss

    use_text = text is not None and (text_present is None or int(text_present.sum()) >= 2)
    emb, pres, fused, text_features, scale = model(x, text if use_text else None, present=present, groups=True,
                                                   generator=generator)
    loss, logs = multimodal_infonce(emb, pres, scale)
    if use_text:
        rows = text_present.bool() if text_present is not None else torch.ones(len(text), dtype=torch.bool)
        tl = ClipLoss()(fused[rows.to(fused.device)], text_features[rows.to(text_features.device)], scale)
        logs["image-text"] = float(tl.detach())
        loss = loss + tl
    logs["loss"] = float(loss.detach())
    logs["dropped_modalities"] = float(sum(int((present[m].bool().to(pres[m].device) & ~pres[m]).sum())
                                           for m in pres if m in present)) if present is not None else 0.0
    return loss, logs
