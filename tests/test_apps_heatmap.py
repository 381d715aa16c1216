"""Dense patch features (ClearCLIP-style last block) for both model layouts, and text heatmaps of scenes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from fixtures_scenes import make_multiband

from spectraclip.apps.dense import DenseUnsupportedError, dense_features, dense_similarity, patch_grid
from spectraclip.apps.heatmap import heatmap_scene
from spectraclip.models.loading import load_model


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-test", bands="s2-l1c").eval()


def test_dense_features_are_unit_patch_vectors_in_the_text_space(model):
    x = torch.randn(2, 13, 32, 32)
    with torch.inference_mode():
        f = dense_features(model, x)
    g = patch_grid(model)
    assert f.shape == (2, model.embed_dim, g, g) == (2, 32, 4, 4)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(2, g, g))
    with torch.inference_mode():
        sim = dense_similarity(model, x, torch.nn.functional.normalize(torch.randn(3, 32), dim=-1))
    assert sim.shape == (2, 3, g, g) and sim.abs().max() <= 1.0 + 1e-5


def test_selfself_attention_differs_from_vanilla_and_unknown_attention_is_refused(model):
    x = torch.randn(1, 13, 32, 32)
    with torch.inference_mode():
        a, b = dense_features(model, x, attention="qq"), dense_features(model, x, attention="vanilla")
    assert not torch.allclose(a, b)
    with pytest.raises(DenseUnsupportedError, match="attention"):
        dense_features(model, x, attention="nope")


def test_multigroup_layout_gives_the_same_dense_features_as_the_single_group_one():
    """A multi-group model whose s2 patch embedding and trunk are copied from a single-group model produces the
    same patch features for the same pixels: the dense path reads both layouts the same way."""
    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP

    torch.manual_seed(0)
    single = load_model("tiny-test", bands="rgb").eval()
    multi = SpectralCLIP.from_config(tiny_group_config({"s2": "rgb", "s1": "s1"})).eval()
    trunk = {k: v for k, v in single.clip.state_dict().items() if not k.startswith("visual.conv1")}
    multi.clip.load_state_dict(trunk, strict=False)
    with torch.no_grad():
        multi.patch_embeds["s2"].weight.copy_(single.clip.visual.conv1.weight)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        a = dense_features(single, x)
        b = dense_features(multi, {"s2": x})
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_model_without_patch_tokens_is_refused(model):
    class Fake:
        config = model.config
        clip = type("C", (), {"visual": torch.nn.Linear(2, 2)})()

    with pytest.raises(DenseUnsupportedError, match="VisionTransformer"):
        patch_grid(Fake())


def test_heatmap_cog_one_float_band_per_query_with_an_overlay(model, tmp_path):
    scene = make_multiband(tmp_path / "s.tif", size=96)
    res = heatmap_scene(model, scene, tmp_path / "heat.tif", ["open water", "dense forest"], progress=False)
    with rasterio.open(res.path) as ds, rasterio.open(scene) as src:
        assert ds.count == 2 and ds.dtypes == ("float32", "float32")
        assert ds.descriptions == ("open water", "dense forest")
        assert ds.crs == src.crs and ds.transform == src.transform
        data = ds.read()
    assert np.isfinite(data).all() and np.abs(data).max() <= 1.0 + 1e-4
    assert data[0].std() > 0  # patch resolution, not one value per window
    assert res.quicklook.exists() and res.quicklook.stat().st_size > 1000
    assert res.summary.encoded == res.summary.windows


def test_dense_path_reads_the_llama3_msclip_layout_and_our_bundles(tmp_path):
    from fixtures_models import llama3_layout, randomize, tiny

    from spectraclip.models.checkpoints import save_bundle

    src = randomize(tiny("msclip"), seed=3).eval()
    path = tmp_path / "Llama3-MS-CLIP-Base.pt"
    torch.save(llama3_layout(src.clip.state_dict()), path)
    published = load_model("tiny-test", checkpoint=str(path)).eval()
    bundle = load_model(checkpoint=str(save_bundle(src, tmp_path / "bundle"))).eval()
    x = torch.randn(1, len(src.bands), 32, 32)
    with torch.inference_mode():
        ref = dense_features(src, x)
        torch.testing.assert_close(dense_features(published, x), ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(dense_features(bundle, x), ref, atol=1e-5, rtol=1e-4)
