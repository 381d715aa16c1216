"""`SpectralCLIP`: an open_clip CLIP whose patch embedding takes the model's named bands, plus the
`ModelConfig` that describes its inputs completely (architecture, bands, normalisation, input size)."""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from spectraclip.bands import BandError, BandSet
from spectraclip.data.transforms import CROP_MODES, RESIZE_MODES, SpectralTransform
from spectraclip.errors import SpectraclipError
from spectraclip.io.sample import Sample

CONFIG_FORMAT = "spectraclip.model"
CONFIG_VERSION = 1


class ModelConfigError(SpectraclipError, ValueError):
    """A model config that is inconsistent or incomplete; the message names the field."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild a SpectralCLIP without any registry (JSON-serialisable).

    `arch_config` is the full open_clip model cfg (embed_dim, vision_cfg, text_cfg, ...); `mean`/`std`
    are per band, in the data's raw units (e.g. L2A digital numbers), in `bands` order; `text` says
    which tokenizer to use ({"tokenizer": "open_clip"} or {"tokenizer": "hf", "hf_name": ...}).
    """

    arch: str
    arch_config: dict[str, Any]
    bands: list[str]
    mean: list[float]
    std: list[float]
    image_size: int
    resize: str = "bicubic"
    crop: str = "center"
    text: dict[str, Any] = field(default_factory=lambda: {"tokenizer": "open_clip"})
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bands = list(BandSet.parse(self.bands).names)
        self.mean = [float(v) for v in self.mean]
        self.std = [float(v) for v in self.std]
        self.image_size = int(self.image_size)
        n = len(self.bands)
        if len(self.mean) != n or len(self.std) != n:
            raise ModelConfigError(f"model {self.arch!r}: {n} bands but {len(self.mean)} means / {len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise ModelConfigError(f"model {self.arch!r}: std must be positive, got {self.std}")
        if self.resize not in RESIZE_MODES:
            raise ModelConfigError(f"model {self.arch!r}: resize {self.resize!r} not in {list(RESIZE_MODES)}")
        if self.crop not in CROP_MODES:
            raise ModelConfigError(f"model {self.arch!r}: crop {self.crop!r} not in {list(CROP_MODES)}")
        for key in ("embed_dim", "vision_cfg", "text_cfg"):
            if key not in self.arch_config:
                raise ModelConfigError(f"model {self.arch!r}: arch_config lacks {key!r}")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with a format tag and version, ready for JSON."""
        return {"format": CONFIG_FORMAT, "format_version": CONFIG_VERSION, **deepcopy(asdict(self))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; rejects newer format versions and unknown fields."""
        data = dict(data)
        version = data.pop("format_version", CONFIG_VERSION)
        data.pop("format", None)
        if int(version) > CONFIG_VERSION:
            raise ModelConfigError(f"model config format version {version} is newer than supported ({CONFIG_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelConfigError(f"model config has unknown field(s) {', '.join(unknown)}")
        return cls(**deepcopy(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    @property
    def transform(self) -> SpectralTransform:
        """The picklable resize/crop/normalise callable for this model's inputs."""
        return SpectralTransform(self.image_size, tuple(self.mean), tuple(self.std), self.resize, self.crop)


def build_clip(config: ModelConfig, pretrained_text: bool = False) -> nn.Module:
    """Instantiate the open_clip model described by `config.arch_config` with a `len(bands)`-channel
    patch embedding (random init). `pretrained_text` loads an HF text tower's own weights."""
    from open_clip.model import CLIP, CustomTextCLIP

    from spectraclip.models.channels import set_in_channels
    from spectraclip.models.text import resolve_text_cfg

    cfg = resolve_text_cfg(config.arch_config)
    cfg.pop("name", None)
    is_hf = bool(cfg["text_cfg"].get("hf_model_name"))
    if is_hf:
        cfg["text_cfg"]["hf_model_pretrained"] = pretrained_text
        _quiet_transformers()
    cls = CustomTextCLIP if (cfg.pop("custom_text", False) or is_hf) else CLIP
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    clip = cls(**cfg)
    set_in_channels(clip, len(config.bands))
    return clip


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - logging cosmetics only
        pass


class SpectralCLIP(nn.Module):
    """An open_clip CLIP (`.clip`) with named input bands, per-band normalisation and input size (`.config`)."""

    def __init__(self, clip: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.clip = clip
        self.config = config
        self._tokenizer = None
        from spectraclip.models.channels import get_patch_embed

        conv = get_patch_embed(clip)
        if conv.in_channels != len(config.bands):
            raise ModelConfigError(
                f"model {config.arch!r}: patch embedding takes {conv.in_channels} channels but the config "
                f"names {len(config.bands)} bands ({', '.join(config.bands)})"
            )

    @classmethod
    def from_config(cls, config: ModelConfig, pretrained_text: bool = False) -> SpectralCLIP:
        """A randomly initialised model (HF text tower weights too if `pretrained_text`)."""
        return cls(build_clip(config, pretrained_text=pretrained_text), config)

    # -- inputs -----------------------------------------------------------------------------------
    @property
    def bands(self) -> BandSet:
        return BandSet.parse(self.config.bands)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def embed_dim(self) -> int:
        return int(self.config.arch_config["embed_dim"])

    @property
    def transform(self) -> SpectralTransform:
        """Picklable `[C,H,W]` (model band order, raw units) -> normalised `[C,S,S]` callable."""
        return self.config.transform

    def preprocess(self, sample: Sample) -> torch.Tensor:
        """Select the model's bands from `sample` by name, resize/crop, normalise -> float32 `[C,S,S]`."""
        where = sample.path or sample.id
        idx = sample.bands.indices(self.config.bands, where=where)
        pixels = sample.pixels if idx == list(range(len(sample.bands))) else sample.pixels[idx]
        return self.transform(pixels)

    def preprocess_array(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Resize/crop/normalise an array `[C,H,W]` (or `[B,C,H,W]`) already in the model's band order."""
        if array.shape[-3] != len(self.config.bands):
            raise BandError(
                f"array has {array.shape[-3]} channels but the model expects {len(self.config.bands)} "
                f"({', '.join(self.config.bands)})"
            )
        return self.transform(array)

    def tokenize(self, texts: str | list[str]) -> torch.Tensor:
        """Token ids `[N, context_length]` for the text tower."""
        if self._tokenizer is None:
            from spectraclip.models.text import build_tokenizer

            self._tokenizer = build_tokenizer(self.config.text, self.config.arch_config)
        return self._tokenizer([texts] if isinstance(texts, str) else list(texts))

    # -- encoders ---------------------------------------------------------------------------------
    def _check_image(self, pixels: torch.Tensor) -> None:
        if pixels.ndim != 4 or pixels.shape[1] != len(self.config.bands):
            raise BandError(
                f"image batch of shape {tuple(pixels.shape)}: expected [B, {len(self.config.bands)}, S, S] "
                f"with bands {', '.join(self.config.bands)}"
            )

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Image embeddings `[B, D]` of normalised pixels `[B, C, S, S]` (L2-normalised by default)."""
        self._check_image(pixels)
        return self.clip.encode_image(pixels, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings `[N, D]` of token ids (L2-normalised by default)."""
        return self.clip.encode_text(tokens, normalize=normalize)

    def forward(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None):
        """open_clip's output: `(image_features, text_features, logit_scale.exp()[, logit_bias])`, features
        normalised. `text` may be token ids or precomputed text features (a float tensor), which a trainer
        with a frozen text tower caches instead of re-encoding the same captions every step."""
        if image is not None:
            self._check_image(image)
        if text is None or not text.is_floating_point():
            return self.clip(image, text)
        image_features = self.clip.encode_image(image, normalize=True) if image is not None else None
        out = [image_features, torch.nn.functional.normalize(text, dim=-1), self.clip.logit_scale.exp()]
        if getattr(self.clip, "logit_bias", None) is not None:
            out.append(self.clip.logit_bias)
        return tuple(out)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tokenizer"] = None  # rebuilt lazily; HF tokenizers need not pickle
        return state

    def extra_repr(self) -> str:
        return f"arch={self.config.arch!r}, bands={self.bands}, image_size={self.config.image_size}"
