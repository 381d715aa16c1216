"""Recipe loading: YAML + --set overrides, unknown keys and bad values fail naming the key."""

from __future__ import annotations

import pytest
import yaml

from spectraclip.train.config import RecipeError, load_recipe, recipe_from_dict


def _write(tmp_path, data):
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_defaults_and_overrides(tmp_path):
    p = _write(tmp_path, {"data": {"train": "m.jsonl"}, "optim": {"lr": "4e-5"}})
    r = load_recipe(p, ["optim.lr=1e-4", "model.freeze=lora", "data.crop_scale=[0.8, 1.0]", "run.max_steps=3"])
    assert r.optim.lr == pytest.approx(1e-4)
    assert r.model.freeze == "lora"
    assert r.data.crop_scale == [0.8, 1.0]
    assert r.run.max_steps == 3
    assert r.optim.warmup_steps == 50 and r.optim.lr != 4e-5  # paper default warm-up kept


def test_unknown_key_names_it(tmp_path):
    with pytest.raises(RecipeError, match="optim.lrr"):
        load_recipe(_write(tmp_path, {"data": {"train": "m"}, "optim": {"lrr": 1}}))
    with pytest.raises(RecipeError, match="'modle'"):
        recipe_from_dict({"modle": {}})
    with pytest.raises(RecipeError, match="run.epochz"):
        load_recipe(_write(tmp_path, {"data": {"train": "m"}}), ["run.epochz=2"])


def test_bad_values_fail_naming_key(tmp_path):
    with pytest.raises(RecipeError, match="model.freeze"):
        recipe_from_dict({"model": {"freeze": "everything"}})
    with pytest.raises(RecipeError, match="data.batch_size"):
        recipe_from_dict({"data": {"batch_size": "big"}})
    with pytest.raises(RecipeError, match="data.train"):
        load_recipe(_write(tmp_path, {"model": {"base": "tiny-test"}}))


def test_roundtrip_yaml(tmp_path):
    r = recipe_from_dict({"data": {"train": "x.jsonl"}, "model": {"bands": ["B02", "B03"]}})
    again = recipe_from_dict(yaml.safe_load(r.to_yaml()))
    assert again == r
