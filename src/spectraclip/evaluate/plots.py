"""Evaluation plots (matplotlib, Agg): confusion matrices, per-class bars and a 2-D map (UMAP, or t-SNE
for few images) of the image embeddings coloured by class."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

UMAP_MIN_IMAGES = 50  # below this UMAP's neighbour graph is degenerate; t-SNE is used instead


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, classes: list[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix with counts."""
    plt = _plt()
    cm = np.asarray(cm)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k), constrained_layout=True)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_title(title, fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_bars(values: dict[str, float | None], title: str, ylabel: str, path: Path) -> Path:
    """One bar per class (classes without data are shown empty and marked n/a)."""
    plt = _plt()
    names = list(values)
    vals = [np.nan if values[n] is None else float(values[n]) for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 1.5), 3.6), constrained_layout=True)
    ax.bar(range(len(names)), [0 if np.isnan(v) else v for v in vals], color="#4c72b0")
    for i, v in enumerate(vals):
        if np.isnan(v):
            ax.text(i, 0.01, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(range(len(names)), [n if len(n) < 28 else n[:25] + "…" for n in names], rotation=60,
                  ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def project_2d(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates and the method used: UMAP (cosine) for >= UMAP_MIN_IMAGES points, else t-SNE."""
    n = len(vectors)
    if method == "auto":
        method = "umap" if n >= UMAP_MIN_IMAGES else "tsne"
    if n < 3:
        return np.zeros((n, 2)), "none"
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed,
                            n_jobs=1)
        return reducer.fit_transform(vectors), "umap"
    from sklearn.manifold import TSNE

    perplexity = float(max(1.0, min(30.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="random", random_state=seed)
    return tsne.fit_transform(vectors), f"t-SNE (perplexity {perplexity:g})"


def plot_embedding_map(vectors: np.ndarray, labels: list[str], classes: list[str], title: str, path: Path,
                       method: str = "auto") -> str:
    """Scatter of the 2-D projection coloured by (first) class; returns the projection method used."""
    plt = _plt()
    xy, used = project_2d(np.asarray(vectors, dtype=np.float32), method)
    fig, ax = plt.subplots(figsize=(6.5, 5), constrained_layout=True)
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for k, c in enumerate(classes):
        m = np.array([lbl == c for lbl in labels], dtype=bool)
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=12, color=cmap(k % cmap.N), label=c)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title} — {used}", fontsize=8)
    ax.legend(fontsize=6, markerscale=1.2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return used


def write_plots(results: dict[str, Any], embeddings: list[dict[str, Any]], plots_dir: Path,
                embedding_map: str = "auto") -> list[Path]:
    """Every plot for the runs in `results`; records them (and any fallback notes) in `results`."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    out_root = plots_dir.parent
    listed: list[dict[str, str]] = results.setdefault("plots", [])
    notes: list[str] = results.setdefault("notes", [])
    files: list[Path] = []

    def add(path: Path, title: str) -> None:
        files.append(path)
        listed.append({"file": str(path.relative_to(out_root)), "title": title})

    for run in results["runs"]:
        stem = "__".join(_slug(run[k]) for k in ("model", "dataset", "templates"))
        what = f"{run['model']} on {run['dataset']} ({run['templates']} templates)"
        m = run["metrics"]
        if run["task"] == "zeroshot":
            classes = list(m["per_class_accuracy"])
            add(plot_confusion(np.array(m["confusion_matrix"]), classes, f"Confusion matrix: {what}",
                               plots_dir / f"{stem}__confusion.png"), f"Confusion matrix, {what}")
            add(plot_bars(m["per_class_accuracy"], f"Per-class accuracy: {what}", "accuracy (recall)",
                          plots_dir / f"{stem}__per_class_accuracy.png"), f"Per-class accuracy, {what}")
        elif run["task"] == "multilabel":
            f1 = {c: v["f1"] for c, v in m["mean_of_others"]["per_class"].items()}
            add(plot_bars(f1, f"Per-class F1 (mean-of-others threshold): {what}", "F1",
                          plots_dir / f"{stem}__per_class_f1.png"), f"Per-class F1, {what}")
            add(plot_bars(m["per_class_AP"], f"Per-class AP: {what}", "average precision",
                          plots_dir / f"{stem}__per_class_ap.png"), f"Per-class AP, {what}")
    if embedding_map != "none":
        for e in embeddings:
            stem = f"{_slug(e['model'])}__{_slug(e['dataset'])}__embedding_map.png"
            used = plot_embedding_map(e["vectors"], e["labels"], e["classes"],
                                      f"Image embeddings: {e['model']} on {e['dataset']}", plots_dir / stem,
                                      embedding_map)
            if used != "umap":
                notes.append(f"embedding map of {e['model']} on {e['dataset']} uses {used} instead of UMAP "
                             f"({len(e['vectors'])} images < {UMAP_MIN_IMAGES})" if embedding_map == "auto"
                             else f"embedding map of {e['model']} on {e['dataset']} uses {used}")
            add(plots_dir / stem, f"Image embeddings ({used}), {e['model']} on {e['dataset']}")
    return files
