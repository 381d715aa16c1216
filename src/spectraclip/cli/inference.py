"""`classify`, `search`, `embed`, `embed-merge`: zero-shot labels, free-text search and embeddings tables for
rasters and scene windows (locally, on Ray, or as shards of a job array)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import (
    NODATA_DEFAULT,
    WORKERS_DEFAULT,
    BandsOpt,
    BatchOpt,
    CheckpointOpt,
    ClassesFileOpt,
    ClassesOpt,
    DeviceOpt,
    MissingBandsOpt,
    ModelBandsOpt,
    ModelOpt,
    NodataOpt,
    PathsArg,
    PrecisionOpt,
    RadiometryOpt,
    TemplatesOpt,
    WorkersOpt,
    console,
    existing_paths,
    fail,
    load_model_or_exit,
    print_table,
    report_failures,
    split_list,
)

ResizeOpt = Annotated[
    bool, typer.Option("--resize", help="Squeeze rasters larger than twice the model input into one input "
                       "(default: such a scene is an error; cut it into windows instead).")
]


def _filled_note(metas: list[dict]) -> None:
    filled = sorted({b for m in metas for b in (m.get("filled_bands") or "").split(",") if b})
    if filled:
        n = sum(1 for m in metas if m.get("filled_bands"))
        console.print(f"[yellow]filled missing band(s) {', '.join(filled)} with the model's training mean in "
                      f"{n} of {len(metas)} item(s) (--missing-bands fill); the output records them per item[/]")


def _nodata_note(metas: list[dict]) -> None:
    filled = [m for m in metas if (m.get("nodata_fraction") or 0) > 0 and m.get("nodata_policy") == "fill"]
    if filled:
        worst = max(m["nodata_fraction"] for m in filled)
        console.print(f"[yellow]filled nodata pixels in {len(filled)} of {len(metas)} item(s) with the band mean "
                      f"(--nodata fill; at most {100 * worst:.1f}% of an item's pixels); the output records "
                      "nodata_fraction per item, --nodata error skips such items[/]")


def _items(paths: list[Path]) -> list[Path]:
    from spectraclip.io.readers import find_items

    return find_items(paths)  # a RasterError (nothing found) reaches the CLI handler


def classify(
    paths: PathsArg,
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_bands: ModelBandsOpt = None,
    bands: BandsOpt = None,
    templates: TemplatesOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write all scores to .csv or .parquet.")] = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = WORKERS_DEFAULT,
    nodata: NodataOpt = NODATA_DEFAULT,
    missing_bands: MissingBandsOpt = None,
    resize: ResizeOpt = False,
    radiometry: RadiometryOpt = None,
    show: Annotated[int, typer.Option("--show", help="Rows to print (0: all).")] = 50,
    precision: PrecisionOpt = "auto",
) -> None:
    """Zero-shot classify rasters into the given classes (template-ensemble prompts; the model's declared
    templates unless --templates; probabilities under the model's logit scale)."""
    from spectraclip.zeroshot.classes import parse_classes

    specs = parse_classes(classes, classes_file)  # --templates and the other options were checked while parsing
    items = _items(paths)
    net = load_model_or_exit(model, checkpoint, device, model_bands, missing_bands=missing_bands, resize=resize)
    from rich.table import Table  # the heavy imports after the cheap checks

    from spectraclip import api

    res = api.classify(net, items, specs, templates, bands=bands, nodata=nodata, batch_size=batch_size,
                       workers=workers, device=device, radiometry=radiometry, precision=precision)
    report_failures(res.failed, "rasters")
    _filled_note(res.samples_meta)
    _nodata_note(res.samples_meta)
    for line in res.description:
        console.print(line)
    names, probs = res.classes, res.probabilities
    top = probs.argmax(1)
    shown = names if len(names) <= 8 else None
    table = Table(title=f"zero-shot classes ({res.templates} templates)")
    table.add_column("id", no_wrap=True, overflow="fold")
    table.add_column("top class", style="bold green", no_wrap=True)
    table.add_column("p", justify="right")
    for c in shown or []:
        table.add_column(c, justify="right")
    if shown is None:
        table.add_column("next best", justify="left")
    limit = len(res.ids) if show == 0 else show
    for i, id_ in enumerate(res.ids[:limit]):
        row = [id_, names[top[i]], f"{probs[i, top[i]]:.3f}"]
        if shown:
            row += [f"{p:.3f}" for p in probs[i]]
        else:
            order = probs[i].argsort()[::-1][1:4]
            row.append(", ".join(f"{names[j]} {probs[i, j]:.2f}" for j in order))
        table.add_row(*row)
    print_table(table)
    if len(res.ids) > limit:
        console.print(f"... {len(res.ids) - limit} more rows (use --output or --show 0)")
    if output:
        res.write(output)
        console.print(f"wrote {output}")


def search(
    paths: Annotated[list[Path], typer.Argument(callback=existing_paths, help="Rasters/folders, an "
                                                "embeddings table (.parquet), or an index folder (spectraclip index "
                                                "build).")],
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="Free-text query (repeat for more).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1)] = 10,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_bands: ModelBandsOpt = None,
    bands: BandsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write hits to .csv or .parquet.")] = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = WORKERS_DEFAULT,
    nodata: NodataOpt = NODATA_DEFAULT,
    missing_bands: MissingBandsOpt = None,
    resize: ResizeOpt = False,
    radiometry: RadiometryOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Search embeddings tables even when their fingerprints say another model or "
        "preprocessing made them (or they record none).")] = False,
    like: Annotated[list[str] | None, typer.Option("--like", help="Index only: a positive example id.")] = None,
    like_file: Annotated[list[Path] | None, typer.Option(
        "--like-file", help="Index only: a raster encoded on the fly as positive example.")] = None,
    unlike: Annotated[list[str] | None, typer.Option("--unlike", help="Index only: a negative example id.")] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help="Index only: bbox=W,S,E,N, start=DATE, end=DATE or COLUMN=VALUE (before ranking).")] = None,
    precision: PrecisionOpt = "auto",
    published: Annotated[bool, typer.Option(
        "--published", help="Search published Major TOM embedding files (no fingerprint of ours) as made by "
        "--model/--checkpoint (declared by you, not verified).")] = False,
) -> None:
    """Rank images by similarity to free-text queries (reads an embeddings table instead of rasters if given)."""
    from spectraclip.index.store import is_index_dir

    if len(paths) == 1 and is_index_dir(paths[0]):
        from spectraclip.cli.index import search_index

        return search_index(paths[0], query=query, like=like, like_file=like_file, unlike=unlike, filters=filters,
                            top_k=top_k, model=model, checkpoint=checkpoint, model_bands=model_bands, bands=bands,
                            device=device, output=output, missing_bands=missing_bands, resize=resize, force=force,
                            precision=precision)
    if not query:
        fail("give --query TEXT (--like, --like-file and --unlike need an index folder)")
    from spectraclip.data.majortom import is_published_embeddings
    from spectraclip.embeddings import is_embeddings_table

    tables = any(is_embeddings_table(p) or is_published_embeddings(p) for p in paths)
    inputs = paths if tables else _items(paths)  # api.search refuses a mix
    net = load_model_or_exit(model, checkpoint, device, model_bands, missing_bands=missing_bands, resize=resize)
    from rich.table import Table

    from spectraclip import api

    res = api.search(inputs, query, model=net, k=top_k, force=force, bands=bands, nodata=nodata,
                     batch_size=batch_size, workers=workers, device=device, radiometry=radiometry,
                     precision=precision, published=published)
    for q in query:
        table = Table(title=f"\u201c{q}\u201d")
        table.add_column("rank", justify="right")
        table.add_column("id", no_wrap=True, overflow="fold")
        table.add_column("similarity", justify="right")
        for h in res.hits(q):
            table.add_row(str(h["rank"]), h["id"], f"{h['score']:.4f}")
        print_table(table)
    if output:
        res.write(output)
        console.print(f"wrote {output}")


def embed(
    paths: PathsArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Embeddings table to write (.parquet).")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_bands: ModelBandsOpt = None,
    bands: BandsOpt = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = WORKERS_DEFAULT,
    nodata: NodataOpt = NODATA_DEFAULT,
    missing_bands: MissingBandsOpt = None,
    resize: ResizeOpt = False,
    radiometry: RadiometryOpt = None,
    layout: Annotated[str | None, typer.Option(
        "--layout", help="Read multi-file items (auto, ssl4eo, bigearthnet-s1s2, manifest): each item's modalities "
        "are co-registered into one sample; a model with several input groups fuses those present. majortom: rows "
        "of Major TOM Core shards (.parquet files or folders of them; detected without --layout when every path is "
        "one), written in the Major TOM embedding layout beside ours.")] = None,
    major_tom_metadata: Annotated[Path | None, typer.Option(
        "--major-tom-metadata", help="With Major TOM shards: the dataset's metadata.parquet (timestamps, grid "
        "row/column); without it they come from the cell names and product_datetime.")] = None,
    modalities: Annotated[list[str] | None, typer.Option(
        "--modalities", help="With --layout: read only these modalities, e.g. s2 or s2,s1 (repeat or comma list; "
        "default: all the model takes).")] = None,
    drop_bands: Annotated[list[str] | None, typer.Option(
        "--drop-bands", help="With --layout: leave these bands out of the inputs, e.g. B01,B09,VH (repeat or "
        "comma list).")] = None,
    precision: PrecisionOpt = "auto",
    windows: Annotated[bool, typer.Option(
        "--windows", help="Treat each path as a scene (GeoTIFF/COG, band folder, SAFE, STAC Item) and embed one "
        "row per window of a grid over it (the Major TOM layout).")] = False,
    tile: Annotated[int | None, typer.Option("--tile", min=1, help="With --windows: window size in pixels of the "
                                             "finest band (default: the model's input size).")] = None,
    stride: Annotated[int | None, typer.Option("--stride", min=1, help="With --windows: pixels between windows "
                                               "(default: --tile, a grid of non-overlapping cells).")] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="local (this process; --workers DataLoader readers) or ray (a Ray Data pipeline: CPU "
        "tasks read, --workers actors encode; needs spectraclip[distributed]).")] = "local",
    address: Annotated[str | None, typer.Option(
        "--address", help="With --engine ray: the cluster to join (auto: the running one; default: start a local "
        "Ray on this machine).")] = None,
    num_gpus_per_worker: Annotated[float, typer.Option(
        "--num-gpus-per-worker", min=0, help="With --engine ray: GPUs per encoding actor (0: encode on CPU).")] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option(
        "--cpus-per-worker", min=0.1, help="With --engine ray: CPUs per encoding actor (its torch threads).")] = 1.0,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="I/N: embed only shard I of N (contiguous blocks of the sorted item ids), for job arrays; "
        "merge the parts with `spectraclip embed-merge`.")] = None,
) -> None:
    """Write the embeddings table of rasters, scene windows or multi-file items (resumable: rerun the same
    command after an interruption)."""
    from spectraclip import api

    if engine not in ("local", "ray"):
        fail(f"--engine {engine!r}: choose local or ray")
    if engine == "ray":  # say what to install before loading anything
        from spectraclip.distributed.ray_engine import import_ray

        import_ray()
    if windows and layout is not None:
        fail("--windows and --layout are two kinds of item; give one")
    net = load_model_or_exit(model, checkpoint, device, model_bands, missing_bands=missing_bands, resize=resize)
    res = api.embed(net, paths, output, bands=bands, nodata=nodata, batch_size=batch_size, workers=workers,
                    device=device, radiometry=radiometry, precision=precision, layout=layout,
                    modalities=split_list(modalities) or None, drop_bands=split_list(drop_bands) or None,
                    windows=windows, tile=tile, stride=stride, engine=engine, address=address,
                    num_gpus_per_worker=num_gpus_per_worker, cpus_per_worker=cpus_per_worker, shard=shard,
                    major_tom_metadata=major_tom_metadata)
    for note in res.notes:
        console.print(note)
    report_failures(res.failed, "items")
    table = res.table
    _filled_note([{"filled_bands": f} for f in table.columns.get("filled_bands", [])])
    _nodata_note([{"nodata_fraction": f, "nodata_policy": nodata} for f in table.columns.get("nodata_fraction", [])])
    note = f" ({res.resumed} kept from an earlier run)" if res.resumed else ""
    console.print(f"wrote {output}: {len(table)} embeddings of dimension {table.dim}{note}, {len(res.failed)} skipped")


def embed_merge(
    parts: Annotated[list[Path], typer.Argument(help="Parts to merge: tables written by `embed --shard I/N` (or "
                                                "any tables of one model), or folders of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The merged embeddings table (.parquet).")],
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Write the shards given even when the parts say some are missing.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Merge parts even when their fingerprints differ or are missing.")] = False,
) -> None:
    """Merge the parts of a job array into one embeddings table (checked: one model, each item once, every
    shard there); `index build` reads it directly."""
    from spectraclip.distributed.merge import merge_parts

    report = merge_parts(parts, output, allow_missing=allow_missing, force=force)
    if report.missing_shards:
        console.print(f"[yellow]shards missing (--allow-missing): "
                      f"{', '.join(f'{i}/{report.shard_count}' for i in report.missing_shards)}[/]")
    if report.not_embedded:
        console.print(f"[yellow]{report.not_embedded} item(s) the shards listed were skipped by their jobs "
                      "(bad input; see each job's log)[/]")
    shards = f" ({report.shard_count} shards)" if report.shard_count else ""
    console.print(f"wrote {output}: {report.rows} embeddings from {len(report.parts)} part(s){shards}")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
    app.command("search")(search)
    app.command("embed")(embed)
    app.command("embed-merge")(embed_merge)
