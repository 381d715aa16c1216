"""The distributed engines' contracts that need no Ray: the install hint without Ray, part names."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from spectraclip.cli.main import app
from spectraclip.distributed.ray_engine import part_name

CHIPS = Path("/work/shared/data/eurosat-ms-mini/test/River")


def test_engine_ray_without_ray_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    folder = CHIPS if CHIPS.is_dir() else Path(__file__).parent / "data"
    res = CliRunner().invoke(app, ["embed", str(folder), "-o", str(tmp_path / "e.parquet"), "-m", "tiny-test",
                                   "--bands", "eurosat-ms", "--engine", "ray", "--device", "cpu"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "--engine ray needs Ray Data" in text and "pip install 'spectraclip[distributed]'" in text
    assert not (tmp_path / "e.parquet").exists()


def test_unknown_engine_is_refused(tmp_path):
    res = CliRunner().invoke(app, ["embed", str(tmp_path), "-o", str(tmp_path / "e.parquet"), "--engine", "spark"])
    assert res.exit_code == 2 and "choose local or ray" in res.output


def test_part_names_are_a_function_of_the_batch_ids():
    assert part_name(["a", "b"]) == part_name(["a", "b"])  # a retried batch rewrites its own part
    assert part_name(["a", "b"]) != part_name(["a", "c"])
