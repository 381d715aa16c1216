"""`evaluate --reference REF --product MAP`: products of the scene apps scored against a reference raster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from spectraclip.evaluate.reference import ReferenceScoreError, confusion_counts, score_product, scores_from_counts

FLOODS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sen1floods11-chip"


def _write(path: Path, arr: np.ndarray, tags: dict | None = None, res: float = 10.0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype,
                       crs="EPSG:32633", transform=from_origin(500000, 5000000, res, res)) as ds:
        ds.write(arr[None])
        if tags:
            ds.update_tags(**tags)
    return path


def test_a_product_equal_to_the_reference_scores_one_and_unmapped_values_are_ignored(tmp_path):
    cls = np.zeros((40, 40), np.uint8)
    cls[10:30, 6:20] = 1
    product = _write(tmp_path / "map.tif", cls, {"classes": json.dumps(["other", "water"])})
    ref = cls.astype(np.int16)
    ref[:6] = -1  # Sen1Floods11's no data
    reference = _write(tmp_path / "ref.tif", ref[::2, ::2].copy(), res=20.0)  # another grid: reprojected
    res = score_product(product, reference, reference_classes="1=water,0=other")
    assert res.per_class["water"]["iou"] == 1.0 and res.per_class["other"]["f1"] == 1.0
    assert res.pixels == 34 * 40 and res.accuracy == 1.0
    wrong = score_product(product, reference, reference_classes="1=other,0=water")
    assert wrong.per_class["water"]["iou"] == 0.0
    with pytest.raises(ReferenceScoreError, match="forest"):
        score_product(product, reference, reference_classes="1=forest")


@pytest.mark.slow  # maps a 512 px chip (~6 s): `make test` only
@pytest.mark.skipif(not FLOODS.exists(), reason="needs ../shared/data/sen1floods11-chip")
def test_sen1floods11_chip_mapped_and_scored_against_its_hand_labels(tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    runner = CliRunner()
    s2 = FLOODS / "S2" / "Spain_7370579_S2Hand.tif"
    label = FLOODS / "Labels" / "Spain_7370579_LabelHand.tif"
    out = tmp_path / "water.tif"
    r = runner.invoke(app, ["map", str(s2), "-m", "tiny-test", "--model-bands", "s2-l1c", "--classes",
                            "water,other", "--tile", "128", "--stride", "128", "--device", "cpu", "--precision",
                            "fp32", "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", "--reference", str(label), "--product", str(out), "--reference-classes",
                            "1=water,0=other", "-o", str(tmp_path / "eval")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "eval" / "reference.json").read_text())
    assert rep["product_kind"] == "map" and rep["pixels"] > 0
    for v in rep["per_class"].values():
        assert all(0.0 <= v[m] <= 1.0 for m in ("iou", "f1") if v[m] == v[m])
    assert 0.0 <= rep["accuracy"] <= 1.0


def test_the_oscd_evaluation_counts_and_scores_like_the_reference_scorer(tmp_path):
    """OSCD's change-class numbers are one case of product scoring: the same counts, the same scores."""
    from spectraclip.change.oscd import counts, scores

    rng = np.random.default_rng(0)
    truth, pred, known = rng.random((50, 60)) < 0.1, rng.random((50, 60)) < 0.15, rng.random((50, 60)) < 0.9
    c = counts(pred, truth, known)
    cm = confusion_counts(pred, truth, known)
    assert [[c["tn"], c["fp"]], [c["fn"], c["tp"]]] == cm.tolist() and sum(c.values()) == known.sum()
    changed = scores_from_counts(cm)[1]
    assert scores(c) == {k: changed[k] for k in ("precision", "recall", "f1", "iou")}
    # a change map scored against the same mask (nodata where unknown) gives the same change-class numbers
    flag = np.stack([pred.astype(np.float32)] * 2)
    path = tmp_path / "change.tif"
    with rasterio.open(path, "w", driver="GTiff", width=60, height=50, count=2, dtype="float32", crs="EPSG:32633",
                       transform=from_origin(500000, 5000000, 10, 10)) as ds:
        ds.write(flag)
        ds.update_tags(spectraclip_change="1")
    ref = _write(tmp_path / "ref.tif", np.where(known, truth.astype(np.uint8), 255).astype(np.uint8))
    got = score_product(path, ref, reference_classes="1=changed,0=unchanged", reference_nodata=255)
    assert got.confusion.tolist() == cm.tolist()
    assert {k: got.per_class["changed"][k] for k in ("precision", "recall", "f1", "iou")} == scores(c)
    assert scores({"tp": 0, "fp": 0, "fn": 0, "tn": 5}) == {"precision": None, "recall": None, "f1": None, "iou": None}
