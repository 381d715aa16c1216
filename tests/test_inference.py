"""Inference layer and the classify / search / embed commands, on real Sentinel-2 files with a tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_rasters import DATA, truncate_copy
from typer.testing import CliRunner

from spectraclip.cli.main import app
from spectraclip.embeddings import read_embeddings
from spectraclip.index.query import search_vectors as text_search
from spectraclip.inference import (
    embed_to_table,
    encode_images,
    item_ids,
)
from spectraclip.models.loading import load_model
from spectraclip.zeroshot.classes import ClassSpec
from spectraclip.zeroshot.classifier import ZeroShotClassifier, logit_scale
from spectraclip.zeroshot.text import encode_texts

L2A = DATA / "s2-l2a-examples"
EUROSAT = DATA / "eurosat-ms-mini"
pytestmark = pytest.mark.skipif(not L2A.is_dir(), reason="needs ../shared/data")


@pytest.fixture(scope="module")
def model(tiny_model):
    torch.manual_seed(0)
    # a 32-pixel test model on the 224-pixel example tiles: resizing them into one input is asked for
    return tiny_model("s2-l2a", allow_resize=True)


@pytest.fixture()
def tiles(tmp_path) -> list[Path]:
    out = []
    for src in sorted(L2A.glob("*.tif")):
        dst = tmp_path / "tiles" / src.name
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(src, dst)
        out.append(dst)
    return out


def test_item_ids_are_relative_and_unique(tmp_path):
    paths = [tmp_path / "s2a" / "loc1" / "t.tif", tmp_path / "s2c" / "loc1" / "t.tif"]
    assert item_ids(paths) == ["s2a/loc1/t", "s2c/loc1/t"]
    assert item_ids([tmp_path / "one.tif"]) == ["one"]


def test_encode_images_normalised_batched_equal_unbatched_and_georeferenced(model, tiles):
    enc = encode_images(model, tiles, bands="s2-l2a", batch_size=2, progress=False)
    assert enc.ids == [p.stem for p in tiles] and not enc.failed
    assert enc.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(enc.vectors, axis=1), 1.0, atol=1e-5)
    single = encode_images(model, tiles[:1], bands="s2-l2a", batch_size=1, progress=False)
    np.testing.assert_allclose(single.vectors[0], enc.vectors[0], atol=1e-5)
    meta = enc.samples_meta[0]
    assert meta["crs"].startswith("EPSG:327") and len(meta["transform"]) == 6
    left, bottom, right, top = meta["bounds"]
    assert right - left == pytest.approx(2240) and top - bottom == pytest.approx(2240)  # 224 px at 10 m
    assert -90 < meta["lat"] < 90 and -180 < meta["lon"] < 180


def test_bad_files_are_skipped_and_reported(model, tiles, tmp_path):
    bad = truncate_copy(tiles[0], tmp_path / "tiles" / "zz_truncated.tif")
    errors = []
    enc = encode_images(model, [*tiles, bad], bands="s2-l2a", batch_size=4, progress=False,
                        on_error=lambda where, msg: errors.append((where, msg)))
    assert len(enc.ids) == len(tiles)
    assert len(enc.failed) == 1 and "zz_truncated" in enc.failed[0][0]
    assert errors == enc.failed


def test_band_mismatch_is_an_error_naming_the_band(tiles):
    msclip_model = load_model("tiny-test", bands="msclip").set_input_options(allow_resize=True)
    rgb_only = tiles[0].parent / "rgb.tif"
    from spectraclip.io import read_sample, write_geotiff

    s = read_sample(tiles[0], "s2-l2a").select("rgb")
    write_geotiff(rgb_only, s.pixels, crs=s.crs, transform=s.transform, band_names=list(s.bands))
    enc = encode_images(msclip_model, [rgb_only], progress=False, on_error=lambda *_: None)
    assert not enc.ids and "B05" in enc.failed[0][1]


def test_zero_shot_is_a_template_ensemble(model, tiles):
    enc = encode_images(model, tiles, bands="s2-l2a", progress=False)
    classes, templates = ["sea", "snow field"], ["a satellite image of {}.", "{} seen from space"]
    probs = ZeroShotClassifier.build(model, [ClassSpec(c, c) for c in classes], templates).probabilities(enc.vectors)
    # reference: mean of L2-normalised prompt embeddings, renormalised; softmax of the logit scale x cosine
    ref = []
    for c in classes:
        t = encode_texts(model, [tp.format(c) for tp in templates])
        m = t.mean(0)
        ref.append(m / np.linalg.norm(m))
    logits = logit_scale(model) * enc.vectors @ np.stack(ref).T
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    assert probs.shape == (len(tiles), 2)


def test_text_search_ranks_by_similarity(model, tiles):
    enc = encode_images(model, tiles, bands="s2-l2a", progress=False)
    hits = text_search(model, enc.vectors, enc.ids, ["snow"], top_k=3)["snow"]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and len(hits) == 3
    q = encode_texts(model, ["snow"])[0]
    assert hits[0].id == enc.ids[int(np.argmax(enc.vectors @ q))]


def test_embed_resumes_after_a_crash(model, tiles, tmp_path, monkeypatch):
    out = tmp_path / "emb.parquet"
    clean, _, _ = embed_to_table(model, tiles, tmp_path / "clean.parquet", bands="s2-l2a", batch_size=2,
                                 progress=False)
    from spectraclip import embeddings

    calls = {"n": 0}
    real_write = embeddings.PartWriter.write

    def crash_after_two_batches(self, *a, **k):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the job dies mid-run
        calls["n"] += 1
        return real_write(self, *a, **k)

    monkeypatch.setattr(embeddings.PartWriter, "write", crash_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        embed_to_table(model, tiles, out, bands="s2-l2a", batch_size=2, progress=False)
    monkeypatch.setattr(embeddings.PartWriter, "write", real_write)
    assert not out.exists()
    table, failed, resumed = embed_to_table(model, tiles, out, bands="s2-l2a", batch_size=2, progress=False)
    assert resumed == 4 and not failed
    assert table.ids == clean.ids
    np.testing.assert_allclose(table.vectors, clean.vectors, atol=1e-6)


def test_cli_classify_search_embed(tiles, tmp_path):
    runner = CliRunner()
    folder = str(tiles[0].parent)
    res = runner.invoke(app, ["classify", folder, "--bands", "s2-l2a", "-m", "tiny-test", "--resize",
                              "--classes", "ocean,snow", "--classes", "farmland", "--device", "cpu",
                              "--workers", "0", "-o", str(tmp_path / "c.csv")])
    assert res.exit_code == 0, res.output
    assert "top class" in res.output and "farmland" in res.output
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert len(lines) == 1 + len(tiles) and "p_farmland" in lines[0]

    res = runner.invoke(app, ["embed", folder, "--bands", "s2-l2a", "-m", "tiny-test", "--resize", "--workers", "0",
                              "-o", str(tmp_path / "e.parquet")])
    assert res.exit_code == 0, res.output
    emb = read_embeddings(tmp_path / "e.parquet")
    assert len(emb) == len(tiles) and emb.columns["crs"][0].startswith("EPSG")

    res = runner.invoke(app, ["search", str(tmp_path / "e.parquet"), "-m", "tiny-test", "--resize", "-q", "snow",
                              "-k", "2",
                              "-o", str(tmp_path / "hits.csv")])
    assert res.exit_code == 0, res.output
    hits = (tmp_path / "hits.csv").read_text().splitlines()
    assert len(hits) == 3 and hits[1].split(",")[1] == "1"
    # searching the table with a model that takes other bands is refused, naming both band lists
    res = runner.invoke(app, ["search", str(tmp_path / "e.parquet"), "-m", "tiny-test", "--resize",
                              "--model-bands", "s2-l2a", "-q", "snow"])
    assert res.exit_code == 2 and "embedded with bands" in res.output

    res = runner.invoke(app, ["classify", folder, "-m", "tiny-test", "--resize", "--classes", "only-one"])
    assert res.exit_code == 2 and "at least two classes" in res.output


def test_cli_search_over_rasters(tiles):
    res = CliRunner().invoke(app, ["search", str(tiles[0].parent), "--bands", "s2-l2a", "-m", "tiny-test", "--resize",
                                   "-q", "snow", "-q", "open ocean", "-k", "2", "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "open ocean" in res.output and res.output.count("rank") == 2


def test_cli_models_lists_the_registry():
    res = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "Llama3-MS-CLIP-Base" in res.output and "ibm-esa-geospatial/Llama3-MS-CLIP-base" in res.output


def test_cli_embed_where_every_raster_fails_says_why(tmp_path):
    """EuroSAT files carry no band names: without --bands every one fails; the command says so and exits 2."""
    folder = tmp_path / "river"
    folder.mkdir()
    for src in sorted((EUROSAT / "test" / "River").glob("*.tif"))[:2]:
        shutil.copy(src, folder / src.name)
    out = tmp_path / "e.parquet"
    res = CliRunner().invoke(app, ["embed", str(folder), "-m", "tiny-test", "--resize", "--workers", "0",
                                   "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "nothing could be embedded: all 2 items failed" in res.output and "--bands" in res.output
    assert len(read_embeddings(out)) == 0 and read_embeddings(out).dim == 32  # a valid empty table
