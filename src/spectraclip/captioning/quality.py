"""Caption-quality metrics for caption manifests, one manifest or several side by side.

Inputs (each manifest and the references) are read by `read_caption_rows`:

- a caption manifest of `spectraclip.io.manifest` (`captions` list or `caption` string per row; failed
  rows left out); one whose rows have no caption field is a `MissingCaptionFieldError` naming the file and
  the fields found, never a report of 0 captions;
- the human-caption text format of RSICD, RSITMD, UCM-Captions and Sydney-Captions (as distributed with
  AMFMN): `SPLIT_caps.txt`, one caption per line, beside `SPLIT_filename.txt`, the image file name of each
  caption line (test splits) or of each block of k consecutive caption lines (train splits: one name per
  image, five captions each). Give the `_caps.txt` file, its `_filename.txt` sibling, the prefix
  `DIR/SPLIT`, or a folder holding exactly one `*_caps.txt`; the captions are grouped per image name (the
  id), like a manifest with several captions per image. See `caps_pair`.

Figures:

- METEOR (nltk's `meteor_score`) against reference captions, when given, for each caption whose id has
  references: exact and Porter-stem matching always; WordNet synonym matching only when the WordNet corpus
  is installed (nothing is downloaded). The report counts the captions scored and those whose id has no
  reference; no id in common is a `NoMatchingReferencesError`, never a null METEOR.
- n-gram diversity, three definitions (each reported with what it was computed over, see
  `DIVERSITY_DEFINITIONS`):
  - distinct-n, whole set, n = 1..4 and their mean: unique n-grams / all n-grams over every caption
    (Li et al., 2016). It falls as a set grows (common n-grams repeat, rare ones run out), so it only
    compares sets of about the same number of captions;
  - distinct-n on K-caption samples: the same ratio on `draws` random samples of K captions of K
    different images (one random caption of each; seeded), averaged: an estimate of the expected
    distinct-n of K captions of different images, which depends neither on how many captions the set has
    nor on how many each image has (sets of fewer than K images get none);
  - per-image n-gram diversity: distinct-n (mean over n = 1..4) within the captions of each image, then
    the mean and the lowest over images (per caption where an image has one caption).
  docs/captions.md measures all three on the human-written RS caption sets and compares them with the
  0.48-0.49 "mean n-gram diversity" of the Llama3-MS-CLIP paper (none of them reproduces it on every set).
- mean pairwise caption similarity: cosine similarity of TF-IDF vectors (scikit-learn
  `TfidfVectorizer`, word unigrams, l2-normalised), averaged over all distinct pairs (over a fixed random
  sample of `max_pairs_items` captions for large manifests).
- vocabulary size (distinct lower-cased words), caption length distribution (words), the most frequent
  content words (plot) and a Markdown summary.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.errors import ManifestError, SpectraclipError
from spectraclip.io.atomic import atomic_open, atomic_path
from spectraclip.io.manifest import MANIFEST_SUFFIXES, read_manifest_rows, require_caption_field, row_captions

_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")
CAPS_SUFFIX = "_caps.txt"
FILENAME_SUFFIX = "_filename.txt"
NGRAM_ORDERS: tuple[int, ...] = (1, 2, 3, 4)
DIVERSITY_DEFINITIONS: dict[str, str] = {
    "distinct": "distinct-n over the whole set: unique n-grams / all n-grams over every caption (Li et al., "
                "2016); falls as the set grows, so compare sets of about the same size only",
    "distinct_sampled": "distinct-n on random samples of K captions of K different images (one random caption "
                        "per image; seeded), averaged over the draws: does not depend on the size of the set or "
                        "on the captions per image; none for fewer than K images",
    "per_image": "distinct-n (mean over n = 1..4) within the captions of each image, then the mean and the "
                 "lowest over images (per caption where an image has one caption)",
}


class CaptionPairError(ManifestError):
    """A `*_caps.txt` / `*_filename.txt` caption pair that cannot be read (missing sibling, line counts that
    do not pair, a blank image name); the message names both files and the counts."""


class NoMatchingReferencesError(SpectraclipError, ValueError):
    """METEOR asked for, but no id of the manifest has reference captions; names both files and example ids."""


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, inner apostrophes and hyphens kept); no corpus needed."""
    return _WORD.findall(text.lower())


class NoSynonyms:
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
        return NoSynonyms(), False


def meteor(references: Sequence[str], hypothesis: str, wordnet: Any = None) -> float:
    """METEOR of one caption against its references (nltk's implementation, default parameters)."""
    from nltk.translate.meteor_score import meteor_score

    wn = wordnet if wordnet is not None else wordnet_reader()[0]
    return float(meteor_score([tokenize(r) for r in references], tokenize(hypothesis), wordnet=wn))


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _distinct(token_lists: Iterable[Sequence[str]], n: int) -> float:
    grams = [g for toks in token_lists for g in _ngrams(toks, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(captions: Sequence[str], n: int) -> float:
    """Unique n-grams divided by all n-grams, over all captions (0 when there is none): Li et al. (2016).

    Depends on the number of captions (it falls as the set grows); see `sampled_distinct_n` for a figure
    that does not."""
    return _distinct((tokenize(c) for c in captions), n)


def _sampled_distinct(groups: Sequence[Sequence[Sequence[str]]], orders: Sequence[int], sample_size: int,
                      draws: int, seed: int) -> dict[int, float] | None:
    """Mean distinct-n over `draws` samples of `sample_size` groups (images), one random token list of each."""
    if sample_size < 1 or draws < 1:
        raise ValueError(f"sample_size and draws must be at least 1, got {sample_size} and {draws}")
    groups = [g for g in groups if g]
    if len(groups) < sample_size:
        return None
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        picked = rng.choice(len(groups), sample_size, replace=False)
        samples.append([groups[i][int(rng.integers(len(groups[i])))] for i in picked])
    return {k: float(np.mean([_distinct(sample, k) for sample in samples])) for k in orders}


def sampled_distinct_n(captions: Sequence[str], n: int, sample_size: int = 100, draws: int = 20, seed: int = 0,
                       ids: Sequence[str] | None = None) -> float | None:
    """distinct-n on random samples of `sample_size` captions, averaged over `draws` samples drawn with
    `seed`; None when there are fewer than `sample_size` captions (images, with `ids`).

    Whole-set distinct-n falls as a set grows; its expectation over K-caption samples does not depend on
    how many captions the set has, so sets of different sizes compare at the same K (and seed: the figure
    is deterministic). With `ids` (the image id of each caption) a sample takes K different images and
    one random caption of each, so that a set with five captions per image compares with a set with one:
    captions of the same image, which share n-grams, never meet in a sample.
    """
    tokens = [tokenize(c) for c in captions]
    if ids is None:
        groups = [[t] for t in tokens]
    else:
        if len(ids) != len(tokens):
            raise ValueError(f"{len(ids)} ids for {len(tokens)} captions")
        by_id: dict[str, list[list[str]]] = {}
        for i, t in zip(ids, tokens, strict=True):
            by_id.setdefault(i, []).append(t)
        groups = list(by_id.values())
    out = _sampled_distinct(groups, (n,), sample_size, draws, seed)
    return None if out is None else out[n]


def _per_image(token_groups: Iterable[Sequence[Sequence[str]]], orders: Sequence[int]) -> list[float]:
    return [float(np.mean([_distinct(toks, k) for k in orders])) for toks in token_groups if any(toks)]


def per_image_diversity(groups: Iterable[Sequence[str]], orders: Sequence[int] = NGRAM_ORDERS) -> list[float]:
    """n-gram diversity of each image's captions: distinct-n within the image's captions, averaged over
    `orders`; one value per group that has a word, in order.

    How differently one image is described (near 1: its captions share few n-grams, 1/k: k identical
    captions); for one caption per image it is the per-caption figure, near 1 for short captions."""
    return _per_image(([tokenize(c) for c in caps] for caps in groups), orders)


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
    """Quality figures of one manifest (see the module docstring for how each is computed).

    `distinct` is whole-set distinct-n over `captions` captions; `distinct_sampled` the same on
    `distinct_sample_draws` samples of `distinct_sample_size` captions, one per image (empty when the set
    has fewer images);
    `per_image_diversity` the mean and lowest per-image figure over `ok` images. METEOR is the mean over the
    `meteor_pairs` captions whose id has references; `meteor_no_reference` captions (of
    `meteor_unmatched_ids` ids, examples in `meteor_unmatched_examples`) had none and are not in it.
    """

    name: str
    path: str
    rows: int = 0
    ok: int = 0
    failed: int = 0
    captions: int = 0
    vocabulary: int = 0
    distinct: dict[str, float] = field(default_factory=dict)
    distinct_sampled: dict[str, float] = field(default_factory=dict)
    distinct_sample_size: int = 0
    distinct_sample_draws: int = 0
    distinct_seed: int = 0
    per_image_diversity: dict[str, float] = field(default_factory=dict)
    mean_pairwise_similarity: float | None = None
    length: dict[str, float] = field(default_factory=dict)
    references: str | None = None
    meteor: float | None = None
    meteor_pairs: int = 0
    meteor_no_reference: int = 0
    meteor_unmatched_ids: int = 0
    meteor_unmatched_examples: list[str] = field(default_factory=list)
    wordnet: bool = False
    top_words: list[tuple[str, int]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("lengths")
        d["diversity_definitions"] = dict(DIVERSITY_DEFINITIONS)
        return d


def _ok_captions(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows:
        caps = row_captions(r)
        if r.get("status") != "failed" and caps:
            out.setdefault(str(r.get("id")), []).extend(caps)
    return out


def caps_pair(path: str | Path) -> tuple[Path, Path] | None:
    """The (`*_caps.txt`, `*_filename.txt`) pair that `path` names, or None when it names none.

    `path` may be either file of the pair, the common prefix (`DIR/test` for `DIR/test_caps.txt`), or a
    folder with exactly one `*_caps.txt` (a folder with several is a `CaptionPairError` listing them). The
    files need not exist yet: `read_caps_pair` says which one is missing.
    """
    p = Path(path)
    if p.is_dir():
        found = sorted(p.glob(f"*{CAPS_SUFFIX}"))
        if len(found) > 1:
            raise CaptionPairError(f"{p}: a folder with {len(found)} caption files "
                                   f"({', '.join(f.name for f in found)}); give one of them")
        if not found:
            return None
        p = found[0]
    if p.name.endswith(CAPS_SUFFIX):
        return p, p.with_name(p.name[:-len(CAPS_SUFFIX)] + FILENAME_SUFFIX)
    if p.name.endswith(FILENAME_SUFFIX):
        return p.with_name(p.name[:-len(FILENAME_SUFFIX)] + CAPS_SUFFIX), p
    if not p.exists() and Path(f"{p}{CAPS_SUFFIX}").is_file():
        return Path(f"{p}{CAPS_SUFFIX}"), Path(f"{p}{FILENAME_SUFFIX}")
    return None


def _text_lines(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CaptionPairError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    while lines and not lines[-1].strip():  # blank lines at the end pair with nothing
        lines.pop()
    return lines


def read_caps_pair(caps: str | Path, filenames: str | Path) -> list[dict[str, Any]]:
    """Caption-manifest rows (`id`, `captions`) from a `*_caps.txt` file and its `*_filename.txt` sibling.

    Equal line counts: filename line i names the image of caption line i (the test splits of the AMFMN
    distribution). k times as many caption lines as names (k > 1): each name covers k consecutive caption
    lines (their train splits: one name per image, five captions each). Captions are grouped per image
    name, in first-appearance order; blank caption lines keep their place and are dropped (as empty
    captions are in manifests), blank lines at the end of either file are ignored. Any other pairing, a
    missing file or a blank image name is a `CaptionPairError` naming the files and the counts.
    """
    caps, filenames = Path(caps), Path(filenames)
    for f, other in ((caps, filenames), (filenames, caps)):
        if not f.is_file():
            raise CaptionPairError(f"{f}: not found; {other.name} needs it beside it ({caps.name}: one caption "
                                   f"per line; {filenames.name}: the image name of each caption line)")
    cap_lines, names = _text_lines(caps), _text_lines(filenames)
    if not names or len(cap_lines) % len(names) or not cap_lines:
        raise CaptionPairError(
            f"{caps} has {len(cap_lines)} caption lines and {filenames} {len(names)} image names: expected "
            f"as many names as captions, or one name per block of k captions ({len(cap_lines)} a multiple of "
            f"{len(names)})")
    per_name = len(cap_lines) // len(names)
    grouped: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        if not name.strip():
            raise CaptionPairError(f"{filenames}:{i + 1}: blank image name (captions in {caps})")
        block = cap_lines[i * per_name:(i + 1) * per_name]
        grouped.setdefault(name.strip(), []).extend(c.strip() for c in block if c.strip())
    return [{"id": k, "captions": v} for k, v in grouped.items()]


def read_caption_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a caption manifest (an interrupted last line ignored), or of a `*_caps.txt` /
    `*_filename.txt` pair (see `caps_pair`, `read_caps_pair`); MissingCaptionFieldError when no row has a
    caption field."""
    pair = caps_pair(path)
    if pair is not None:
        rows = read_caps_pair(*pair)
    else:
        p = Path(path)
        if p.is_dir() or (p.is_file() and p.suffix.lower() not in MANIFEST_SUFFIXES):
            raise ManifestError(f"{p}: neither a caption manifest ({', '.join(MANIFEST_SUFFIXES)}) nor a "
                                f"*{CAPS_SUFFIX} file with its *{FILENAME_SUFFIX} (or their folder or prefix)")
        rows = read_manifest_rows(path, allow_partial_tail=True)
    require_caption_field(rows, path)
    return rows


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _examples(ids: Iterable[str], k: int = 3) -> str:
    shown = [repr(i) for i in itertools.islice(ids, k)]
    return ", ".join(shown) if shown else "none"


def caption_quality(manifest: str | Path, references: str | Path | None = None, name: str | None = None,
                    top_k: int = 30, sample_size: int = 100, draws: int = 20, seed: int = 0) -> QualityReport:
    """Quality report of one caption manifest (or caps/filename pair), with METEOR when references are given.

    `sample_size`, `draws` and `seed` set the size-independent distinct-n (`sampled_distinct_n`). With
    references, captions whose id has none are counted, not scored; no id in common at all is a
    `NoMatchingReferencesError` naming both files and example ids of each.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    rows = read_caption_rows(manifest)
    by_id = _ok_captions(rows)
    caps = [c for cs in by_id.values() for c in cs]
    rep = QualityReport(name or Path(manifest).stem, str(manifest), rows=len(rows), ok=len(by_id),
                        failed=sum(1 for r in rows if r.get("status") == "failed"), captions=len(caps))
    tokens = [tokenize(c) for c in caps]
    rep.vocabulary = len({t for ts in tokens for t in ts})
    rep.distinct = {f"distinct-{n}": _distinct(tokens, n) for n in NGRAM_ORDERS}
    rep.distinct["mean"] = float(np.mean(list(rep.distinct.values())))
    start, groups = 0, []
    for cs in by_id.values():
        groups.append(tokens[start:start + len(cs)])
        start += len(cs)
    rep.distinct_sample_size, rep.distinct_sample_draws, rep.distinct_seed = sample_size, draws, seed
    sampled = _sampled_distinct(groups, NGRAM_ORDERS, sample_size, draws, seed)
    if sampled is not None:
        rep.distinct_sampled = {f"distinct-{n}": v for n, v in sampled.items()}
        rep.distinct_sampled["mean"] = float(np.mean(list(sampled.values())))
    per_image = _per_image(groups, NGRAM_ORDERS)
    if per_image:
        rep.per_image_diversity = {"mean": float(np.mean(per_image)), "min": float(np.min(per_image)),
                                   "images": len(per_image)}
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
        rep.references = str(references)
        refs = _ok_captions(read_caption_rows(references))
        unmatched = [i for i in by_id if i not in refs]
        if by_id and len(unmatched) == len(by_id):
            files = [pair[0] if (pair := caps_pair(f)) else f for f in (manifest, references)]
            raise NoMatchingReferencesError(
                f"{files[0]} and {files[1]}: no id of the manifest matched an id of the references "
                f"({_plural(len(by_id), 'manifest id')}, e.g. {_examples(by_id)}; "
                f"{_plural(len(refs), 'reference id')}, e.g. {_examples(refs)}), so there is nothing to score "
                f"METEOR on; the references must use the manifest's ids")
        wn, rep.wordnet = wordnet_reader()
        scores = [meteor(refs[i], c, wn) for i, cs in by_id.items() if i in refs for c in cs]
        rep.meteor_pairs = len(scores)
        rep.meteor_no_reference = sum(len(by_id[i]) for i in unmatched)
        rep.meteor_unmatched_ids = len(unmatched)
        rep.meteor_unmatched_examples = unmatched[:5]
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
    for n in NGRAM_ORDERS:
        row(f"distinct-{n}, whole set", [r.distinct.get(f"distinct-{n}") for r in reports])
    row("distinct mean (1-4), whole set", [r.distinct.get("mean") for r in reports])
    row("… whole set: captions", [r.captions for r in reports])
    for n in NGRAM_ORDERS:
        row(f"distinct-{n}, K-caption samples", [r.distinct_sampled.get(f"distinct-{n}") for r in reports])
    row("distinct mean (1-4), K-caption samples", [r.distinct_sampled.get("mean") for r in reports])
    row("… samples: draws × K captions (one per image)", [
        f"{r.distinct_sample_draws} × {r.distinct_sample_size} (seed {r.distinct_seed})" if r.distinct_sampled
        else f"none: {r.ok} < K = {r.distinct_sample_size} images" for r in reports])
    row("per-image n-gram diversity, mean", [r.per_image_diversity.get("mean") for r in reports])
    row("per-image n-gram diversity, lowest", [r.per_image_diversity.get("min") for r in reports])
    row("… per image: images / captions", [f"{int(r.per_image_diversity.get('images', 0))} / {r.captions}"
                                           for r in reports])
    row("mean pairwise similarity (TF-IDF cosine)", [r.mean_pairwise_similarity for r in reports])
    for k in ("mean", "std", "min", "median", "max"):
        row(f"length (words) {k}", [r.length.get(k) for r in reports])
    if any(r.references is not None for r in reports):
        row("METEOR vs references", [r.meteor for r in reports])
        row("METEOR: captions scored", [r.meteor_pairs for r in reports])
        row("METEOR: captions without reference (not scored)", [
            f"{r.meteor_no_reference} ({_plural(r.meteor_unmatched_ids, 'id')}, e.g. "
            f"{_examples(r.meteor_unmatched_examples)})" if r.meteor_no_reference else 0 for r in reports])
        row("METEOR matching", ["exact+stem+WordNet" if r.wordnet else "exact+stem" for r in reports])
    lines += ["", "n-gram diversity: **whole set** = " + DIVERSITY_DEFINITIONS["distinct"] + "; **K-caption "
              "samples** = " + DIVERSITY_DEFINITIONS["distinct_sampled"] + "; **per image** = "
              + DIVERSITY_DEFINITIONS["per_image"] + "."]
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
