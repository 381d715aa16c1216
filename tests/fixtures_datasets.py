"""Small generated datasets in each layout the `spectraclip.data` modules read (torchgeo-style fakes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from spectraclip.bands import PRESETS

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EUROSAT_CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake")


def write_tif(path: Path, array: np.ndarray, res: float = 10.0, descriptions=None) -> Path:
    """A georeferenced GeoTIFF [C,H,W] (UTM 32N), optionally with band descriptions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c, h, w = array.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=c, dtype=array.dtype,
                       crs="EPSG:32632", transform=Affine(res, 0, 500000, 0, -res, 5000000)) as ds:
        ds.write(array)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
    return path


def _pixels(rng, c: int, size: int, dtype=np.uint16) -> np.ndarray:
    return rng.integers(1, 4000, size=(c, size, size)).astype(dtype)


def make_eurosat(root: Path, layout: str = "plain", per_class: int = 2, classes=EUROSAT_CLASSES,
                 seed: int = 0) -> Path:
    """EuroSAT-MS fake: 13-band 16x16 tiles, `plain` (<Class>/<Class>_<n>.tif), `splits`
    ({train,test}/<Class>/...) or `splitfiles` (plain + eurosat-{train,test}.txt)."""
    rng = np.random.default_rng(seed)
    n = 0
    for c in classes:
        for k in range(per_class):
            n += 1
            sub = ""
            if layout == "splits":
                sub = "train/" if k % 2 == 0 else "test/"
            write_tif(root / f"{sub}{c}/{c}_{n}.tif", _pixels(rng, 13, 16))
    if layout == "splitfiles":
        files = sorted(p.name for p in root.rglob("*.tif"))
        (root / "eurosat-train.txt").write_text("\n".join(f.replace(".tif", ".jpg") for f in files[::2]) + "\n")
        (root / "eurosat-test.txt").write_text("\n".join(f.replace(".tif", ".jpg") for f in files[1::2]) + "\n")
    return root


_BEN_RES = {"B01": 60, "B09": 60, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}
BEN_PATCHES = {
    "S2A_MSIL2A_20170613T101031_1_1": ["Non-irrigated arable land", "Pastures"],
    "S2A_MSIL2A_20170613T101031_1_2": ["Coniferous forest", "Water bodies", "Peatbogs"],
    "S2B_MSIL2A_20170924T93020_2_1": ["Sea and ocean"],
    "S2B_MSIL2A_20170924T93020_2_2": ["Airports"],  # no 19-class label -> dropped
}


def _ben_patch(folder: Path, pid: str, rng, size: int = 12) -> None:
    for b in PRESETS["s2-l2a"]:
        res = _BEN_RES.get(b, 10)
        s = size * 10 // res
        write_tif(folder / f"{pid}_{b}.tif", _pixels(rng, 1, s), res=float(res))


def make_bigearthnet_v1(root: Path, with_s1: bool = True, seed: int = 0) -> Path:
    """`root/S2/<patch>/...` with labels JSON, `root/S1/<s1 patch>/` with VV/VH; returns the S2 folder."""
    rng = np.random.default_rng(seed)
    s2 = root / "BigEarthNet-S2"
    for i, (pid, labels) in enumerate(BEN_PATCHES.items()):
        _ben_patch(s2 / pid, pid, rng)
        (s2 / pid / f"{pid}_labels_metadata.json").write_text(json.dumps({"labels": labels}))
        if with_s1:
            s1id = f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{i}_0"
            for pol in ("VV", "VH"):
                write_tif(root / "BigEarthNet-S1" / s1id / f"{s1id}_{pol}.tif",
                          rng.normal(-15, 3, size=(1, 12, 12)).astype(np.float32))
            (root / "BigEarthNet-S1" / s1id / f"{s1id}_labels_metadata.json").write_text(
                json.dumps({"labels": labels, "corresponding_s2_patch": pid}))
    return s2


def make_bigearthnet_v2(root: Path, seed: int = 0) -> Path:
    """reBEN layout: metadata.parquet + BigEarthNet-S2/<tile>/<patch_id>/..."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = [("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57", ["Arable land", "Pastures"], "test"),
            ("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_58", ["Marine waters"], "test"),
            ("S2B_MSIL2A_20170924T093020_N9999_R136_T35VPK_10_11", ["Mixed forest"], "train")]
    for pid, _, _ in rows:
        tile = "_".join(pid.split("_")[:-2])
        _ben_patch(root / "BigEarthNet-S2" / tile / pid, pid, rng)
    pq.write_table(pa.table({"patch_id": [r[0] for r in rows], "labels": [r[1] for r in rows],
                             "split": [r[2] for r in rows]}), root / "metadata.parquet")
    return root


def make_meterml(root: Path, seed: int = 0) -> Path:
    """METER-ML fake: test_dataset.geojson + image folders with the four product GeoTIFFs."""
    rng = np.random.default_rng(seed)
    feats = []
    types = ["CAFOs", "Landfills", "Negative", "Mines-Landfills", "WWTreatment"]
    for i, t in enumerate(types):
        rel = f"test_images/{30 + i}.5_-90.{i}"
        for product, c, size in (("sentinel-2-10m", 4, 12), ("sentinel-2-20m", 6, 6), ("sentinel-2-60m", 3, 2),
                                 ("sentinel-1", 2, 12)):
            write_tif(root / rel / f"{product}.tif", _pixels(rng, c, size), res=120 / size)
        feats.append({"type": "Feature", "geometry": None,
                      "properties": {"Image_Folder": rel, "Type": t, "Latitude": 30 + i, "Longitude": -90}})
    (root / "test_dataset.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return root


def make_resisc45(root: Path, classes=("airplane", "beach", "forest"), per_class: int = 2, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)).save(root / c / f"{c}_{k:03d}.jpg")
    return root


def make_labelled_folder(root: Path, seed: int = 0) -> Path:
    """<root>/<Class>/*.tif with 4 named bands (descriptions B02,B03,B04,B08)."""
    rng = np.random.default_rng(seed)
    for c in ("wheat", "maize"):
        for k in range(3):
            write_tif(root / c / f"{c}{k}.tif", _pixels(rng, 4, 8), descriptions=["B02", "B03", "B04", "B08"])
    return root


def make_manifest(root: Path, multilabel: bool = True, seed: int = 0) -> Path:
    """A CSV manifest over 4-band files without band descriptions (order comes from `file_bands`)."""
    rng = np.random.default_rng(seed)
    rows = [("a.tif", "forest;water", "test"), ("b.tif", "forest", "test"), ("c.tif", "urban", "train"),
            ("d.tif", "water|urban", "test")]
    if not multilabel:
        rows = [(p, lbl.split(";")[0].split("|")[0], s) for p, lbl, s in rows]
    for p, _, _ in rows:
        write_tif(root / "img" / p, _pixels(rng, 4, 8))
    path = root / "labels.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "labels", "split"])
        for p, lbl, s in rows:
            w.writerow([f"img/{p}", lbl, s])
    return path
