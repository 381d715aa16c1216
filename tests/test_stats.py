"""Normalisation statistics: streaming results equal numpy on all pixels; JSON / recipe files; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from spectraclip.bands import BandStats
from spectraclip.data.stats import (
    RunningStats,
    StatsError,
    compute_stats,
    load_stats,
    write_recipe_normalization,
    write_stats,
)
from spectraclip.io.writers import write_geotiff

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T = (10.0, 0, 0.0, 0, -10.0, 0.0)


def test_running_stats_equal_numpy_over_all_pixels():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(i, 1 + i, size=(2, 7 + i, 5)).astype(np.float32) for i in range(4)]
    chunks[1][0, 0, 0] = np.nan  # ignored
    rs = RunningStats(reservoir=10_000)
    for c in chunks:
        rs.update(c, ["VV", "VH"])
    st = rs.result("t")
    for b, name in enumerate(["VV", "VH"]):
        allpx = np.concatenate([c[b].ravel() for c in chunks]).astype(np.float64)
        allpx = allpx[np.isfinite(allpx)]
        assert st.mean[name] == pytest.approx(allpx.mean(), rel=1e-12)
        assert st.std[name] == pytest.approx(allpx.std(), rel=1e-10)
        for q in (1, 2, 50, 98, 99):
            assert st.extra["percentiles"][f"p{q}"][name] == pytest.approx(np.percentile(allpx, q), rel=1e-6)
        assert st.extra["count"][name] == allpx.size
    assert st.extra["percentile_method"] == "exact" and st.extra["items"] == 4


def test_percentiles_from_a_bounded_sample_are_close():
    rng = np.random.default_rng(1)
    rs = RunningStats(reservoir=5_000, seed=3)
    data = rng.uniform(0, 100, size=(20, 1, 50, 50)).astype(np.float32)
    for d in data:
        rs.update(d, ["B04"])
    st = rs.result()
    assert len(rs.bands["B04"].values) == 5_000
    assert st.extra["percentile_method"].startswith("uniform sample")
    assert st.extra["percentiles"]["p50"]["B04"] == pytest.approx(50, abs=2.5)
    assert st.mean["B04"] == pytest.approx(float(data.astype(np.float64).mean()), rel=1e-12)


def test_compute_stats_groups_bands_by_modality(tmp_path):
    rng = np.random.default_rng(2)
    arrays = []
    for i in range(3):
        a = rng.random((3, 6, 6), dtype=np.float32)
        a[2] -= 15  # VV in dB
        arrays.append(a)
        write_geotiff(tmp_path / f"r{i}.tif", a, crs="EPSG:32633", transform=T, band_names=["B04", "B03", "VV"])
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    errors = []
    stats = compute_stats([tmp_path], on_error=lambda p, e: errors.append(p), progress=False)
    assert list(stats) == ["s2", "s1"] and list(stats["s2"].mean) == ["B04", "B03"]
    assert stats["s1"].mean["VV"] == pytest.approx(float(np.mean([a[2] for a in arrays], dtype=np.float64)))
    assert [p.name for p in errors] == ["broken.tif"]
    only = compute_stats([tmp_path], modalities=["s1"], progress=False)
    assert list(only) == ["s1"]
    with pytest.raises(StatsError, match="no readable images of coherence"):
        compute_stats([tmp_path], modalities=["coherence"], progress=False)


def test_stats_files_and_recipe_roundtrip(tmp_path):
    st = {"s1": BandStats({"VV": -10.0, "VH": -17.0}, {"VV": 3.0, "VH": 3.1}, "x",
                          {"percentiles": {"p1": {"VV": -19.0, "VH": -26.0}}})}
    write_stats(st, tmp_path / "s.json")
    back = load_stats(tmp_path / "s.json")
    assert back["s1"].for_bands("s1")[0].tolist() == [-10.0, -17.0]
    assert back["s1"].extra["percentiles"]["p1"]["VV"] == -19.0
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: tiny-test\nepochs: 2\nnormalization: old\n")
    write_recipe_normalization(recipe, st)
    data = yaml.safe_load(recipe.read_text())
    assert data["model"] == "tiny-test" and data["epochs"] == 2
    assert data["normalization"]["s1"]["std"]["VH"] == 3.1
    assert load_stats(recipe)["s1"].mean["VV"] == -10.0
    with pytest.raises(StatsError, match="no normalization"):
        (tmp_path / "empty.yaml").write_text("a: 1\n")
        load_stats(tmp_path / "empty.yaml")


def test_cli_stats_on_real_ssl4eo_and_bigearthnet(tmp_path):
    ssl, ben = DATA / "ssl4eo-s12-mini", DATA / "bigearthnet-mini"
    if not ssl.exists() or not ben.exists():
        pytest.skip(f"real data folders {ssl} / {ben} not present")
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    out, recipe = tmp_path / "stats.json", tmp_path / "recipe.yaml"
    res = CliRunner().invoke(app, ["stats", str(ssl), str(ben), "--out", str(out), "--write-recipe", str(recipe)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data) == {"s2", "s1"}
    assert data["s2"]["items"] == 8 and data["s1"]["items"] == 8  # 2 SSL4EO + 6 BigEarthNet of each
    assert -25 < data["s1"]["mean"]["VV"] < -5 and data["s1"]["mean"]["VH"] < data["s1"]["mean"]["VV"]
    assert 500 < data["s2"]["mean"]["B04"] < 5000 and "B10" in data["s2"]["mean"]  # SSL4EO L1C has B10
    pct = data["s2"]["percentiles"]
    assert pct["p1"]["B04"] <= pct["p2"]["B04"] <= pct["p50"]["B04"] <= pct["p98"]["B04"] <= pct["p99"]["B04"]
    assert yaml.safe_load(recipe.read_text())["normalization"]["s1"]["mean"] == data["s1"]["mean"]
