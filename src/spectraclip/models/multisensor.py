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
        return {"format": "spectraclip.multisensor", "format_version": 1, **deepcopy(asdict(self))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MultiSensorConfig:
        data = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        return cls(**deepcopy(data))


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
        for m, spec in config.modalities.items():
            self.register_buffer(f"mean_{m}", torch.tensor(spec.mean).view(-1, 1, 1), persistent=False)
            self.register_buffer(f"std_{m}", torch.tensor(spec.std).view(-1, 1, 1), persistent=False)

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
        from spectraclip.data.transforms import center_crop, resize_exact, resize_shorter

        self.check_inputs({m: sample.data[m].bands.names for m in sample.modalities})
        out, used = {}, {}
        s = self.config.image_size
        for m in sample.modalities:
            spec, smp = self.config.modalities[m], sample.data[m]
            px = np.empty((len(spec.bands), *smp.pixels.shape[1:]), np.float32)
            have = []
            for i, b in enumerate(spec.bands):
                if b in smp.bands.names:
                    px[i] = smp.pixels[smp.bands.names.index(b)]
                    have.append(b)
                else:
                    px[i] = spec.mean[i]
            x = torch.from_numpy(px)
            if self.config.crop == "center":
                x = center_crop(resize_shorter(x, s, self.config.resize), s)
            else:
                x = resize_exact(x, s, self.config.resize)
            out[m] = ((x - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")).float().contiguous()
            used[m] = have
        return out, used

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


def training_step(model: MultiSensorCLIP, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                  text: torch.Tensor | None = None, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch: pairwise multi-modal InfoNCE (+ fused-image vs caption CLIP loss when `text`)."""
    emb, pres, fused = model.encode(x, present, dropout=True, generator=generator)
    scale = model.clip.logit_scale.exp()
    loss, logs = multimodal_infonce(emb, pres, scale)
    if text is not None:
        from open_clip.loss import ClipLoss

        tl = ClipLoss()(fused, model.encode_text(text), scale)
        logs["image-text"] = float(tl.detach())
        loss = loss + tl
    logs["loss"] = float(loss.detach())
    logs["dropped_modalities"] = float(sum(int((present[m].bool() & ~pres[m]).sum()) for m in pres)) \
        if present is not None else 0.0
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


def save_multisensor(model: MultiSensorCLIP, directory: str | Path) -> Path:
    """Save weights (safetensors) and `config.json` into `directory`."""
    from safetensors.torch import save_file

    from spectraclip.io.atomic import atomic_open, atomic_path

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_open(d / "config.json") as fh:
        json.dump(model.config.to_dict(), fh, indent=1)
    return d


def load_multisensor(directory: str | Path) -> MultiSensorCLIP:
    """Inverse of `save_multisensor`."""
    from safetensors.torch import load_file

    d = Path(directory)
    model = MultiSensorCLIP(MultiSensorConfig.from_dict(json.loads((d / "config.json").read_text())))
    model.load_state_dict(load_file(str(d / "model.safetensors")))
    return model.eval()


def embed_dataset(model: MultiSensorCLIP, samples: Sequence[MultiSample] | Any, out: str | Path | None = None,
                  on_error: Any = None) -> tuple[list[str], np.ndarray, dict[str, list]]:
    """Fused embeddings of every sample with what each used: columns `modalities` ("s2,s1") and
    `bands_used` (JSON {modality: [bands]}); written as an embeddings table when `out` is given."""
    ids, vecs, mods, used_bands, failed = [], [], [], [], []
    model.eval()
    for i in range(len(samples)):
        try:
            sample = samples[i]
            vec, used = model.embed(sample)
        except Exception as exc:  # noqa: BLE001 - one bad sample is reported and skipped
            failed.append((str(i), str(exc)))
            if on_error:
                on_error(i, exc)
            continue
        ids.append(sample.id)
        vecs.append(vec.numpy())
        mods.append(",".join(used))
        used_bands.append(json.dumps(used))
    vectors = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, model.embed_dim), np.float32)
    columns = {"modalities": mods, "bands_used": used_bands}
    if out is not None:
        from spectraclip.embeddings import write_embeddings

        write_embeddings(out, ids, vectors, columns=columns,
                         metadata={"model": model.config.arch, "fusion": "normalized mean of modality embeddings",
                                   "failed": failed})
    return ids, vectors, columns
