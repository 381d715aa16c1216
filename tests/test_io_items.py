"""The one item protocol (io/items.py) and the one window reader (a scene map and `embed --windows` skip the same
windows for the same reason)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from fixtures_scenes import make_multiband, pattern

from spectraclip.bands import BandSet
from spectraclip.inference import encode_images, list_items
from spectraclip.io.items import FileItem, Item
from spectraclip.io.layouts import LayoutItem
from spectraclip.io.sample import Sample
from spectraclip.io.scene import SceneReader, WindowSkipped, open_scene, window_grid
from spectraclip.io.window_items import WindowItem, window_items
from spectraclip.models.loading import load_model

RGB = ("B02", "B03", "B04")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_model("tiny-test", bands=",".join(RGB)).eval()


class _Custom:
    """A caller's own item: only `id` and `read()`, nothing the encode path could sniff for."""

    def __init__(self, id_: str, seed: int) -> None:
        self.id, self.seed = id_, seed
        self.calls: list[dict] = []

    def read(self, *, bands=None, nodata="error", radiometry=None) -> Sample:
        rng = np.random.default_rng(self.seed)
        px = rng.uniform(0, 3000, (3, 32, 32)).astype(np.float32)
        return Sample(px, BandSet(RGB), f"sample-{self.id}")


def test_every_item_kind_implements_the_protocol(tmp_path):
    path = make_multiband(tmp_path / "s.tif", RGB, size=64)
    items = [FileItem(str(path), "s"), LayoutItem("l", {"s2": path}), window_items([path], 32)[0],
             _Custom("c", 0), Sample(np.zeros((3, 4, 4), np.float32), BandSet(RGB), "x")]
    assert all(isinstance(it, Item) for it in items)
    assert isinstance(items[0].read(), Sample) and isinstance(items[2].read(nodata="fill"), Sample)


def test_the_encode_path_only_calls_read(model):
    import spectraclip.inference as inference

    assert "hasattr(item" not in inspect.getsource(inference)
    enc = encode_images(model, [_Custom("a", 1), _Custom("b", 2)], progress=False)
    assert enc.ids == ["sample-a", "sample-b"] and enc.vectors.shape == (2, model.embed_dim)
    again = encode_images(model, [_Custom("b", 2)], progress=False)
    np.testing.assert_allclose(again.vectors[0], enc.vectors[1], atol=1e-5)


def test_paths_are_wrapped_once_where_listed(tmp_path, model):
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
    paths = [make_multiband(tmp_path / d / "t.tif", RGB, size=32) for d in ("a", "b")]
    items, ids = list_items([*paths])
    assert ids == ["a/t", "b/t"] and items == [FileItem(str(p), i) for p, i in zip(paths, ids, strict=True)]
    assert list_items(items) == (items, ids)  # listing a listing changes nothing
    enc = encode_images(model, [str(p) for p in paths], progress=False)  # plain paths keep working
    assert enc.ids == ["a/t", "b/t"]
    bad = tmp_path / "c" / "t.tif"
    bad.write_bytes(b"not a tiff")
    enc = encode_images(model, [*paths, bad], progress=False, on_error=lambda *_: None)
    assert [w for w, _ in enc.failed] == [str(bad)]  # a file is named by its path


def _scene_with_gaps(path: Path) -> Path:
    arr = np.stack([pattern(b, 96, 96, 10) for b in RGB]).astype("float32")
    arr[:, :32, :32] = np.nan  # window 0: all nodata
    arr[0, 40, 40] = np.nan  # window 4: one NaN pixel (an error under --nodata error)
    with rasterio.open(path, "w", driver="GTiff", width=96, height=96, count=3, dtype="float32", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500000, 5000000, 10, 10)) as dst:
        dst.write(arr)
        for i, b in enumerate(RGB, start=1):
            dst.set_band_description(i, b)
    return path


@pytest.mark.parametrize("nodata", ["error", "fill"])
def test_map_and_embed_windows_skip_the_same_windows_for_the_same_reason(tmp_path, model, nodata):
    from spectraclip.apps.scene_job import WindowDataset

    path = _scene_with_gaps(tmp_path / "gaps.tif")
    scene = open_scene(path)
    grid = window_grid(96, 96, 32, 32)
    # the scene apps' path (map, heatmap, change): the scene job's window dataset
    ds = WindowDataset(scene, grid, model.preprocessor(), {"nodata": nodata, "max_cloud": 0.5})
    mapped = {ds[i]["window"].index: (ds[i]["skipped"], ds[i]["message"]) for i in range(len(ds))}
    map_skips = {i: v for i, v in mapped.items() if v[0] is not None}
    # `embed --windows`: window items through the batch encode path
    items = window_items([path], 32, max_cloud=0.5)
    errors: list[tuple[str, str]] = []
    enc = encode_images(model, items, nodata=nodata, progress=False, on_error=lambda w, m: errors.append((w, m)))
    expected = {0: "nodata", 4: "error"} if nodata == "error" else {0: "nodata"}
    assert {i: r for i, (r, _) in map_skips.items()} == expected
    assert {int(w.rsplit(":", 1)[1]): m for w, m in errors} == {
        i: f"WindowSkipped: {msg}" for i, (_, msg) in map_skips.items()}
    assert len(enc.ids) == 9 - len(expected)
    # one convention: the reason key and "<scene> <window>: why", raised as WindowSkipped by an item read
    assert map_skips[0][1] == f"{path} {grid[0].name}: 100% nodata"
    with pytest.raises(WindowSkipped) as err:
        items[0].read(nodata=nodata)
    assert err.value.reason == "nodata" and str(err.value) == map_skips[0][1]
    with SceneReader(scene, nodata=nodata) as reader:
        assert reader.read(grid[0]).skipped == "nodata"


def test_window_item_reader_options_travel_with_the_item(tmp_path):
    path = make_multiband(tmp_path / "s.tif", RGB, size=64)
    it = window_items([path], 32, min_valid=1.0)[0]
    assert isinstance(it, WindowItem) and it.reader == {"min_valid": 1.0}
    assert it.read(nodata="fill").id == it.id
