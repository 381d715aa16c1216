"""Evaluation outputs: results.json (every number, definitions, provenance), results.csv (one row per
number) and results.md (paper-style tables: datasets as columns, models as rows, best in bold)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from spectraclip.io.atomic import atomic_open

# (task, metric path inside run["metrics"], column title, higher is better)
HEADLINES: list[tuple[str, str, str]] = [
    ("zeroshot", "top1", "Zero-shot top-1 accuracy (%)"),
    ("zeroshot", "balanced_accuracy", "Zero-shot balanced accuracy (%)"),
    ("zeroshot", "calibration.ece", "Zero-shot expected calibration error (%, lower is better)"),
    ("multilabel", "mAP", "Multi-label mAP (%)"),
    ("multilabel", "mean_of_others.macro.f1", "Multi-label macro F1, mean-of-other-classes threshold (%)"),
    ("multilabel", "negative_class.macro.f1", "Multi-label macro F1, negative-class threshold (%)"),
    ("retrieval", "mAP@{k}_torchmetrics", "Text-to-image mAP@{k}, torchmetrics definition (%)"),
    ("retrieval", "mAP@{k}_standard", "Text-to-image mAP@{k}, standard definition (%)"),
]


def software_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour the numbers depend on."""
    import importlib.metadata as md

    out = {}
    for pkg in ("spectraclip", "torch", "open_clip_torch", "numpy", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def lookup(metrics: dict[str, Any], path: str) -> Any:
    """`a.b.c` inside nested dicts (None when absent)."""
    cur: Any = metrics
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar leaves of a nested metrics dict as (dotted name, value); lists are left to the JSON."""
    out: list[tuple[str, Any]] = []
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += flatten(v, name + ".")
        elif v is None or isinstance(v, (int, float, str, bool)):
            out.append((name, v))
    return out


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item"):
        return _json_safe(obj.item())
    return obj


def csv_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = [["model", "dataset", "templates", "task", "metric", "value"]]
    for run in results["runs"]:
        for name, value in flatten(run["metrics"]):
            rows.append([run["model"], run["dataset"], run["templates"], run["task"], name, value])
    return rows


def _fmt(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def markdown(results: dict[str, Any]) -> str:
    """Paper-style tables per headline metric, then definitions, provenance and plots."""
    k = results.get("settings", {}).get("retrieval_k", 100)
    runs = results["runs"]
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    lines = ["# Evaluation results", ""]
    if results.get("command"):
        lines += [f"Command: `{results['command']}`", ""]
    for task, path, title in HEADLINES:
        path, title = path.format(k=k), title.format(k=k)
        values = {(r["model"], r["templates"], r["dataset"]): lookup(r["metrics"], path)
                  for r in runs if r["task"] == task}
        values = {key: v for key, v in values.items() if isinstance(v, (int, float))}
        if not values:
            continue
        rows = list(dict.fromkeys((m, t) for m, t, _ in values))
        cols = [d for d in datasets if any(key[2] == d for key in values)]
        best = {d: max((v for key, v in values.items() if key[2] == d and not math.isnan(v)), default=None)
                for d in cols}
        lines += [f"## {title}", "", "| model | templates | " + " | ".join(cols) + " |",
                  "|---|---|" + "---:|" * len(cols)]
        for m, t in rows:
            cells = []
            for d in cols:
                v = values.get((m, t, d))
                cell = _fmt(v)
                if v is not None and best[d] is not None and len(rows) > 1 and v == best[d]:
                    cell = f"**{cell}**"
                cells.append(cell)
            lines.append(f"| {m} | {t} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Metric definitions", ""]
    for task, defs in results.get("definitions", {}).items():
        for name, text in defs.items():
            lines.append(f"- **{task} / {name}**: {text}")
    lines += ["", "## Provenance", ""]
    prov = results.get("provenance", {})
    for label, m in prov.get("models", {}).items():
        lines.append(f"- model **{label}**: arch `{m.get('arch')}`, bands {','.join(m.get('bands') or [])}, "
                     f"weights fingerprint `{m.get('fingerprint')}`, {json.dumps(m.get('provenance', {}))}")
    for label, d in prov.get("datasets", {}).items():
        lines.append(f"- dataset **{label}**: {d.get('name')} at `{d.get('root')}`, split {d.get('split')}, "
                     f"{d.get('n')} images, {len(d.get('classes', []))} classes, bands {d.get('bands')}")
    for label, t in prov.get("templates", {}).items():
        lines.append(f"- templates **{label}** ({len(t['templates'])}): " + "; ".join(f"`{x}`" for x in t["templates"]))
    failed = [(r["model"], r["dataset"], r["n_failed"]) for r in runs if r.get("n_failed")]
    for m, d, n in dict.fromkeys(failed):
        lines.append(f"- {n} image(s) of {d} could not be encoded by {m} (listed in results.json)")
    for note in results.get("notes", []):
        lines.append(f"- note: {note}")
    if results.get("plots"):
        lines += ["", "## Plots", ""]
        for p in results["plots"]:
            lines.append(f"- [{p['title']}]({p['file']})")
    return "\n".join(lines) + "\n"


def write_reports(results: dict[str, Any], out: Path) -> list[Path]:
    """Write results.json, results.csv and results.md atomically; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    safe = _json_safe(results)
    paths = [out / "results.json", out / "results.csv", out / "results.md"]
    with atomic_open(paths[0], encoding="utf-8") as fh:
        json.dump(safe, fh, indent=1)
    buf = io.StringIO()
    csv.writer(buf).writerows(csv_rows(safe))
    with atomic_open(paths[1], encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    with atomic_open(paths[2], encoding="utf-8") as fh:
        fh.write(markdown(safe))
    return paths
