"""Change detection on a real labelled OSCD city (../shared/data/oscd-mini; the labels are non-commercial and
never copied into the project): the evaluation end to end, its CVA + Otsu baseline reproducing the number
measured outside the project, and the outputs written like the other evaluations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spectraclip.models.loading import load_model

OSCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "oscd-mini"
pytestmark = pytest.mark.skipif(not (OSCD / "labels" / "bercy").is_dir(),
                                reason=f"needs the OSCD cities of ../shared/data ({OSCD} is absent)")


def test_oscd_evaluation_of_one_city_writes_table_json_and_quicklook(tmp_path):
    from spectraclip.change.oscd import evaluate_oscd

    model = load_model("tiny-test", bands="s2-l1c")
    res = evaluate_oscd(model, OSCD, tmp_path, cities=["bercy"], few_shot=False, tile=32, stride=32,
                        model_label="tiny-test")
    row = res["per_city"]["bercy"]
    assert row["pixels"] == 395 * 360 and 0.005 < row["change_share"] < 0.01 and row["coverage"] == 1.0
    # CVA on 13 bands at 10 m, standardised per band over both dates, Otsu: F1 0.100 on bercy (measured outside)
    assert row["cva-otsu"]["f1"] == pytest.approx(0.100, abs=0.005)
    c = row["change"]
    assert c["tp"] + c["fn"] == 1046 and c["tp"] + c["fp"] + c["fn"] + c["tn"] == 395 * 360
    assert set(res["pooled"]) == {"cva-otsu", "change"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["pooled"]["cva-otsu"]["f1"] == res["pooled"]["cva-otsu"]["f1"]
    md = (tmp_path / "results.md").read_text()
    assert "| bercy |" in md and "Daudt" in md and "**pooled**" in md
    assert (tmp_path / "quicklooks" / "bercy.png").stat().st_size > 10_000
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + 2 * 2
