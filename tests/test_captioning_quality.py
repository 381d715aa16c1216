"""Caption quality: METEOR vs nltk, distinct-n by hand, similarity, report, plot, side-by-side table."""

from __future__ import annotations

import json

import pytest

from spectraclip.captioning.quality import (
    _NoSynonyms,
    caption_quality,
    distinct_n,
    markdown_summary,
    mean_pairwise_similarity,
    meteor,
    wordnet_reader,
    write_quality,
)


def test_distinct_n_hand_example():
    caps = ["a b a b", "a b c"]
    assert distinct_n(caps, 1) == pytest.approx(3 / 7)
    assert distinct_n(caps, 2) == pytest.approx(3 / 5)
    assert distinct_n(caps, 3) == pytest.approx(3 / 3)
    assert distinct_n(caps, 4) == pytest.approx(1 / 1)
    assert distinct_n(["a b"], 3) == 0.0


def test_meteor_exact_match_by_hand():
    # m=3 matches, P=1, R=3/6, Fmean=P*R/(0.9P+0.1R), one chunk: penalty=0.5*(1/3)^3
    fmean = 0.5 / (0.9 + 0.05)
    expected = fmean * (1 - 0.5 * (1 / 3) ** 3)
    assert meteor(["the cat sat on a mat"], "the cat sat", wordnet=_NoSynonyms()) == pytest.approx(expected)


def test_meteor_agrees_with_nltk():
    from nltk.translate.meteor_score import meteor_score

    refs = ["fields of crops surround a small lake", "a lake among farmland"]
    hyp = "cropland surrounding lakes and fields"
    wn, installed = wordnet_reader()
    ours = meteor(refs, hyp)
    nltk_value = meteor_score([r.split() for r in refs], hyp.split(), wordnet=wn if not installed else
                              __import__("nltk.corpus", fromlist=["wordnet"]).wordnet)
    assert ours == pytest.approx(nltk_value)
    assert 0 < ours < 1  # stem matches (lake/lakes, field/fields) count without any corpus


def test_pairwise_similarity():
    assert mean_pairwise_similarity(["a lake", "a lake"]) == pytest.approx(1.0)
    assert mean_pairwise_similarity(["lake water", "forest trees"]) == pytest.approx(0.0)
    assert mean_pairwise_similarity(["one"]) is None


def _manifest(path, caps, failed=0):
    rows = [{"id": f"i{k}", "path": f"i{k}.tif", "captions": [c], "status": "ok"} for k, c in enumerate(caps)]
    rows += [{"id": f"f{k}", "path": "x.tif", "captions": [], "status": "failed", "error": "x"} for k in range(failed)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_report_side_by_side(tmp_path):
    a = _manifest(tmp_path / "a.jsonl", ["a green field near a lake", "snow covers the mountains"], failed=1)
    b = _manifest(tmp_path / "b.jsonl", ["a green field", "a green field"])
    ra = caption_quality(a, references=b)
    rb = caption_quality(b, references=b)
    assert (ra.rows, ra.ok, ra.failed, ra.captions) == (3, 2, 1, 2)
    assert rb.vocabulary == 3 and rb.length["mean"] == 3
    assert rb.meteor == pytest.approx(meteor(["a green field"], "a green field")) and rb.meteor_pairs == 2
    assert rb.mean_pairwise_similarity == pytest.approx(1.0)
    md = markdown_summary([ra, rb])
    assert "| metric | a | b |" in md and "distinct-4" in md and "METEOR vs references" in md
    paths = write_quality([ra, rb], tmp_path / "q")
    assert paths["plot"].stat().st_size > 1000
    assert json.loads(paths["json"].read_text())[0]["name"] == "a"


def test_single_caption_field_is_counted(tmp_path):
    """The issue: `caption-quality` on `{"id", "caption"}` rows printed 0 captions and distinct-n 0.000."""
    m = tmp_path / "single.jsonl"
    m.write_text("".join(json.dumps({"id": str(i), "caption": c}) + "\n"
                         for i, c in enumerate(["a lake among fields", "a road through a forest"])))
    rep = caption_quality(m)
    assert rep.captions == 2 and rep.ok == 2 and rep.vocabulary == 7  # "a" twice
    assert rep.distinct["distinct-1"] == pytest.approx(7 / 9) and rep.distinct["distinct-2"] == pytest.approx(1.0)


def test_manifest_without_caption_field_is_an_error(tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app
    from spectraclip.io.manifest import MissingCaptionFieldError

    m = tmp_path / "nocaps.jsonl"
    m.write_text(json.dumps({"id": "0", "text": "a lake"}) + "\n" + json.dumps({"id": "1", "text": "a road"}) + "\n")
    with pytest.raises(MissingCaptionFieldError, match=r"nocaps\.jsonl: no row has a caption field"):
        caption_quality(m)
    res = CliRunner().invoke(app, ["caption-quality", str(m), "-o", str(tmp_path / "q")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "'captions'" in text and "'text'" in text
    assert not (tmp_path / "q" / "quality.md").exists()
