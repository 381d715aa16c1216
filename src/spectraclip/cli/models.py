"""`spectraclip models`: the registered model names, what they are and where their weights come from."""

from __future__ import annotations

import typer

from spectraclip.cli.common import print_table


def models() -> None:
    """List the registry of named models (use the name with --model)."""
    from rich.table import Table

    from spectraclip.models.registry import get_entry, list_models

    table = Table(title="registered models (any open_clip architecture name works too)")
    for col in ("name", "architecture", "bands", "weights", "description"):  # what users copy is never cut
        table.add_column(col, no_wrap=col != "description", overflow="fold")
    for name in list_models():
        e = get_entry(name)
        if e.hub:
            weights = f"hf-hub:{e.hub['repo_id']} / {e.hub.get('filename', '')}"
        elif e.openclip_pretrained:
            weights = f"open_clip tag {e.openclip_pretrained}"
        else:
            weights = "random init" + (" + pretrained text tower" if e.pretrained_text else "")
        table.add_row(name, e.arch, e.bands, weights, e.description)
    print_table(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
