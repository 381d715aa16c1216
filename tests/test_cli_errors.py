"""The one CLI error handler: user errors print `error: <message>` and exit 2 (traceback only with --debug);
programming errors keep their traceback; usage errors stay typer's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spectraclip.cli.main import app, is_user_path_error
from spectraclip.errors import SpectraclipError

SRC = Path(__file__).resolve().parents[1] / "src"


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_user_error_exits_2_with_its_message_and_no_traceback(tmp_path):
    missing = tmp_path / "missing.yaml"
    res = _run("train", "--config", str(missing))
    assert res.exit_code == 2
    assert f"error: recipe {missing} not found" in res.stderr  # one line, however long the path
    assert "Traceback" not in res.output


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    res = _run("--debug", "train", "--config", str(tmp_path / "nope.yaml"))
    assert res.exit_code == 2
    assert "Traceback (most recent call last)" in res.stderr
    assert "RecipeError" in res.stderr and res.stderr.rstrip().endswith("nope.yaml not found")


def test_debug_from_the_environment(tmp_path):
    res = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "nope.yaml")], env={"SPECTRACLIP_DEBUG": "1"})
    assert res.exit_code == 2 and "Traceback" in res.stderr


def test_a_library_error_raised_anywhere_reaches_the_handler(monkeypatch):
    """No per-command except block is needed: any SpectraclipError becomes the message and exit 2."""
    from spectraclip.bands import UnknownBandError
    from spectraclip.train import config

    def broken(path, overrides):
        raise UnknownBandError(f"{path}: model.bands: unknown band B99")

    monkeypatch.setattr(config, "load_recipe", broken)
    res = _run("train", "--config", "r.yaml")
    assert res.exit_code == 2 and "error: r.yaml: model.bands: unknown band B99" in res.stderr


def test_the_message_is_printed_as_is_on_one_line(monkeypatch):
    from spectraclip.train import config

    message = "[bold]tiles/[x]/a.tif[/]: band B99 " + "very long " * 20

    def broken(path, overrides):
        raise SpectraclipError(message)

    monkeypatch.setattr(config, "load_recipe", broken)
    res = _run("train", "--config", "r.yaml")
    assert res.exit_code == 2 and res.stderr == f"error: {message}\n"  # no markup, no wrapping


def test_a_programming_error_keeps_its_traceback(monkeypatch):
    from spectraclip.train import config

    def broken(path, overrides):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(config, "load_recipe", broken)
    res = _run("train", "--config", "r.yaml")
    assert res.exit_code == 1
    assert isinstance(res.exception, TypeError)  # not turned into an "error:" line
    assert "error:" not in res.output


def test_a_programming_error_prints_a_traceback_in_a_real_process():
    code = ("import spectraclip.train.config as c\n"  # light: no torch import, keeps the test quick
            "def broken(path, overrides):\n    raise TypeError('unsupported operand')\n"
            "c.load_recipe = broken\n"
            "from spectraclip.cli.main import app\napp(['train', '--config', 'r.yaml'], prog_name='spectraclip')\n")
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "TypeError" in proc.stderr and "unsupported operand" in proc.stderr
    assert "error:" not in proc.stderr


def test_missing_path_the_user_gave_is_a_user_error(monkeypatch, tmp_path):
    from spectraclip.train import config

    missing = tmp_path / "recipe.yaml"
    monkeypatch.setattr(config, "load_recipe", lambda path, overrides: open(path))  # the OS's own error
    res = _run("train", "--config", str(missing))
    assert res.exit_code == 2
    assert f"error: {missing}: No such file or directory" in res.stderr


def test_missing_internal_file_is_a_programming_error(monkeypatch, tmp_path):
    from spectraclip.train import config

    monkeypatch.setattr(config, "load_recipe", lambda path, overrides: open(tmp_path / "internal" / "x.json"))
    res = _run("train", "--config", str(tmp_path / "recipe.yaml"))
    assert res.exit_code == 1 and isinstance(res.exception, FileNotFoundError)


@pytest.mark.parametrize(("exc", "args", "user"), [
    (FileNotFoundError(2, "No such file or directory", "a/b.tif"), ["embed", "a/b.tif"], True),
    (FileNotFoundError(2, "No such file or directory", "a/b.tif"), ["embed", "./a//b.tif"], True),
    (FileNotFoundError(2, "No such file or directory", "cfg.yaml"), ["train", "--config=cfg.yaml"], True),
    (FileNotFoundError(2, "No such file or directory", "/pkg/data/x.json"), ["embed", "a/b.tif"], False),
    (FileNotFoundError(2, "No such file or directory"), ["embed", "a/b.tif"], False),
    (FileNotFoundError("model.text: /x is not an HF model folder"), ["train"], True),  # raised on purpose
])
def test_is_user_path_error(exc, args, user):
    assert is_user_path_error(exc, args) is user


def test_fail_still_exits_2_with_its_message():
    res = _run("probe", "--labels-from-path")
    assert res.exit_code == 2
    assert "error: give at least one embeddings table or --baseline-stats" in res.stderr


def test_usage_errors_stay_typers():
    res = _run("stats", "--no-such-option", "x")
    assert res.exit_code == 2
    assert "No such option" in res.output and "error:" not in res.output
