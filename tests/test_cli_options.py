"""The same option means the same thing in every command: introspects the typer app, and `split_list`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import pytest
import typer

from spectraclip.cli.common import split_list
from spectraclip.cli.main import app

# Violations in modules this branch does not own (cli/inference.py: the lead; cli/captioning.py and
# cli/demo.py: the captioning/demo engineer). Keep it exact: the test also fails when an entry is fixed,
# so the list only shrinks. (command, option, rule broken)
_ALLOWED: set[tuple[str, str, str]] = set()

# Names that mean an output or a recipe under another name.
_RENAMED = {"--out": "--output", "--output-dir": "--output", "--outdir": "--output", "--output-file": "--output",
            "--recipe": "--config"}
_RULE_OF = {"--output": "outputs are --output", "--config": "a recipe is --config"}

# Every other short flag names one long option across the app; where two share one, it belongs to this one.
_SHORT_OWNER = {"-r": "--root"}

# Options named --model that take something else than a CLIP model (introspection cannot tell).
_NOT_CLIP_MODEL: set[tuple[str, str]] = set()


def _options() -> Iterator[tuple[str, object]]:
    """(command path, option) for every option of every command of the app."""
    def walk(cmd, path: str):
        for p in cmd.params:
            if p.param_type_name == "option":
                yield path, p
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            yield from walk(sub, f"{path} {name}".strip())

    yield from walk(typer.main.get_command(app), "")


def _long(opt) -> str:
    return next(o for o in opt.opts if o.startswith("--"))


def _violations() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    short_to_long: dict[str, set[str]] = {}
    for cmd, opt in _options():
        long, shorts = _long(opt), {o for o in opt.opts if not o.startswith("--")}
        for s in shorts:
            short_to_long.setdefault(s, set()).add(long)
        if long == "--output" and "-o" not in shorts:
            found.add((cmd, long, "--output has -o"))
        if "-o" in shorts and long != "--output":
            found.add((cmd, long, "-o is --output"))
        if "-c" in shorts and long != "--checkpoint":
            found.add((cmd, long, "-c is --checkpoint"))
        if "-m" in shorts and long != "--model":
            found.add((cmd, long, "-m is --model"))
        if long == "--model" and (cmd, long) in _NOT_CLIP_MODEL:
            found.add((cmd, long, "-m/--model is for CLIP models"))
        if long == "--device" and opt.default != "auto":
            found.add((cmd, long, "--device defaults to auto"))
        if long in _RENAMED:
            found.add((cmd, long, _RULE_OF[_RENAMED[long]]))
    for cmd, opt in _options():
        for s in opt.opts:
            if s.startswith("--") or s in ("-o", "-c", "-m"):  # those three have their own rules above
                continue
            owner = _SHORT_OWNER.get(s)
            if (owner and _long(opt) != owner) or (not owner and len(short_to_long[s]) > 1):
                found.add((cmd, _long(opt), f"{s} means one option"))
    return found


def test_the_app_has_the_commands_checked():
    commands = {cmd for cmd, _ in _options()}
    assert {"classify", "embed", "evaluate", "probe", "stats", "train", "shards", "caption", "demo"} <= commands


def test_options_mean_the_same_everywhere():
    found = _violations()
    assert found - _ALLOWED == set(), "new option violations (see the rules in cli/common.py)"
    assert _ALLOWED - found == set(), "fixed: take these off _ALLOWED in tests/test_cli_options.py"


def test_the_rules_catch_a_bad_option():
    """A command declaring `-o` for something else, or `--device` defaulting to cpu, is caught."""
    def bad(
        out: Annotated[str, typer.Option("--out-file", "-o")] = "x",
        device: Annotated[str, typer.Option("--device")] = "cpu",
        recipe: Annotated[str, typer.Option("--config", "-c")] = "r.yaml",
    ) -> None:
        """Breaks three rules."""

    app.command("zz-bad")(bad)
    try:
        found = _violations() - _ALLOWED
    finally:
        app.registered_commands.pop()
    assert found == {("zz-bad", "--out-file", "-o is --output"), ("zz-bad", "--device", "--device defaults to auto"),
                     ("zz-bad", "--config", "-c is --checkpoint")}


def test_global_debug_and_renamed_options():
    opts = {(cmd, _long(o)): o for cmd, o in _options()}
    assert ("", "--debug") in opts
    assert ("train", "--config") in opts and "-c" not in opts[("train", "--config")].opts
    assert ("probe", "--classifier") in opts and ("probe", "--model") not in opts  # not a CLIP model
    for cmd in ("stats", "probe", "evaluate"):
        assert {"--output", "-o"} <= set(opts[(cmd, "--output")].opts)


@pytest.mark.parametrize(("values", "expected"), [
    (None, []),
    ([], []),
    (["a"], ["a"]),
    (["a,b", "c"], ["a", "b", "c"]),
    ([" a , ,b ", ""], ["a", "b"]),
    ("s2,s1", ["s2", "s1"]),
])
def test_split_list_takes_repeated_and_comma_separated_values(values, expected):
    assert split_list(values) == expected
