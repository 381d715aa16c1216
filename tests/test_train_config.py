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


def test_strict_types_and_messages_name_key_and_value():
    with pytest.raises(RecipeError, match=r"'optim\.lr'.*True"):  # a bool is not a number
        recipe_from_dict({"optim": {"lr": True}})
    with pytest.raises(RecipeError, match=r"'run\.epochs'.*'2'"):  # no string for an integer
        recipe_from_dict({"run": {"epochs": "2"}})
    with pytest.raises(RecipeError, match=r"'data\.crop_scale'.*'x'"):  # inside a list
        recipe_from_dict({"data": {"crop_scale": [0.5, "x"]}})
    with pytest.raises(RecipeError, match=r"'model\.bands'"):  # neither a preset nor a list of names
        recipe_from_dict({"model": {"bands": 5}})
    with pytest.raises(RecipeError, match=r"allowed in this section: .*accum_steps"):
        recipe_from_dict({"optim": {"lrr": 1}})
    with pytest.raises(RecipeError, match="top level"):
        recipe_from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]
    r = recipe_from_dict({"model": None, "optim": {"lr": "4e-5", "betas": [1, 0.5]}, "data": {"layout": "ssl4eo"}})
    assert r.model.base == "ViT-B-16" and r.optim.lr == pytest.approx(4e-5) and r.optim.betas == [1.0, 0.5]
    assert isinstance(r.optim.betas[0], float) and r.data.layout == "ssl4eo"
    d = r.to_dict()
    assert d["optim"]["lr"] == pytest.approx(4e-5) and d["model"]["freeze"] == "all" and d["normalization"] is None
    assert recipe_from_dict({}).data.crop_scale is not recipe_from_dict({}).data.crop_scale  # no shared default


def test_override_values_are_yaml():
    from spectraclip.train.config import apply_overrides, parse_override

    assert parse_override("model.bands=[B02, B03]") == (["model", "bands"], ["B02", "B03"])
    assert parse_override("run.max_steps=") == (["run", "max_steps"], None)
    with pytest.raises(RecipeError, match="section.key=value"):
        parse_override("optim.lr")
    with pytest.raises(RecipeError, match="'lr' is not a section"):
        apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr.x=1"])
