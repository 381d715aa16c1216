"""`spectraclip shards`: pack a caption manifest into WebDataset `.tar` shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import console, report_failures


def shards_cmd(
    manifest: Annotated[Path, typer.Argument(help="Caption manifest (JSONL or Parquet).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the shards and shards.json.")],
    bands: Annotated[str | None, typer.Option(
        "--bands", help="Bands to store, by name (preset or comma list); default: each file's own.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="float16, int16 or float32.")] = "float16",
    split: Annotated[str | None, typer.Option("--split", help="Only rows of this split.")] = None,
    maxcount: Annotated[int, typer.Option("--maxcount", min=1, help="Samples per shard.")] = 1000,
    maxsize: Annotated[float, typer.Option("--maxsize", help="Bytes per shard (approximate).")] = 1e9,
) -> None:
    """Write `shard-000000.tar`... holding band arrays (.npy), captions and metadata per sample."""
    from spectraclip.data.shards import write_shards

    result = write_shards(manifest, output, split=split, bands=bands, dtype=dtype, maxcount=maxcount,
                          maxsize=maxsize)
    report_failures(result.skipped, "rows")
    console.print(f"[green]{result.n_samples} samples[/] in {len(result.shards)} shards under {output} "
                  f"(index {result.index})")


def register(app: typer.Typer) -> None:
    app.command("shards")(shards_cmd)
