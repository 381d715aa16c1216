"""`SpectralCLIP`: an open_clip CLIP taking one or more named input groups, and the `ModelConfig` that
describes its inputs completely (architecture, input groups with bands, normalisation and radiometry,
input size, fusion rule, missing-band policy).

A single-sensor model is the one-group case: its patch embedding is open_clip's own (`visual.conv1`),
so open_clip and Llama3-MS-CLIP weights load unchanged. A multi-group model gives each group its own
patch embedding (`patch_embeds[g]`) into ONE shared ViT trunk: every group lands in the same embedding
space by construction, parameters grow by one small conv per group, and a sample with any subset of
groups runs through the same network. The image embedding is the fusion rule over the groups present:
`normalize(mean_g normalize(e_g))`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from copy import deepcopy
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from spectraclip.bands import BandError, BandSet
from spectraclip.errors import SpectraclipError
from spectraclip.io.sample import Sample
from spectraclip.models.channels import get_patch_embed, set_in_channels
from spectraclip.models.inputs import (
    GROUP_ORDER,
    MISSING_POLICIES,
    InputGroup,
    PreparedInput,
    Preprocessor,
    check_group,
    drop_batch,
    split_by_group,
)
from spectraclip.models.transforms import CROP_MODES, RESIZE_MODES, SpectralTransform

log = logging.getLogger(__name__)

CONFIG_FORMAT = "spectraclip.model"
CONFIG_VERSION = 2
FUSIONS: tuple[str, ...] = ("mean",)
_FIELDS = ("arch", "arch_config", "inputs", "image_size", "resize", "crop", "fusion", "missing_bands",
           "modality_dropout", "channel_dropout", "text", "provenance", "zeroshot")


class ModelConfigError(SpectraclipError, ValueError):
    """A model config that is inconsistent or incomplete; the message names the field."""


def _single_group_name(bands: Sequence[str]) -> str:
    groups = split_by_group(bands)
    return next(iter(groups)) if len(groups) == 1 else "image"


class ModelConfig:
    """Everything needed to rebuild a SpectralCLIP without any registry (JSON-serialisable).

    Give `inputs` (a list of `InputGroup`s), or for a single-group model `bands`, `mean`, `std` (one group
    named after the sensor). `arch_config` is the full open_clip model cfg; `text` says which tokenizer
    to use; `missing_bands` is the declared policy (`error` | `fill`); `fusion` how groups combine;
    `modality_dropout` / `channel_dropout` are training-time input corruption of multi-group models.
    `zeroshot` holds the zero-shot defaults the model was made for: `templates` (a shipped template set's name,
    a list of templates, or a whole set `{"name", "templates", "classnames"}` whose `classnames` declare the class
    wording per dataset), the default of every command that classifies from text (`spectraclip.zeroshot`).
    Bundles written before it existed have none and load unchanged.
    """

    def __init__(self, arch: str, arch_config: dict[str, Any], inputs: Sequence[InputGroup | dict] | None = None,
                 image_size: int = 224, resize: str = "bicubic", crop: str = "center", fusion: str = "mean",
                 missing_bands: str = "error", modality_dropout: float = 0.0, channel_dropout: float = 0.0,
                 text: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None, *,
                 bands: Sequence[str] | str | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, zeroshot: Mapping[str, Any] | None = None) -> None:
        self.arch = arch
        self.arch_config = arch_config
        if inputs is None:
            if bands is None or mean is None or std is None:
                raise ModelConfigError(f"model {arch!r}: give inputs=[...] or bands, mean and std")
            names = list(BandSet.parse(bands).names)
            if len(mean) != len(names) or len(std) != len(names):
                raise ModelConfigError(f"model {arch!r}: {len(names)} bands but {len(mean)} means / {len(std)} stds")
            inputs = [InputGroup(_single_group_name(names), names, list(mean), list(std))]
        elif bands is not None:
            raise ModelConfigError(f"model {arch!r}: give either inputs or bands/mean/std, not both")
        self.inputs = [g if isinstance(g, InputGroup) else InputGroup(**g) for g in inputs]
        self.image_size = int(image_size)
        self.resize, self.crop, self.fusion, self.missing_bands = resize, crop, fusion, missing_bands
        self.modality_dropout, self.channel_dropout = float(modality_dropout), float(channel_dropout)
        self.text = dict(text or {"tokenizer": "open_clip"})
        self.provenance = dict(provenance or {})
        self.zeroshot = dict(zeroshot or {})
        self._validate()

    def _validate(self) -> None:
        where = f"model {self.arch!r}"
        if not self.inputs:
            raise ModelConfigError(f"{where}: no input group")
        names = [g.name for g in self.inputs]
        if len(set(names)) != len(names):
            raise ModelConfigError(f"{where}: input group names repeat: {names}")
        all_bands = [b for g in self.inputs for b in g.bands]
        if len(set(all_bands)) != len(all_bands):
            raise ModelConfigError(f"{where}: a band belongs to two input groups: {all_bands}")
        if len(self.inputs) > 1:
            for g in self.inputs:
                check_group(g.name)
                wrong = [b for b in g.bands if next(iter(split_by_group([b]))) != g.name]
                if wrong:
                    raise ModelConfigError(f"{where}: band(s) {', '.join(wrong)} do not belong to group {g.name!r}")
        for key, value, allowed in (("resize", self.resize, RESIZE_MODES), ("crop", self.crop, CROP_MODES),
                                    ("fusion", self.fusion, FUSIONS), ("missing_bands", self.missing_bands,
                                                                       MISSING_POLICIES)):
            if value not in allowed:
                raise ModelConfigError(f"{where}: {key} {value!r} not in {list(allowed)}")
        for key in ("modality_dropout", "channel_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ModelConfigError(f"{where}: {key} must be in [0, 1), got {getattr(self, key)}")
        unknown = sorted(set(self.zeroshot) - {"templates"})
        if unknown:
            raise ModelConfigError(f"{where}: zeroshot has unknown key(s) {', '.join(unknown)} (known: templates)")
        tmpl = self.zeroshot.get("templates")
        if tmpl is not None and not (isinstance(tmpl, str) and tmpl.strip()) and not (
                isinstance(tmpl, list) and tmpl and all(isinstance(t, str) for t in tmpl)) and not (
                isinstance(tmpl, dict) and isinstance(tmpl.get("templates"), list)):
            raise ModelConfigError(f"{where}: zeroshot.templates must be a template set name, a list of templates "
                                   "or an object with a 'templates' list (and optional 'classnames')")
        for key in ("embed_dim", "vision_cfg", "text_cfg"):
            if key not in self.arch_config:
                raise ModelConfigError(f"{where}: arch_config lacks {key!r}")

    # -- views ------------------------------------------------------------------------------------
    @property
    def multi(self) -> bool:
        """True for a model with more than one input group."""
        return len(self.inputs) > 1

    @property
    def groups(self) -> list[str]:
        return [g.name for g in self.inputs]

    def group(self, name: str) -> InputGroup:
        for g in self.inputs:
            if g.name == name:
                return g
        raise ModelConfigError(f"model {self.arch!r} has no input group {name!r}; it has {', '.join(self.groups)}")

    def _single(self, what: str) -> InputGroup:
        if self.multi:
            raise ModelConfigError(f"model {self.arch!r} has input groups {', '.join(self.groups)}: set {what} "
                                   "per group (config.group(name))")
        return self.inputs[0]

    @property
    def bands(self) -> list[str]:
        """Every band the model takes, group after group."""
        return [b for g in self.inputs for b in g.bands]

    @bands.setter
    def bands(self, value: Sequence[str]) -> None:
        g = self._single("bands")
        g.bands = list(BandSet.parse(value).names)

    @property
    def mean(self) -> list[float]:
        return [v for g in self.inputs for v in g.mean]

    @mean.setter
    def mean(self, value: Sequence[float]) -> None:
        self._single("mean").mean = [float(v) for v in value]

    @property
    def std(self) -> list[float]:
        return [v for g in self.inputs for v in g.std]

    @std.setter
    def std(self, value: Sequence[float]) -> None:
        self._single("std").std = [float(v) for v in value]

    @property
    def transform(self) -> SpectralTransform:
        """Resize/crop/normalise for a single-group model's `[C,H,W]` array in its band order."""
        g = self._single("a transform")
        return SpectralTransform(self.image_size, tuple(g.mean), tuple(g.std), self.resize, self.crop)

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict with a format tag and version, ready for JSON."""
        out: dict[str, Any] = {"format": CONFIG_FORMAT, "format_version": CONFIG_VERSION}
        for key in _FIELDS:
            value = getattr(self, key)
            out[key] = [g.to_dict() for g in value] if key == "inputs" else deepcopy(value)
        if not out["zeroshot"]:
            del out["zeroshot"]  # a model that declares nothing writes the config it always wrote
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; also reads format 1 (single-sensor, and `kind: multisensor` bundles)."""
        data = deepcopy(dict(data))
        version = int(data.pop("format_version", CONFIG_VERSION))
        fmt = data.pop("format", CONFIG_FORMAT)
        if version > CONFIG_VERSION:
            raise ModelConfigError(f"model config format version {version} is newer than supported ({CONFIG_VERSION})")
        if version == 1:
            data = _upgrade_v1(data, multisensor=data.get("kind") == "multisensor" or fmt.endswith("multisensor"))
        data.pop("kind", None)
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ModelConfigError(f"model config has unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelConfigError(f"model config: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        groups = "; ".join(f"{g.name}: {','.join(g.bands)}" for g in self.inputs)
        return f"ModelConfig(arch={self.arch!r}, inputs=[{groups}], image_size={self.image_size})"


def _upgrade_v1(data: dict[str, Any], multisensor: bool) -> dict[str, Any]:
    """Format-1 configs: single-sensor (`bands`/`mean`/`std`) or multi-sensor (`modalities`)."""
    data.pop("kind", None)
    if multisensor:
        mods = data.pop("modalities", {})
        data["inputs"] = [{"name": check_group(m), **spec} for m, spec in mods.items()]
        data.setdefault("missing_bands", "fill")  # what multi-sensor models always did
        data.setdefault("modality_dropout", 0.3)
        data.setdefault("channel_dropout", 0.1)
        data.setdefault("resize", "bilinear")
    else:
        bands = list(BandSet.parse(data.pop("bands")).names)
        data["inputs"] = [{"name": _single_group_name(bands), "bands": bands, "mean": data.pop("mean"),
                           "std": data.pop("std")}]
    return data


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                   "xavier_normal_", "constant_", "zeros_", "ones_", "orthogonal_")
_SKIPPING = threading.local()  # the threads inside `skip_weight_init` (others initialise as usual)
_PATCH_LOCK = threading.Lock()
_ORIGINAL_INIT: dict[str, Any] = {}


def _skippable(name: str) -> Any:
    original = _ORIGINAL_INIT[name]

    def init(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if getattr(_SKIPPING, "depth", 0):
            return tensor
        return original(tensor, *args, **kwargs)

    init.__wrapped__ = original  # type: ignore[attr-defined]
    return init


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Build modules without drawing their initial weights (`torch.nn.init.*` return the tensor untouched in
    this thread): for a model whose every parameter and persistent buffer a strict `load_state_dict` overwrites
    next. Drawing the random initialisation of a ViT-B CLIP costs about a second on two cores, only to be thrown
    away. Buffers a module computes itself (open_clip's causal attention mask, position ids) are not drawn by
    `torch.nn.init` and stay; other threads building models meanwhile initialise them as usual."""
    with _PATCH_LOCK:
        if not _ORIGINAL_INIT:
            for name in _INIT_FUNCTIONS:
                if hasattr(nn.init, name):
                    _ORIGINAL_INIT[name] = getattr(nn.init, name)
                    setattr(nn.init, name, _skippable(name))
    _SKIPPING.depth = getattr(_SKIPPING, "depth", 0) + 1
    try:
        yield
    finally:
        _SKIPPING.depth -= 1


def build_clip(config: ModelConfig, pretrained_text: bool = False, init: bool = True) -> nn.Module:
    """Instantiate the open_clip model of `config.arch_config` (random init; `init=False`: weights left as
    allocated, for a strict `load_state_dict` to fill, `skip_weight_init`) with a patch embedding for the
    config's bands (single group) or its trunk sized to `config.image_size` (multi-group)."""
    from open_clip.model import CLIP, CustomTextCLIP

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
    if config.multi:
        cfg["vision_cfg"] = {**cfg["vision_cfg"], "image_size": config.image_size}
    with skip_weight_init() if not init else contextlib.nullcontext():
        clip = cls(**cfg)
        if not config.multi:
            set_in_channels(clip, len(config.bands))
    return clip


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - logging cosmetics only
        pass


def fuse(embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """The fusion rule: L2-normalised mean of the L2-normalised group embeddings that are available."""
    if not embeddings:
        raise ModelConfigError("nothing to fuse: no input-group embedding available")
    return F.normalize(torch.stack([F.normalize(e, dim=-1) for e in embeddings]).mean(0), dim=-1)


class _Pending(NamedTuple):
    """What a deferred model knows before its weights are built (`SpectralCLIP.deferred`)."""

    load: Callable[[], SpectralCLIP]
    fingerprint: str
    where: str
    extras: dict[str, Any]


class SpectralCLIP(nn.Module):
    """An open_clip CLIP (`.clip`) with named input groups, per-band normalisation and input size (`.config`)."""

    def __init__(self, clip: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.clip = clip
        self.config = config
        self._tokenizer = None
        self.input_options: dict[str, Any] = {}
        if config.multi:
            visual = clip.visual
            conv = getattr(visual, "conv1", None)
            if not isinstance(conv, nn.Conv2d):
                raise ModelConfigError(f"model {config.arch!r}: a model with several input groups needs an "
                                       "open_clip ViT trunk (vision_cfg), whose patch embedding is visual.conv1")
            self.patch_embeds = nn.ModuleDict({
                g.name: nn.Conv2d(len(g.bands), conv.out_channels, conv.kernel_size, conv.stride, bias=False)
                for g in config.inputs})
            visual.conv1 = nn.Identity()  # the trunk now takes patch features [B, width, g, g]
        else:
            self.patch_embeds = None
            conv = get_patch_embed(clip)
            if conv.in_channels != len(config.bands):
                raise ModelConfigError(
                    f"model {config.arch!r}: patch embedding takes {conv.in_channels} channels but the config "
                    f"names {len(config.bands)} bands ({', '.join(config.bands)})")

    # -- weights built on first use (models/deferred.py) ------------------------------------------------------
    @classmethod
    def deferred(cls, config: ModelConfig, load: Callable[[], SpectralCLIP], fingerprint: str,
                 where: str = "checkpoint", extras: Mapping[str, Any] | None = None) -> SpectralCLIP:
        """A model whose config, preprocessing and fingerprint are known and whose weights `load()` builds on
        first use (`materialise`): `model.clip`, parameters, `state_dict`, `.to()`, `.eval()` and pickling all
        build them first. In eval mode, on the CPU. Single input group only. `extras`: recorded values read
        without the weights (`logit_scale`: exp of the learned temperature, or None)."""
        if config.multi:
            raise ModelConfigError("only a single-group model can defer its weights")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.config = config
        self._tokenizer = None
        self.input_options = {}
        self.patch_embeds = None
        self.training = False
        self.__dict__["_deferred"] = _Pending(load, fingerprint, where, dict(extras or {}))
        return self

    @property
    def deferred_fingerprint(self) -> str | None:
        """The recorded fingerprint while the weights are not built yet; None once they are (or never deferred)."""
        pending = self.__dict__.get("_deferred")
        return pending.fingerprint if pending is not None else None

    @property
    def learned_logit_scale(self) -> float | None:
        """exp of the learned temperature (None for a model without one); a deferred model's from its record,
        without building the weights."""
        pending = self.__dict__.get("_deferred")
        if pending is not None:
            return pending.extras.get("logit_scale")
        scale = getattr(self.clip, "logit_scale", None)
        return None if scale is None else float(scale.detach().float().exp())

    def materialise(self) -> SpectralCLIP:
        """Build the weights of a deferred model (no-op otherwise) and check them against the recorded fingerprint."""
        pending = self.__dict__.get("_deferred")
        if pending is None:
            return self
        log.info("building the weights of %s (first use)", pending.where)
        real = pending.load()
        del self.__dict__["_deferred"]
        for key, value in real.__dict__.items():  # its modules and weights; hooks registered meanwhile stay
            if key in ("_parameters", "_buffers", "_modules", "patch_embeds") or key not in self.__dict__:
                self.__dict__[key] = value
        from spectraclip.identity import model_fingerprint

        got = model_fingerprint(self)
        if got != pending.fingerprint:
            raise ModelConfigError(f"{pending.where}: the weights' fingerprint {got} is not the recorded "
                                   f"{pending.fingerprint}; the "
                                   "file changed under the same size and time. Delete the cache folder's models/ "
                                   "records (or set SPECTRACLIP_CACHE=off) and run again")
        return self

    def __getattr__(self, name: str) -> Any:
        if name == "clip" and "_deferred" in self.__dict__:
            self.materialise()
        return super().__getattr__(name)

    def named_modules(self, *args: Any, **kwargs: Any):  # noqa: ANN201 - torch's signature
        self.materialise()
        return super().named_modules(*args, **kwargs)

    def named_children(self):  # noqa: ANN201 - torch's signature
        self.materialise()
        return super().named_children()

    def state_dict(self, *args: Any, **kwargs: Any):  # noqa: ANN201 - torch's signature
        self.materialise()
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any):  # noqa: ANN201 - torch's signature
        self.materialise()
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, *args: Any, **kwargs: Any):  # noqa: ANN201 - torch's signature
        self.materialise()
        return super()._apply(*args, **kwargs)

    @classmethod
    def from_config(cls, config: ModelConfig, pretrained_text: bool = False, init: bool = True) -> SpectralCLIP:
        """A randomly initialised model (HF text tower weights too if `pretrained_text`); `init=False` only for
        a model a strict `load_state_dict` fills next (`skip_weight_init`)."""
        return cls(build_clip(config, pretrained_text=pretrained_text, init=init), config)

    # -- inputs -----------------------------------------------------------------------------------
    @property
    def bands(self) -> BandSet:
        return BandSet.parse(self.config.bands)

    @property
    def groups(self) -> list[str]:
        return self.config.groups

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def embed_dim(self) -> int:
        return int(self.config.arch_config["embed_dim"])

    @property
    def transform(self) -> SpectralTransform:
        """Picklable `[C,H,W]` (single-group band order, raw units) -> normalised `[C,S,S]` callable."""
        return self.config.transform

    def set_input_options(self, *, missing_bands: str | None = None, allow_resize: bool | None = None) -> SpectralCLIP:
        """Run-time overrides of the declared input handling (recorded in the preprocessing fingerprint)."""
        if missing_bands is not None:
            if missing_bands not in MISSING_POLICIES:
                raise ModelConfigError(f"--missing-bands {missing_bands!r}: choose one of "
                                       f"{', '.join(MISSING_POLICIES)}")
            self.input_options["missing_bands"] = missing_bands
        if allow_resize is not None:
            self.input_options["allow_resize"] = bool(allow_resize)
        return self

    def preprocessor(self) -> Preprocessor:
        """The picklable Sample -> model-input callable of this model and its input options."""
        c = self.config
        return Preprocessor(tuple(deepcopy(c.inputs)), c.image_size, c.resize, c.crop,
                            self.input_options.get("missing_bands", c.missing_bands),
                            bool(self.input_options.get("allow_resize", False)))

    def preprocessing_spec(self) -> dict[str, Any]:
        """Everything that decides the model input (the preprocessing fingerprint hashes this)."""
        return {**self.preprocessor().spec(), "fusion": self.config.fusion}

    def prepare(self, sample: Sample) -> PreparedInput:
        """Model input of one sample (every group present) and the bands that were filled."""
        return self.preprocessor()(sample)

    def preprocess(self, sample: Sample) -> torch.Tensor | dict[str, torch.Tensor]:
        """`prepare(sample).x`; for a single-group model the one `[C,S,S]` tensor."""
        x = self.prepare(sample).x
        return next(iter(x.values())) if not self.config.multi else x

    def preprocess_array(self, array: Any) -> torch.Tensor:
        """Resize/crop/normalise an array `[C,H,W]` (or `[B,C,H,W]`) already in a single-group model's band order."""
        if array.shape[-3] != len(self.config.bands):
            raise BandError(f"array has {array.shape[-3]} channels but the model expects {len(self.config.bands)} "
                            f"({', '.join(self.config.bands)})")
        return self.transform(array)

    def tokenize(self, texts: str | list[str]) -> torch.Tensor:
        """Token ids `[N, context_length]` for the text tower."""
        if self._tokenizer is None:
            from spectraclip.models.text import build_tokenizer

            self._tokenizer = build_tokenizer(self.config.text, self.config.arch_config)
        return self._tokenizer([texts] if isinstance(texts, str) else list(texts))

    # -- encoders ---------------------------------------------------------------------------------
    def _check_group_batch(self, name: str, x: torch.Tensor) -> None:
        g = self.config.group(name)
        if x.ndim != 4 or x.shape[1] != len(g.bands):
            raise BandError(f"input group {name!r} batch of shape {tuple(x.shape)}: expected "
                            f"[B, {len(g.bands)}, S, S] with bands {', '.join(g.bands)}")

    def encode_group(self, name: str, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embed normalised `[B, C_g, S, S]` pixels of one input group (through the shared trunk)."""
        self._check_group_batch(name, x)
        if self.patch_embeds is None:
            return self.clip.encode_image(x, normalize=normalize)
        feats = self.clip.visual(self.patch_embeds[name](x))
        return F.normalize(feats, dim=-1) if normalize else feats

    def encode_groups(self, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None, *,
                      dropout: bool | None = None, generator: torch.Generator | None = None
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """Embed a batch of groups: `x[g]` `[B, C_g, S, S]`, `present[g]` bool `[B]` (default all True).

        Returns (`emb[g]` `[B, D]` normalised, zero rows where absent; the presence masks after dropout;
        the fused `[B, D]` embedding). Group/channel dropout runs only when asked (`dropout=True`): it is
        `models.inputs.drop_inputs` on each sample, the one rule, which the trainer applies per item in its data
        instead, so that accumulation and DDP see the same inputs as one process.
        """
        names = [g for g in GROUP_ORDER + tuple(self.groups) if g in x]
        names = list(dict.fromkeys(names))
        for g in x:
            if g not in self.groups:
                raise ModelConfigError(f"the model has no input group {g!r}; it has {', '.join(self.groups)}")
        if not names:
            raise ModelConfigError("the batch holds no input group")
        b = next(iter(x.values())).shape[0]
        dev = next(iter(x.values())).device
        pres = {g: (present[g].bool().to(dev) if present is not None and g in present
                    else torch.ones(b, dtype=torch.bool, device=dev)) for g in names}
        xs = {g: x[g] for g in names}
        if self.config.multi and dropout:
            pres, xs = drop_batch(xs, pres, self.config.modality_dropout, self.config.channel_dropout, generator)
        emb: dict[str, torch.Tensor] = {}
        for g in names:
            rows = pres[g].nonzero().flatten()
            if len(rows) == b:
                emb[g] = self.encode_group(g, xs[g])
            else:
                e = torch.zeros(b, self.embed_dim, dtype=xs[g].dtype, device=dev)
                if len(rows):
                    e = e.index_put((rows,), self.encode_group(g, xs[g][rows]).to(e.dtype))
                elif torch.is_grad_enabled() and self.patch_embeds is not None:
                    # no row has this group: keep the zeros in the autograd graph anyway, so that every DDP
                    # rank runs the same gradient collectives whatever its share of the batch holds
                    e = e + 0.0 * self.patch_embeds[g].weight.sum()
                emb[g] = e
        if len(names) == 1:
            if not bool(pres[names[0]].all()):
                raise ModelConfigError(f"{int((~pres[names[0]]).sum())} sample(s) of the batch have no input")
            return emb, pres, emb[names[0]]
        mask = torch.stack([pres[g] for g in names], 0).to(emb[names[0]].dtype)  # [G, B]
        count = mask.sum(0)
        if (count == 0).any():
            raise ModelConfigError(f"{int((count == 0).sum())} sample(s) of the batch have no input group present")
        summed = sum(F.normalize(emb[g], dim=-1) * mask[j, :, None] for j, g in enumerate(names))
        return emb, pres, F.normalize(summed / count[:, None], dim=-1)

    def encode_image(self, pixels: torch.Tensor | Mapping[str, torch.Tensor], normalize: bool = True,
                     present: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Image embeddings `[B, D]` of normalised input: a `[B, C, S, S]` tensor (single-group model) or
        `{group: [B, C_g, S, S]}` with optional presence masks (fused over the groups present)."""
        if isinstance(pixels, torch.Tensor):
            if self.config.multi:
                raise BandError(f"this model takes input groups {', '.join(self.groups)}: pass {{group: tensor}}")
            self._check_group_batch(self.groups[0], pixels)
            return self.clip.encode_image(pixels, normalize=normalize)
        if not self.config.multi and present is None and self.groups[0] in pixels:
            return self.encode_group(self.groups[0], pixels[self.groups[0]], normalize)
        return self.encode_groups(pixels, present, dropout=False)[2]

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings `[N, D]` of token ids (L2-normalised by default)."""
        return self.clip.encode_text(tokens, normalize=normalize)

    def forward(self, image: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
                text: torch.Tensor | None = None, present: Mapping[str, torch.Tensor] | None = None,
                groups: bool = False):
        """open_clip's output: `(image_features, text_features, logit_scale.exp()[, logit_bias])`, features
        normalised. `image` may be a tensor or `{group: tensor}` (fused, with group dropout in training);
        `text` may be token ids or precomputed text features (a float tensor), which a trainer with a frozen
        text tower caches instead of re-encoding the same captions every step. With `groups=True` (multi-group
        training, through DDP's forward): `(emb[g], present after dropout, fused, text_features, scale)`."""
        if groups:
            emb, pres, fused = self.encode_groups(image, present)  # type: ignore[arg-type]
            if text is None:
                text_features = None
            else:
                text_features = F.normalize(text, dim=-1) if text.is_floating_point() else self.encode_text(text)
            out = [emb, pres, fused, text_features, self.clip.logit_scale.exp()]
            if getattr(self.clip, "logit_bias", None) is not None:
                out.append(self.clip.logit_bias)
            return tuple(out)
        if (isinstance(image, torch.Tensor) and not self.config.multi and text is not None
                and not text.is_floating_point()):
            self._check_group_batch(self.groups[0], image)
            return self.clip(image, text)
        image_features = None
        if image is not None:
            if isinstance(image, torch.Tensor):
                image_features = self.encode_image(image)
            else:
                image_features = self.encode_groups(image, present)[2]
        if text is None:
            text_features = None
        elif text.is_floating_point():
            text_features = F.normalize(text, dim=-1)
        else:
            text_features = self.encode_text(text)
        out = [image_features, text_features, self.clip.logit_scale.exp()]
        if getattr(self.clip, "logit_bias", None) is not None:
            out.append(self.clip.logit_bias)
        return tuple(out)

    def __getstate__(self) -> dict[str, Any]:
        self.materialise()
        state = self.__dict__.copy()
        state["_tokenizer"] = None  # rebuilt lazily; HF tokenizers need not pickle
        return state

    def extra_repr(self) -> str:
        groups = "; ".join(f"{g.name}: {','.join(g.bands)}" for g in self.config.inputs)
        return f"arch={self.config.arch!r}, inputs=[{groups}], image_size={self.config.image_size}"
