"""`spectraclip labels add|list|learn|export INDEX_DIR`: the workspace's labelling loop from the command line
(the same labels database as `spectraclip serve`, beside the index by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import CheckpointOpt, ModelBandsOpt, ModelOpt, console

labels_app = typer.Typer(help="Label items of an index, learn a probe from the labels, rank, export.",
                         no_args_is_help=True)
IndexArg = Annotated[Path, typer.Argument(help="An index folder made by `spectraclip index build`.")]
DbOpt = Annotated[str | None, typer.Option("--labels-db",
                                           help="SQLAlchemy URL or file; default INDEX_DIR.labels.sqlite")]
TargetOpt = Annotated[str, typer.Option("--target", help="What positive/negative labels are about; empty: "
                                        "labels are class names.")]


def _bbox(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    vals = tuple(float(v) for v in text.split(","))
    if len(vals) != 4:
        raise typer.BadParameter(f"--bbox {text!r}: west,south,east,north")
    return vals


@labels_app.command("add")
def add(index_dir: IndexArg, item_id: Annotated[str, typer.Argument(help="Item id of the index.")],
        label: Annotated[str, typer.Argument(help="positive / negative (with --target) or a class name.")],
        target: TargetOpt = "", who: Annotated[str, typer.Option("--who")] = "",
        query: Annotated[str, typer.Option("--query", help="The query the item came from.")] = "",
        labels_db: DbOpt = None) -> None:
    """Store one label."""
    from spectraclip.index.store import open_index
    from spectraclip.serve.labels import open_store

    open_index(index_dir).row_of(item_id)
    lab = open_store(index_dir, labels_db).add(item_id, label, target=target, who=who, query=query)
    console.print(f"label #{lab.id}: {lab.item_id} {lab.label}{' for ' + lab.target if lab.target else ''}")


@labels_app.command("list")
def list_labels(index_dir: IndexArg, target: Annotated[str | None, typer.Option("--target")] = None,
                labels_db: DbOpt = None) -> None:
    """Print the stored labels (tab-separated: id, item, label, target, who, created, query)."""
    from spectraclip.serve.labels import open_store

    for lab in open_store(index_dir, labels_db).all(target):
        print("\t".join(str(v) for v in (lab.id, lab.item_id, lab.label, lab.target, lab.who, lab.created, lab.query)))


@labels_app.command("learn")
def learn_cmd(index_dir: IndexArg, target: TargetOpt = "", labels_db: DbOpt = None,
              bbox: Annotated[str | None, typer.Option("--bbox", help="Rank only items meeting west,south,east,north.")]
              = None,
              top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100000,
                                                 help="Top-ranked candidates to list.")] = 20,
              uncertain: Annotated[int, typer.Option("--uncertain", min=0, max=100000)] = 10,
              probe: Annotated[Path | None, typer.Option("--probe", help="Save the probe here (JSON for "
                                                         "`spectraclip map --probe`).")] = None,
              output: Annotated[Path | None, typer.Option("-o", "--output", help="Export labels + predictions "
                                                          "(.parquet GeoParquet or .geojson).")] = None,
              model: ModelOpt = None, checkpoint: CheckpointOpt = None, model_bands: ModelBandsOpt = None) -> None:
    """Fit a probe on the labels, print its cross-validated accuracy, the top candidates and the most uncertain.

    With --target and the index's model (-m/-c), the target's text embedding anchors the probe, as in `serve`
    with a model: with a few labels the ranking stays the text query's and labels move it. Without a model the
    probe learns from the labels alone (said in the output)."""
    import numpy as np

    from spectraclip.cli.common import load_model_or_exit
    from spectraclip.index.store import open_index
    from spectraclip.serve.labels import open_store
    from spectraclip.serve.workspace import export_labels, learn, save_probe

    index = open_index(index_dir)
    store = open_store(index_dir, labels_db)
    prior = None
    if model or checkpoint:
        if not target:
            console.print("note: no --target, so the model is not used (class-name labels have no text anchor)")
        else:
            from spectraclip.zeroshot.text import encode_texts

            net = load_model_or_exit(model, checkpoint, "cpu", model_bands)
            index.check_model(net)
            prior = np.asarray(encode_texts(net, [target]), np.float32)[0]
    elif target:
        console.print(f"note: no model given (-m/-c), so {target!r} is learnt from the labels alone, without its "
                      "text as the anchor `serve` uses; with few labels that ranking can fall below the text query's")
    res = learn(index, store, target=target, bbox=_bbox(bbox), k=top_k, n_uncertain=uncertain, prior=prior)
    d = res.to_dict()
    acc = ("n/a (too few labels per class)" if d["cv_accuracy"] is None
           else f"{d['cv_accuracy']:.3f} ({d['cv_folds']}-fold)")
    console.print(f"probe on {d['n_train']} labels {d['counts']}: cross-validated accuracy {acc}; "
                  f"ranked {d['scored']} items")
    console.print("top candidates:")
    for r in d["top"]:
        print(f"  {r['id']}\t{r['p']:.4f}")
    console.print("most uncertain (label these next):")
    for r in d["uncertain"]:
        print(f"  {r['id']}\t{r['p']:.4f}")
    if probe:
        console.print(f"probe -> {save_probe(res, index, probe)}")
    if output:
        console.print(f"labels + predictions -> {export_labels(index, store, output, res)}")


@labels_app.command("export")
def export(index_dir: IndexArg, output: Annotated[Path, typer.Option("-o", "--output")],
           labels_db: DbOpt = None) -> None:
    """Export the labels with their items' footprints (.parquet GeoParquet or .geojson)."""
    from spectraclip.index.store import open_index
    from spectraclip.serve.labels import open_store
    from spectraclip.serve.workspace import export_labels

    console.print(f"labels -> {export_labels(open_index(index_dir), open_store(index_dir, labels_db), output)}")


def register(app: typer.Typer) -> None:
    app.add_typer(labels_app, name="labels")
