"""`spectraclip index build|add` and the index branch of `spectraclip search INDEX_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from spectraclip.cli.common import (
    CheckpointOpt,
    ModelOpt,
    console,
    err_console,
    fail,
    load_model_or_exit,
    print_table,
)

index_app = typer.Typer(help="Vector indexes over embeddings tables (faiss): build, append.", no_args_is_help=True)
TablesArg = Annotated[list[Path], typer.Argument(help="Embeddings tables (.parquet).")]


def _report(report: Any, verb: str) -> None:
    plan = report.plan
    for item, why in report.skipped[:50]:
        err_console.print(f"[yellow]skipped[/] {item}: {why}")
    if len(report.skipped) > 50:
        err_console.print(f"[yellow]... and {len(report.skipped) - 50} more skipped[/]")
    for t in report.skipped_tables:
        err_console.print(f"[yellow]nothing new in[/] {t}")
    console.print(f"{verb} {report.added} vectors ({report.total} in all) in {report.seconds:.1f} s: "
                  f"{plan.kind} ({plan.factory}) {plan.params or ''} -> {report.directory}")
    if plan.reason:
        console.print(f"  why: {plan.reason}")


@index_app.command("build")
def build(
    tables: TablesArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Index folder to write (replaced atomically).")],
    max_memory: Annotated[str, typer.Option("--max-memory", help="Memory budget of the index, e.g. 512M, 4G.")] = "4G",
    kind: Annotated[str, typer.Option("--kind", help="auto (by size and budget), flat, ivfpq or hnsw.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Mix tables of different (or no) fingerprints.")] = False,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    published: Annotated[bool, typer.Option(
        "--published", help="Read published Major TOM embedding files (unique_id, embedding; no fingerprint of "
        "ours) as made by --model/--checkpoint: its fingerprints go to the index, recorded as declared.")] = False,
) -> None:
    """Build an index from embeddings tables; the chosen kind, its parameters and build time go to info.json."""
    from spectraclip.index.build import build_index, declared_space
    from spectraclip.index.choose import parse_memory

    space = None
    if published:
        if not (model or checkpoint):
            fail("--published needs the model that made the files: --model NAME or --checkpoint PATH")
        net = load_model_or_exit(model, checkpoint, "cpu", None)
        space = declared_space(net, str(model or checkpoint))
    elif model or checkpoint:
        fail("--model/--checkpoint go with --published (embeddings tables of ours record their model)")
    report = build_index(tables, output, max_memory=parse_memory(max_memory), kind=kind, force=force,
                         published=space)
    _report(report, "indexed")


@index_app.command("add")
def add(
    index_dir: Annotated[Path, typer.Argument(help="An index folder made by `index build`.")],
    tables: TablesArg,
    force: Annotated[bool, typer.Option("--force", help="Accept tables without matching fingerprints.")] = False,
) -> None:
    """Append tables to an index without a rebuild (ids already indexed are skipped, so re-running is safe)."""
    from spectraclip.index.build import add_to_index

    report = add_to_index(index_dir, tables, force=force)
    _report(report, "appended")


def search_index(index_dir: Path, *, query: list[str] | None, like: list[str] | None, like_file: list[Path] | None,
                 unlike: list[str] | None, filters: list[str] | None, top_k: int, model: str | None,
                 checkpoint: str | None, model_bands: str | None, bands: str | None, device: str,
                 output: Path | None, missing_bands: str | None = None, resize: bool = False,
                 force: bool = False, precision: str = "auto") -> None:
    """`spectraclip search INDEX_DIR`: one ranked table per text query (or one for examples alone), by `sc.search`."""
    from rich.table import Table

    from spectraclip import api

    if not query and not like and not like_file:
        fail("give --query TEXT, --like ID or --like-file RASTER")
    net = load_model_or_exit(model, checkpoint, device, model_bands, missing_bands=missing_bands,
                             resize=resize) if (query or like_file) else None
    res = api.search(index_dir, query, like=like, unlike=unlike, like_file=like_file, model=net, k=top_k,
                     filters=filters, force=force, bands=bands, precision=precision)
    for label in dict.fromkeys(res.rows["query"]):
        table = Table(title=f"\u201c{label}\u201d ({res.source})")
        for col, just in (("rank", "right"), ("id", "left"), ("similarity", "right"), ("date", "left")):
            table.add_column(col, justify=just, no_wrap=col == "id")  # type: ignore[arg-type]
        for h in res.hits(label):
            table.add_row(str(h["rank"]), h["id"], f"{h['score']:.4f}", (h.get("timestamp") or "")[:10])
        print_table(table)
    if output:
        res.write(output)
        console.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")

