"""`spectraclip stats`: per-modality, per-band normalisation statistics of a dataset or manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import BandsOpt, RadiometryOpt, console, err_console, split_list


def stats(
    sources: Annotated[list[Path], typer.Argument(
        help="A multi-sensor manifest, an SSL4EO-S12 or BigEarthNet S1+S2 folder, a caption manifest, "
        "or raster files/folders.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Statistics JSON to write.")] = Path("stats.json"),
    write_recipe: Annotated[Path | None, typer.Option(
        "--write-recipe", help="Also set the normalization: block of this recipe YAML.")] = None,
    modality: Annotated[list[str] | None, typer.Option(
        "--modality", help="Only these modalities (s2, s1, coherence): repeat or comma list.")] = None,
    bands: BandsOpt = None,
    max_items: Annotated[int | None, typer.Option(
        "--max-items", min=1, help="Stop after this many images (a quick estimate).")] = None,
    reservoir: Annotated[int, typer.Option(
        "--reservoir", min=1000, help="Pixels kept per band for the percentiles.")] = 1_000_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the percentile sample.")] = 0,
    radiometry: RadiometryOpt = None,
) -> None:
    """Compute mean, std and percentiles (1, 2, 50, 98, 99) per band and modality in one streaming pass.

    Nodata pixels (NaN, declared nodata) never count; Sentinel-2 values whose radiometry is known (tags,
    metadata, --radiometry) are first put in reflectance x 10000 without the baseline-04.00 offset."""
    from rich.table import Table

    from spectraclip.data.stats import compute_stats, write_recipe_normalization, write_stats

    failed: list[tuple[str, str]] = []
    result = compute_stats(sources, modalities=split_list(modality) or None, bands=bands, max_items=max_items,
                           reservoir=reservoir, seed=seed, radiometry=radiometry,
                           on_error=lambda p, e: failed.append((str(p), str(e))))  # StatsError: the handler
    for where, msg in failed[:50]:
        err_console.print(f"[yellow]skipped[/] {where}: {msg}")
    write_stats(result, out)
    for m, st in result.items():
        table = Table(title=f"{m} ({st.extra['items']} images)")
        for col in ("band", "mean", "std", "p1", "p50", "p99"):
            table.add_column(col, justify="right")
        pct = st.extra["percentiles"]
        for b in st.mean:
            table.add_row(b, f"{st.mean[b]:.4g}", f"{st.std[b]:.4g}", f"{pct['p1'][b]:.4g}",
                          f"{pct['p50'][b]:.4g}", f"{pct['p99'][b]:.4g}")
        console.print(table)
    console.print(f"wrote {out}")
    if write_recipe is not None:
        write_recipe_normalization(write_recipe, result)
        console.print(f"set normalization: in {write_recipe}")


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
