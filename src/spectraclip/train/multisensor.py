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

import logging
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectraclip.bands import GROUP_ORDER, BandSet, check_group, group_of_band
from spectraclip.errors import InputError
from spectraclip.io.layouts import LayoutItem, layout_items, read_item
from spectraclip.io.sample import RasterError
from spectraclip.models.inputs import InputGroup, collate_inputs, drop_inputs
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

    def __init__(self, items: Sequence[LayoutItem], model: SpectralCLIP, augment: Any = None, seed: int = 0,
                 source: str = "", train: bool = True) -> None:
        self.items = list(items)
        self.config = model.config
        self.preprocessor = model.preprocessor()  # picklable: workers prepare items without the weights
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.source = source
        self.train = train  # group / channel dropout (per item, seeded like the augmentation)
        self.has_captions = any(_captions(it.meta) for it in self.items)
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
            g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, i) ^ 0x5EED)
            if self.augment is not None:
                names = list(x)
                stacked = self.augment(torch.cat([x[m] for m in names]), g)
                x = dict(zip(names, stacked.split([x[m].shape[0] for m in names]), strict=True))
                x = {m: t.contiguous() for m, t in x.items()}
            if self.train:
                x = drop_inputs(x, self.config.modality_dropout, self.config.channel_dropout, g)
            return {"x": x, "caption": self.caption(i), "id": item.id, "n_bad": n_bad}
        raise RasterError(self.source or "multi-sensor data", f"no readable item among {n_bad} from item {index}")


class LayoutCollate:
    """A batch of layout items: `x[g]` `[B, C_g, S, S]` for EVERY input group of the model (zeros where absent,
    so all DDP ranks issue the same collectives), `present[g]` bool `[B]`, captions ("" where none) with
    `has_caption`, ids and the count of unreadable items passed over. Picklable for DataLoader workers."""

    def __init__(self, config: ModelConfig) -> None:
        self.shapes = {g.name: (len(g.bands), config.image_size) for g in config.inputs}

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        from spectraclip.models.inputs import PreparedInput

        x, present = collate_inputs([PreparedInput(it["x"]) for it in items], list(self.shapes))
        for g, (c, s) in self.shapes.items():
            if g not in x:
                x[g] = torch.zeros(len(items), c, s, s)
                present[g] = torch.zeros(len(items), dtype=torch.bool)
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


def build_multisensor_model(recipe: Recipe, items: Sequence[LayoutItem], siglip_bias: float | None = None
                            ) -> tuple[Any, Any]:
    """The multi-group SpectralCLIP a `kind: multisensor` recipe trains (text tower, SigLIP bias, LoRA or
    freezing as for any model) and its LoRA handle (or None)."""
    from spectraclip.models.checkpoints import is_bundle, load_bundle, read_bundle_config
    from spectraclip.models.loading import load_model
    from spectraclip.train.model_setup import _base_name, finish_model

    mr = recipe.model
    if mr.bands is not None:
        raise RecipeError(f"recipe key 'model.bands'={mr.bands!r} does not apply to model.kind: multisensor "
                          "(its bands are per input group: use model.modalities)")
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
        config = ModelConfig(
            arch=source.config.arch, arch_config=arch_config, inputs=groups, image_size=source.config.image_size,
            resize=source.config.resize, crop=source.config.crop, missing_bands="fill",
            modality_dropout=mr.modality_dropout, channel_dropout=mr.channel_dropout,
            provenance={"init_from": mr.base, "init_new_bands": mr.init_new_bands,
                        "normalization": {m: stats[m].source for m in bands}})
        model = transplant(source, config, mr.init_new_bands)
    return finish_model(model, mr, siglip_bias)


def setup_multisensor(recipe: Recipe, siglip_bias: float | None = None) -> tuple[Any, Any, Any, Any]:
    """(model, LoRA handle, train dataset, validation dataset or None) of a `model.kind: multisensor` recipe;
    the trainer does the rest exactly as for one input group."""
    from spectraclip.data.augment import SpectralAugment

    dcfg = recipe.data
    all_items = read_items(dcfg.train, dcfg.layout)
    train_items = split_items(all_items, dcfg.train_split)
    if not train_items:
        raise RecipeError(f"data.train {dcfg.train} has no item of split {dcfg.train_split!r}")
    model, lora = build_multisensor_model(recipe, train_items, siglip_bias)
    aug = None
    if dcfg.augment:
        aug = SpectralAugment(dcfg.hflip, dcfg.vflip, dcfg.rot90, tuple(dcfg.crop_scale) if dcfg.crop_scale else None)
    train_ds = MultiSensorTrainDataset(train_items, model, aug, recipe.run.seed, dcfg.train)
    val_items = read_items(dcfg.val, dcfg.layout) if dcfg.val else split_items(all_items, dcfg.val_split)
    val_ds = MultiSensorTrainDataset(val_items, model, None, recipe.run.seed, dcfg.val or dcfg.train, train=False) \
        if val_items else None
    return model, lora, train_ds, val_ds
