"""`export --format stac-mlm`: a STAC Item with the Machine Learning Model extension (MLM) describing a bundle —
bands with their normalisation statistics, input size, outputs, framework — built with the `stac-model` package
(github.com/stac-extensions/mlm, pypi stac-model) and written as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spectraclip.io.atomic import atomic_open


def stac_item(model: Any, *, href: str = "model.safetensors", item_id: str | None = None) -> Any:
    """A `pystac.Item` with the MLM extension for `model` (one MLM input per input group)."""
    import pystac
    import torch
    from stac_model.input import InputStructure, ModelInput
    from stac_model.output import ModelOutput, ModelResult
    from stac_model.schema import MLModelExtension, MLModelProperties

    from spectraclip.identity import model_fingerprint

    inputs = []
    for g in model.config.inputs:
        scaling = [{"type": "z-score", "mean": float(m), "stddev": float(s)}
                   for m, s in zip(g.mean, g.std, strict=True)]
        inputs.append(ModelInput(
            name=f"{g.name} ({len(g.bands)} bands)", bands=list(g.bands),
            input=InputStructure(shape=[-1, len(g.bands), model.image_size, model.image_size],
                                 dim_order=["batch", "bands", "height", "width"], data_type="float32"),
            value_scaling=scaling, resize_type=None))
    output = ModelOutput(name="image embedding", tasks={"similarity-search"},
                         result=ModelResult(shape=[-1, model.embed_dim], dim_order=["batch", "embedding"],
                                            data_type="float32"), post_processing_function=None)
    props = MLModelProperties(
        name=model.config.provenance.get("name", model.config.arch), architecture=model.config.arch,
        tasks={"similarity-search", "classification"}, framework="pytorch",
        framework_version=torch.__version__.split("+")[0], pretrained=True,
        total_parameters=sum(p.numel() for p in model.parameters()), input=inputs, output=[output])
    fp = model_fingerprint(model)
    item = pystac.Item(id=item_id or f"spectraclip-{fp[:12]}", geometry=None, bbox=None, datetime=None,
                       properties={"start_datetime": "2015-06-23T00:00:00Z", "end_datetime": "9999-01-01T00:00:00Z",
                                   "spectraclip:model_fingerprint": fp},
                       assets={"model": pystac.Asset(href=href, media_type="application/octet-stream; "
                                                     "application=safetensors",
                                                     roles=["mlm:model", "mlm:weights", "data"],
                                                     extra_fields={"mlm:artifact_type": "safetensors"})})
    mlm = MLModelExtension.ext(item, add_if_missing=True)
    mlm.apply(props.model_dump(by_alias=True, exclude_unset=True, exclude_defaults=True))
    return item


def validate_stac_item(d: dict[str, Any]) -> list[str]:
    """Validate an exported item offline; returns what was checked, raises ValueError naming each problem.

    The MLM extension's JSON schema (stac-extensions.github.io/mlm/v1.6.0/schema.json) does not ship in any
    installed package (stac-model 0.7.0 only names its URI), so the `mlm:` properties are checked with stac-model's
    pydantic model `MLModelProperties` (the model that schema is generated from), not the JSON schema. The core
    STAC Item is checked against the item JSON schema pystac ships (Draft 7, offline)."""
    from jsonschema import Draft7Validator
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource
    from stac_model.schema import MLModelProperties

    cache = get_local_schema_cache()
    item_uri = next(u for u in cache if u.endswith("item-spec/json-schema/item.json"))
    registry = Registry().with_resources([(k, Resource.from_contents(v)) for k, v in cache.items()])
    errors = [f"STAC item: {e.message} at {'/'.join(map(str, e.path))}"
              for e in Draft7Validator(cache[item_uri], registry=registry).iter_errors(d)]
    mlm = {k.removeprefix("mlm:"): v for k, v in d.get("properties", {}).items() if k.startswith("mlm:")}
    try:
        MLModelProperties.model_validate(mlm)
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, reported with the rest
        errors.append(f"MLM properties: {exc}")
    if errors:
        raise ValueError("; ".join(errors))
    return [f"core item ({item_uri}, pystac's local copy)", "mlm:* properties (stac-model MLModelProperties)"]


def write_stac_item(model: Any, output: str | Path, **kwargs: Any) -> Path:
    out = Path(output)
    d = stac_item(model, **kwargs).to_dict(include_self_link=False)
    with atomic_open(out) as fh:
        json.dump(d, fh, indent=2)
    return out


__all__ = ["stac_item", "write_stac_item"]
