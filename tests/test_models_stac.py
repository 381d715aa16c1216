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
