"""The products' writer (`io.cog.BlockWriter`) writes COGs with internal overviews in the resampling each product
asks for: nearest for class maps (an overview pixel is one of the classes), average for continuous values, so a
tiler reads a zoomed-out tile from a small overview."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import ColorInterp

from spectraclip.io.cog import BlockWriter

SIZE = 1024


def _write(path, arr, resampling, nodata=None):
    w = BlockWriter(path, height=SIZE, width=SIZE, count=arr.shape[0], dtype=arr.dtype.name, crs="EPSG:32633",
                    transform=(10, 0, 500000, 0, -10, 5600000), nodata=nodata).open()
    for top in range(0, SIZE, 256):  # in strips, as the scene runner writes
        w.write(top, arr[:, top:top + 256])
    return w.finish(resampling=resampling)


def test_class_map_overviews_are_nearest(tmp_path):
    rng = np.random.default_rng(0)
    cls = rng.choice(np.array([0, 3, 7], np.uint8), size=(1, SIZE, SIZE))
    out = _write(tmp_path / "map.tif", cls, "nearest")
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.overviews(1) == [2, 4]
        ov = ds.read(1, out_shape=(SIZE // 4, SIZE // 4))  # served from the x4 overview
    assert set(np.unique(ov)) <= {0, 3, 7}  # only classes, never a blend of them


def test_continuous_overviews_are_averages(tmp_path):
    rng = np.random.default_rng(1)
    sim = rng.uniform(0, 1, (1, SIZE, SIZE)).astype(np.float32)
    out = _write(tmp_path / "heat.tif", sim, "average", nodata=float("nan"))
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == [2, 4]
        ov = ds.read(1, out_shape=(SIZE // 2, SIZE // 2))
    np.testing.assert_allclose(ov, sim[0].reshape(SIZE // 2, 2, SIZE // 2, 2).mean((1, 3)), atol=1e-5)


def test_each_product_asks_for_its_resampling():
    """Classes: nearest; similarities, change (scores, and flags whose average > 0.5 is the majority the tiles
    draw), time series: average."""
    import inspect

    from spectraclip.apps.heatmap import _HeatmapHead
    from spectraclip.apps.maps import _MapHead
    from spectraclip.change import scene
    from spectraclip.timeseries import outputs

    assert _MapHead.resampling == "nearest" and _HeatmapHead.resampling == "average"
    assert 'finish(resampling="average")' in inspect.getsource(scene._finish)
    assert 'finish(resampling="average")' in inspect.getsource(outputs)


def test_byte_bands_are_not_read_as_rgb_or_alpha(tmp_path):
    """A uint8 class map with three classes has four byte bands: GDAL's default TIFF photometric would call them
    RGB + alpha (QGIS drew an RGB composite; the last probability band masked the map). They are grey bands."""
    arr = np.zeros((4, SIZE, SIZE), np.uint8)
    arr[1] = 255  # p of the first class; the others 0 (a 0 alpha would hide every pixel)
    out = _write(tmp_path / "map4.tif", arr, "nearest")
    with rasterio.open(out) as ds:
        assert ColorInterp.alpha not in ds.colorinterp and ColorInterp.green not in ds.colorinterp
        assert ds.read_masks(1, out_shape=(64, 64)).min() == 255
