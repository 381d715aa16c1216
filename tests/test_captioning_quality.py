"""Caption quality: METEOR vs nltk, distinct-n by hand, similarity, report, plot, side-by-side table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spectraclip.captioning.quality import (
    NoSynonyms,
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
    assert meteor(["the cat sat on a mat"], "the cat sat", wordnet=NoSynonyms()) == pytest.approx(expected)


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


# ---------------------------------------------------------------- references: no match, partial match (issue 27.7)
def _rows(path, rows):
    path.write_text("".join(json.dumps({"id": i, "captions": c}) + "\n" for i, c in rows))
    return path


def test_no_matching_reference_ids_is_an_error_not_a_null(tmp_path):
    from typer.testing import CliRunner

    from spectraclip.captioning.quality import NoMatchingReferencesError
    from spectraclip.cli.main import app
    from spectraclip.errors import SpectraclipError

    m = _rows(tmp_path / "gen.jsonl", [("tile_0", ["a lake"]), ("tile_1", ["a road"])])
    refs = _rows(tmp_path / "refs.jsonl", [("0.tif", ["a lake among fields"]), ("1.tif", ["a road"])])
    with pytest.raises(NoMatchingReferencesError) as info:
        caption_quality(m, references=refs)
    msg = str(info.value)
    assert isinstance(info.value, SpectraclipError)
    assert "gen.jsonl" in msg and "refs.jsonl" in msg and "no id" in msg
    assert "'tile_0'" in msg and "'0.tif'" in msg  # an example of each side
    res = CliRunner().invoke(app, ["caption-quality", str(m), "--references", str(refs), "-o", str(tmp_path / "q")])
    assert res.exit_code == 2 and "no id of the manifest matched" in " ".join(res.output.split())
    assert not (tmp_path / "q" / "quality.md").exists()


def test_partial_reference_match_is_reported(tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    m = _rows(tmp_path / "gen.jsonl", [("a", ["a green field"]), ("b", ["snow on mountains"]),
                                       ("c", ["a harbour", "boats in a harbour"])])
    refs = _rows(tmp_path / "refs.jsonl", [("a", ["a green field"]), ("b", ["snowy mountains"])])
    rep = caption_quality(m, references=refs)
    assert (rep.meteor_pairs, rep.meteor_no_reference, rep.meteor_unmatched_ids) == (2, 2, 1)
    assert rep.meteor_unmatched_examples == ["c"]
    wn = wordnet_reader()[0]
    expected = (meteor(["a green field"], "a green field", wn)
                + meteor(["snowy mountains"], "snow on mountains", wn)) / 2
    assert rep.meteor == pytest.approx(expected)
    md = markdown_summary([rep])
    assert "| METEOR: captions scored | 2 |" in md
    assert "| METEOR: captions without reference (not scored) | 2 (1 id, e.g. 'c') |" in md
    assert rep.to_dict()["meteor_no_reference"] == 2
    res = CliRunner().invoke(app, ["caption-quality", str(m), "--references", str(refs), "-o", str(tmp_path / "q")])
    text = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "2 of 4 captions (1 id, e.g. c) have no reference" in text and "METEOR is over the other 2" in text


# ---------------------------------------------------------------- *_caps.txt + *_filename.txt (issue 27.7)
def _caps_pair(folder, split, captions, names):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}_caps.txt").write_text("".join(c + "\n" for c in captions))
    (folder / f"{split}_filename.txt").write_text("".join(n + "\n" for n in names))
    return folder / f"{split}_caps.txt"


_TEST_CAPS = ["There is a lake .", "A lake among fields .", "Many boats in a harbour .", "A harbour with boats ."]


def test_caps_pair_one_name_per_caption_line(tmp_path):
    from spectraclip.captioning.quality import caps_pair, read_caption_rows

    caps = _caps_pair(tmp_path / "set", "test", _TEST_CAPS, ["1.tif", "1.tif", "2.tif", "2.tif"])
    expected = [{"id": "1.tif", "captions": _TEST_CAPS[:2]}, {"id": "2.tif", "captions": _TEST_CAPS[2:]}]
    filenames = tmp_path / "set" / "test_filename.txt"
    for given in (caps, filenames, tmp_path / "set" / "test", tmp_path / "set"):  # file, sibling, prefix, folder
        assert caps_pair(given) == (caps, filenames)
        assert read_caption_rows(given) == expected
    rep = caption_quality(caps)
    assert (rep.rows, rep.ok, rep.captions) == (2, 2, 4)
    assert rep.per_image_diversity["images"] == 2


def test_caps_pair_one_name_per_block_of_captions(tmp_path):
    """The train splits: one image name per line, five (here two) consecutive captions per name."""
    from spectraclip.captioning.quality import read_caption_rows

    caps = _caps_pair(tmp_path, "train", _TEST_CAPS[:2] + [""] + _TEST_CAPS[3:], ["1.tif", "2.tif"])
    assert read_caption_rows(caps) == [{"id": "1.tif", "captions": _TEST_CAPS[:2]},
                                       {"id": "2.tif", "captions": _TEST_CAPS[3:]}]  # the blank line dropped


def test_caps_pair_errors_name_files_and_counts(tmp_path):
    from spectraclip.captioning.quality import CaptionPairError
    from spectraclip.errors import ManifestError

    caps = _caps_pair(tmp_path / "a", "test", _TEST_CAPS[:3], ["1.tif", "2.tif"])
    with pytest.raises(CaptionPairError, match=r"test_caps\.txt has 3 caption lines and .*test_filename\.txt 2 "
                                               r"image names") as info:
        caption_quality(caps)
    assert isinstance(info.value, ManifestError)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "val_caps.txt").write_text("a lake\n")
    with pytest.raises(CaptionPairError, match=r"val_filename\.txt: not found; val_caps\.txt needs it"):
        caption_quality(tmp_path / "b" / "val_caps.txt")
    _caps_pair(tmp_path / "a", "train", _TEST_CAPS[:2], ["1.tif", "2.tif"])
    with pytest.raises(CaptionPairError, match=r"2 caption files \(test_caps\.txt, train_caps\.txt\)"):
        caption_quality(tmp_path / "a")
    (tmp_path / "notes.txt").write_text("a lake\n")
    with pytest.raises(ManifestError, match=r"notes\.txt: neither a caption manifest .* nor a \*_caps\.txt"):
        caption_quality(tmp_path / "notes.txt")


def test_caps_pair_as_references_for_a_manifest(tmp_path):
    refs = _caps_pair(tmp_path / "human", "test", _TEST_CAPS, ["1.tif", "1.tif", "2.tif", "2.tif"])
    m = _rows(tmp_path / "gen.jsonl", [("1.tif", ["a lake among fields"]), ("2.tif", ["boats in a harbour"])])
    rep = caption_quality(m, references=refs)
    wn = wordnet_reader()[0]
    expected = (meteor(_TEST_CAPS[:2], "a lake among fields", wn)
                + meteor(_TEST_CAPS[2:], "boats in a harbour", wn)) / 2
    assert (rep.meteor_pairs, rep.meteor_no_reference) == (2, 0) and rep.meteor == pytest.approx(expected)


def test_cli_caption_quality_with_caps_files(tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    a = _caps_pair(tmp_path / "a", "test", _TEST_CAPS, ["1.tif", "1.tif", "2.tif", "2.tif"])
    _caps_pair(tmp_path / "b", "test", _TEST_CAPS[:2] + ["Snow covers the hills ."], ["1.tif", "1.tif", "3.tif"])
    res = CliRunner().invoke(app, ["caption-quality", str(a), str(tmp_path / "b" / "test"), "--references", str(a),
                                   "--sample-size", "2", "--draws", "3", "-o", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "1 of 3 captions (1 id, e.g. 3.tif) have no reference" in text
    data = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert [d["name"] for d in data] == ["test_caps", "test"]
    assert [d["captions"] for d in data] == [4, 3] and [d["meteor_pairs"] for d in data] == [4, 2]
    assert data[0]["distinct_sample_size"] == 2 and data[0]["distinct_sample_draws"] == 3
    assert set(data[0]["diversity_definitions"]) == {"distinct", "distinct_sampled", "per_image"}
    md = (tmp_path / "q" / "quality.md").read_text()
    assert "| … samples: draws × K captions (one per image) | 3 × 2 (seed 0) | 3 × 2 (seed 0) |" in md


_UCM = Path("/work/shared/data/rs-captions/ucm")


@pytest.mark.skipif(not (_UCM / "test_caps.txt").is_file(), reason="rs-captions data not present")
def test_real_ucm_test_split(tmp_path):
    """UCM-Captions test split (AMFMN layout): 1050 caption lines, one image name per line, 210 images."""
    from typer.testing import CliRunner

    from spectraclip.captioning.quality import read_caption_rows
    from spectraclip.cli.main import app

    rows = read_caption_rows(_UCM / "test_caps.txt")
    assert len(rows) == 210 and all(len(r["captions"]) == 5 for r in rows)
    assert rows[0]["id"].endswith(".tif")
    res = CliRunner().invoke(app, ["caption-quality", str(_UCM / "test"), "-o", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    (d,) = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert (d["rows"], d["ok"], d["captions"]) == (210, 210, 1050)
    assert 0 < d["distinct"]["mean"] < d["distinct_sampled"]["mean"] < 1  # 100-caption samples repeat less
    assert d["per_image_diversity"]["images"] == 210


# ---------------------------------------------------------------- size-independent distinct-n (issue 27.7)
def _template_captions(n, seed):
    rng = np.random.default_rng(seed)
    adj = ["green", "dense", "bare", "wet", "dry", "large", "small", "bright"]
    noun = ["field", "forest", "lake", "road", "village", "river", "harbour", "quarry", "meadow", "airport"]
    return [f"a {rng.choice(adj)} {rng.choice(noun)} beside a {rng.choice(adj)} {rng.choice(noun)}" for _ in range(n)]


def test_sampled_distinct_is_stable_across_set_sizes_while_whole_set_falls():
    from spectraclip.captioning.quality import sampled_distinct_n

    small, large = _template_captions(200, seed=1), _template_captions(3000, seed=2)
    for n in (1, 2, 3):
        whole_small, whole_large = distinct_n(small, n), distinct_n(large, n)
        assert whole_large < 0.5 * whole_small  # the whole-set figure depends on the size
        s_small = sampled_distinct_n(small, n, sample_size=50, draws=40, seed=0)
        s_large = sampled_distinct_n(large, n, sample_size=50, draws=40, seed=0)
        assert s_small == pytest.approx(s_large, abs=0.03)  # the K-caption figure does not
    assert sampled_distinct_n(small, 2, sample_size=50, seed=3) == sampled_distinct_n(small, 2, sample_size=50, seed=3)
    assert sampled_distinct_n(small[:10], 1, sample_size=50) is None  # fewer captions than K
    assert sampled_distinct_n(["a b a b", "a b c"], 1, sample_size=2, draws=3) == pytest.approx(3 / 7)


def test_sampled_distinct_with_ids_takes_one_caption_per_image():
    """Five captions per image (here five copies): caption samples meet copies, image samples never do."""
    from spectraclip.captioning.quality import sampled_distinct_n

    per_image = _template_captions(60, seed=4)
    caps = [c for c in per_image for _ in range(5)]
    ids = [f"img{i}" for i in range(60) for _ in range(5)]
    by_caption = sampled_distinct_n(caps, 3, sample_size=50, draws=10)
    by_image = sampled_distinct_n(caps, 3, sample_size=50, draws=10, ids=ids)
    one_each = sampled_distinct_n(per_image, 3, sample_size=50, draws=10)
    assert by_image == pytest.approx(one_each, abs=0.02) and by_caption < by_image - 0.05
    assert sampled_distinct_n(caps, 3, sample_size=61, ids=ids) is None  # 60 images < K


def test_report_states_each_diversity_definition(tmp_path):
    from spectraclip.captioning.quality import per_image_diversity

    assert per_image_diversity([["a b", "a b"], ["a b c"]], orders=(1, 2)) == [pytest.approx(0.5), 1.0]
    m = _rows(tmp_path / "m.jsonl", [("x", ["a b", "a b"]), ("y", ["a b c"])])
    rep = caption_quality(m, sample_size=5)
    assert rep.distinct_sampled == {} and rep.per_image_diversity["images"] == 2
    md = markdown_summary([rep])
    assert "| … whole set: captions | 3 |" in md
    assert "| … samples: draws × K captions (one per image) | none: 2 < K = 5 images |" in md
    assert "| … per image: images / captions | 2 / 3 |" in md
    assert "Li et al., 2016" in md and "falls as the set grows" in md and "does not depend on the size" in md
