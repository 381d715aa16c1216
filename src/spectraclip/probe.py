"""Few-shot probes: classical scikit-learn models trained on k labelled embeddings, label-efficiency curves.

One run compares several embeddings tables on the SAME test set and the SAME training draws, so
differences between tables are paired. Models: logistic regression, random forest, k-NN, ridge.
Sampling of k training examples is stratified (see `sample_k`). Results are plain dataclasses that
serialise to JSON; `probe_report` renders the Markdown table and the plot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spectraclip.errors import SpectraclipError

Task = Literal["multiclass", "multilabel", "regression"]
MODELS = ("logistic", "random-forest", "knn", "ridge")
DEFAULT_KS: tuple[int | None, ...] = (10, 25, 50, 100, 200, 500, None)  # None = all training labels
METRICS: dict[str, tuple[str, ...]] = {
    "multiclass": ("accuracy", "balanced_accuracy", "macro_f1"),
    "multilabel": ("macro_f1", "micro_f1", "subset_accuracy"),
    "regression": ("r2", "mae", "rmse"),
}
HIGHER_IS_BETTER = {"mae": False, "rmse": False}

# Hyper-parameters of the estimators (the equality test against scikit-learn uses the same values).
LOGISTIC_PARAMS: dict[str, Any] = {"C": 1.0, "max_iter": 2000}
FOREST_PARAMS: dict[str, Any] = {"n_estimators": 200, "n_jobs": 1}
KNN_NEIGHBORS = 5
RIDGE_ALPHA = 1.0


class ProbeError(SpectraclipError, ValueError):
    """A probe input problem (labels, ids, model/task mismatch); the message names the file or option."""


@dataclass
class ProbeLabels:
    """Targets keyed by id: int class codes `[N]`, a binary matrix `[N, K]` or floats `[N]`."""

    ids: list[str]
    task: Task
    y: np.ndarray
    classes: list[str] = field(default_factory=list)
    split: list[str] | None = None  # per id: "train" / "val" / "test" (or None when not given)
    source: str = ""

    def subset(self, ids: Sequence[str]) -> ProbeLabels:
        """Labels for `ids`, in that order."""
        pos = {i: n for n, i in enumerate(self.ids)}
        idx = np.array([pos[i] for i in ids], dtype=np.int64)
        split = [self.split[i] for i in idx] if self.split is not None else None
        return ProbeLabels(list(ids), self.task, self.y[idx], list(self.classes), split, self.source)


# ----------------------------------------------------------------------------------------- labels
def _read_frame(path: Path) -> dict[str, list]:
    """A CSV/TSV (all values as text, so ids like "0001" survive) or Parquet file as a dict of columns."""
    import csv

    if not path.exists():
        raise ProbeError(f"labels file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pydict()
    if suffix in (".csv", ".tsv", ".txt"):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
        if not rows:
            raise ProbeError(f"labels file {path} has no rows")
        return {c: [r[c] for r in rows] for c in rows[0]}
    raise ProbeError(f"labels file {path}: expected .csv, .tsv or .parquet")


def _is_number(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    try:
        float(str(v))
        return True
    except ValueError:
        return False


def labels_from_columns(ids: Sequence[object], values: Sequence[object], *, task: str = "auto",
                        split: Sequence[object] | None = None, sep: str = ";", source: str = "") -> ProbeLabels:
    """Build `ProbeLabels` from an id column and a label column; `task="auto"` guesses from the values.

    Lists or `sep`-joined strings are multi-labels; floats (non-integral) are a regression target;
    anything else is a class label.
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ProbeError(f"{source or 'labels'}: duplicate ids {dup}")
    vals = list(values)
    if task == "auto":
        if any(isinstance(v, list | tuple | np.ndarray) for v in vals) or any(
            isinstance(v, str) and sep in v for v in vals
        ):
            task = "multilabel"
        elif all(_is_number(v) for v in vals) and any(not float(v).is_integer() for v in vals):
            task = "regression"
        else:
            task = "multiclass"
    if task not in METRICS:
        raise ProbeError(f"--task {task!r}: expected auto, multiclass, multilabel or regression")
    classes: list[str] = []
    if task == "regression":
        try:
            y = np.array([float(v) for v in vals], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ProbeError(f"{source or 'labels'}: regression target is not numeric ({exc})") from exc
    elif task == "multiclass":
        names = [str(v) for v in vals]
        classes = sorted(set(names))
        code = {c: n for n, c in enumerate(classes)}
        y = np.array([code[c] for c in names], dtype=np.int64)
    else:
        sets: list[list[str]] = []
        for v in vals:
            if isinstance(v, str):
                sets.append([p.strip() for p in v.split(sep) if p.strip()])
            elif v is None:
                sets.append([])
            else:
                sets.append([str(p) for p in v])
        classes = sorted({c for s in sets for c in s})
        code = {c: n for n, c in enumerate(classes)}
        y = np.zeros((len(sets), len(classes)), dtype=np.int64)
        for row, s in enumerate(sets):
            y[row, [code[c] for c in s]] = 1
    split_list = None
    if split is not None:
        split_list = [str(s).strip().lower() if s not in (None, "") else "train" for s in split]
    return ProbeLabels(ids, task, y, classes, split_list, source)  # type: ignore[arg-type]


def read_labels(path: str | Path, *, id_column: str = "id", label_column: str = "label",
                split_column: str | None = None, task: str = "auto", sep: str = ";") -> ProbeLabels:
    """Read labels keyed by id from CSV/Parquet: a class, `sep`-separated or list multi-labels, or a number."""
    path = Path(path)
    cols = _read_frame(path)
    for name, opt in ((id_column, "--id-column"), (label_column, "--label-column"), (split_column, "--split-column")):
        if name is not None and name not in cols:
            raise ProbeError(f"labels file {path} has no column {name!r} ({opt}); columns: {', '.join(cols)}")
    return labels_from_columns(cols[id_column], cols[label_column], task=task,
                               split=cols[split_column] if split_column else None, sep=sep, source=str(path))


def labels_from_paths(ids: Sequence[str], paths: Sequence[str | None], source: str = "paths") -> ProbeLabels:
    """Class = name of each file's parent folder; split = a `train`/`val`/`test` folder above it, if any."""
    labels, splits = [], []
    for i, p in zip(ids, paths, strict=True):
        if not p:
            raise ProbeError(f"{source}: item {i!r} has no path to take a label from")
        parts = Path(p).parts
        labels.append(parts[-2])
        found = [s for s in parts[:-2] if s.lower() in ("train", "val", "test")]
        splits.append(found[-1].lower() if found else None)
    has_split = any(s is not None for s in splits)
    return labels_from_columns(ids, labels, task="multiclass", split=splits if has_split else None, source=source)


# ------------------------------------------------------------------------------------- embeddings
@dataclass
class EmbeddingSet:
    """One named embeddings table loaded for probing."""

    name: str
    ids: list[str]
    vectors: np.ndarray
    path: str = ""
    paths: list[str | None] | None = None


def load_embeddings(path: str | Path, name: str | None = None) -> EmbeddingSet:
    """Read an embeddings table (Parquet: id + vector) for probing."""
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"embeddings table {path} does not exist")
    from spectraclip.embeddings import read_embeddings

    table = read_embeddings(path)
    paths = table.columns.get("path") if table.columns else None
    return EmbeddingSet(name or path.stem, [str(i) for i in table.ids], np.asarray(table.vectors, np.float32),
                        str(path), list(paths) if paths is not None else None)


# ---------------------------------------------------------------------------------------- models
def make_estimator(model: str, task: Task, seed: int = 0, n_train: int | None = None):
    """The scikit-learn estimator for `model` on `task` (standardised inputs for linear and k-NN models)."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model == "logistic":
        if task == "regression":
            raise ProbeError("--classifier logistic cannot fit a regression target; use ridge, knn or random-forest")
        clf = LogisticRegression(**LOGISTIC_PARAMS)
        return make_pipeline(StandardScaler(), OneVsRestClassifier(clf) if task == "multilabel" else clf)
    if model == "random-forest":
        cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
        return cls(random_state=seed, **FOREST_PARAMS)
    if model == "knn":
        k = KNN_NEIGHBORS if n_train is None else max(1, min(KNN_NEIGHBORS, n_train))
        cls = KNeighborsRegressor if task == "regression" else KNeighborsClassifier
        return make_pipeline(StandardScaler(), cls(n_neighbors=k))
    if model == "ridge":
        if task == "regression":
            return make_pipeline(StandardScaler(), Ridge(alpha=RIDGE_ALPHA))
        return make_pipeline(StandardScaler(), RidgeClassifier(alpha=RIDGE_ALPHA))
    raise ProbeError(f"--classifier {model!r}: expected one of {', '.join(MODELS)}")


def _deterministic(model: str) -> bool:
    return model != "random-forest"


def score(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metrics of `task` (see `METRICS`)."""
    from sklearn import metrics as m

    if task == "multiclass":
        return {
            "accuracy": float(m.accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(m.balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(m.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    if task == "multilabel":
        return {
            "macro_f1": float(m.f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "micro_f1": float(m.f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "subset_accuracy": float(m.accuracy_score(y_true, y_pred)),
        }
    return {
        "r2": float(m.r2_score(y_true, y_pred)),
        "mae": float(m.mean_absolute_error(y_true, y_pred)),
        "rmse": float(math.sqrt(m.mean_squared_error(y_true, y_pred))),
    }


# -------------------------------------------------------------------------------------- sampling
def _strata(task: Task, y: np.ndarray, n_bins: int = 5) -> np.ndarray:
    """Integer strata for sampling: the class (multiclass) or a quantile bin (regression)."""
    if task == "multiclass":
        return y
    if task == "regression":
        edges = np.unique(np.quantile(y, np.linspace(0, 1, n_bins + 1)[1:-1]))
        return np.searchsorted(edges, y, side="right")
    raise ValueError(task)


def _allocate(counts: np.ndarray, k: int, min_one: bool) -> np.ndarray:
    """Split `k` over strata proportionally to `counts` (at least one each if `min_one`), never over a count."""
    alloc = np.minimum(counts, 1) if min_one else np.zeros_like(counts)
    target = counts / counts.sum() * k
    for _ in range(k - int(alloc.sum())):
        deficit = np.where(alloc < counts, target - alloc, -np.inf)
        alloc[int(np.argmax(deficit))] += 1
    return alloc


def sample_k(task: Task, y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `k` training examples, stratified.

    multiclass: proportional to class frequency with at least one per class when k >= n_classes
    (k < n_classes: k different classes, one example each); regression: proportional over
    quantile bins of the target; multilabel: first one example for each label (rarest label first)
    while k allows, then uniformly at random. Sorted indices into `y`.
    """
    n = len(y)
    if k >= n:
        return np.arange(n)
    if task == "multilabel":
        chosen: list[int] = []
        taken = np.zeros(n, dtype=bool)
        for lab in np.argsort(y.sum(axis=0), kind="stable"):
            if len(chosen) >= k:
                break
            if y[taken, lab].any():  # already covered by an earlier pick
                continue
            cand = np.flatnonzero(y[:, lab].astype(bool) & ~taken)
            if len(cand):
                pick = int(rng.choice(cand))
                chosen.append(pick)
                taken[pick] = True
        rest = k - len(chosen)
        if rest > 0:
            chosen.extend(rng.choice(np.flatnonzero(~taken), size=rest, replace=False).tolist())
        return np.sort(np.array(chosen, dtype=np.int64))
    strata = _strata(task, y)
    groups, codes = np.unique(strata, return_inverse=True)
    counts = np.bincount(codes, minlength=len(groups))
    if task == "multiclass" and k < len(groups):
        alloc = np.zeros_like(counts)
        alloc[rng.choice(len(groups), size=k, replace=False)] = 1
    else:
        alloc = _allocate(counts, k, min_one=task == "multiclass")
    out = [rng.choice(np.flatnonzero(codes == g), size=int(a), replace=False) for g, a in enumerate(alloc) if a]
    return np.sort(np.concatenate(out).astype(np.int64))


def make_split(labels: ProbeLabels, test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_pool, test) index arrays: from the labels' split column when given, else a seeded stratified split.

    With a split column, `test` rows are the test set and every other row (train, val) is the training pool.
    """
    n = len(labels.ids)
    if labels.split is not None:
        is_test = np.array([s == "test" for s in labels.split])
        if not is_test.any():
            raise ProbeError(f"{labels.source or 'labels'}: split column has no 'test' rows")
        if is_test.all():
            raise ProbeError(f"{labels.source or 'labels'}: split column has only 'test' rows")
        return np.flatnonzero(~is_test), np.flatnonzero(is_test)
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    stratify = None
    if labels.task != "multilabel":
        strata = _strata(labels.task, labels.y)
        _, counts = np.unique(strata, return_counts=True)
        n_test = math.ceil(test_size * n) if test_size < 1 else int(test_size)
        if counts.min() >= 2 and n_test >= len(counts) and n - n_test >= len(counts):
            stratify = strata
    train, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


# ------------------------------------------------------------------------------------- the curve
@dataclass
class CurvePoint:
    """Scores at one training-set size: `scores[metric]` has one value per random draw."""

    k: int | None  # requested size (None = all training labels)
    n_train: int
    scores: dict[str, list[float]]
    train_indices: list[list[int]] = field(default_factory=list, repr=False)  # into the train pool

    def mean(self, metric: str) -> float:
        return float(np.mean(self.scores[metric]))

    def std(self, metric: str) -> float:
        return float(np.std(self.scores[metric]))

    def to_dict(self, with_indices: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "k": "all" if self.k is None else self.k,
            "n_train": self.n_train,
            "draws": len(next(iter(self.scores.values()), [])),
            "mean": {m: self.mean(m) for m in self.scores},
            "std": {m: self.std(m) for m in self.scores},
            "scores": self.scores,
        }
        if with_indices:
            d["train_indices"] = self.train_indices
        return d


@dataclass
class ProbeSeries:
    """One label-efficiency curve: an embeddings table probed with one model."""

    name: str
    table: str
    model: str
    points: list[CurvePoint]

    @property
    def full(self) -> CurvePoint | None:
        return next((p for p in self.points if p.k is None), None)


@dataclass
class ProbeResult:
    """Everything one probe run produced; `to_dict()` is the JSON written next to the plot."""

    task: Task
    metrics: tuple[str, ...]
    classes: list[str]
    n_pool: int
    n_test: int
    test_ids: list[str]
    pool_ids: list[str]
    series: list[ProbeSeries]
    config: dict[str, Any]
    skipped_ks: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, with_indices: bool = False) -> dict[str, Any]:
        return {
            "task": self.task,
            "metrics": list(self.metrics),
            "classes": self.classes,
            "n_train_pool": self.n_pool,
            "n_test": self.n_test,
            "config": self.config,
            "skipped_ks": self.skipped_ks,
            "warnings": self.warnings,
            "test_ids": self.test_ids,
            "series": [
                {"name": s.name, "table": s.table, "model": s.model,
                 "points": [p.to_dict(with_indices) for p in s.points]}
                for s in self.series
            ],
        }


def parse_ks(spec: str | Sequence[int | str | None]) -> list[int | None]:
    """`"10,25,all"` -> `[10, 25, None]`; sizes must be >= 2."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[int | None] = []
    for it in items:
        if it is None or (isinstance(it, str) and it.lower() in ("all", "full")):
            out.append(None)
            continue
        try:
            k = int(it)
        except (TypeError, ValueError) as exc:
            raise ProbeError(f"--k {it!r}: expected an integer or 'all'") from exc
        if k < 2:
            raise ProbeError(f"--k {k}: a probe needs at least 2 training examples")
        out.append(k)
    return out


def align(sets: Sequence[EmbeddingSet], labels: ProbeLabels) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Ids present in the labels AND in every table (labels' order), each table's vectors in that order."""
    if not sets:
        raise ProbeError("probe needs at least one embeddings table")
    common = set(labels.ids)
    for s in sets:
        common &= set(s.ids)
    ids = [i for i in labels.ids if i in common]
    notes = []
    for s in sets:
        extra = len(set(s.ids)) - len(ids)
        if extra:
            notes.append(f"{s.name}: {extra} item(s) without a label or missing from another table were left out")
    if len(ids) < 4:
        raise ProbeError(
            f"only {len(ids)} ids are in the labels ({labels.source}) and in every embeddings table "
            f"({', '.join(s.name for s in sets)}); check that the id columns match"
        )
    mats = []
    for s in sets:
        pos = {i: n for n, i in enumerate(s.ids)}
        mats.append(s.vectors[[pos[i] for i in ids]])
    return ids, mats, notes


def run_probe(sets: Sequence[EmbeddingSet], labels: ProbeLabels, *, models: Sequence[str] = ("logistic",),
              ks: str | Sequence[int | str | None] = DEFAULT_KS, draws: int = 5, test_size: float = 0.2, seed: int = 0,
              progress: Callable[[str], None] | None = None) -> ProbeResult:
    """Label-efficiency curves of every (table, model) on one fixed test set with shared training draws.

    For each k (< pool size) `draws` stratified samples of k training examples are drawn with a
    generator seeded by (seed, k, draw); k=None ("all") trains on the whole pool (once for
    deterministic models, `draws` times with different seeds for random forests).
    """
    for m in models:
        if m not in MODELS:
            raise ProbeError(f"--classifier {m!r}: expected one of {', '.join(MODELS)}")
        if m == "logistic" and labels.task == "regression":
            raise ProbeError("--classifier logistic cannot fit a regression target; use ridge, knn or random-forest")
    ids, mats, notes = align(sets, labels)
    lab = labels.subset(ids)
    pool, test = make_split(lab, test_size=test_size, seed=seed)
    y_pool, y_test = lab.y[pool], lab.y[test]
    metrics = METRICS[lab.task]
    want = list(dict.fromkeys(parse_ks(ks))) or [None]
    sizes = [k for k in want if k is not None and k < len(pool)]
    skipped = [k for k in want if k is not None and k >= len(pool)]
    if None in want or skipped:
        sizes.append(None)

    draws_at: dict[int | None, list[np.ndarray]] = {}
    for k in sizes:
        if k is None:
            draws_at[k] = [np.arange(len(pool))]
        else:
            draws_at[k] = [sample_k(lab.task, y_pool, k, np.random.default_rng([seed, k, d])) for d in range(draws)]

    series: list[ProbeSeries] = []
    warnings = list(notes)
    for s, X in zip(sets, mats, strict=True):
        X_pool, X_test = X[pool], X[test]
        for model in models:
            name = s.name if len(models) == 1 else f"{s.name} / {model}"
            points = []
            for k in sizes:
                idx_list = draws_at[k]
                if k is None and not _deterministic(model):
                    idx_list = idx_list * draws
                scores: dict[str, list[float]] = {m: [] for m in metrics}
                for d, idx in enumerate(idx_list):
                    if progress:
                        progress(f"{name}: k={'all' if k is None else k} draw {d + 1}/{len(idx_list)}")
                    y_tr = y_pool[idx]
                    if lab.task == "multiclass" and len(np.unique(y_tr)) < 2:
                        warnings.append(f"{name} k={k} draw {d}: one class only, predicting it")
                        pred = np.full(len(test), y_tr[0])
                    else:
                        est = make_estimator(model, lab.task, seed=seed + d, n_train=len(idx))
                        est.fit(X_pool[idx], y_tr)
                        pred = np.asarray(est.predict(X_test))
                    for m, v in score(lab.task, y_test, pred).items():
                        scores[m].append(v)
                n_train = len(pool) if k is None else len(idx_list[0])
                points.append(CurvePoint(k, n_train, scores, [i.tolist() for i in idx_list]))
            series.append(ProbeSeries(name, s.path or s.name, model, points))

    config = {"models": list(models), "ks": ["all" if k is None else k for k in want], "draws": draws,
              "test_size": test_size, "seed": seed, "labels": labels.source,
              "split": "column" if labels.split is not None else "seeded-stratified",
              "hyperparameters": {"logistic": LOGISTIC_PARAMS, "random-forest": FOREST_PARAMS,
                                  "knn": {"n_neighbors": KNN_NEIGHBORS}, "ridge": {"alpha": RIDGE_ALPHA}}}
    return ProbeResult(lab.task, metrics, lab.classes, len(pool), len(test), [ids[i] for i in test],
                       [ids[i] for i in pool], series, config, skipped, warnings)


# -------------------------------------------------------------------------- per-band statistics
def band_stats_features(pixels: np.ndarray) -> np.ndarray:
    """Per-band mean then per-band std of a `[C, H, W]` array (NaN ignored): a `[2C]` float32 vector."""
    flat = pixels.reshape(pixels.shape[0], -1).astype(np.float64)
    return np.concatenate([np.nanmean(flat, axis=1), np.nanstd(flat, axis=1)]).astype(np.float32)


def baseline_stats_table(paths: Sequence[str | Path], out: str | Path, bands: str | None = None,
                         on_error: Callable[[Path, Exception], None] | None = None,
                         progress: bool = True) -> Path:
    """Write an embeddings table whose vectors are per-band mean and std of each raster (a no-model baseline).
    Ids are those `spectraclip embed` gives the same rasters (path relative to their common folder)."""
    from spectraclip.bands import BandSet
    from spectraclip.embeddings import write_embeddings
    from spectraclip.inference import item_ids
    from spectraclip.io.readers import find_items, iter_samples

    band_set = BandSet.parse(bands) if bands else None
    items = find_items([Path(p) for p in paths])
    id_of = {str(Path(p).resolve()): i for p, i in zip(items, item_ids(items), strict=True)}
    ids, vecs, src, names = [], [], [], None
    it = iter_samples(items, bands=band_set, on_error=on_error)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(items), desc="per-band statistics", unit="item")
    for sample in it:
        if names is None:
            names = sample.bands.to_list()
        elif sample.bands.to_list() != names:
            sample = sample.select(names)
        ids.append(id_of.get(str(Path(sample.path).resolve()), sample.id) if sample.path else sample.id)
        vecs.append(band_stats_features(sample.pixels))
        src.append(sample.path)
    if not vecs:
        raise ProbeError(f"no readable rasters in {', '.join(map(str, paths))} for the per-band statistics baseline")
    write_embeddings(out, ids, np.stack(vecs), columns={"path": src})
    return Path(out)
