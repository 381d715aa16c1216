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


def class_text_embeddings(
    model, classnames: Sequence[str], templates: TemplateSet | Sequence[str], batch_size: int = 64
) -> torch.Tensor:
    """`[K, D]` class embeddings: each filled template L2-normalised, averaged per class, renormalised.

    Built by open_clip's `build_zero_shot_classifier` (the same recipe as CLIP, open_clip and the
    Llama3-MS-CLIP code). `classnames` are used verbatim in the prompts (see `TemplateSet.prompt_names`);
    `model` needs `.tokenize(list[str])` and `.encode_text(tokens, normalize=True)`. `batch_size` bounds
    the prompts per forward pass, rounded to whole classes (at least one class per pass). The average is
    taken in the text tower's dtype (fp32 unless a precision mode casts it), the result is float32 on CPU.
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
    # open_clip fills string templates with `str.format(c)`, which fails on `{c}` placeholders and on
    # other braces; callables let it use our plain replace instead.
    fillers = [partial(fill_template, t) for t in tmpl]
    per_batch = max(1, batch_size // len(tmpl))
    with torch.inference_mode():
        weights = build_zero_shot_classifier(model, model.tokenize, list(classnames), fillers,
                                             num_classes_per_batch=per_batch, device=device)
    return weights.T.float().contiguous().cpu()  # open_clip returns [D, K]


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
    class_emb = class_text_embeddings(model, ts.prompt_names(dataset), ts).cpu().numpy()
    return classification_metrics(zero_shot_logits(vectors, class_emb), labels, dataset.classes)
