"""Entry point of the `spectraclip` command: assembles the command groups and holds the one error handler.

A `SpectraclipError` (or a FileNotFoundError of a path given on the command line) is a user error: its
message is printed as `error: ...` and the command exits with 2; `--debug` adds the traceback. Anything
else is a programming error and keeps its traceback (exit 1). Usage errors stay typer's (exit 2).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from spectraclip.cli.common import fail
from spectraclip.errors import SpectraclipError

_DEBUG = "spectraclip.debug"  # ctx.meta keys, shared by every context of one invocation
_ARGS = "spectraclip.args"
USER_ERROR_EXIT = 2


class SpectraclipGroup(TyperGroup):
    """The root group: turns user errors raised by any command into a message and exit code 2."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGS] = list(args)  # to tell a missing path the user gave from an internal one
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SpectraclipError as exc:
            _user_error(ctx, exc, str(exc))
        except OSError as exc:  # a missing, unreadable or wrong kind of path the user gave
            if not is_user_path_error(exc, ctx.meta.get(_ARGS, ())):
                raise
            _user_error(ctx, exc, f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))


def is_user_path_error(exc: OSError, args: Sequence[str]) -> bool:
    """True for an OSError (missing, unreadable, a folder where a file was expected...) of a path given on the
    command line, or a FileNotFoundError the library raised with a message of its own (no errno); an internal
    file gone missing is a programming error."""
    if not isinstance(exc, FileNotFoundError) and exc.filename is None:
        return False
    if exc.errno is None:
        return True
    if exc.filename is None:
        return False
    missing = _norm(exc.filename)
    return any(_norm(a.split("=", 1)[1] if a.startswith("--") and "=" in a else a) == missing for a in args)


def _norm(path: str | bytes | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fsdecode(path)))


def _user_error(ctx: typer.Context, exc: BaseException, message: str) -> NoReturn:
    """Print `error: message` (and the traceback under --debug) on stderr and exit with code 2."""
    if ctx.meta.get(_DEBUG):
        traceback.print_exception(exc, file=sys.stderr)
    fail(message, USER_ERROR_EXIT)


app = typer.Typer(
    name="spectraclip",
    cls=SpectraclipGroup,
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
    "spectraclip.cli.index",
    "spectraclip.cli.serve",
    "spectraclip.cli.labels",
    "spectraclip.cli.apps",
    "spectraclip.cli.change",
    "spectraclip.cli.timeseries",
    "spectraclip.cli.export",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="SPECTRACLIP_DEBUG", help="Show the traceback of user errors too.")] = False,
) -> None:
    """spectraclip: multispectral vision-language models for Earth observation."""
    ctx.meta[_DEBUG] = debug


if __name__ == "__main__":  # pragma: no cover
    app()
