"""Zero-shot evaluation of a model on a labelled dataset (the trainer's validation hook uses it).

The primitives (templates, class embeddings, the logit scale) live in `spectraclip.zeroshot`.
"""

from __future__ import annotations

import numpy as np

from spectraclip.data.base import LabelledDataset
from spectraclip.data.registry import load_dataset
from spectraclip.evaluate.metrics import classification_metrics
from spectraclip.inference import encode_images
from spectraclip.zeroshot.classifier import class_text_embeddings, cosine_logits
from spectraclip.zeroshot.templates import TemplateSet, load_templates


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
    return classification_metrics(cosine_logits(vectors, class_emb), labels, dataset.classes)
