"""`spectraclip evaluate`: zero-shot, multi-label and retrieval benchmarks with reports and plots."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import (
    WORKERS_DEFAULT,
    BatchOpt,
    DeviceOpt,
    ModelBandsOpt,
    PrecisionOpt,
    WorkersOpt,
    check_templates,
    console,
    print_table,
    resolve_device,
    split_list,
)


def evaluate_cmd(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Registry name, open_clip arch or hf-hub:ID (repeat or comma list).")] = None,
    checkpoint: Annotated[list[str] | None, typer.Option(
        "--checkpoint", "-c", help="Bundle folder / weights file / hf-hub:ID (repeat for more: paths are not "
        "split on commas; a bundle needs no --model).")] = None,
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", "-d", help="eurosat-ms, bigearthnet, meter-ml, resisc45, folder (repeat or comma list); "
        "oscd (alone): change detection on OSCD-layout cities.")] = None,
    root: Annotated[list[str] | None, typer.Option(
        "--root", "-r", help="Dataset folder (or CSV for `folder`), one per --dataset (repeat; paths are not "
        "split on commas).")] = None,
    split: Annotated[str, typer.Option("--split", help="train, val, test or all.")] = "test",
    templates: Annotated[list[str] | None, typer.Option(
        "--templates", "-t", callback=check_templates, help="Template set name or JSON file (repeat or comma "
        "list). Default: each model's declared set (msclip for a model that declares none).")] = None,
    task: Annotated[list[str] | None, typer.Option(
        "--task", help="zeroshot, multilabel, retrieval (repeat or comma list; default per dataset).")] = None,
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Output folder: reports, plots and the "
                                             "embedding cache.")] = Path("evaluation"),
    model_bands: ModelBandsOpt = None,
    batch_size: BatchOpt = None,
    workers: WorkersOpt = WORKERS_DEFAULT,
    device: DeviceOpt = "auto",
    retrieval_k: Annotated[int, typer.Option("--retrieval-k", min=1, help="Cut-off k of the retrieval "
                                             "mAP@k.")] = 100,
    empty: Annotated[str, typer.Option("--empty", help="Classes without relevant images in retrieval means: "
                                       "skip or zero.")] = "skip",
    negative_prompt: Annotated[str, typer.Option("--negative-prompt", help="Extra negative class of the "
                                                 "multi-label threshold variant.")] = "other features",
    embedding_map: Annotated[str, typer.Option("--embedding-map", help="auto (UMAP, t-SNE for few images), "
                                               "umap, tsne or none.")] = "auto",
    plots: Annotated[bool, typer.Option("--plots/--no-plots")] = True,
    embeddings: Annotated[Path | None, typer.Option(
        "--embeddings", help="Evaluate this embeddings table (e.g. from `spectraclip embed`) instead of encoding "
        "the dataset's images; rows match dataset items by id or path. Needs the --model that made it (text "
        "side).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="With --embeddings: accept a table whose fingerprints differ from the model's (or "
        "that records none).")] = False,
    precision: PrecisionOpt = "fp32",
    probe: Annotated[str, typer.Option("--probe", help="oscd: few-shot probes trained leave one city out (comma "
                                       "list of gbm, cnn; none: unsupervised only).")] = "gbm,cnn",
    probe_steps: Annotated[int | None, typer.Option("--probe-steps", min=1, help="oscd: training steps of the "
                                                    "change network (default 600).")] = None,
    probe_seeds: Annotated[int | None, typer.Option("--probe-seeds", min=1, help="oscd: seeds of the change network, "
                                                    "averaged (default 1).")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="Score a product (--product) against this "
                                                   "reference raster instead of a benchmark: it is brought onto the "
                                                   "product's grid (nearest); per-class IoU/F1 and the confusion "
                                                   "matrix go to <output>/reference.json.")] = None,
    product: Annotated[Path | None, typer.Option("--product", help="With --reference: a class map (spectraclip map: "
                                                 "band 1), a change map (change flag, classes unchanged/changed) "
                                                 "or a heatmap (band > --threshold).")] = None,
    reference_classes: Annotated[str | None, typer.Option("--reference-classes", help="With --reference: reference "
                                                          "value = product class, e.g. 1=water,0=other; other values "
                                                          "(e.g. -1) and the file's nodata are not scored. Default: "
                                                          "the values are class indices.")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="With --reference: score a heatmap's band "
                                                    "above this value.")] = None,
) -> None:
    """Evaluate models on benchmarks; writes results.json/.csv/.md, per-image predictions (predictions/*.csv)
    and plots to the --output folder. With --reference and --product: score a map against a reference raster."""
    if reference is not None or product is not None:
        _score_reference(reference, product, reference_classes, threshold, output_dir)
        return
    from rich.table import Table

    from spectraclip.evaluate.runner import evaluate, headline_rows, pair_datasets, pair_models

    tasks = split_list(task) or None
    if split_list(dataset) == ["oscd"]:  # change detection: its own evaluation (change/oscd.py)
        from spectraclip.change.oscd import evaluate_oscd_run, markdown

        res = evaluate_oscd_run(split_list(model), checkpoint or [], root or [], output_dir, model_bands=model_bands,
                                precision=precision, batch_size=batch_size or 32,  # the scene path needs a number
                                device=resolve_device(device), probes=[p for p in split_list(probe) if p != "none"],
                                probe_steps=probe_steps, probe_seeds=probe_seeds,
                                command=shlex.join(["spectraclip", *sys.argv[1:]]), log_fn=console.print)
        console.print(markdown(res))
        console.print(f"wrote results.json, results.md, results.csv, maps/ and quicklooks/ to {output_dir}")
        return
    # library errors (EvaluationError, DatasetError, TemplateError, BandError, ...) reach the CLI handler
    models = pair_models(split_list(model), checkpoint or [], model_bands)
    datasets = pair_datasets(split_list(dataset), root or [], split)
    result = evaluate(models, datasets, split_list(templates) or None, tasks, output_dir,
                      batch_size=batch_size, num_workers=workers, device=resolve_device(device),
                      retrieval_k=retrieval_k, empty=empty, negative_prompt=negative_prompt, plots=plots,
                      embedding_map=embedding_map, command=shlex.join(["spectraclip", *sys.argv[1:]]),
                      log_fn=console.print, embeddings=embeddings, force=force, precision=precision)
    table = Table(title="headline results")
    for col in ("model", "dataset", "templates", "task", "metric", "value"):
        table.add_column(col, justify="right" if col == "value" else "left", no_wrap=col != "value")
    for m, d, t, tk, metric, v in headline_rows(result.results):
        table.add_row(m, d, t, tk, metric, "–" if v is None else f"{100 * v:.1f}%")
    print_table(table)
    for note in result.results.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"wrote {len(result.files)} files to {result.output_dir}:")
    for f in result.files:
        console.print(f"  {f}")


def _score_reference(reference: Path | None, product: Path | None, classes: str | None, threshold: float | None,
                     output_dir: Path) -> None:
    """`evaluate --reference REF --product MAP`: print and write the per-class scores (evaluate/reference.py)."""
    import json

    from rich.table import Table

    from spectraclip.evaluate.reference import ReferenceScoreError, score_product

    if reference is None or product is None:
        raise ReferenceScoreError("--reference and --product go together: the reference raster and the map to score")
    res = score_product(product, reference, reference_classes=classes, threshold=threshold)
    table = Table(title=f"{product} vs {reference} ({res.product_kind}; {res.pixels} pixels, accuracy "
                  f"{100 * res.accuracy:.1f}%, mean IoU {100 * res.mean_iou:.1f}%)")
    for col in ("class", "IoU", "F1", "precision", "recall", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, v in res.per_class.items():
        table.add_row(name, *[f"{100 * v[m]:.1f}%" for m in ("iou", "f1", "precision", "recall")], str(v["support"]))
    console.print(table)
    console.print("confusion (rows reference, columns product): " + json.dumps(res.confusion.tolist()))
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "reference.json").write_text(json.dumps(res.to_dict(), indent=2))
    console.print(f"wrote {output_dir / 'reference.json'}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
