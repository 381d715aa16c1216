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
