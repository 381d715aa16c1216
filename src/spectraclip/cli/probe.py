"""`spectraclip probe`: few-shot classifiers on embeddings tables, label-efficiency curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import BandsOpt, console, err_console, fail, load_model_or_exit, split_list

_DEFAULT_KS = "10,25,50,100,200,500,all"


def probe(
    tables: Annotated[list[Path] | None, typer.Argument(help="Embeddings tables (Parquet: id + vector).")] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", "-l", help="CSV/TSV/Parquet of labels keyed by id.")] = None,
    labels_from_path: Annotated[bool, typer.Option(
        "--labels-from-path", help="Class = the parent folder of each item's path column; split = a "
        "train/val/test folder above it (e.g. EuroSAT folders).")] = False,
    id_column: Annotated[str, typer.Option("--id-column", help="Id column of the labels file.")] = "id",
    label_column: Annotated[str, typer.Option("--label-column", help="Label / target column.")] = "label",
    split_column: Annotated[str | None, typer.Option(
        "--split-column", help="Column with train/val/test; 'test' rows are the test set.")] = None,
    task: Annotated[str, typer.Option(
        "--task", help="auto, multiclass, multilabel or regression.")] = "auto",
    sep: Annotated[str, typer.Option("--sep", help="Separator of multi-labels inside one cell.")] = ";",
    classifiers: Annotated[list[str] | None, typer.Option(
        "--classifier", help="logistic, random-forest, knn, ridge: repeat or comma list (default: logistic).")
    ] = None,
    train_sizes: Annotated[list[str] | None, typer.Option(
        "--train-sizes", help="Training examples per draw (k of the curve), repeat or comma list; 'all' = every "
        "training label "
        f"(default: {_DEFAULT_KS}).")] = None,
    draws: Annotated[int, typer.Option("--draws", min=1, help="Random draws per training size.")] = 5,
    test_size: Annotated[float, typer.Option(
        "--test-size", help="Test fraction of the seeded stratified split (without --split-column).")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the draws.")] = 0,
    names: Annotated[list[str] | None, typer.Option(
        "--name", help="Display name per table, in order; tables given one name are parts of one set (e.g. "
        "shards of one run), merged only when their fingerprints match.")] = None,
    baseline_stats: Annotated[list[Path] | None, typer.Option(
        "--baseline-stats", help="Rasters/folders: add a per-band mean+std baseline computed from them.")] = None,
    bands: BandsOpt = None,
    out: Annotated[Path, typer.Option(
        "--output", "-o", help="Output folder: probe.json, probe.md, probe.png.")] = Path("probe-out"),
    with_indices: Annotated[bool, typer.Option(
        "--with-indices", help="Also write every draw's training indices into probe.json.")] = False,
    clip_model: Annotated[str | None, typer.Option(
        "--clip-model", help="The model the tables should come from (registry name): each table's "
        "fingerprints are checked against it.")] = None,
    clip_checkpoint: Annotated[str | None, typer.Option(
        "--clip-checkpoint", help="As --clip-model, for a bundle folder / weights file / hf-hub:ID.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Accept tables whose fingerprints differ from --clip-model's or from each other "
        "(when merged under one --name), or that record none.")] = False,
) -> None:
    """Train classical models on k labelled embeddings (k in a list, several draws) and plot the curves."""
    from spectraclip.probe.baseline import baseline_stats_table
    from spectraclip.probe.curves import parse_ks, run_probe
    from spectraclip.probe.labels import labels_from_paths, read_labels
    from spectraclip.probe.report import markdown_table, write_report
    from spectraclip.probe.tables import check_sets_against, group_by_name, load_embeddings

    tables = list(tables or [])
    names = list(names or [])
    if not tables and not baseline_stats:
        fail("give at least one embeddings table or --baseline-stats")
    if names and len(names) != len(tables):
        fail(f"--name given {len(names)} times for {len(tables)} tables")
    if labels is None and not labels_from_path:
        fail("give --labels FILE or --labels-from-path")
    # library errors (ProbeError, FingerprintMismatchError, unreadable tables) reach the CLI handler
    sets = [load_embeddings(t, names[n] if names else None) for n, t in enumerate(tables)]
    if clip_model or clip_checkpoint:
        net = load_model_or_exit(clip_model, clip_checkpoint, "cpu")
        check_sets_against(sets, net, str(clip_checkpoint or clip_model), force=force)
    sets = group_by_name(sets, force=force)
    if baseline_stats:
        skipped: list[str] = []
        base = baseline_stats_table(baseline_stats, out / "baseline_band_stats.parquet", bands,
                                    on_error=lambda p, e: skipped.append(f"{p}: {e}"))
        for msg in skipped:
            err_console.print(f"[yellow]skipped[/] {msg}")
        sets.append(load_embeddings(base, "per-band stats"))
    if labels is not None:
        lab = read_labels(labels, id_column=id_column, label_column=label_column,
                          split_column=split_column, task=task, sep=sep)
    else:
        first = sets[0]
        if first.paths is None:
            fail(f"--labels-from-path: table {first.path} has no path column")
        lab = labels_from_paths(first.ids, first.paths, source=f"folders of {first.path}")
    models = split_list(classifiers) or ["logistic"]
    with console.status("probing...") as status:
        result = run_probe(sets, lab, models=models, ks=parse_ks(split_list(train_sizes) or _DEFAULT_KS),
                           draws=draws, test_size=test_size, seed=seed, progress=lambda msg: status.update(msg))
    paths = write_report(result, out, with_indices=with_indices)
    for w in result.warnings:
        err_console.print(f"[yellow]note:[/] {w}")
    console.print(markdown_table(result), markup=False)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))


def register(app: typer.Typer) -> None:
    app.command("probe")(probe)
