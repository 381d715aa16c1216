"""Device-fitted batch sizes: from the model's activation footprint and the free memory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spectraclip.models.batching import CPU_MAX_BATCH, activation_bytes_per_image, choose_batch_size
from spectraclip.models.loading import load_model
from spectraclip.models.registry import config_from_entry, get_entry


@pytest.fixture(scope="module")
def vit_b16():
    cfg = config_from_entry(get_entry("Llama3-MS-CLIP-Base"))  # the config only: no weights are built
    return SimpleNamespace(config=cfg, image_size=cfg.image_size)


def test_vit_b16_footprint_is_tens_of_megabytes_and_grows_with_input_size(vit_b16):
    per = activation_bytes_per_image(vit_b16)
    assert 8e6 < per < 60e6
    tiny = load_model("tiny-test", bands="msclip")
    assert activation_bytes_per_image(tiny) < per / 100


def test_batch_follows_free_memory_and_caps(vit_b16):
    per = activation_bytes_per_image(vit_b16)
    assert choose_batch_size(vit_b16, "cpu", free_bytes=int(per * 4 * 10)) == 10  # a quarter of free memory
    assert choose_batch_size(vit_b16, "cpu", free_bytes=per) == 1  # never zero
    assert choose_batch_size(vit_b16, "cpu", free_bytes=1 << 40) == CPU_MAX_BATCH
    assert choose_batch_size(vit_b16, "cpu", n_items=5, free_bytes=1 << 40) == 5
    assert 1 <= choose_batch_size(vit_b16, "cpu") <= CPU_MAX_BATCH  # this machine's real free memory
