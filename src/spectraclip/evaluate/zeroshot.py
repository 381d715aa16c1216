"""Zero-shot classifiers from text: class embeddings as template ensembles, and image-class logits."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch

from spectraclip.data.base import LabelledDataset
from spectraclip.data.registry import load_dataset
from spectraclip.evaluate.metrics import classification_metrics
from spectraclip.evaluate.templates import TemplateError, TemplateSet, fill_template, load_templates
from spectraclip.inference import encode_images
from spectraclip.models.text_trim import encode_text_trimmed
from spectraclip.text_cache import cached_text_embeddings


def class_text_embeddings(
    model, classnames: Sequence[str], templates: TemplateSet | Sequence[str], batch_size: int = 64,
    cache: bool = True,
) -> torch.Tensor:
    """`[K, D]` class embeddings: each filled template L2-normalised, averaged per class, renormalised.

    With `cache=False` (a model whose weights are changing, e.g. during training) it is built by open_clip's
    `build_zero_shot_classifier` (the recipe of CLIP, open_clip and the Llama3-MS-CLIP code). Otherwise each
    prompt's embedding comes from the disk text cache (`spectraclip.text_cache`, keyed by model fingerprint
    and prompt) and is averaged the same way: the builder has no hook for a cache, and a 10-class,
    50-template run would otherwise encode 500 prompts before the first image (equality of the two paths is
    tested). `classnames` are used verbatim (see `TemplateSet.prompt_names`); `batch_size` bounds the prompts
    per forward pass. The result is float32 on CPU.
    """
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    tmpl = list(templates.templates if isinstance(templates, TemplateSet) else templates)
    if not classnames:
        raise TemplateError("class_text_embeddings needs at least one class name")
    if not tmpl:
        raise TemplateError("class_text_embeddings needs at least one template")
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        device = torch.device("cpu")
    if not cache:
        # open_clip fills string templates with `str.format(c)`, which fails on `{c}` placeholders and on
        # other braces; callables let it use our plain replace instead.
        fillers = [partial(fill_template, t) for t in tmpl]
        per_batch = max(1, batch_size // len(tmpl))
        with torch.inference_mode():
            weights = build_zero_shot_classifier(model, model.tokenize, list(classnames), fillers,
                                                 num_classes_per_batch=per_batch, device=device)
        return weights.T.float().contiguous().cpu()  # open_clip returns [D, K]
    prompts = [fill_template(t, c) for c in classnames for t in tmpl]

    def encode(texts: list[str]) -> np.ndarray:
        chunks: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = model.tokenize(texts[start:start + batch_size])
                if isinstance(tokens, torch.Tensor):
                    tokens = tokens.to(device)
                emb = encode_text_trimmed(model, tokens)
                chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(chunks).numpy()

    vectors = cached_text_embeddings(model, prompts, encode)
    per_prompt = torch.from_numpy(vectors).reshape(len(classnames), len(tmpl), -1)
    return torch.nn.functional.normalize(per_prompt.mean(dim=1), dim=-1)


def zero_shot_logits(image_emb, class_emb):
    """`100 * cosine(image, class)` as `[N, K]`; numpy in -> numpy out, torch in -> torch out."""
    if isinstance(image_emb, torch.Tensor) or isinstance(class_emb, torch.Tensor):
        img = torch.nn.functional.normalize(torch.as_tensor(image_emb).float(), dim=-1)
        cls = torch.nn.functional.normalize(torch.as_tensor(class_emb).float(), dim=-1).to(img.device)
        return 100.0 * img @ cls.T
    img = np.asarray(image_emb, dtype=np.float64)
    cls = np.asarray(class_emb, dtype=np.float64)
    img = img / np.clip(np.linalg.norm(img, axis=-1, keepdims=True), 1e-12, None)
    cls = cls / np.clip(np.linalg.norm(cls, axis=-1, keepdims=True), 1e-12, None)
    return 100.0 * img @ cls.T


def zero_shot_probabilities(model, image_vectors: np.ndarray, classnames: Sequence[str],
                            templates: TemplateSet | Sequence[str], *, device: str | torch.device = "cpu"
                            ) -> np.ndarray:
    """Class probabilities `[N, K]`: softmax of 100 x cosine to template-ensemble class embeddings.

    The scale is the fixed 100 of CLIP's and Llama3-MS-CLIP's zero-shot code, not the model's logit scale.
    """
    class_emb = class_text_embeddings(model.to(device), list(classnames), load_templates(templates))
    logits = zero_shot_logits(torch.from_numpy(np.asarray(image_vectors, dtype=np.float32)), class_emb)
    return logits.softmax(dim=-1).float().cpu().numpy()


def encode_labelled(model, dataset, *, batch_size: int = 32, device: str = "cpu"
                    ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image ids, float64 embeddings and single-label class indices of an opened dataset (no caching)."""
    enc = encode_images(model, dataset, batch_size=batch_size, device=device, progress=False)
    by_id = {it.id: it for it in dataset.items}
    cls = {c: k for k, c in enumerate(dataset.classes)}
    labels = np.array([cls[by_id[i].labels[0]] for i in enc.ids])
    return list(enc.ids), enc.vectors.astype(np.float64), labels


def evaluate_zeroshot(model, dataset: LabelledDataset | str, templates: str | TemplateSet = "msclip", *,
                      root: str | None = None, split: str = "test", batch_size: int = 32,
                      device: str = "cpu") -> dict:
    """Zero-shot classification metrics of `model` on a dataset (an opened dataset or a registered name).

    Used by the trainer's validation hook; encodes without caching (the model changes between calls).
    Class wording comes from the template set when it has some for the dataset (`TemplateSet.prompt_names`).
    """
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, root, split=split)
    ts = load_templates(templates)
    _, vectors, labels = encode_labelled(model, dataset, batch_size=batch_size, device=device)
    class_emb = class_text_embeddings(model, ts.prompt_names(dataset), ts, cache=False).cpu().numpy()
    return classification_metrics(zero_shot_logits(vectors, class_emb), labels, dataset.classes)
