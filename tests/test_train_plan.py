"""`train --dry-run`: effective settings, optimizer steps per world size, and the check against the paper."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from spectraclip.cli.main import app
from spectraclip.train.config import RecipeError, load_recipe
from spectraclip.train.plan import plan

RECIPE = Path(__file__).resolve().parents[1] / "examples" / "recipes" / "llama3-ms-clip.yaml"


def test_shipped_recipe_matches_the_paper():
    r = load_recipe(RECIPE)
    p = plan(r, world_size=8)
    assert p.mismatches == []
    assert p.per_process == 150 and p.micro_batch == 30
    assert p.steps_per_epoch == 243968 // 1200 == p.total_steps == 203


def test_steps_follow_world_size_and_data(tmp_path):
    from fixtures_archives import make_ssl4eo_v11

    split = make_ssl4eo_v11(tmp_path, files=2)  # 4 locations
    r = load_recipe(RECIPE, [f"data.train={split}", "data.batch_size=2", "optim.accum_steps=1", "run.epochs=3"])
    p = plan(r, world_size=2)
    assert p.samples == 4 and p.steps_per_epoch == 2 and p.total_steps == 6 and p.per_process == 1
    assert "global batch" in p.mismatches
    with pytest.raises(RecipeError, match="not divisible"):
        plan(load_recipe(RECIPE), world_size=7)


def test_cli_dry_run_prints_the_table():
    res = CliRunner().invoke(app, ["train", "--config", str(RECIPE), "--dry-run", "--world-size", "4",
                                   "--set", "optim.lr=1e-4"])
    assert res.exit_code == 0, res.output
    assert "optimizer steps: 203" in res.output and "differs from the paper: optim.lr" in res.output
    assert "micro-batch" in res.output
