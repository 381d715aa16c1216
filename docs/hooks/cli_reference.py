"""mkdocs hook: render `--help` of every `spectraclip` command into reference/cli.md (replacing `{{ cli_reference }}`),
so the CLI reference is generated from the typer app and cannot drift from it."""

from __future__ import annotations

import os
from typing import Any

MARKER = "{{ cli_reference }}"


def _commands(app: Any) -> list[list[str]]:
    """Every command path of the typer app, groups included (`index build`, ...)."""
    import typer

    out: list[list[str]] = []
    group = typer.main.get_group(app)

    def walk(cmd: Any, path: list[str]) -> None:
        for name in sorted(getattr(cmd, "commands", {}) or {}):
            sub = cmd.commands[name]
            if getattr(sub, "hidden", False):
                continue
            out.append([*path, name])
            walk(sub, [*path, name])

    walk(group, [])
    return out


def render() -> str:
    """The reference: one section per command, its `--help` as plain text."""
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    os.environ.setdefault("COLUMNS", "100")
    runner = CliRunner()
    parts = []
    for path in [[], *_commands(app)]:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})
        title = " ".join(["spectraclip", *path])
        parts.append(f"## `{title}`\n\n```text\n{res.output.rstrip()}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
