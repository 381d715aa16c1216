"""Caption-quality metrics for caption manifests, one manifest or several side by side.

Manifests follow the caption-manifest schema of `spectraclip.io.manifest` (`captions` list or `caption`
string per row; failed rows left out); one whose rows have no caption field is a
`MissingCaptionFieldError` naming the file and the fields found, never a report of 0 captions.

- METEOR (nltk's `meteor_score`) against reference captions, when given: exact and Porter-stem matching
  always; WordNet synonym matching only when the WordNet corpus is installed (nothing is downloaded).
- distinct-n for n = 1..4: unique n-grams / all n-grams over the whole manifest (Li et al., 2016), and
  their mean.
- mean pairwise caption similarity: cosine similarity of TF-IDF vectors (scikit-learn
  `TfidfVectorizer`, word unigrams, l2-normalised), averaged over all distinct pairs (over a fixed random
  sample of `max_pairs_items` captions for large manifests).
- vocabulary size (distinct lower-cased words), caption length distribution (words), the most frequent
  content words (plot) and a Markdown summary.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.io.atomic import atomic_open, atomic_path
from spectraclip.io.manifest import read_manifest_rows, require_caption_field, row_captions

_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, inner apostrophes and hyphens kept); no corpus needed."""
    return _WORD.findall(text.lower())


class _NoSynonyms:
    """Stands in for the WordNet reader when the corpus is absent: no synonyms, so METEOR uses exact and
    stem matches only."""

    def synsets(self, *args: Any, **kwargs: Any) -> list:
        return []


def wordnet_reader() -> tuple[Any, bool]:
    """nltk's WordNet reader if its corpus is installed, else a no-synonym stand-in; and which it is."""
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet, True
    except LookupError:
        return _NoSynonyms(), False


def meteor(references: Sequence[str], hypothesis: str, wordnet: Any = None) -> float:
    """METEOR of one caption against its references (nltk's implementation, default parameters)."""
    from nltk.translate.meteor_score import meteor_score

    wn = wordnet if wordnet is not None else wordnet_reader()[0]
    return float(meteor_score([tokenize(r) for r in references], tokenize(hypothesis), wordnet=wn))


def distinct_n(captions: Sequence[str], n: int) -> float:
    """Unique n-grams divided by all n-grams, over all captions (0 when there is none)."""
    grams: list[tuple[str, ...]] = []
    for c in captions:
        toks = tokenize(c)
        grams.extend(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def mean_pairwise_similarity(captions: Sequence[str], max_items: int = 2000, seed: int = 0) -> float | None:
    """Mean TF-IDF cosine similarity over distinct caption pairs (None for fewer than two captions)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    caps = list(captions)
    if len(caps) < 2:
        return None
    if len(caps) > max_items:
        idx = np.random.default_rng(seed).choice(len(caps), max_items, replace=False)
        caps = [caps[i] for i in sorted(idx)]
    try:
        x = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None).fit_transform(caps)
    except ValueError:  # empty vocabulary
        return 0.0
    sim = (x @ x.T).toarray()
    n = sim.shape[0]
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1)))


@dataclass
class QualityReport:
    """Quality figures of one manifest (see the module docstring for how each is computed)."""

    name: str
    path: str
    rows: int = 0
    ok: int = 0
    failed: int = 0
    captions: int = 0
    vocabulary: int = 0
    distinct: dict[str, float] = field(default_factory=dict)
    mean_pairwise_similarity: float | None = None
    length: dict[str, float] = field(default_factory=dict)
    meteor: float | None = None
    meteor_pairs: int = 0
    wordnet: bool = False
    top_words: list[tuple[str, int]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("lengths")
        return d


def _ok_captions(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows:
        caps = row_captions(r)
        if r.get("status") != "failed" and caps:
            out.setdefault(str(r.get("id")), []).extend(caps)
    return out


def read_caption_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a caption manifest (an interrupted last line ignored); MissingCaptionFieldError when no row
    has a caption field."""
    rows = read_manifest_rows(path, allow_partial_tail=True)
    require_caption_field(rows, path)
    return rows


def caption_quality(manifest: str | Path, references: str | Path | None = None, name: str | None = None,
                    top_k: int = 30) -> QualityReport:
    """Quality report of one caption manifest, with METEOR when a reference manifest is given."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    rows = read_caption_rows(manifest)
    by_id = _ok_captions(rows)
    caps = [c for cs in by_id.values() for c in cs]
    rep = QualityReport(name or Path(manifest).stem, str(manifest), rows=len(rows), ok=len(by_id),
                        failed=sum(1 for r in rows if r.get("status") == "failed"), captions=len(caps))
    tokens = [tokenize(c) for c in caps]
    rep.vocabulary = len({t for ts in tokens for t in ts})
    rep.distinct = {f"distinct-{n}": distinct_n(caps, n) for n in range(1, 5)}
    rep.distinct["mean"] = float(np.mean(list(rep.distinct.values())))
    rep.mean_pairwise_similarity = mean_pairwise_similarity(caps)
    rep.lengths = [len(t) for t in tokens]
    if rep.lengths:
        arr = np.array(rep.lengths, dtype=float)
        rep.length = {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()),
                      "p25": float(np.percentile(arr, 25)), "median": float(np.median(arr)),
                      "p75": float(np.percentile(arr, 75)), "max": float(arr.max())}
    counts = Counter(t for ts in tokens for t in ts if t not in ENGLISH_STOP_WORDS and not t.isdigit())
    rep.top_words = counts.most_common(top_k)
    if references is not None:
        refs = _ok_captions(read_caption_rows(references))
        wn, rep.wordnet = wordnet_reader()
        scores = [meteor(refs[i], c, wn) for i, cs in by_id.items() if i in refs for c in cs]
        rep.meteor_pairs = len(scores)
        rep.meteor = float(np.mean(scores)) if scores else None
    return rep


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def markdown_summary(reports: Sequence[QualityReport]) -> str:
    """A Markdown table with one column per manifest (side by side), plus how the figures were computed."""
    head = "| metric | " + " | ".join(r.name for r in reports) + " |"
    lines = [head, "|---|" + "---|" * len(reports)]

    def row(label: str, values: list[Any]) -> None:
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in values) + " |")

    row("rows / ok / failed", [f"{r.rows} / {r.ok} / {r.failed}" for r in reports])
    row("captions", [r.captions for r in reports])
    row("vocabulary (words)", [r.vocabulary for r in reports])
    for n in range(1, 5):
        row(f"distinct-{n}", [r.distinct.get(f"distinct-{n}") for r in reports])
    row("distinct mean (1-4)", [r.distinct.get("mean") for r in reports])
    row("mean pairwise similarity (TF-IDF cosine)", [r.mean_pairwise_similarity for r in reports])
    for k in ("mean", "std", "min", "median", "max"):
        row(f"length (words) {k}", [r.length.get(k) for r in reports])
    if any(r.meteor is not None or r.meteor_pairs for r in reports):
        row("METEOR vs references", [r.meteor for r in reports])
        row("METEOR pairs", [r.meteor_pairs for r in reports])
        row("METEOR matching", ["exact+stem+WordNet" if r.wordnet else "exact+stem" for r in reports])
    lines += ["", "Top words: " + "; ".join(
        f"**{r.name}**: " + ", ".join(w for w, _ in r.top_words[:10]) for r in reports)]
    return "\n".join(["# Caption quality", ""] + lines) + "\n"


def plot_quality(reports: Sequence[QualityReport], path: str | Path, top_k: int = 20) -> Path:
    """Word-frequency bars (content words) and caption-length histograms, one column per manifest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(reports)
    fig, axes = plt.subplots(2, n, figsize=(5 * n, 8), squeeze=False)
    for j, r in enumerate(reports):
        words = r.top_words[:top_k][::-1]
        ax = axes[0][j]
        ax.barh([w for w, _ in words], [c for _, c in words], color="tab:blue")
        ax.set_title(f"{r.name}: top words")
        ax.set_xlabel("count")
        ax2 = axes[1][j]
        if r.lengths:
            ax2.hist(r.lengths, bins=min(30, max(5, len(set(r.lengths)))), color="tab:green")
        ax2.set_title(f"{r.name}: caption length")
        ax2.set_xlabel("words")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def write_quality(reports: Sequence[QualityReport], out_dir: str | Path) -> dict[str, Path]:
    """Write `quality.md`, `quality.json` and `word_frequency.png` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "quality.md", "json": out / "quality.json", "plot": out / "word_frequency.png"}
    with atomic_open(paths["markdown"], "w", encoding="utf-8") as fh:
        fh.write(markdown_summary(reports))
    with atomic_open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump([r.to_dict() for r in reports], fh, indent=2)
    plot_quality(reports, paths["plot"])
    return paths
