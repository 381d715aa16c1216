"""Zero-shot classifiers from text: class embeddings as template ensembles, and image-class logits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from spectraclip.evaluate.templates import TemplateSet, fill_template
from spectraclip.models.text_trim import encode_text_trimmed
from spectraclip.text_cache import cached_text_embeddings


def class_text_embeddings(
    model, classnames: Sequence[str], templates: TemplateSet | Sequence[str], batch_size: int = 64,
    cache: bool = True,
) -> torch.Tensor:
    """`[K, D]` class embeddings: each filled template L2-normalised, averaged per class, renormalised.

    `classnames` are used verbatim in the prompts (humanise them first); `model` needs
    `.tokenize(list[str])` and `.encode_text(tokens)`. The prompt embeddings go through the disk text
    cache (`spectraclip.text_cache`) unless `cache=False` (a model whose weights are changing).
    """
    tmpl = list(templates.templates if isinstance(templates, TemplateSet) else templates)
    if not classnames:
        raise ValueError("class_text_embeddings needs at least one class name")
    if not tmpl:
        raise ValueError("class_text_embeddings needs at least one template")
    prompts = [fill_template(t, c) for c in classnames for t in tmpl]
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        device = torch.device("cpu")

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

    vectors = cached_text_embeddings(model, prompts, encode) if cache else encode(prompts)
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


def encode_labelled(model, dataset, *, batch_size: int = 32, device: str = "cpu"
                    ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image ids, float64 embeddings and single-label class indices of an opened dataset (no caching)."""
    from spectraclip.inference import encode_images

    enc = encode_images(model, dataset, batch_size=batch_size, device=device, progress=False)
    by_id = {it.id: it for it in dataset.items}
    cls = {c: k for k, c in enumerate(dataset.classes)}
    labels = np.array([cls[by_id[i].labels[0]] for i in enc.ids])
    return list(enc.ids), enc.vectors.astype(np.float64), labels


def evaluate_zeroshot(model, dataset, templates: str | TemplateSet = "msclip", *, root: str | None = None,
                      split: str = "test", batch_size: int = 32, device: str = "cpu") -> dict:
    """Zero-shot classification metrics of `model` on a dataset (an opened dataset or a registered name).

    Used by the trainer's validation hook; encodes without caching (the model changes between calls).
    """
    from spectraclip.evaluate.metrics import classification_metrics
    from spectraclip.evaluate.templates import load_templates

    if isinstance(dataset, str):
        from spectraclip.data.registry import load_dataset

        dataset = load_dataset(dataset, root, split=split)
    ts = templates if isinstance(templates, TemplateSet) else load_templates(templates)
    _, vectors, labels = encode_labelled(model, dataset, batch_size=batch_size, device=device)
    class_emb = class_text_embeddings(model, dataset.class_prompt_names(), ts, cache=False).cpu().numpy()
    return classification_metrics(zero_shot_logits(vectors, class_emb), labels, dataset.classes)
