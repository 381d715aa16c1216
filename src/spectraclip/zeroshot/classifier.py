"""Zero-shot classifiers from text: class embeddings, the one logit-scale rule, probabilities, and the
templates a model declares.

**The logit-scale rule.** Probabilities shown to a user are `softmax(s * cosine(image, class))` with `s` the
model's own learned temperature, `exp(logit_scale)` capped at 100 as CLIP's training caps it, and 100 for a
model that has none. That is the scale the model's contrastive training calibrated its similarities for;
a fixed 100 (what CLIP's and Llama3-MS-CLIP's evaluation code use, where only the argmax matters) makes a
model trained to a lower temperature look certain of wrong answers. The arg-max, and so accuracy, does not
depend on `s`. Every command that prints or writes probabilities uses `logit_scale` and reports its value;
`evaluate` reports the expected calibration error of these probabilities beside accuracy.

**Declared templates.** A model bundle may declare the prompt templates it was made for
(`ModelConfig.zeroshot["templates"]`: a shipped set's name or a list of templates); that set is the model's
default everywhere (`default_templates`). A model that declares none gets `FALLBACK_TEMPLATES`, and the run
says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from spectraclip.models.device import eval_mode, model_device
from spectraclip.zeroshot.classes import ClassSpec, reword_for
from spectraclip.zeroshot.templates import TemplateError, TemplateSet, fill_template, load_templates
from spectraclip.zeroshot.text import encode_texts

FALLBACK_TEMPLATES = "msclip"
MAX_LOGIT_SCALE = 100.0
_NOT_SPECTRAL = object()


def logit_scale(model: Any) -> float:
    """The scale of the logits whose softmax is shown as probabilities (the module's rule)."""
    value = getattr(model, "learned_logit_scale", _NOT_SPECTRAL)  # a SpectralCLIP answers (deferred ones too)
    if value is _NOT_SPECTRAL:  # a bare open_clip model or a stand-in
        clip = getattr(model, "clip", None)
        scale = getattr(clip if clip is not None else model, "logit_scale", None)
        value = None if scale is None else (float(scale.detach().float().exp().item())
                                            if isinstance(scale, torch.Tensor) else float(np.exp(scale)))
    return MAX_LOGIT_SCALE if value is None else float(min(MAX_LOGIT_SCALE, value))


@dataclass(frozen=True)
class TemplateChoice:
    """The templates a run uses and why: `given` (the user's option), `declared` (the model's bundle) or
    `fallback` (the model declares none)."""

    templates: TemplateSet
    origin: str

    def describe(self) -> str:
        what = {"given": "given", "declared": "declared by the model",
                "fallback": "default; the model declares none"}[self.origin]
        return f"{self.templates.name} ({len(self.templates.templates)} templates, {what})"


def declared_templates(model: Any) -> str | list[str] | None:
    """The template set a model's config declares (`zeroshot.templates`), or None."""
    cfg = getattr(model, "config", None)
    declared = (getattr(cfg, "zeroshot", None) or {}).get("templates")
    return declared or None


def default_templates(model: Any, given: str | TemplateSet | Sequence[str] | None = None) -> TemplateChoice:
    """The templates of a run: `given` when the user chose, else the model's declared set, else the fallback."""
    if given is not None and not (isinstance(given, str) and not given.strip()):
        return TemplateChoice(load_templates(given), "given")
    declared = declared_templates(model)
    if declared is not None:
        ts = load_templates(declared)
        if isinstance(declared, list):
            ts = TemplateSet("declared", ts.templates, source="the model bundle's zeroshot.templates")
        return TemplateChoice(ts, "declared")
    return TemplateChoice(load_templates(FALLBACK_TEMPLATES), "fallback")


def class_text_embeddings(model: Any, classnames: Sequence[str], templates: TemplateSet | Sequence[str] | str,
                          batch_size: int = 64, cache: bool = True) -> torch.Tensor:
    """`[K, D]` class embeddings: each filled template L2-normalised, averaged per class, renormalised.

    With `cache=False` (a model whose weights are changing, e.g. during training) it is built by open_clip's
    `build_zero_shot_classifier` (the recipe of CLIP, open_clip and the Llama3-MS-CLIP code). Otherwise every
    prompt goes through `encode_texts` (trimmed, disk-cached) and is averaged the same way; equality of the two
    paths is tested. `classnames` are the prompt words, used verbatim. The result is float32 on CPU.
    """
    ts = load_templates(templates)
    tmpl = list(ts.templates)
    if not classnames:
        raise TemplateError("class_text_embeddings needs at least one class name")
    if not cache:
        from open_clip.zero_shot_classifier import build_zero_shot_classifier

        # open_clip fills string templates with `str.format(c)`, which fails on `{c}` placeholders and on
        # other braces; callables let it use our plain replace instead.
        fillers = [partial(fill_template, t) for t in tmpl]
        per_batch = max(1, batch_size // len(tmpl))
        with eval_mode(model), torch.inference_mode():
            weights = build_zero_shot_classifier(model, model.tokenize, list(classnames), fillers,
                                                 num_classes_per_batch=per_batch, device=model_device(model))
        return weights.T.float().contiguous().cpu()  # open_clip returns [D, K]
    prompts = [fill_template(t, c) for c in classnames for t in tmpl]
    vectors = encode_texts(model, prompts, batch_size=batch_size)
    per_prompt = torch.from_numpy(vectors).reshape(len(classnames), len(tmpl), -1)
    return torch.nn.functional.normalize(per_prompt.mean(dim=1), dim=-1)


def cosine_logits(image_emb: Any, class_emb: Any, scale: float = MAX_LOGIT_SCALE) -> Any:
    """`scale * cosine(image, class)` as `[N, K]`; numpy in -> numpy (float64) out, torch in -> torch out."""
    if isinstance(image_emb, torch.Tensor) or isinstance(class_emb, torch.Tensor):
        img = torch.nn.functional.normalize(torch.as_tensor(image_emb).float(), dim=-1)
        cls = torch.nn.functional.normalize(torch.as_tensor(class_emb).float(), dim=-1).to(img.device)
        return scale * img @ cls.T
    img = np.asarray(image_emb, dtype=np.float64)
    cls = np.asarray(class_emb, dtype=np.float64)
    img = img / np.clip(np.linalg.norm(img, axis=-1, keepdims=True), 1e-12, None)
    cls = cls / np.clip(np.linalg.norm(cls, axis=-1, keepdims=True), 1e-12, None)
    return scale * img @ cls.T


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of `[N, K]` logits (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class ZeroShotClassifier:
    """Class embeddings with the names, prompts, templates and scale that made them: what every command that
    classifies from text builds once and reports."""

    classes: list[ClassSpec]
    class_emb: torch.Tensor
    templates: TemplateChoice
    scale: float

    @classmethod
    def build(cls, model: Any, classes: Sequence[ClassSpec], templates: str | TemplateSet | Sequence[str] | None
              = None) -> ZeroShotClassifier:
        """The classifier of `model` for `classes` under `templates` (None: the model's declared set). Classes
        whose prompt was derived from their name take the set's own wording when it has one for all of them
        (`classes.reword_for`), as `evaluate` does, so `classify --classes eurosat` and `evaluate` prompt alike."""
        choice = default_templates(model, templates)
        classes = reword_for(classes, choice.templates.classnames)
        emb = class_text_embeddings(model, [c.prompt for c in classes], choice.templates).float()
        return cls(list(classes), emb, choice, logit_scale(model))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def probabilities(self, image_emb: np.ndarray | torch.Tensor) -> np.ndarray:
        """`[N, K]` float32 probabilities of images (rows of embeddings) under the logit-scale rule."""
        if isinstance(image_emb, torch.Tensor):
            logits = cosine_logits(image_emb, self.class_emb.to(image_emb.device), self.scale)
            return logits.softmax(-1).float().cpu().numpy()
        return softmax(cosine_logits(image_emb, self.class_emb.numpy(), self.scale)).astype(np.float32)

    def describe(self) -> str:
        """One line for a run's output: the templates and the logit scale."""
        return f"templates {self.templates.describe()}; logit scale {self.scale:.1f}"

    def metadata(self) -> dict[str, Any]:
        """What an output file records of the classifier."""
        return {"templates": self.templates.templates.name, "templates_origin": self.templates.origin,
                "templates_sha256": self.templates.templates.sha256(), "logit_scale": self.scale,
                "classes": self.names, "class_prompts": [c.prompt for c in self.classes]}


__all__ = ["FALLBACK_TEMPLATES", "MAX_LOGIT_SCALE", "TemplateChoice", "ZeroShotClassifier", "class_text_embeddings",
           "cosine_logits", "declared_templates", "default_templates", "logit_scale", "softmax"]
