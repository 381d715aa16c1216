"""Dataset modules: every layout, band selection by name, labels, and helpful missing-data errors."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_datasets import (
    REAL_DATA,
    make_bigearthnet_v1,
    make_bigearthnet_v2,
    make_eurosat,
    make_labelled_folder,
    make_manifest,
    make_meterml,
    make_resisc45,
)

from spectraclip.bands import MissingBandError
from spectraclip.data.bigearthnet import BigEarthNet, label_tables, to_19_classes
from spectraclip.data.errors import DatasetError, DatasetNotFoundError
from spectraclip.data.eurosat import EuroSATMS
from spectraclip.data.folder import LabelledFolder, LabelledManifest
from spectraclip.data.meterml import METERML
from spectraclip.data.registry import UnknownDatasetError, available_datasets, load_dataset
from spectraclip.data.resisc45 import RESISC45


def test_eurosat_plain_layout_is_all_test(tmp_path):
    ds = EuroSATMS(make_eurosat(tmp_path))
    assert len(ds) == 20 and ds.split_source.startswith("all files")
    s = ds[0]
    assert s.bands.names[-1] == "B8A" and s.shape == (13, 16, 16)
    assert s.meta["labels"] == ["AnnualCrop"] and s.id == "AnnualCrop/AnnualCrop_1"
    assert ds.targets().tolist()[:4] == [0, 0, 1, 1]
    assert "brushland" in ds.class_prompt_names()[2]
    with pytest.raises(DatasetNotFoundError, match="eurosat-train.txt"):
        EuroSATMS(tmp_path, split="train")


def test_eurosat_split_folders_and_files(tmp_path):
    ds = EuroSATMS(make_eurosat(tmp_path / "a", layout="splits"), split="train")
    assert len(ds) == 10 and all(i.id.startswith("train/") for i in ds.items)
    assert len(EuroSATMS(tmp_path / "a", split="all")) == 20
    ds = EuroSATMS(make_eurosat(tmp_path / "b", layout="splitfiles"), split="test")
    assert len(ds) == 10 and "split file" in ds.split_source


def test_eurosat_band_selection_by_name(tmp_path):
    root = make_eurosat(tmp_path, per_class=1)
    full, rgb = EuroSATMS(root), EuroSATMS(root, bands="rgb")
    np.testing.assert_array_equal(rgb[0].pixels, full[0].pixels[[3, 2, 1]])
    with pytest.raises(MissingBandError, match="VV"):
        EuroSATMS(root, bands="B04,VV")


def test_missing_data_says_what_to_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="zenodo") as exc:
        EuroSATMS(tmp_path / "nowhere")
    assert "nowhere" in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="bigearth.net"):
        BigEarthNet(tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match="meter-ml"):
        METERML(tmp_path / "empty")


def test_bigearthnet_label_mapping_is_complete():
    t = label_tables()
    assert len(t["labels43"]) == 43 and len(t["labels19"]) == 19
    assert {v for v in t["map43to19"].values() if v} == set(t["labels19"])
    assert to_19_classes(["Water bodies", "Peatbogs", "Coniferous forest", "Airports"]) == [
        "Coniferous forest", "Inland wetlands", "Inland waters"]
    with pytest.raises(DatasetError, match="Atlantis"):
        to_19_classes(["Atlantis"])


def test_bigearthnet_v1_with_and_without_s1(tmp_path):
    s2 = make_bigearthnet_v1(tmp_path)
    ds = BigEarthNet(s2)
    assert len(ds) == 3 and ds.dropped == ["S2B_MSIL2A_20170924T93020_2_2"] and ds.multilabel
    s = ds[1]
    assert s.shape == (12, 12, 12) and s.meta["labels"] == ["Coniferous forest", "Inland wetlands", "Inland waters"]
    assert ds.targets().shape == (3, 19) and ds.targets().sum() == 6
    s1 = BigEarthNet(s2, include_s1=True)
    assert s1[0].bands.names[-2:] == ("VV", "VH") and s1[0].shape == (14, 12, 12)
    assert BigEarthNet(s2, num_classes=43).targets().shape == (4, 43)


def test_bigearthnet_v2_metadata(tmp_path):
    root = make_bigearthnet_v2(tmp_path)
    ds = BigEarthNet(root, split="test")
    assert ds.version == "v2" and len(ds) == 2 and ds[1].meta["labels"] == ["Marine waters"]
    assert len(BigEarthNet(root, split="train")) == 1


def test_meterml_geojson_layout(tmp_path):
    root = make_meterml(tmp_path)
    ds = METERML(root)
    assert len(ds) == 4 and len(ds.skipped) == 1  # the Mines-Landfills image is multi-label
    s = ds[0]
    assert s.shape == (13, 12, 12) and s.bands.names[:4] == ("B01", "B02", "B03", "B04")
    assert s.meta["labels"] == ["CAFOs"]
    ml = METERML(root, multilabel=True, include_s1=True)
    assert len(ml) == 5 and ml.targets().shape == (5, 7) and ml[3].shape == (15, 12, 12)


def test_resisc45_rgb_folders(tmp_path):
    ds = RESISC45(make_resisc45(tmp_path))
    assert ds.classes == ["airplane", "beach", "forest"] and len(ds) == 6
    s = ds[0]
    assert s.bands.names == ("B04", "B03", "B02") and s.pixels.max() <= 3000.0


def test_folder_and_manifest(tmp_path):
    ds = LabelledFolder(make_labelled_folder(tmp_path / "f"))
    assert ds.classes == ["maize", "wheat"] and ds.bands.names == ("B02", "B03", "B04", "B08")
    assert ds[0].meta["labels"] == ["maize"]
    csv_path = make_manifest(tmp_path / "m")
    with pytest.raises(Exception, match="band"):  # 4 undescribed bands: the order must be given
        LabelledManifest(csv_path)
    man = LabelledManifest(csv_path, file_bands="s2-10m")
    assert man.multilabel and len(man) == 3 and man.classes == ["forest", "urban", "water"]
    assert man[0].meta["labels"] == ["forest", "water"] and man.targets().tolist()[2] == [0, 1, 1]
    single = LabelledManifest(make_manifest(tmp_path / "s", multilabel=False), file_bands="s2-10m", split="all")
    assert not single.multilabel and len(single) == 4


def test_registry(tmp_path):
    assert {"eurosat-ms", "bigearthnet", "meter-ml", "resisc45", "folder"} <= set(available_datasets())
    assert len(load_dataset("eurosat", make_eurosat(tmp_path, per_class=1))) == 10
    with pytest.raises(UnknownDatasetError, match="eurosat-ms"):
        load_dataset("imagenet", tmp_path)


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="../shared/data not available")
def test_real_eurosat_and_bigearthnet():
    ds = EuroSATMS(REAL_DATA / "eurosat-ms-mini")
    assert len(ds) == 54 and set(c for (c,) in (i.labels for i in ds.items)) == set(ds.classes)
    s = ds[0]
    assert s.shape == (13, 64, 64) and s.pixels.max() > 100
    assert len(EuroSATMS(REAL_DATA / "eurosat-ms-mini", split="train")) == 216
    ben = BigEarthNet(REAL_DATA / "bigearthnet-mini" / "BigEarthNet-S2-Example", include_s1=True)
    assert len(ben) == 6 and ben[0].shape == (14, 120, 120)
    assert ben.labels[4] == ["Coniferous forest", "Mixed forest", "Transitional woodland, shrub",
                             "Inland wetlands", "Inland waters"]
