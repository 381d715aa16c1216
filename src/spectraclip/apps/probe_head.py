"""A few-shot window probe: a logistic-regression head on a model's image embeddings, saved as JSON with the
model's fingerprints, so `spectraclip map --probe` can classify scene windows from a few hundred labels
instead of text prompts (and refuses a probe fitted on another model's embeddings)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.errors import FingerprintMismatchError, SpectraclipError
from spectraclip.io.atomic import atomic_open
from spectraclip.zeroshot.classifier import softmax

PROBE_FORMAT = "spectraclip.window-probe"


class ProbeFileError(SpectraclipError, ValueError):
    """A probe file that cannot be read; the message names it."""


@dataclass
class WindowProbe:
    """Multinomial logistic regression `softmax(v @ coef.T + intercept)` over L2-normalised embeddings."""

    classes: list[str]
    coef: np.ndarray  # [K, D]
    intercept: np.ndarray  # [K]
    fingerprints: dict[str, str]
    n_train: int = 0

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(vectors, np.float64) @ self.coef.T + self.intercept).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        data = {"format": PROBE_FORMAT, "classes": self.classes, "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(), "fingerprints": self.fingerprints, "n_train": self.n_train}
        with atomic_open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        return Path(path)


def fit_probe(model, vectors: np.ndarray, labels: Sequence[str], *, c: float = 1.0, seed: int = 0) -> WindowProbe:
    """Fit a window probe on `vectors` `[N, D]` (the model's image embeddings) with class `labels`."""
    from sklearn.linear_model import LogisticRegression

    from spectraclip.identity import Fingerprints

    labels = [str(v) for v in labels]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ProbeFileError(f"a probe needs at least two classes, got {classes}")
    y = np.array([classes.index(v) for v in labels])
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(np.asarray(vectors, np.float64), y)
    return WindowProbe(classes, clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64),
                       Fingerprints.of(model).to_metadata(), len(y))


def load_probe(path: str | Path, model: Any | None = None) -> WindowProbe:
    """Read a saved probe; with `model`, refuse one fitted on another model's embeddings."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProbeFileError(f"--probe {p}: cannot read ({exc})") from exc
    if data.get("format") != PROBE_FORMAT:
        raise ProbeFileError(f"--probe {p}: not a window probe (format {data.get('format')!r}, expected "
                             f"{PROBE_FORMAT!r})")
    probe = WindowProbe(list(data["classes"]), np.asarray(data["coef"], np.float64),
                        np.asarray(data["intercept"], np.float64), dict(data.get("fingerprints") or {}),
                        int(data.get("n_train", 0)))
    if model is not None:
        from spectraclip.identity import Fingerprints

        want = Fingerprints.of(model).to_metadata()
        if probe.fingerprints != want:
            raise FingerprintMismatchError(f"--probe {p} was fitted on the embeddings of another model or "
                                           f"preprocessing ({probe.fingerprints}) than the one given ({want})")
        if probe.coef.shape[1] != model.embed_dim:
            raise ProbeFileError(f"--probe {p}: {probe.coef.shape[1]}-d but the model embeds {model.embed_dim}-d")
    return probe


def fit_probe_from_table(model, table: str | Path, output: str | Path, *, label_column: str = "label",
                         c: float = 1.0) -> WindowProbe:
    """Fit and save a probe from an embeddings table (by `spectraclip embed`) whose `label_column` holds each
    row's class (or, when absent, the parent folder of each row's source path, as in EuroSAT's layout)."""
    import pyarrow.parquet as pq

    from spectraclip.identity import check_fingerprints

    t = pq.read_table(table)
    meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
    flat = dict(meta)
    for v in meta.values():
        try:
            inner = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            continue
        if isinstance(inner, dict):
            flat.update({k: str(x) for k, x in inner.items() if isinstance(x, str)})
    check_fingerprints(flat, model, str(table))
    vectors = np.asarray(t.column("vector").to_pylist(), np.float32)
    if label_column in t.column_names:
        labels = [str(v) for v in t.column(label_column).to_pylist()]
    else:
        labels = [Path(str(p)).parent.name for p in t.column("path").to_pylist()]
    probe = fit_probe(model, vectors, labels, c=c)
    probe.save(output)
    return probe


__all__ = ["PROBE_FORMAT", "ProbeFileError", "WindowProbe", "fit_probe", "fit_probe_from_table", "load_probe"]
