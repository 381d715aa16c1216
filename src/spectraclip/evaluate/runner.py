"""Evaluate models x datasets x template sets x tasks; images are encoded once per (model, dataset) and
cached as an embeddings table under the output folder, so re-running with other templates is cheap."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.bands import MissingBandError
from spectraclip.data.base import LabelledDataset
from spectraclip.embeddings import identity_metadata, read_embeddings
from spectraclip.errors import SpectraclipError
from spectraclip.evaluate import metrics as single
from spectraclip.evaluate import multilabel as multi
from spectraclip.evaluate import retrieval as retr
from spectraclip.identity import Fingerprints, check_fingerprints
from spectraclip.zeroshot.classifier import (
    class_text_embeddings,
    cosine_logits,
    default_templates,
    logit_scale,
    softmax,
)
from spectraclip.zeroshot.templates import TemplateSet, load_templates

log = logging.getLogger(__name__)

TASKS = ("zeroshot", "multilabel", "retrieval")
NEGATIVE_PROMPT = "other features"


class EvaluationError(SpectraclipError, ValueError):
    """A configuration the evaluator cannot run (unknown task, no models/datasets...)."""


class BandMismatchError(MissingBandError):
    """A dataset that lacks bands a model needs; raised before any image is encoded."""

    def __init__(self, model: str, dataset: str, missing: Sequence[str], available: Sequence[str]) -> None:
        super().__init__(missing, available, where=f"dataset {dataset} (needed by model {model})")
        self.model, self.dataset = model, dataset


@dataclass
class ModelSpec:
    """A model to load (`name` and/or `checkpoint`), or an already built one in `model`."""

    name: str | None = None
    checkpoint: str | None = None
    label: str | None = None
    model: Any = None
    bands: str | None = None  # build/extend the model for these bands (tiny/random or RGB models)

    def display(self) -> str:
        if self.label:
            return self.label
        if self.checkpoint:
            return Path(str(self.checkpoint).rstrip("/")).name if not str(self.checkpoint).startswith("hf-hub:") \
                else str(self.checkpoint)
        return self.name or "model"


@dataclass
class DatasetSpec:
    """A registered dataset name and root (plus split and extra keyword arguments), or a built dataset."""

    name: str | None = None
    root: str | None = None
    split: str = "test"
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    dataset: LabelledDataset | None = None

    def open(self) -> LabelledDataset:
        if self.dataset is not None:
            return self.dataset
        from spectraclip.data.registry import load_dataset, needs_root

        if not self.name or (not self.root and needs_root(self.name)):
            raise EvaluationError("a dataset needs a name and a root folder")
        return load_dataset(self.name, self.root, split=self.split, **self.kwargs)


@dataclass
class EvaluationResult:
    """Everything one run produced: the JSON-ready results and the files written."""

    results: dict[str, Any]
    files: list[Path]
    output_dir: Path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _model_provenance(spec: ModelSpec, model: Any, fingerprints: Fingerprints) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    out: dict[str, Any] = {"label": spec.display(), "name": spec.name, "checkpoint": spec.checkpoint,
                           "fingerprint": fingerprints.model, "preprocessing_fingerprint": fingerprints.preprocessing}
    if cfg is not None:
        out.update({"arch": getattr(cfg, "arch", None), "bands": list(getattr(cfg, "bands", []) or []),
                    "image_size": getattr(cfg, "image_size", None),
                    "provenance": getattr(cfg, "provenance", {})})
    return out


def check_bands(model_label: str, model: Any, dataset_label: str, dataset: LabelledDataset) -> None:
    """Raise BandMismatchError naming the bands `model` needs that `dataset` lacks."""
    need = model.bands
    missing = dataset.bands.missing(need.names)
    if missing:
        raise BandMismatchError(model_label, dataset_label, missing, dataset.bands.names)


def encode_cached(model: Any, dataset: LabelledDataset, cache_path: Path, key: dict[str, Any], *,
                  batch_size: int = 32, num_workers: int = 0, device: str = "cpu", progress: bool = True,
                  precision: str | None = "fp32") -> tuple[list[str], np.ndarray, list[tuple[str, str]], bool]:
    """(ids, vectors, failed, cache_hit): read the embeddings table when its key matches, else encode."""
    from spectraclip.embeddings import EmbeddingsTableError, write_embeddings

    key_text = json.dumps(key, sort_keys=True)
    if cache_path.is_file():
        try:
            table = read_embeddings(cache_path)
            if table.metadata.get("eval_cache_key") == json.loads(key_text):
                failed = [tuple(x) for x in table.metadata.get("eval_failed", [])]
                return table.ids, table.vectors, failed, True  # type: ignore[return-value]
        except EmbeddingsTableError as exc:
            log.warning("ignoring unreadable embedding cache %s: %s", cache_path, exc)
    from spectraclip.inference import encode_images

    enc = encode_images(model, dataset, batch_size=batch_size, num_workers=num_workers, device=device,
                        progress=progress, on_error=lambda where, msg: log.warning("skipped %s: %s", where, msg),
                        precision=precision)
    columns = enc.columns()
    write_embeddings(cache_path, enc.ids, enc.vectors, columns,
                     metadata={"eval_cache_key": json.loads(key_text), "eval_failed": [list(f) for f in enc.failed],
                               "bands": ",".join(model.bands.names), **identity_metadata(model)})
    return enc.ids, enc.vectors, list(enc.failed), False


def cache_key(model: Any, dataset: LabelledDataset) -> dict[str, Any]:
    """What the cached embeddings of (`model`, `dataset`) depend on: both fingerprints, the dataset and its ids."""
    fps = Fingerprints.of(model)
    desc = dataset.describe()
    return {"model": fps.model, "preprocessing": fps.preprocessing, "dataset": desc["name"],
            "root": str(Path(desc["root"]).resolve()), "split": desc["split"], "bands": desc["bands"],
            "ids": hashlib.sha256("\n".join(dataset.ids).encode()).hexdigest()[:16]}


def table_for_dataset(path: str | Path, model: Any, dataset: LabelledDataset, *, model_label: str = "the model given",
                      dataset_label: str = "the dataset", force: bool = False
                      ) -> tuple[list[str], np.ndarray, list[tuple[str, str]], Fingerprints | None]:
    """(dataset ids, vectors, failed, recorded fingerprints) of an existing table's rows that are items of `dataset`.

    The table must come from `model`'s embedding space (fingerprints; `force` skips the check). Rows
    match items by id, else by their `path` column, so a table of `spectraclip embed` over the
    dataset's folder matches too; no image is read.
    """
    table = read_embeddings(path)
    check_fingerprints(table.fingerprints, model, str(path), force=force, model_label=model_label)
    by_id = {it.id: it.id for it in dataset.items}
    by_path = {str(Path(it.path).resolve()): it.id for it in dataset.items}
    paths = table.columns.get("path") or [None] * len(table)
    rows, ids, seen = [], [], set()
    for n, (id_, p) in enumerate(zip(table.ids, paths, strict=True)):
        hit = by_id.get(id_) or (by_path.get(str(Path(p).resolve())) if p else None)
        if hit is not None and hit not in seen:
            seen.add(hit)
            rows.append(n)
            ids.append(hit)
    if not rows:
        example = ", ".join(table.ids[:3])
        raise EvaluationError(f"{path}: none of its {len(table)} rows (ids such as {example}) is an item of "
                              f"{dataset_label} ({dataset.root}, split {dataset.split}) by id or path")
    failed = [tuple(x) for x in table.metadata.get("eval_failed", table.metadata.get("failed", [])) or []]
    return ids, table.vectors[rows], failed, table.fingerprints  # type: ignore[return-value]


def _tasks_for(dataset: LabelledDataset, tasks: Sequence[str] | None) -> list[str]:
    if not tasks:
        return ["multilabel", "retrieval"] if dataset.multilabel else ["zeroshot", "retrieval"]
    out = []
    for t in tasks:
        if t not in TASKS:
            raise EvaluationError(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
        if t == "zeroshot" and dataset.multilabel:
            t = "multilabel"  # zero-shot on a multi-label dataset is the multi-label task
        if t not in out:
            out.append(t)
    return out


def _text_embeddings(model: Any, names: list[str], ts: TemplateSet) -> np.ndarray:
    return class_text_embeddings(model, names, ts).numpy().astype(np.float64)


def evaluate(models: Sequence[ModelSpec], datasets: Sequence[DatasetSpec],
             templates: Sequence[str | TemplateSet] | None = None, tasks: Sequence[str] | None = None,
             output_dir: str | Path = "evaluation", *, batch_size: int = 32, num_workers: int = 0,
             device: str = "cpu", progress: bool = True, retrieval_k: int = 100, empty: str = "skip",
             negative_prompt: str = NEGATIVE_PROMPT, plots: bool = True, embedding_map: str = "auto",
             command: str | None = None, log_fn: Callable[[str], None] | None = None,
             embeddings: str | Path | None = None, force: bool = False,
             precision: str | None = "fp32") -> EvaluationResult:
    """Run every (model, dataset, template set, task) and write results.json/.csv/.md and plots.

    With `embeddings` (an existing table), its vectors stand for the images of the one dataset and the one
    model encodes only text; the table's fingerprints must match that model unless `force`. `precision`
    is the image encoder's mode (part of the embedding cache key). `templates` None (the default) gives each
    model the template set it declares (`zeroshot.default_templates`); the results record which, and why.
    Scores are `logit_scale(model) x cosine` (the package's one logit-scale rule; ranks and accuracy do not
    depend on it), and each zero-shot run reports the expected calibration error of their softmax.
    """
    from spectraclip.evaluate import report
    from spectraclip.models.precision import resolve_precision

    say = log_fn or (lambda msg: log.info(msg))
    if not models:
        raise EvaluationError("no model to evaluate")
    if not datasets:
        raise EvaluationError("no dataset to evaluate on")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    given_sets = [load_templates(t) for t in templates] if templates else None
    if empty not in retr.EMPTY_DEFINITION:
        raise EvaluationError(f"--empty must be one of {', '.join(retr.EMPTY_DEFINITION)}")
    if embeddings is not None and (len(models) != 1 or len(datasets) != 1):
        raise EvaluationError(f"--embeddings {embeddings}: give exactly one model (its text tower scores the "
                              f"table) and one dataset (its labels), not {len(models)} and {len(datasets)}")

    # Open datasets and load models first, and check every band pairing before encoding anything.
    opened = [(spec.label or (spec.name or (spec.dataset.name if spec.dataset else "dataset")) +
               ("" if spec.split == "test" else f"-{spec.split}"), spec.open()) for spec in datasets]
    loaded = []
    for spec in models:
        if spec.model is not None:
            model = spec.model
        else:
            from spectraclip.models.loading import load_model

            model = load_model(spec.name, spec.checkpoint, device=device, bands=spec.bands)
        loaded.append((spec, model))
    for spec, model in loaded:
        for dlabel, ds in opened:
            if embeddings is None:  # a given table is checked by its fingerprints; no image is read
                check_bands(spec.display(), model, dlabel, ds)

    runs: list[dict[str, Any]] = []
    provenance: dict[str, Any] = {"models": {}, "datasets": {}, "templates": {}}
    embeddings_for_plots: list[dict[str, Any]] = []
    caches: list[Path] = []
    prediction_files: list[Path] = []
    for dlabel, ds in opened:
        provenance["datasets"][dlabel] = ds.describe()
    seen_labels: dict[str, int] = {}
    for spec, model in loaded:
        mlabel = spec.display()
        if mlabel in seen_labels:
            seen_labels[mlabel] += 1
            mlabel = f"{mlabel}-{seen_labels[mlabel]}"
        else:
            seen_labels[mlabel] = 0
        provenance["models"][mlabel] = _model_provenance(spec, model, Fingerprints.of(model))
        if given_sets is not None:
            choices = [(ts, "given") for ts in given_sets]
        else:
            choice = default_templates(model)
            choices = [(choice.templates, choice.origin)]
            say(f"{mlabel}: templates {choice.describe()}")
        for ts, origin in choices:
            provenance["templates"][ts.name] = {**ts.to_dict(), "origin": origin}
        scale = logit_scale(model)
        provenance["models"][mlabel]["logit_scale"] = scale
        for dlabel, ds in opened:
            if embeddings is not None:
                cache = Path(embeddings)
                ids, vectors, failed, recorded = table_for_dataset(cache, model, ds, model_label=mlabel,
                                                                   dataset_label=dlabel, force=force)
                hit = True
                provenance["embeddings"] = {"table": str(cache), "dataset": dlabel, "rows_matched": len(ids),
                                            "fingerprints": recorded.to_metadata() if recorded else None,
                                            "forced": force}
                say(f"read {len(ids)} embeddings of {dlabel} ({len(ds)} images) from {cache}")
            else:
                cache = out / "embeddings" / f"{_slug(mlabel)}__{_slug(dlabel)}.parquet"
                say(f"encoding {dlabel} ({len(ds)} images) with {mlabel}")
                mode = resolve_precision(precision, device, batch_size, model=model)
                provenance["models"][mlabel]["precision"] = mode
                key = {**cache_key(model, ds), "precision": mode}
                ids, vectors, failed, hit = encode_cached(model, ds, cache, key, batch_size=batch_size,
                                                          num_workers=num_workers, device=device, progress=progress,
                                                          precision=mode)
                caches.append(cache)
                say(f"  {'reused cached' if hit else 'wrote'} embeddings {cache}"
                    + (f"; {len(failed)} image(s) skipped" if failed else ""))
            by_id = {it.id: it for it in ds.items}
            keep = [i for i, x in enumerate(ids) if x in by_id]
            ids = [ids[i] for i in keep]
            vectors = np.asarray(vectors, dtype=np.float64)[keep]
            cls_index = {c: k for k, c in enumerate(ds.classes)}
            onehot = np.zeros((len(ids), len(ds.classes)), dtype=np.int64)
            for n, x in enumerate(ids):
                onehot[n, [cls_index[c] for c in by_id[x].labels]] = 1
            embeddings_for_plots.append({"model": mlabel, "dataset": dlabel, "vectors": vectors,
                                         "labels": [by_id[x].labels[0] for x in ids], "classes": ds.classes})
            for ts, origin in choices:
                names = ts.prompt_names(ds)  # the set's class wording for this dataset, else the dataset's
                class_emb = _text_embeddings(model, names, ts)
                scores = cosine_logits(vectors, class_emb, scale)
                for task in _tasks_for(ds, tasks):
                    base = {"model": mlabel, "dataset": dlabel, "templates": ts.name, "task": task,
                            "n_images": len(ids), "n_failed": len(failed), "embeddings": str(cache),
                            "embeddings_cached": hit, "embeddings_given": embeddings is not None,
                            "templates_origin": origin, "logit_scale": scale,
                            "failed": [list(f) for f in failed[:100]], "prompt_names": names}
                    if task == "zeroshot":
                        truth = onehot.argmax(1)
                        base["metrics"] = single.classification_metrics(scores, truth, ds.classes)
                        base["metrics"]["calibration"] = single.expected_calibration_error(softmax(scores), truth)
                        pred_file = out / "predictions" / f"{_slug(mlabel)}__{_slug(dlabel)}__{_slug(ts.name)}.csv"
                        single.write_predictions(pred_file, ids, scores, truth, ds.classes)
                        base["predictions"] = str(pred_file)
                        prediction_files.append(pred_file)
                    elif task == "multilabel":
                        neg = _text_embeddings(model, [negative_prompt], ts)
                        neg_scores = cosine_logits(vectors, neg, scale)[:, 0]
                        base["metrics"] = multi.multilabel_metrics(scores, onehot, ds.classes, neg_scores)
                        base["negative_prompt"] = negative_prompt
                    else:
                        base["metrics"] = retr.retrieval_metrics(
                            scores.T, onehot.T.astype(bool), ds.classes, k=retrieval_k,
                            recall_ks=sorted({1, 5, 10, retrieval_k}), empty=empty)
                    runs.append(base)
    results: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "software": report.software_versions(),
        "definitions": {
            "zeroshot": {**single.DEFINITIONS, "class_embedding": "mean of the L2-normalised embeddings of "
                         "every template filled with the class's wording (run's prompt_names: the template set's for "
                         "this dataset if it has some, else the dataset's), renormalised; scores are "
                         "s x cosine(image, class) with s the model's logit scale (exp of its learned logit_scale, "
                         "at most 100; 100 without one): the run's logit_scale",
                         "calibration": "expected calibration error of softmax(scores): 15 equal-width bins of the "
                         "top-1 probability, sum of bin share x |bin accuracy - bin mean probability| (Guo et al. "
                         "2017)"},
            "multilabel": multi.DEFINITIONS,
            "retrieval": {**retr.AP_DEFINITIONS, "recall": retr.RECALL_DEFINITION,
                          "queries": "each class's template-ensemble embedding queries all images; an image "
                          "is relevant when it carries that class", "empty": retr.EMPTY_DEFINITION[empty]},
        },
        "settings": {"retrieval_k": retrieval_k, "empty": empty, "negative_prompt": negative_prompt,
                     "batch_size": batch_size, "device": device,
                     "precision": precision or "auto"},  # the mode each model ran in: provenance.models
        "provenance": provenance,
        "runs": runs,
    }
    files: list[Path] = []
    if plots:
        from spectraclip.evaluate import plots as plotting

        files += plotting.write_plots(results, embeddings_for_plots, out / "plots", embedding_map=embedding_map)
    files = report.write_reports(results, out) + files + caches + prediction_files
    return EvaluationResult(results, files, out)


def pair_models(names: Sequence[str], checkpoints: Sequence[str], bands: str | None = None) -> list[ModelSpec]:
    """Model specs from repeated --model/--checkpoint options: zipped when counts match, one name shared by
    several checkpoints, or checkpoints alone (bundles describe themselves)."""
    names, checkpoints = list(names), list(checkpoints)
    if not names and not checkpoints:
        raise EvaluationError("give at least one --model NAME or --checkpoint PATH")
    if not checkpoints:
        return [ModelSpec(n, None, bands=bands) for n in names]
    if not names:
        return [ModelSpec(None, c, bands=bands) for c in checkpoints]
    if len(names) == len(checkpoints):
        return [ModelSpec(n, c, bands=bands) for n, c in zip(names, checkpoints, strict=True)]
    if len(names) == 1:
        return [ModelSpec(names[0], c, bands=bands) for c in checkpoints]
    raise EvaluationError(f"{len(names)} --model and {len(checkpoints)} --checkpoint options: give one "
                          "checkpoint per model, one model for all checkpoints, or checkpoints alone")


def pair_datasets(names: Sequence[str], roots: Sequence[str], split: str = "test") -> list[DatasetSpec]:
    """Dataset specs from repeated --dataset/--root options (one root per dataset, in order)."""
    from spectraclip.data.registry import needs_root

    if not names:
        raise EvaluationError("give at least one --dataset NAME with its --root DIR")
    rooted = [n for n in names if needs_root(n)]
    if len(rooted) != len(roots):
        raise EvaluationError(f"{len(rooted)} --dataset needing a root but {len(roots)} --root options: give one "
                              "root per dataset, in order (embedded datasets such as eurosat-ms-mini take none)")
    it = iter(roots)
    return [DatasetSpec(n, next(it) if needs_root(n) else None, split) for n in names]


def headline_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, float | None]]:
    """(model, dataset, templates, task, metric, value) for the headline numbers, for terminal summaries."""
    from spectraclip.evaluate.report import HEADLINES, lookup

    k = results.get("settings", {}).get("retrieval_k", 100)
    rows = []
    for run in results["runs"]:
        for task, path, _ in HEADLINES:
            if task == run["task"]:
                path = path.format(k=k)
                v = lookup(run["metrics"], path)
                if isinstance(v, (int, float)) or v is None:
                    rows.append((run["model"], run["dataset"], run["templates"], task, path, v))
    return rows
