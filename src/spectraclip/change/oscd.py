"""`spectraclip evaluate --dataset oscd --root DIR`: change detection on OSCD's labelled cities.

Per city and pooled over the cities (sums of pixel counts): precision, recall, F1 and IoU of the change
class, for three methods computed in one run on the same pixels (the known pixels of each mask, on the first
date's 10 m grid):
- `cva-otsu`: the classic baseline: change vector analysis on all bands resampled to 10 m, each band
  standardised over both dates together, thresholded by Otsu;
- `change` (unsupervised): `spectraclip change`'s score and Otsu threshold (the rule in `change.scene`);
- `change-probe` (few-shot, leave one city out): the pixel probe (gradient boosting) fitted on the other
  cities' masks, its threshold chosen by cross-validation over those training cities only;
- `change-cnn` (few-shot, leave one city out): the Siamese change network (`change.cnn`) trained on the
  other cities, its threshold likewise from out-of-scene predictions of those training cities only.
Written like the other evaluations: results.json, results.csv, results.md and quicklooks/*.png.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import Resampling, reproject

from spectraclip.change.labels import LabelledPair, find_pairs, read_change_mask
from spectraclip.change.scene import DEFAULT_RULE, RULES
from spectraclip.evaluate.reference import confusion_counts, scores_from_counts
from spectraclip.io.atomic import atomic_open

METHODS = ("cva-otsu", "change", "change-probe", "change-cnn")
PROBE_METHODS = {"gbm": "change-probe", "cnn": "change-cnn"}
REFERENCE = ("Daudt, Le Saux, Boulch: Fully Convolutional Siamese Networks for Change Detection, ICIP 2018 "
             "(FC-EF, FC-Siam-conc, FC-Siam-diff; supervised, trained on OSCD's 14 training cities, reported on "
             "its 10 test cities)")


def counts(pred: np.ndarray, truth: np.ndarray, known: np.ndarray) -> dict[str, int]:
    """Pixel counts of the change class over the known pixels (the reference scorer's `confusion_counts`)."""
    cm = confusion_counts(pred, truth, known, 2)
    return {"tp": int(cm[1, 1]), "fp": int(cm[0, 1]), "fn": int(cm[1, 0]), "tn": int(cm[0, 0])}


def scores(c: dict[str, int]) -> dict[str, float | None]:
    """Precision, recall, F1 and IoU of the change class from counts (None where undefined): the reference
    scorer's `scores_from_counts` for class 1 of the two-class confusion matrix."""
    s = scores_from_counts(np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], np.int64))[1]
    return {k: (None if np.isnan(s[k]) else s[k]) for k in ("precision", "recall", "f1", "iou")}


def _read_on_grid(folder: Path, ref: tuple[Any, Any, int, int]) -> tuple[np.ndarray, list[str]]:
    from spectraclip.io.scene import open_scene

    scene = open_scene(folder)
    crs, transform, h, w = ref
    out = np.zeros((len(scene.sources), h, w), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for i, src in enumerate(scene.sources.values()):
            with rasterio.open(src.path) as ds:
                reproject(ds.read(src.index).astype(np.float32), out[i], src_transform=ds.transform,
                          src_crs=ds.crs, dst_transform=transform, dst_crs=crs, resampling=Resampling.bilinear)
    return out, list(scene.sources)


def cva_otsu(before: Path, after: Path) -> np.ndarray:
    """The baseline's change mask on BEFORE's 10 m grid: CVA on all bands both dates share, resampled to 10 m
    (bilinear), each band standardised over both dates together, thresholded by Otsu (256 bins)."""
    from spectraclip.change.scene import otsu_threshold
    from spectraclip.io.scene import open_scene

    sb = open_scene(before)
    ref = (sb.crs, sb.affine, sb.height, sb.width)
    a, bands_a = _read_on_grid(before, ref)
    b, bands_b = _read_on_grid(after, ref)
    common = [x for x in bands_a if x in bands_b]
    a = a[[bands_a.index(x) for x in common]]
    b = b[[bands_b.index(x) for x in common]]
    both = np.concatenate([a, b], axis=1)
    mean, std = both.mean((1, 2), keepdims=True), np.maximum(both.std((1, 2), keepdims=True), 1e-6)
    cva = np.sqrt((((b - mean) / std - (a - mean) / std) ** 2).sum(0))
    return cva > otsu_threshold(cva)


def _on_label_grid(res, band: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Band `band` of a change map placed on BEFORE's full grid (the map may cover only the intersection)."""
    with rasterio.open(res.path) as ds:
        v = ds.read(band)
    full = np.full(shape, np.nan, np.float32)
    r0, c0 = res.grid.offset
    full[r0:r0 + v.shape[0], c0:c0 + v.shape[1]] = v
    return full, np.isfinite(full)


def evaluate_oscd(model: Any, root: str | Path, output_dir: str | Path = "evaluation", *,
                  cities: Sequence[str] | None = None, few_shot: bool = True, tile: int | None = None,
                  stride: int | None = None, precision: str | None = "fp32", batch_size: int = 32,
                  device: str = "cpu", progress: bool = False, model_label: str = "model",
                  command: str | None = None, log_fn: Callable[[str], None] | None = None,
                  probes: Sequence[str] = ("gbm", "cnn"), cnn_config: Any = None) -> dict[str, Any]:
    """Evaluate `model` on the labelled cities under `root` (OSCD layout); returns the results dict. With
    `few_shot`, each probe kind of `probes` (gbm: the pixel probe, cnn: the change network with `cnn_config`)
    is trained on the other cities and maps the city through `change_scene`."""
    from spectraclip.change.cnn import CnnConfig, fit_cnn_probe
    from spectraclip.change.features import feature_names
    from spectraclip.change.probe import fit_change_probe
    from spectraclip.change.quicklook import change_quicklook
    from spectraclip.change.scene import change_scene, labelled_arrays
    from spectraclip.evaluate.report import software_versions

    say = log_fn or (lambda m: None)
    out = Path(output_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    (out / "quicklooks").mkdir(parents=True, exist_ok=True)
    pairs: list[LabelledPair] = find_pairs(root, list(cities) if cities else None)
    notes: list[str] = []
    masks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for p in pairs:
        sb = _scene(p.before)
        masks[p.name] = read_change_mask(p.labels, (sb.height, sb.width))
        if not masks[p.name][0].any():
            notes.append(f"{p.name}: its change mask has no change pixel: precision/F1 of the change class are "
                         "undefined there (the city still counts in the pooled sums)")
    probes = [k for k in probes if k in PROBE_METHODS] if few_shot else []
    methods = [m for m in METHODS if m in ("cva-otsu", "change") or m in {PROBE_METHODS[k] for k in probes}]
    samples, arrays = {}, {}
    cfg = cnn_config or CnnConfig()
    if "cnn" in probes:
        for p in pairs:
            arrays[p.name] = labelled_arrays(model, p.before, p.after, p.labels, name=p.name, indices=cfg.indices,
                                             cloud_mask="none")
    if "gbm" in probes:
        for p in pairs:
            say(f"sampling labelled pixels of {p.name}")
            samples[p.name] = _cached_samples(out / "cache", model, p, tile=tile, stride=stride, precision=precision,
                                              batch_size=batch_size, device=device)
    per_city: dict[str, dict[str, Any]] = {}
    rule_counts: dict[str, dict[str, dict[str, int]]] = {}
    totals = {m: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for m in METHODS}
    names = feature_names(list(model.bands.names))
    for p in pairs:
        change, known = masks[p.name]
        row: dict[str, Any] = {"change_share": float(change[known].mean()), "pixels": int(known.sum())}
        fitted: dict[str, Any] = {}
        if "gbm" in probes:
            fitted["gbm"] = fit_change_probe([samples[o.name] for o in pairs if o.name != p.name], names)
            row["probe"] = fitted["gbm"].describe()
        if "cnn" in probes:
            say(f"training the change network on the {len(pairs) - 1} other cities")
            fitted["cnn"] = fit_cnn_probe([arrays[o.name] for o in pairs if o.name != p.name], cfg)
            row["cnn"] = fitted["cnn"].describe()
            say(f"  trained in {fitted['cnn'].train_seconds:.0f} s, threshold {fitted['cnn'].threshold:.2f}")
        # the first map keeps its raw channels (the unsupervised rules); the change network's map is the one shown
        kinds = sorted(fitted, key=lambda k: k != "cnn") or [None]
        preds = {"cva-otsu": cva_otsu(p.before, p.after)}
        res = None
        for kind in kinds:
            probe = fitted.get(kind) if kind else None
            say(f"mapping {p.name}" + (f" ({kind} probe trained on {len(pairs) - 1} other cities)" if probe else ""))
            suffix = "" if res is None else f".{kind}"
            r = change_scene(model, p.before, p.after, out / "maps" / f"{p.name}{suffix}.tif", probe=probe,
                             tile=tile, stride=stride, precision=precision, batch_size=batch_size, device=device,
                             progress=progress, vector=None, quicklook=False, keep_raw=res is None,
                             cloud_mask="none")  # the labels cover every pixel: scored unmasked
            if probe is not None:
                flag, _ = _on_label_grid(r, 2, change.shape)
                preds[PROBE_METHODS[kind]] = np.nan_to_num(flag) > 0.5
            res = res or r
        assert res is not None
        rule_counts[p.name] = _rule_counts(res, change, known)
        row["grid_notes"] = res.notes
        row["coverage"] = float(np.isfinite(_on_label_grid(res, 1, change.shape)[0])[known].mean())
        row["score_threshold"] = res.extra["score_threshold"]
        for m, pred in preds.items():
            c = counts(pred, change, known)
            for k in c:
                totals[m][k] += c[k]
            row[m] = {**c, **scores(c), "predicted_share": float(pred[known].mean())}
        per_city[p.name] = row
        ql = change_quicklook(res.grid, res.path, out / "quicklooks" / f"{p.name}.png", truth=change[
            res.grid.offset[0]:res.grid.offset[0] + res.grid.before.height,
            res.grid.offset[1]:res.grid.offset[1] + res.grid.before.width],
            title=f"{p.name}: {model_label}"
                  f"{f' ({kinds[0]} probe, leave-one-city-out)' if kinds[0] else ''}")
        row["quicklook"] = str(ql)
        say(f"  {p.name}: " + ", ".join(f"{m} F1 {_fmt(row[m]['f1'])}" for m in preds) + "; rules: " + ", ".join(
            f"{k} {_fmt(scores(c)['f1'])}" for k, c in rule_counts[p.name].items()))
        Path(res.extra["raw"]).unlink(missing_ok=True)
    # the unsupervised rule of each city: the one with the best pooled F1 over the other cities
    selected: dict[str, str] = {}
    for p in pairs:
        others = [o.name for o in pairs if o.name != p.name] or [p.name]
        best = max(RULES, key=lambda r: scores(_sum([rule_counts[o][r.name] for o in others]))["f1"] or -1.0)
        selected[p.name] = best.name
        c = rule_counts[p.name][best.name]
        for k in c:
            totals["change"][k] += c[k]
        per_city[p.name]["change"] = {**c, **scores(c), "rule": best.name,
                                      "predicted_share": (c["tp"] + c["fp"]) / max(1, per_city[p.name]["pixels"])}
    rules_in_sample = {r.name: {"pooled_f1": scores(_sum([rule_counts[p.name][r.name] for p in pairs]))["f1"],
                                "per_city_f1": {p.name: scores(rule_counts[p.name][r.name])["f1"] for p in pairs}}
                       for r in RULES}
    pooled = {m: {**totals[m], **scores(totals[m])} for m in methods}
    curve = None
    if "gbm" in probes and len(pairs) > 1:
        say("label-efficiency curve (probes on a share of the training cities' labelled pixels)")
        curve = label_efficiency(samples, names)
    order = list(METHODS)
    per_city = {c: {**{k: v for k, v in row.items() if k not in order}, **{m: row[m] for m in order if m in row}}
                for c, row in per_city.items()}
    results = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "command": command,
        "software": software_versions(), "dataset": "oscd", "root": str(Path(root).resolve()),
        "model": model_label, "cities": [p.name for p in pairs],
        "definitions": {
            "metrics": "precision, recall, F1 and IoU of the change class (mask value 2) over the pixels the mask "
                       "labels (1 or 2), on the first date's 10 m grid; pooled = from the sums of the cities' counts",
            "cva-otsu": cva_otsu.__doc__, "change": "spectraclip change, unsupervised: score = (1 - w) z_cva + w "
            "(z_window + z_token)/2 with robust per-scene z-scores, thresholded by Otsu or twice-Otsu; the rule "
            "(w, method) of each city is the one with the best pooled F1 over the other cities (see docs/change.md)",
            "change-probe": "spectraclip change --train-labels --probe gbm, leave one city out: gradient-boosted "
                            "pixel probe on bi-temporal features, trained on the other cities; threshold by grouped "
                            "CV on them",
            "change-cnn": "spectraclip change --train-labels --probe cnn, leave one city out: FC-Siam-diff-like "
                          "change network on both dates' standardised bands (and NDVI/NDBI/MNDWI), trained on the "
                          "other cities; threshold and per-scene cap on the flagged share F1-best on out-of-scene "
                          "predictions of those cities (inner folds)",
            "reference": REFERENCE},
        "settings": {"tile": tile or model.image_size, "stride": stride, "precision": precision,
                     "few_shot": few_shot, "probes": list(probes),
                     "cnn_config": asdict(cfg) if "cnn" in probes else None},
        "per_city": per_city, "pooled": pooled, "notes": notes, "selected_rules": selected,
        "rules_in_sample": rules_in_sample, "default_rule": DEFAULT_RULE.name, "label_efficiency": curve,
    }
    _write(out, results)
    return results


def _cached_samples(folder: Path, model: Any, p: LabelledPair, **kw: Any):
    """The probe's training pixels of one city, cached under `folder` (keyed by model, files and settings)."""
    from spectraclip.change.probe import MAX_PER_SCENE, NEGATIVE_RATE, PixelSamples
    from spectraclip.change.scene import labelled_samples
    from spectraclip.identity import Fingerprints

    key = json.dumps({**Fingerprints.of(model).to_metadata(), "city": p.name, "before": str(p.before.resolve()),
                      "labels": str(p.labels.resolve()), "mtime": p.labels.stat().st_mtime, "rate": NEGATIVE_RATE,
                      "max": MAX_PER_SCENE, "version": 1, **{k: str(v) for k, v in kw.items()}}, sort_keys=True)
    path = folder / f"{p.name}.samples.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return PixelSamples(p.name, z["x"], z["y"], z["w"], int(z["n"][0]), int(z["n"][1]))
    s = labelled_samples(model, p.before, p.after, p.labels, name=p.name, cloud_mask="none", **kw)
    folder.mkdir(parents=True, exist_ok=True)
    from spectraclip.io.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=np.array(key), x=s.x, y=s.y, w=s.w, n=np.array([s.n_change_pixels, s.n_pixels]))
    return s


LABEL_FRACTIONS: tuple[float, ...] = (0.01, 0.1, 1.0)


def label_efficiency(samples: dict[str, Any], features: Sequence[str],
                     fractions: Sequence[float] = LABEL_FRACTIONS, seed: int = 0) -> dict[str, Any]:
    """F1 of the leave-one-city-out probe against the share of each training city's labelled pixels it gets
    (the label-efficiency curve of seed 001, for change), estimated on the held-out city's sampled pixels
    (every change pixel, the others weighted back to their frequency); pooled over the cities."""
    from spectraclip.change.probe import PixelSamples, fit_change_probe

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"fractions": list(fractions), "pooled_f1": [], "labelled_pixels": [],
                           "definition": label_efficiency.__doc__}
    for frac in fractions:
        tp = fp = fn = 0.0
        n_lab = []
        for held, test in samples.items():
            train = []
            for name, s in samples.items():
                if name == held:
                    continue
                keep = rng.random(len(s.y)) < frac if frac < 1 else np.ones(len(s.y), bool)
                if not keep.any():
                    continue
                train.append(PixelSamples(name, s.x[keep], s.y[keep], s.w[keep] / frac))
            n_lab.append(sum(len(t.y) for t in train))
            if not any(t.y.any() for t in train):
                fn += float(test.w[test.y].sum())
                continue
            probe = fit_change_probe(train, features)
            pred = probe.predict_proba(test.x) > probe.threshold
            tp += float(test.w[pred & test.y].sum())
            fp += float(test.w[pred & ~test.y].sum())
            fn += float(test.w[~pred & test.y].sum())
        out["pooled_f1"].append(2 * tp / max(2 * tp + fp + fn, 1e-12))
        out["labelled_pixels"].append(int(np.mean(n_lab)))
    return out


def _sum(cs: Sequence[dict[str, int]]) -> dict[str, int]:
    return {k: sum(c[k] for c in cs) for k in ("tp", "fp", "fn", "tn")}


def _rule_counts(res, change: np.ndarray, known: np.ndarray) -> dict[str, dict[str, int]]:
    """Counts of every candidate rule on one city, from the map's raw channels (kept by `keep_raw`)."""
    from spectraclip.change.features import CHANNELS
    from spectraclip.change.scene import combine

    with rasterio.open(res.extra["raw"]) as ds:
        raw = ds.read(list(range(1, len(CHANNELS) + 1)))
    valid = np.isfinite(raw[0]) & (raw[3] >= 0.5)
    r0, c0 = res.grid.offset
    h, w = raw.shape[1:]
    out = {}
    for rule in RULES:
        score = np.where(valid, combine(raw, res.extra["raw_stats"], rule), np.nan)
        pred = np.zeros(change.shape, bool)
        pred[r0:r0 + h, c0:c0 + w] = np.nan_to_num(score, nan=-np.inf) > rule.threshold(score)
        out[rule.name] = counts(pred, change, known)
    return out


def _scene(folder: Path):
    from spectraclip.io.scene import open_scene

    return open_scene(folder)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def markdown(results: dict[str, Any]) -> str:
    """The per-city and pooled table (F1, with precision / recall / IoU) of every method."""
    methods = list(results["pooled"])
    lines = [f"# OSCD change detection: {results['model']}", "",
             "F1 of the change class (precision / recall / IoU in the second table); pooled = sums over cities.", "",
             "| city | change % | " + " | ".join(f"{m} F1" for m in methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]
    for city, row in results["per_city"].items():
        lines.append(f"| {city} | {100 * row['change_share']:.1f} | "
                     + " | ".join(_fmt(row[m]["f1"]) for m in methods) + " |")
    lines.append("| **pooled** | | " + " | ".join(f"**{_fmt(results['pooled'][m]['f1'])}**" for m in methods) + " |")
    lines += ["", "| method | precision | recall | F1 | IoU |", "|---|---:|---:|---:|---:|"]
    for m in methods:
        s = results["pooled"][m]
        lines.append(f"| {m} | {_fmt(s['precision'])} | {_fmt(s['recall'])} | {_fmt(s['f1'])} | {_fmt(s['iou'])} |")
    cnn_rows = {c: row["cnn"] for c, row in results["per_city"].items() if isinstance(row.get("cnn"), dict)}
    if cnn_rows:
        lines += ["", "Change network per held-out city (threshold and share cap chosen on the other cities' "
                  "inner folds):", "", "| city | threshold | share cap | inner F1 | training s |",
                  "|---|---:|---:|---:|---:|"]
        for c, d in cnn_rows.items():
            cap = "none" if d.get("max_share") is None else f"{100 * d['max_share']:g} %"
            lines.append(f"| {c} | {d['threshold']:.2f} | {cap} | {_fmt(d.get('inner_f1'))} | "
                         f"{d.get('train_seconds', 0):.0f} |")
    curve = results.get("label_efficiency")
    if curve:
        lines += ["", "Few-shot label efficiency (leave one city out; F1 estimated on the held-out city's sampled "
                  "pixels):", "", "| share of labelled pixels | pixels per probe | pooled F1 |", "|---:|---:|---:|"]
        for f, n, v in zip(curve["fractions"], curve["labelled_pixels"], curve["pooled_f1"], strict=True):
            lines.append(f"| {100 * f:g}% | {n} | {v:.3f} |")
    lines += ["", f"Reference (supervised, other cities and protocol): {REFERENCE}.", ""]
    lines += [f"- note: {n}" for n in results.get("notes", [])]
    return "\n".join(lines) + "\n"


def _write(out: Path, results: dict[str, Any]) -> None:
    with atomic_open(out / "results.json") as f:
        json.dump(results, f, indent=2, default=str)
    with atomic_open(out / "results.md") as f:
        f.write(markdown(results))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["city", "method", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "iou"])
    for city, row in [*results["per_city"].items(), ("pooled", results["pooled"])]:
        for m in results["pooled"]:
            s = row[m]
            w.writerow([city, m, s["tp"], s["fp"], s["fn"], s["tn"], s["precision"], s["recall"], s["f1"], s["iou"]])
    with atomic_open(out / "results.csv") as f:
        f.write(buf.getvalue())





def evaluate_oscd_run(models: Sequence[str], checkpoints: Sequence[str], roots: Sequence[str], output_dir: Path, *,
                      model_bands: str | None, precision: str, batch_size: int, device: str,
                      probes: Sequence[str] = ("gbm", "cnn"), probe_steps: int | None = None,
                      probe_seeds: int | None = None, command: str | None = None,
                      log_fn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`spectraclip evaluate --dataset oscd --root DIR`: one model, one root; returns the results (the CLI prints
    `markdown(results)`)."""
    from spectraclip.change.cnn import config_with
    from spectraclip.evaluate.runner import EvaluationError, pair_models
    from spectraclip.models.loading import load_model

    unknown = sorted(set(probes) - set(PROBE_METHODS))
    if unknown:
        raise EvaluationError(f"--probe {','.join(unknown)}: choose among {', '.join(PROBE_METHODS)} (or none)")
    specs = pair_models(models, checkpoints, model_bands)
    if len(specs) != 1 or len(roots) != 1:
        raise EvaluationError(f"--dataset oscd takes one model and one --root (got {len(specs)} models and "
                              f"{len(roots)} roots)")
    spec = specs[0]
    model = load_model(spec.name, spec.checkpoint, device=device, bands=spec.bands)
    return evaluate_oscd(model, roots[0], output_dir, precision=precision, batch_size=batch_size, device=device,
                         model_label=spec.display(), command=command, log_fn=log_fn, few_shot=bool(probes),
                         probes=probes, cnn_config=config_with(probe_steps, probe_seeds))


__all__ = ["LABEL_FRACTIONS", "METHODS", "PROBE_METHODS", "REFERENCE", "counts", "cva_otsu", "evaluate_oscd",
           "evaluate_oscd_run", "label_efficiency", "markdown", "scores"]
