"""Model and preprocessing fingerprints, and the refusal of tables from another embedding space (search CLI)."""

from __future__ import annotations

import pytest
import torch
from fixtures_datasets import make_eurosat
from fixtures_models import randomize
from typer.testing import CliRunner

from spectraclip.embeddings import read_embeddings, write_embeddings
from spectraclip.errors import FingerprintMismatchError, SpectraclipError
from spectraclip.identity import (
    Fingerprints,
    check_fingerprints,
    check_same_space,
    preprocessing_spec,
)
from spectraclip.models.checkpoints import load_bundle, save_bundle
from spectraclip.models.loading import load_model

torch.set_num_threads(1)


def _tiny(seed: int):
    """A `tiny-test`-shaped model for EuroSAT bands with seeded weights: same bands and dimension, other weights."""
    return randomize(load_model("tiny-test", bands="eurosat-ms"), seed=seed)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {s: save_bundle(_tiny(s), root / f"tiny-seed{s}") for s in (1, 2)}


def test_same_shape_other_weights_differ_in_model_fingerprint_only():
    a, b = _tiny(1), _tiny(2)
    fa, fb = Fingerprints.of(a), Fingerprints.of(b)
    assert a.embed_dim == b.embed_dim and a.bands == b.bands
    assert fa.model != fb.model and fa.preprocessing == fb.preprocessing
    assert Fingerprints.of(_tiny(1)) == fa  # deterministic for the same weights
    assert Fingerprints.from_metadata(fa.to_metadata()) == fa
    assert Fingerprints.from_metadata({"model_fingerprint": "x"}) is None


def test_preprocessing_fingerprint_follows_normalisation_and_bands():
    a, b = _tiny(1), _tiny(1)
    b.config.inputs[0].mean[0] += 1.0  # same weights, other normalisation
    assert Fingerprints.of(a).model == Fingerprints.of(b).model
    assert Fingerprints.of(a).preprocessing != Fingerprints.of(b).preprocessing
    spec = preprocessing_spec(a)
    group = spec["groups"][0]
    assert group["bands"][-1] == "B8A" and spec["image_size"] == 32 and len(group["mean"]) == 13
    c = _tiny(1).set_input_options(missing_bands="fill")  # a run-time policy is part of the preprocessing
    assert Fingerprints.of(c).preprocessing != Fingerprints.of(a).preprocessing


def test_cached_fingerprint_follows_in_place_weight_changes():
    m = _tiny(1)
    before = Fingerprints.of(m).model
    with torch.no_grad():
        next(m.parameters()).add_(0.5)  # what an optimiser step does
    assert Fingerprints.of(m).model != before


def test_fingerprints_survive_a_bundle_round_trip(bundles):
    assert Fingerprints.of(load_bundle(bundles[1])) == Fingerprints.of(_tiny(1))


def test_check_fingerprints_names_both_and_force_accepts():
    a, b = _tiny(1), _tiny(2)
    fa, fb = Fingerprints.of(a), Fingerprints.of(b)
    check_fingerprints(fa.to_metadata(), a, "t.parquet")  # the same space passes
    with pytest.raises(FingerprintMismatchError) as exc:
        check_fingerprints(fa.to_metadata(), b, "t.parquet", model_label="seed2")
    msg = str(exc.value)
    assert "t.parquet" in msg and fa.model in msg and fb.model in msg and "seed2" in msg and "--force" in msg
    assert "preprocessing fingerprint" not in msg  # only what differs is named
    assert isinstance(exc.value, SpectraclipError)
    check_fingerprints(fa, b, "t.parquet", force=True)
    with pytest.raises(FingerprintMismatchError, match="records no model fingerprint"):
        check_fingerprints({}, a, "old.parquet")
    check_fingerprints(None, a, "old.parquet", force=True)


def test_check_same_space():
    fa, fb = Fingerprints("m1", "p1"), Fingerprints("m1", "p2")
    check_same_space({"a": fa, "b": Fingerprints("m1", "p1")}, "merge")
    with pytest.raises(FingerprintMismatchError, match=r"a: model m1, preprocessing p1; b: model m1, preprocessing p2"):
        check_same_space({"a": fa, "b": fb}, "merge")
    with pytest.raises(FingerprintMismatchError, match="b record"):
        check_same_space({"a": fa, "b": None}, "merge")
    check_same_space({"a": fa, "b": fb}, "merge", force=True)


def test_search_refuses_a_table_of_another_model_of_the_same_shape(bundles, tmp_path):
    from spectraclip.cli.main import app

    root = make_eurosat(tmp_path / "es", per_class=1, classes=("AnnualCrop", "Forest", "River"))
    table = tmp_path / "seed1.parquet"
    runner = CliRunner()
    made = runner.invoke(app, ["embed", str(root), "-o", str(table), "--checkpoint", str(bundles[1]),
                               "--bands", "eurosat-ms", "--device", "cpu", "--workers", "0"])
    assert made.exit_code == 0, made.output
    recorded = read_embeddings(table).fingerprints
    other = Fingerprints.of(load_bundle(bundles[2]))
    assert recorded is not None and recorded.model != other.model and recorded.preprocessing == other.preprocessing

    search = ["search", str(table), "-q", "a river", "-k", "2", "--device", "cpu"]
    ok = runner.invoke(app, [*search, "--checkpoint", str(bundles[1])])
    assert ok.exit_code == 0, ok.output
    refused = runner.invoke(app, [*search, "--checkpoint", str(bundles[2])])
    assert refused.exit_code == 2
    text = " ".join(refused.output.split())  # undo the console's line wrapping
    assert "another embedding space" in text and "model fingerprint" in text
    assert recorded.model in text and other.model in text
    assert str(bundles[2].name) in text and "--force" in text
    forced = runner.invoke(app, [*search, "--checkpoint", str(bundles[2]), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "River" in forced.output or "AnnualCrop" in forced.output or "Forest" in forced.output

    # a table that records no fingerprint: refused too, with a message saying so; --force accepts it
    emb = read_embeddings(table)
    bare = write_embeddings(tmp_path / "bare.parquet", emb.ids, emb.vectors)
    search_bare = ["search", str(bare), "-q", "a river", "--device", "cpu", "--checkpoint", str(bundles[1])]
    no_fp = runner.invoke(app, search_bare)
    assert no_fp.exit_code == 2 and "records no model fingerprint" in " ".join(no_fp.output.split())
    assert runner.invoke(app, [*search_bare, "--force"]).exit_code == 0


def test_multisensor_models_have_fingerprints_of_each_modality():
    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP

    torch.manual_seed(0)
    a = SpectralCLIP.from_config(tiny_group_config({"s2": "s2-l1c", "s1": "s1"}))
    spec = {g["name"]: g for g in preprocessing_spec(a)["groups"]}
    assert spec["s1"]["bands"] == ["VV", "VH"] and len(spec["s2"]["mean"]) == 13
    b = SpectralCLIP.from_config(tiny_group_config({"s2": "s2-l1c"}))
    assert Fingerprints.of(a).preprocessing != Fingerprints.of(b).preprocessing


def test_cached_fingerprint_follows_replaced_tensors():
    m = _tiny(1)
    p = next(m.parameters())
    first = p.data + 1.0
    p.data = first  # new storage, modification counter at 0
    before = Fingerprints.of(m).model
    second = first + 1.0  # `first` stays alive, so the new storage has another address
    p.data = second  # counter at 0 again: only the address tells the cache it is stale
    assert Fingerprints.of(m).model != before
