"""`MultiSensorCLIP`: one patch embedding per modality (s2, s1, coherence) feeding ONE shared ViT trunk.

Why a shared trunk rather than one tower per modality: every modality lands in the same embedding
space by construction (the same transformer, pooling and projection), the parameters grow only by a
small conv per modality, and a sample with any subset of modalities still runs through the same
network. Each modality keeps its own band list and per-band normalisation.

Missing data is normal:
- training: `modality_dropout` drops each present modality of a sample with that probability (one
  is always kept) and `channel_dropout` zeroes bands of a kept modality (one band always kept).
  Zero is the band mean after normalisation, which is also how missing bands are filled at inference.
- inference: each present modality is embedded on its own; the sample embedding is the fusion rule
  `fused = normalize(mean_m normalize(e_m))` over the AVAILABLE modalities m (`fuse`).
- a modality, or a band of a known modality, that the model never knew is an error naming it;
  bands of a known modality that are absent are filled with their mean (zero after normalising).

Loss: InfoNCE (open_clip `ClipLoss`) between every pair of modalities present in the batch,
computed on the samples that have both, averaged over pairs (`multimodal_infonce`); optionally a
CLIP loss between the fused image embedding and caption embeddings.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spectraclip.bands import BandSet, BandStats
from spectraclip.io.multisensor import MODALITIES, ModalityError, MultiSample, check_modality

KIND = "multisensor"  # the `kind` field of a multi-sensor bundle's spectraclip.json


class UnknownBandForModelError(ModalityError):
    """A band the model's modality was never trained on (names the band and modality)."""


@dataclass
class ModalitySpec:
    """Bands of one modality, in the model's order, with per-band mean/std in the data's raw units."""

    bands: list[str]
    mean: list[float]
    std: list[float]

    def __post_init__(self) -> None:
        self.bands = list(BandSet.parse(self.bands).names)
        if not (len(self.bands) == len(self.mean) == len(self.std)):
            raise ValueError(f"{len(self.bands)} bands but {len(self.mean)} means / {len(self.std)} stds")
        self.mean = [float(v) for v in self.mean]
        self.std = [float(v) for v in self.std]

    @classmethod
    def from_stats(cls, bands: str | Sequence[str], stats: BandStats) -> ModalitySpec:
        mean, std = stats.for_bands(bands)
        return cls(list(BandSet.parse(bands).names), mean.tolist(), std.tolist())


@dataclass
class MultiSensorConfig:
    """Everything needed to rebuild a `MultiSensorCLIP` (JSON-serialisable)."""

    arch: str
    arch_config: dict[str, Any]  # open_clip model cfg: embed_dim, vision_cfg (a ViT), text_cfg
    modalities: dict[str, ModalitySpec]
    image_size: int
    resize: str = "bilinear"
    crop: str = "center"
    modality_dropout: float = 0.3
    channel_dropout: float = 0.1
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mods = {}
        for m, spec in self.modalities.items():
            mods[check_modality(m)] = spec if isinstance(spec, ModalitySpec) else ModalitySpec(**spec)
        self.modalities = {m: mods[m] for m in MODALITIES if m in mods}
        for name in ("modality_dropout", "channel_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """The bundle's `spectraclip.json` content (`kind: multisensor` tells loaders what to build)."""
        return {"kind": KIND, "format": "spectraclip.multisensor", "format_version": 1, **deepcopy(asdict(self))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MultiSensorConfig:
        data = {k: v for k, v in data.items() if k not in ("kind", "format", "format_version")}
        return cls(**deepcopy(data))


def preprocess_multisample(config: MultiSensorConfig, sample: MultiSample
                           ) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Model input of one sample from the config alone: per modality the config's bands by name (absent
    ones filled with their mean, i.e. zero after normalising; bands the config lacks are ignored),
    resized/cropped to `image_size` and normalised. Returns (`{m: [C_m, S, S]}`, `{m: bands present}`)."""
    from spectraclip.data.transforms import center_crop, resize_exact, resize_shorter

    out, used = {}, {}
    s = config.image_size
    for m in sample.modalities:
        if m not in config.modalities:
            continue
        spec, smp = config.modalities[m], sample.data[m]
        px = np.empty((len(spec.bands), *smp.pixels.shape[1:]), np.float32)
        have = []
        for i, b in enumerate(spec.bands):
            if b in smp.bands.names:
                px[i] = smp.pixels[smp.bands.names.index(b)]
                have.append(b)
            else:
                px[i] = spec.mean[i]
        x = torch.from_numpy(px)
        if config.crop == "center":
            x = center_crop(resize_shorter(x, s, config.resize), s)
        else:
            x = resize_exact(x, s, config.resize)
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
        out[m] = ((x - mean) / std).float().contiguous()
        used[m] = have
    return out, used


def fuse(embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """The fusion rule: L2-normalised mean of the L2-normalised modality embeddings that are available."""
    if not embeddings:
        raise ModalityError("nothing to fuse: no modality embedding available")
    stacked = torch.stack([F.normalize(e, dim=-1) for e in embeddings])
    return F.normalize(stacked.mean(0), dim=-1)


class MultiSensorCLIP(nn.Module):
    """Per-modality patch embeddings (`patch_embeds[m]`) into the shared open_clip ViT trunk of `.clip`."""

    def __init__(self, config: MultiSensorConfig) -> None:
        super().__init__()
        from open_clip.model import CLIP

        cfg = deepcopy(config.arch_config)
        cfg.pop("name", None)
        cfg["vision_cfg"] = {**cfg["vision_cfg"], "image_size": config.image_size}
        self.clip = CLIP(**cfg)
        visual = self.clip.visual
        conv = getattr(visual, "conv1", None)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"model {config.arch!r}: the shared trunk must be an open_clip ViT (vision_cfg)")
        self.patch_embeds = nn.ModuleDict({
            m: nn.Conv2d(len(spec.bands), conv.out_channels, conv.kernel_size, conv.stride, bias=False)
            for m, spec in config.modalities.items()
        })
        visual.conv1 = nn.Identity()  # the trunk now takes patch features [B, width, g, g]
        self.config = config

    # -- inputs -------------------------------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        return list(self.config.modalities)

    @property
    def embed_dim(self) -> int:
        return int(self.config.arch_config["embed_dim"])

    def check_inputs(self, bands: Mapping[str, Sequence[str]]) -> None:
        """Error naming any modality, or band of a modality, the model never knew."""
        for m, names in bands.items():
            mod = check_modality(m)
            if mod not in self.config.modalities:
                raise ModalityError(f"the model knows no {mod!r} modality; it knows {', '.join(self.modalities)}")
            known = self.config.modalities[mod].bands
            unknown = [b for b in BandSet.parse(list(names)) if b not in known]
            if unknown:
                raise UnknownBandForModelError(
                    f"band(s) {', '.join(unknown)} of modality {mod!r} are unknown to the model "
                    f"(it knows {', '.join(known)})")

    def preprocess(self, sample: MultiSample) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
        """Per modality: the model's bands by name (absent ones filled with their mean), resized and
        normalised -> `{m: [C_m, S, S]}`, and `{m: bands actually present}`."""
        self.check_inputs({m: sample.data[m].bands.names for m in sample.modalities})
        return preprocess_multisample(self.config, sample)

    # -- encoding -----------------------------------------------------------------------------------
    def encode_modality(self, modality: str, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embed normalised `[B, C_m, S, S]` pixels of one modality through the shared trunk."""
        feats = self.clip.visual(self.patch_embeds[check_modality(modality)](x))
        return F.normalize(feats, dim=-1) if normalize else feats

    def _dropout(self, present: dict[str, torch.Tensor], x: dict[str, torch.Tensor],
                 generator: torch.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Random modality dropout (keeping >= 1 modality per sample) and channel dropout (keeping >= 1 band)."""
        mods = list(present)
        keep = torch.stack([present[m] for m in mods], 1).clone()  # [B, M]
        p = self.config.modality_dropout
        if p > 0 and len(mods) > 1:
            drop = torch.rand(keep.shape, generator=generator) < p
            new = keep & ~drop
            lost = new.sum(1) == 0  # every present modality dropped: restore one of them at random
            if lost.any():
                scores = torch.rand(keep.shape, generator=generator) * keep
                pick = scores.argmax(1)
                new[lost, pick[lost]] = True
            keep = new
        out = {}
        pc = self.config.channel_dropout
        for m in mods:
            xm = x[m]
            if pc > 0 and xm.shape[1] > 1:
                mask = torch.rand(xm.shape[:2], generator=generator) >= pc
                none = mask.sum(1) == 0
                if none.any():
                    mask[none, torch.randint(xm.shape[1], (int(none.sum()),), generator=generator)] = True
                xm = xm * mask[:, :, None, None].to(xm.dtype)
            out[m] = xm
        return {m: keep[:, j] for j, m in enumerate(mods)}, out

    def encode(self, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None, *,
               dropout: bool | None = None, generator: torch.Generator | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """Embed a batch: `x[m]` is `[B, C_m, S, S]`, `present[m]` a bool `[B]` (default: all True).

        Returns (`emb[m]` `[B, D]` normalised, zero rows where absent; the `present` masks after
        dropout; the fused `[B, D]` embedding). Dropout runs when `dropout` (default: `self.training`).
        """
        for m in x:
            if check_modality(m) not in self.config.modalities:
                raise ModalityError(f"the model knows no {m!r} modality; it knows {', '.join(self.modalities)}")
        mods = [m for m in MODALITIES if m in x]
        if not mods:
            raise ModalityError("the batch holds no modality")
        b = next(iter(x.values())).shape[0]
        pres = {m: (present[m].bool() if present is not None and m in present else torch.ones(b, dtype=torch.bool))
                for m in mods}
        xs = {m: x[m] for m in mods}
        if self.training if dropout is None else dropout:
            pres, xs = self._dropout(pres, xs, generator)
        emb: dict[str, torch.Tensor] = {}
        for m in mods:
            e = torch.zeros(b, self.embed_dim, dtype=xs[m].dtype, device=xs[m].device)
            rows = pres[m].nonzero().flatten()
            if len(rows):
                e = e.index_put((rows,), self.encode_modality(m, xs[m][rows]))
            emb[m] = e
        mask = torch.stack([pres[m] for m in mods], 0).to(emb[mods[0]].dtype)  # [M, B]
        count = mask.sum(0)
        if (count == 0).any():
            raise ModalityError(f"{int((count == 0).sum())} sample(s) of the batch have no modality present")
        summed = sum(emb[m] * mask[j, :, None] for j, m in enumerate(mods))
        fused = F.normalize(summed / count[:, None], dim=-1)
        return emb, pres, fused

    def embed(self, sample: MultiSample) -> tuple[torch.Tensor, dict[str, list[str]]]:
        """Inference on one sample: the fused embedding `[D]` and the bands used per modality."""
        x, used = self.preprocess(sample)
        with torch.inference_mode():
            _, _, fused = self.encode({m: t[None] for m, t in x.items()}, dropout=False)
        return fused[0], used

    def forward(self, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None,
                text: torch.Tensor | None = None, text_present: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of a batch (see `training_step`); a forward so DDP can wrap the model."""
        return training_step(self, x, present, text, text_present=text_present)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.clip.encode_text(tokens, normalize=normalize)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        import open_clip

        return open_clip.tokenize(list(texts), context_length=self.config.arch_config["text_cfg"].get(
            "context_length", 77))


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


def training_step(model: MultiSensorCLIP, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None,
                  text: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  text_present: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch: pairwise multi-modal InfoNCE, plus a CLIP loss between the fused image embedding
    and caption embeddings when `text` is given (on the rows of `text_present`, default all, if >= 2)."""
    emb, pres, fused = model.encode(x, present, dropout=model.training, generator=generator)
    scale = model.clip.logit_scale.exp()
    loss, logs = multimodal_infonce(emb, pres, scale)
    if text is not None:
        from open_clip.loss import ClipLoss

        rows = text_present.bool() if text_present is not None else torch.ones(len(text), dtype=torch.bool)
        if int(rows.sum()) >= 2:
            tl = ClipLoss()(fused[rows.to(fused.device)], model.encode_text(text[rows.to(text.device)]), scale)
            logs["image-text"] = float(tl.detach())
            loss = loss + tl
    logs["loss"] = float(loss.detach())
    logs["dropped_modalities"] = float(sum(int((present[m].bool() & ~pres[m]).sum()) for m in pres
                                           if m in present)) if present is not None else 0.0
    return loss, logs


def collate(items: Sequence[tuple[dict[str, torch.Tensor], dict[str, list[str]]]], model: MultiSensorCLIP
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Stack preprocessed samples into `x[m]` `[B, C_m, S, S]` (zeros where absent) and `present[m]`."""
    s = model.config.image_size
    mods = [m for m in model.modalities if any(m in it[0] for it in items)]
    x = {m: torch.zeros(len(items), len(model.config.modalities[m].bands), s, s) for m in mods}
    present = {m: torch.zeros(len(items), dtype=torch.bool) for m in mods}
    for i, (inp, _) in enumerate(items):
        for m, t in inp.items():
            x[m][i] = t
            present[m][i] = True
    return x, present


# ----------------------------------------------------------------------------------------- helpers
def tiny_config(modalities: Mapping[str, str | Sequence[str]] | None = None,
                stats: Mapping[str, BandStats] | None = None, **kw: Any) -> MultiSensorConfig:
    """A tiny multi-sensor ViT for tests and demos (embed 32, width 64, 2 layers, 32 px input).

    Per-modality mean/std come from `stats` (e.g. `spectraclip.stats.load_stats`) when given, else
    rough defaults (S2 reflectance x 1e4; S1 dB; coherence 0-1).
    """
    modalities = modalities or {"s2": "s2-l2a", "s1": "s1"}
    default = {"s2": (1500.0, 1200.0), "s1": (-12.0, 5.0), "coherence": (0.5, 0.25)}
    specs = {}
    for m, bands in modalities.items():
        m = check_modality(m)
        names = list(BandSet.parse(bands).names)
        if stats is not None and m in stats:
            specs[m] = ModalitySpec.from_stats(names, stats[m])
        else:
            mu, sd = default[m]
            specs[m] = ModalitySpec(names, [mu] * len(names), [sd] * len(names))
    arch_config = {"embed_dim": 32,
                   "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
                   "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    return MultiSensorConfig("tiny-multisensor", arch_config, specs, image_size=32, **kw)


def save_multisensor(model: MultiSensorCLIP, directory: str | Path,
                     provenance: Mapping[str, Any] | None = None) -> Path:
    """Write the standard bundle (`model.safetensors` + `spectraclip.json` with `kind: multisensor`, the
    per-modality bands and normalisation) atomically; `load_model(checkpoint=directory)` reads it back."""
    from datetime import UTC, datetime

    from safetensors.torch import save_file

    from spectraclip import __version__
    from spectraclip.models.checkpoints import BUNDLE_CONFIG, BUNDLE_WEIGHTS, write_bundle_dir

    config = MultiSensorConfig.from_dict(model.config.to_dict())
    config.provenance.update(dict(provenance or {}))
    config.provenance.setdefault("saved_at", datetime.now(UTC).isoformat(timespec="seconds"))
    config.provenance["spectraclip_version"] = __version__

    def fill(tmp: Path) -> None:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
                  str(tmp / BUNDLE_WEIGHTS), metadata={"format": "spectraclip", "kind": KIND, "arch": config.arch})
        (tmp / BUNDLE_CONFIG).write_text(json.dumps(config.to_dict(), indent=1) + "\n", encoding="utf-8")

    return write_bundle_dir(directory, fill)


def load_multisensor(directory: str | Path, device: str | torch.device = "cpu") -> MultiSensorCLIP:
    """Inverse of `save_multisensor` (also reads the older `config.json` layout)."""
    from safetensors.torch import load_file

    from spectraclip.models.checkpoints import BUNDLE_CONFIG, BUNDLE_WEIGHTS, CheckpointError

    d = Path(directory)
    cfg_path = d / BUNDLE_CONFIG if (d / BUNDLE_CONFIG).is_file() else d / "config.json"
    try:
        config = MultiSensorConfig.from_dict(json.loads(cfg_path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CheckpointError(d, f"not a multi-sensor bundle (no {BUNDLE_CONFIG})") from None
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(cfg_path, f"invalid multi-sensor bundle config: {exc}") from exc
    model = MultiSensorCLIP(config)
    try:
        model.load_state_dict(load_file(str(d / BUNDLE_WEIGHTS)))
    except FileNotFoundError:
        raise CheckpointError(d, f"bundle has {cfg_path.name} but no {BUNDLE_WEIGHTS}") from None
    except RuntimeError as exc:
        raise CheckpointError(d / BUNDLE_WEIGHTS, f"weights do not fit the config: {exc}") from exc
    return model.to(device).eval()


def _embed_rows(model: MultiSensorCLIP, samples: Sequence[MultiSample] | Any, indices: Sequence[int],
                on_error: Any = None, progress: Any = None
                ) -> tuple[list[str], np.ndarray, dict[str, list], list[tuple[str, str]]]:
    """Embed `samples[i]` for i in `indices`: (ids, vectors, what-was-used columns, [(index, problem)])."""
    ids, vecs, mods, used_bands, paths, failed = [], [], [], [], [], []
    for i in indices:
        try:
            sample = samples[i]
            vec, used = model.embed(sample)
        except Exception as exc:  # noqa: BLE001 - one bad sample is reported and skipped
            failed.append((str(i), str(exc)))
            if on_error:
                on_error(i, exc)
            continue
        finally:
            if progress is not None:
                progress.update(1)
        ids.append(sample.id)
        vecs.append(vec.numpy())
        mods.append(",".join(used))
        used_bands.append(json.dumps(used))
        src = (sample.meta or {}).get("sources") or {}
        paths.append(json.dumps({m: str(src[m]) for m in used if src.get(m)}))
    vectors = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, model.embed_dim), np.float32)
    return ids, vectors, {"modalities": mods, "bands_used": used_bands, "sources": paths}, failed


def _table_meta(model: MultiSensorCLIP, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"model": model.config.arch, "kind": KIND, "fusion": "normalized mean of modality embeddings",
            "model_modalities": {m: s.bands for m, s in model.config.modalities.items()}, "dim": model.embed_dim,
            **dict(metadata or {})}


def embed_dataset(model: MultiSensorCLIP, samples: Sequence[MultiSample] | Any, out: str | Path | None = None,
                  on_error: Any = None, metadata: Mapping[str, Any] | None = None,
                  progress: bool = False) -> tuple[list[str], np.ndarray, dict[str, list]]:
    """Fused embeddings of every sample with what each used: columns `modalities` ("s2,s1"), `bands_used`
    (JSON {modality: [bands]}) and `sources` (JSON {modality: file}); written as an embeddings table when
    `out` is given. A sample that cannot be read or embedded is skipped and reported (`on_error(i, exc)`)."""
    model.eval()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples), desc="embed", unit="item")
    ids, vectors, columns, failed = _embed_rows(model, samples, range(len(samples)), on_error, bar)
    if bar is not None:
        bar.close()
    if out is not None:
        from spectraclip.embeddings import write_embeddings

        write_embeddings(out, ids, vectors, columns=columns,
                         metadata={**_table_meta(model, metadata), "failed": failed})
    return ids, vectors, columns


def embed_multisensor(model: MultiSensorCLIP, sources: Sequence[str | Path], out: str | Path, *,
                      layout: str = "auto", modalities: Sequence[str] | None = None,
                      exclude_bands: Sequence[str] | None = None, on_error: Any = None,
                      metadata: Mapping[str, Any] | None = None, progress: bool = True,
                      chunk: int = 64) -> tuple[list[str], list[tuple[str, str]], int]:
    """Embed every item of multi-sensor `sources` (read as `layout`), using only `modalities` (default:
    all the model knows) and without `exclude_bands`, into the embeddings table `out`. Resumable: every
    `chunk` items are written as a part, and a rerun skips the items already written.
    Returns (ids in the table, [(item, problem)] skipped, number kept from an earlier run)."""
    from spectraclip.embeddings import PartWriter
    from spectraclip.io.multisensor import open_multisensor

    want = [check_modality(m) for m in modalities] if modalities else list(model.modalities)
    unknown = [m for m in want if m not in model.config.modalities]
    if unknown:
        raise ModalityError(f"the model knows no {unknown[0]!r} modality; it knows {', '.join(model.modalities)}")
    datasets = [open_multisensor(src, modalities=want, layout=layout, exclude_bands=exclude_bands)
                for src in sources]
    items = [(ds, i) for ds in datasets for i in range(len(ds))]

    class _All:
        def __len__(self) -> int:
            return len(items)

        def __getitem__(self, k: int) -> MultiSample:
            ds, i = items[k]
            return ds[i]

    failed: list[tuple[str, str]] = []

    def report(k: int, exc: Exception) -> None:
        ds, i = items[k]
        failed.append((f"{ds.source} item {ds.items[i].id}", str(exc)))
        if on_error:
            on_error(k, exc)

    meta = _table_meta(model, {"layout": layout, "sources": [str(s) for s in sources],
                               "modalities_requested": want, "excluded_bands": list(exclude_bands or []),
                               **dict(metadata or {})})
    writer = PartWriter(out, metadata=meta)
    todo = [k for k, (ds, i) in enumerate(items) if ds.items[i].id not in writer.done_ids]
    kept = len(items) - len(todo)
    model.eval()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="embed", unit="item")
    for start in range(0, len(todo), chunk):
        ids, vectors, columns, _ = _embed_rows(model, _All(), todo[start:start + chunk], report, bar)
        writer.write(ids, vectors, columns)
    if bar is not None:
        bar.close()
    writer.metadata["failed"] = failed
    table = writer.finish()
    return table.ids, failed, kept
