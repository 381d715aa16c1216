"""`export --format stac-mlm`: a STAC Item with the MLM extension that pystac and stac-model read back."""

from __future__ import annotations

import json

import pystac
from typer.testing import CliRunner

from spectraclip.cli.main import app


def test_stac_mlm_item(tmp_path):
    from stac_model.schema import MLModelExtension, MLModelProperties

    out = tmp_path / "item.json"
    res = CliRunner().invoke(app, ["export", "--model", "tiny-test", "--format", "stac-mlm", "-o", str(out)])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert any("mlm" in e for e in d["stac_extensions"])
    item = pystac.Item.from_dict(d)
    assert MLModelExtension.has_extension(item)
    props = MLModelProperties.model_validate({k.removeprefix("mlm:"): v for k, v in d["properties"].items()
                                              if k.startswith("mlm:")})
    inp = props.input[0]
    assert inp.input.shape[1] == len(inp.bands) and len(inp.value_scaling) == len(inp.bands)
    assert props.output[0].result.shape[-1] > 0 and props.framework == "pytorch"
    assert d["assets"]["model"]["roles"][0] == "mlm:model"


def test_stac_mlm_item_validates_offline(tmp_path):
    """No package ships the MLM JSON schema (stac-model 0.7.0 names only its URI): the core item is checked against
    pystac's local item schema and the mlm: properties with stac-model's pydantic model; a broken item fails both."""
    import pytest

    from spectraclip.models.loading import load_model
    from spectraclip.models.stac import stac_item, validate_stac_item

    d = stac_item(load_model("tiny-test")).to_dict(include_self_link=False)
    checked = validate_stac_item(d)
    assert any("item.json" in c for c in checked) and any("MLModelProperties" in c for c in checked)
    bad = json.loads(json.dumps(d))
    del bad["properties"]["mlm:input"]
    bad["type"] = "Collection"
    with pytest.raises(ValueError, match="MLM properties") as exc:
        validate_stac_item(bad)
    assert "STAC item" in str(exc.value)
