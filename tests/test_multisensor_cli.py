"""`spectraclip embed --layout`: multi-file items through the one encode path, embedded by a multi-group bundle
with S2 only, S1 only, both, and bands removed; the table records the groups used and the bands filled."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_multisensor import write_multisensor_set
from typer.testing import CliRunner

from spectraclip.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    import torch

    from spectraclip.models.checkpoints import save_bundle
    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP

    torch.manual_seed(0)
    model = SpectralCLIP.from_config(tiny_group_config({"s2": "rgb", "s1": "s1"}))
    return save_bundle(model, tmp_path_factory.mktemp("ms") / "bundle")


def _embed(*args):
    result = runner.invoke(app, ["embed", *map(str, args)])
    return result


def test_embed_layout_records_modalities_and_bands(tmp_path, bundle):
    from spectraclip.embeddings import read_embeddings

    manifest = write_multisensor_set(tmp_path / "d", n=4, val=0, s1_only=1, s2_only=1)
    out = tmp_path / "all.parquet"
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "-o", out)
    assert r.exit_code == 0, r.output
    t = read_embeddings(out)
    assert t.ids == ["p00", "p01", "p02", "p03"]
    assert t.columns["groups"] == ["s2,s1", "s2,s1", "s2", "s1"]
    assert t.columns["bands"][0] == "B04,B03,B02,VV,VH" and t.columns["filled_bands"] == ["", "", "", ""]
    assert json.loads(t.columns["sources"][3])["s1"].endswith("p03_s1.npy")
    assert t.metadata["layout"] == "manifest" and t.metadata["groups"] == ["s2", "s1"]
    np.testing.assert_allclose(np.linalg.norm(t.vectors, axis=1), 1, atol=1e-5)

    s1 = tmp_path / "s1.parquet"  # S1 only: the S2-only item has nothing left and is reported, not fatal
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "--modalities", "s1", "-o", s1)
    assert r.exit_code == 0, r.output
    t1 = read_embeddings(s1)
    assert t1.ids == ["p00", "p01", "p03"] and set(t1.columns["groups"]) == {"s1"}
    assert "skipped 1" in r.output and "p02" in r.output
    np.testing.assert_allclose(t1.vectors[2], t.vectors[3], atol=1e-6)  # S1-only item: same embedding either way

    s2 = tmp_path / "s2.parquet"
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "--modalities", "s2", "-o", s2)
    assert r.exit_code == 0 and read_embeddings(s2).columns["groups"] == ["s2", "s2", "s2"]

    dropped = tmp_path / "drop.parquet"
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "--drop-bands", "B02,VH", "-o", dropped)
    assert r.exit_code == 0, r.output
    td = read_embeddings(dropped)
    assert td.columns["bands"][0] == "B04,B03,VV" and td.columns["filled_bands"][0] == "B02,VH"
    assert td.metadata["excluded_bands"] == ["B02", "VH"]
    assert not np.allclose(td.vectors[0], t.vectors[0])


def test_embed_layout_errors_name_the_problem(tmp_path, bundle):
    from spectraclip.embeddings import read_embeddings

    manifest = write_multisensor_set(tmp_path / "d", n=2, val=0)
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "--modalities", "coherence",
               "-o", tmp_path / "x.parquet")
    assert r.exit_code == 2 and "no 'coherence' input group" in r.output
    # a single-group model reads the same items through the same path: its bands, co-registered
    r = _embed(manifest, "--model", "tiny-test", "--model-bands", "rgb", "--layout", "manifest",
               "-o", tmp_path / "rgb.parquet")
    assert r.exit_code == 0 and "0 skipped" in r.output
    assert read_embeddings(tmp_path / "rgb.parquet").columns["bands"] == ["B04,B03,B02"] * 2
    r = _embed(tmp_path / "d", "--checkpoint", bundle, "--layout", "ssl4eo", "-o", tmp_path / "x.parquet")
    assert r.exit_code == 2 and "SSL4EO" in r.output


def test_embed_layout_resumes_after_a_crash_and_refuses_other_settings(tmp_path, bundle, monkeypatch):
    from spectraclip import embeddings
    from spectraclip.embeddings import read_embeddings

    manifest = write_multisensor_set(tmp_path / "d", n=5, val=0, s2_only=1)
    clean = tmp_path / "clean.parquet"
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "--batch-size", "2", "-o", clean)
    assert r.exit_code == 0, r.output

    real_write, calls = embeddings.PartWriter.write, {"n": 0}

    def crash_after_one_part(self, *a, **k):
        if calls["n"] == 1:
            raise KeyboardInterrupt  # the job dies after its first part of 2 items
        calls["n"] += 1
        return real_write(self, *a, **k)

    out = tmp_path / "emb.parquet"
    monkeypatch.setattr(embeddings.PartWriter, "write", crash_after_one_part)
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "--batch-size", "2", "-o", out)
    assert r.exit_code != 0
    monkeypatch.setattr(embeddings.PartWriter, "write", real_write)
    assert not out.exists() and len(list((tmp_path / "emb.parquet.parts").glob("part-*.parquet"))) == 1

    # resuming with other settings would mix two embedding spaces in one table: refused, parts kept
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "--modalities", "s1", "-o", out)
    assert r.exit_code == 2 and "modalities_requested" in r.output and "emb.parquet.parts" in r.output
    seen = []
    from spectraclip.io.layouts import LayoutDataset

    real_get = LayoutDataset.__getitem__  # which items the resumed run reads
    monkeypatch.setattr(LayoutDataset, "__getitem__", lambda self, i: seen.append(self.items[i].id) or
                        real_get(self, i))
    r = _embed(manifest, "--checkpoint", bundle, "--layout", "manifest", "--batch-size", "2", "--workers", "0",
               "-o", out)
    assert r.exit_code == 0, r.output
    assert "(2 kept from an earlier run)" in r.output and seen == ["p02", "p03", "p04"]
    t, ref = read_embeddings(out), read_embeddings(clean)
    assert t.ids == ref.ids and t.columns == ref.columns
    np.testing.assert_allclose(t.vectors, ref.vectors, atol=1e-6)
    assert not (tmp_path / "emb.parquet.parts").exists()
