"""`spectraclip train`: continual contrastive pre-training from a YAML recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import console, err_console


def train_cmd(
    config: Annotated[Path, typer.Option("--config", help="YAML training recipe.")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe key, e.g. --set optim.lr=1e-4 (repeatable; a value may hold commas, "
        "e.g. --set model.bands=B02,B03,B04).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from the newest checkpoint in run.output/checkpoints.")] = False,
    print_recipe: Annotated[bool, typer.Option(
        "--print-recipe", help="Print the validated recipe and exit.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the effective settings and optimizer steps for --world-size, checked against the "
        "Llama3-MS-CLIP recipe, and exit (nothing is trained).")] = False,
    world_size: Annotated[int, typer.Option(
        "--world-size", min=1, help="With --dry-run: the number of processes (GPUs) of the launch.")] = 1,
) -> None:
    """Train a SpectralCLIP on image–caption pairs (one process, or every process of torchrun/srun)."""
    import logging

    from rich.logging import RichHandler

    from spectraclip.train.config import load_recipe

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=err_console)])
    recipe = load_recipe(config, overrides or [])  # a RecipeError (names the key) reaches the CLI handler
    if print_recipe:
        console.print(recipe.to_yaml())
        return
    if dry_run:
        from rich.table import Table

        from spectraclip.train.plan import plan

        p = plan(recipe, world_size)
        table = Table(title=f"train --dry-run, {world_size} process(es)")
        for col in ("setting", "effective", "Llama3-MS-CLIP", ""):
            table.add_column(col)
        for key, value, paper, ok in p.rows:
            mark = "" if ok is None else ("[green]ok[/]" if ok else "[red]differs[/]")
            table.add_row(key, str(value), "" if paper is None else str(paper), mark)
        console.print(table)
        console.print(f"optimizer steps: {p.total_steps}" + ("" if not p.mismatches else
                      f"; differs from the paper: {', '.join(p.mismatches)}"))
        return
    from spectraclip.train.loop import train

    result = train(recipe, resume=resume, console=err_console)
    if result.bundle is not None:
        console.print(f"[green]trained {result.steps} steps[/], final loss {result.final_loss:.4f}")
        if result.validation:
            console.print("validation: " + ", ".join(f"{k} {v:.3f}" for k, v in result.validation.items()))
        console.print(f"model bundle: {result.bundle}")
        console.print(f"metrics: {result.metrics}" + (f", curves: {result.plot}" if result.plot else ""))
        if result.skipped_rows or result.unreadable:
            err_console.print(f"[yellow]{result.skipped_rows} manifest rows skipped, "
                              f"{result.unreadable} unreadable images passed over[/]")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
