"""Resize / crop / per-band normalisation on multispectral tensors of any channel count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spectraclip.models.transforms import (
    SpectralTransform,
    TransformError,
    center_crop,
    normalize,
    resize_exact,
    resize_shorter,
)


def _img(c: int = 13, h: int = 40, w: int = 60, seed: int = 0) -> torch.Tensor:
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed)) * 5000


def test_resize_shorter_keeps_aspect_any_channel_count():
    out = resize_shorter(_img(13, 40, 60), 20)
    assert out.shape == (13, 20, 30)
    out = resize_shorter(_img(2, 90, 30), 15)
    assert out.shape == (2, 45, 15)


def test_resize_is_per_channel_and_matches_torch_bicubic_antialias():
    x = _img(10, 48, 64)
    out = resize_shorter(x, 24, "bicubic")
    ref = F.interpolate(x[None], size=(24, 32), mode="bicubic", antialias=True, align_corners=False)[0]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-3)
    # channel 3 alone gives the same result: channels never mix
    torch.testing.assert_close(resize_shorter(x[3:4], 24, "bicubic")[0], out[3], rtol=1e-5, atol=1e-3)


def test_resize_noop_when_already_sized():
    x = _img(4, 32, 50)
    assert resize_shorter(x, 32) is x
    assert resize_exact(_img(4, 16, 16), 16).shape == (4, 16, 16)


def test_center_crop_takes_the_middle():
    x = torch.arange(1 * 6 * 8, dtype=torch.float32).reshape(1, 6, 8)
    out = center_crop(x, 4)
    assert torch.equal(out, x[:, 1:5, 2:6])


def test_normalize_per_band_and_batched():
    x = torch.ones(2, 3, 4, 4) * torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    out = normalize(x, [10.0, 10.0, 10.0], [1.0, 5.0, 10.0])
    assert torch.equal(out[:, 0], torch.zeros(2, 4, 4))
    assert torch.equal(out[:, 1], torch.full((2, 4, 4), 2.0))
    assert torch.equal(out[:, 2], torch.full((2, 4, 4), 2.0))
    with pytest.raises(TransformError, match="3 channels but normalisation has 2"):
        normalize(x, [1.0, 2.0], [1.0, 2.0])


def test_spectral_transform_center_and_none():
    mean, std = tuple(range(13)), tuple([2.0] * 13)
    t = SpectralTransform(16, mean, std, "bilinear", "center")
    out = t(_img(13, 40, 60).numpy().astype(np.uint16))
    assert out.shape == (13, 16, 16) and out.dtype == torch.float32 and out.is_contiguous()
    t2 = SpectralTransform(16, mean, std, "bicubic", "none")
    assert t2(_img(13, 40, 60)).shape == (13, 16, 16)
    assert t2(_img(13, 40, 60)[None].repeat(3, 1, 1, 1)).shape == (3, 13, 16, 16)


def test_spectral_transform_normalises_constant_image_to_zero():
    mean = (100.0, 200.0, 300.0)
    x = np.broadcast_to(np.array(mean, dtype=np.float32)[:, None, None], (3, 20, 30)).copy()
    out = SpectralTransform(8, mean, (1.0, 1.0, 1.0))(x)
    torch.testing.assert_close(out, torch.zeros(3, 8, 8), atol=1e-3, rtol=0)


def test_bad_options_name_the_option():
    with pytest.raises(TransformError, match="resize mode 'lanczos'"):
        SpectralTransform(8, (0.0,), (1.0,), resize="lanczos")
    with pytest.raises(TransformError, match="crop mode 'random'"):
        SpectralTransform(8, (0.0,), (1.0,), crop="random")
    with pytest.raises(TransformError, match="expected"):
        SpectralTransform(8, (0.0,), (1.0,))(torch.zeros(5, 5))


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("shape", [(10, 64, 64), (3, 2, 37, 50), (4, 300, 121)])
@pytest.mark.parametrize("antialias", [True, False])
def test_float_resizing_is_torchvisions_bit_for_bit(mode, shape, antialias):
    """`resize_shorter`/`resize_exact` call interpolate directly (no torchvision import in loader workers); they must
    give exactly what torchvision's v2 resize gives, sizes included, up and down."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    from spectraclip.models.transforms import resize_exact, resize_shorter

    x = torch.rand(*shape) * 3000
    for size in (32, 224):
        want = TF.resize(x, [size], interpolation=InterpolationMode(mode), antialias=antialias)
        assert torch.equal(resize_shorter(x, size, mode, antialias), want)
        want = TF.resize(x, [size, size], interpolation=InterpolationMode(mode), antialias=antialias)
        assert torch.equal(resize_exact(x, size, mode, antialias), want)


@pytest.mark.slow  # a fresh interpreter (~2 s): `make test` only
def test_preparing_a_patch_does_not_import_torchvision(tmp_path):
    """A loader worker's first item used to import torchvision (its InterpolationMode, ~1.4 s with torch._dynamo)
    before the first batch could leave; float resizing no longer needs it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from spectraclip.models.transforms import SpectralTransform\n"
            "t = SpectralTransform(224, (0.0,) * 10, (1.0,) * 10, 'bicubic', 'center')\n"
            "assert t(np.random.rand(10, 64, 64).astype('float32')).shape == (10, 224, 224)\n"
            "print('torchvision' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
