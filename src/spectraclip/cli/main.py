"""Entry point of the `spectraclip` command: assembles the command groups."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="spectraclip",
    help="Multispectral CLIP models for Earth observation: classify, search, embed, evaluate, train, caption.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

# Each module defines `register(app)`; heavy imports stay inside the command functions.
_COMMAND_MODULES: list[str] = [
    "spectraclip.cli.inference",
    "spectraclip.cli.demo",
    "spectraclip.cli.models",
    "spectraclip.cli.probe",
    "spectraclip.cli.stats",
    "spectraclip.cli.train",
    "spectraclip.cli.shards",
    "spectraclip.cli.captioning",
    "spectraclip.cli.evaluate",
    "spectraclip.cli.export",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


@app.callback()
def _root() -> None:
    """spectraclip: multispectral vision-language models for Earth observation."""


if __name__ == "__main__":  # pragma: no cover
    app()
