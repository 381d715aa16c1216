"""Normalisation statistics: streaming results equal numpy on all valid pixels (nodata never counts); JSON /
recipe files; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_rasters import nodata_border, write_raw_geotiff

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
    res = CliRunner().invoke(app, ["stats", str(ssl), str(ben), "-o", str(out), "--write-recipe", str(recipe)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data) == {"s2", "s1"}
    assert data["s2"]["items"] == 8 and data["s1"]["items"] == 8  # 2 SSL4EO + 6 BigEarthNet of each
    assert -25 < data["s1"]["mean"]["VV"] < -5 and data["s1"]["mean"]["VH"] < data["s1"]["mean"]["VV"]
    assert 500 < data["s2"]["mean"]["B04"] < 5000 and "B10" in data["s2"]["mean"]  # SSL4EO L1C has B10
    pct = data["s2"]["percentiles"]
    assert pct["p1"]["B04"] <= pct["p2"]["B04"] <= pct["p50"]["B04"] <= pct["p98"]["B04"] <= pct["p99"]["B04"]
    assert yaml.safe_load(recipe.read_text())["normalization"]["s1"]["mean"] == data["s1"]["mean"]


# ---------------------------------------------------------------- nodata never enters the statistics


def _bordered_sources(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Rasters whose valid interiors are known, framed by nodata: declared 0 (uint16), NaN (float32, no
    declared value) and a band folder whose files declare different nodata values (0 and 65535)."""
    rng = np.random.default_rng(5)
    interiors = {b: [] for b in ("B04", "B03", "B02")}
    root.mkdir()
    for i, variant in enumerate(("declared", "nan")):
        inner = rng.integers(1, 5000, (3, 6, 6)).astype("uint16")
        for b, plane in zip(("B04", "B03", "B02"), inner, strict=True):
            interiors[b].append(plane.ravel())
        if variant == "declared":
            write_raw_geotiff(root / f"edge{i}.tif", nodata_border(inner, 3, 0), nodata=0,
                              descriptions=["B04", "B03", "B02"])
        else:
            write_raw_geotiff(root / f"edge{i}.tif", nodata_border(inner.astype("float32"), 2, np.nan),
                              descriptions=["B04", "B03", "B02"])
    folder = root / "patch"
    folder.mkdir()
    for band, nodata in (("B04", 0), ("B03", 65535)):
        inner = rng.integers(1, 5000, (1, 4, 4)).astype("uint16")
        interiors[band].append(inner.ravel())
        write_raw_geotiff(folder / f"patch_{band}.tif", nodata_border(inner, 2, nodata), nodata=nodata)
    return root, {b: np.concatenate(v).astype(np.float64) for b, v in interiors.items()}


def _assert_interior_stats(mean: dict, std: dict, count: dict, interiors: dict) -> None:
    for b, valid in interiors.items():
        assert count[b] == valid.size, b
        assert mean[b] == pytest.approx(valid.mean(), rel=1e-12), b
        assert std[b] == pytest.approx(valid.std(), rel=1e-10), b


def test_nodata_border_stays_out_of_compute_stats(tmp_path):
    root, interiors = _bordered_sources(tmp_path / "edges")
    st = compute_stats([root], progress=False)["s2"]
    assert st.extra["items"] == 3
    _assert_interior_stats(st.mean, st.std, st.extra["count"], interiors)
    assert st.extra["min"]["B03"] >= 1 and st.extra["max"]["B03"] < 5000  # neither 0 nor 65535 got in


def test_nodata_border_stays_out_of_cli_stats(tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    root, interiors = _bordered_sources(tmp_path / "edges")
    out = tmp_path / "stats.json"
    res = CliRunner().invoke(app, ["stats", str(root), "--output", str(out)])
    assert res.exit_code == 0, res.output
    s2 = json.loads(out.read_text())["s2"]
    _assert_interior_stats(s2["mean"], s2["std"], s2["count"], interiors)


def test_running_stats_leave_masked_pixels_out():
    px = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    invalid = np.zeros_like(px, dtype=bool)
    invalid[0, 0] = True  # first row of band 0 is nodata
    rs = RunningStats()
    rs.update(px, ["VV", "VH"], invalid)
    st = rs.result()
    assert st.mean["VV"] == pytest.approx(px[0, 1:].mean()) and st.extra["count"] == {"VV": 6, "VH": 9}
    assert st.mean["VH"] == pytest.approx(px[1].mean())


def test_offset_products_and_older_ones_give_the_same_statistics(tmp_path):
    rng = np.random.default_rng(9)
    dn = rng.integers(1, 6000, (2, 8, 8)).astype("uint16")
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "untagged").mkdir()
    write_raw_geotiff(tmp_path / "old" / "a.tif", dn, descriptions=["B04", "B03"])
    write_raw_geotiff(tmp_path / "new" / "a.tif", dn + 1000, descriptions=["B04", "B03"],
                      tags={"BOA_ADD_OFFSET": -1000, "BOA_QUANTIFICATION_VALUE": 10000})
    write_raw_geotiff(tmp_path / "untagged" / "a.tif", dn + 1000, descriptions=["B04", "B03"])
    old = compute_stats([tmp_path / "old"], progress=False)["s2"]
    new = compute_stats([tmp_path / "new"], progress=False)["s2"]
    told = compute_stats([tmp_path / "untagged"], radiometry="offset-1000", progress=False)["s2"]
    raw = compute_stats([tmp_path / "untagged"], progress=False)["s2"]  # unknown radiometry: as read
    for b in ("B04", "B03"):
        assert new.mean[b] == pytest.approx(old.mean[b], rel=1e-12) == pytest.approx(told.mean[b], rel=1e-12)
        assert new.std[b] == pytest.approx(old.std[b], rel=1e-9)
        assert raw.mean[b] == pytest.approx(old.mean[b] + 1000, rel=1e-12)
    assert new.extra["radiometry"] == {"scale": 1e-4, "offset": 0.0, "level": None,
                                       "source": "Sentinel-2 reflectance x 10000, no offset"}
    with pytest.raises(ValueError, match="--radiometry"):
        compute_stats([tmp_path / "old"], radiometry="toa", progress=False)


def test_cli_stats_bad_radiometry_names_the_option(tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    write_raw_geotiff(tmp_path / "a.tif", np.ones((2, 4, 4), "uint16"), descriptions=["B04", "B03"])
    res = CliRunner().invoke(app, ["stats", str(tmp_path), "--output", str(tmp_path / "s.json"), "--radiometry", "toa"])
    assert res.exit_code == 2 and "--radiometry" in res.output and "l2a-offset" in res.output
    assert not (tmp_path / "s.json").exists()


def test_nodata_border_stays_out_of_training_statistics(tmp_path):
    from types import SimpleNamespace

    from spectraclip.train.model_setup import normalization_for

    root, interiors = _bordered_sources(tmp_path / "edges")
    recipe = SimpleNamespace(normalization=None, model=SimpleNamespace(stats="data"), data=SimpleNamespace(train=root))
    stats, source = normalization_for(recipe)  # what `model.stats: data` trains with
    assert str(root) in source
    for b, valid in interiors.items():
        assert stats.mean[b] == pytest.approx(valid.mean(), rel=1e-12)
        assert stats.std[b] == pytest.approx(valid.std(), rel=1e-10)
