"""METER-ML (Zhu et al., 2022): methane-source facilities in Sentinel-2 (and S1/NAIP) images, 7 classes.

Layout of the release: `<root>/{train,val,test}_dataset.geojson` whose features carry `Image_Folder`
and `Type` (facility types joined by "-", or "Negative"), and per-image folders holding
`sentinel-2-10m.tif` (B04,B03,B02,B08), `sentinel-2-20m.tif` (B05,B06,B07,B8A,B11,B12),
`sentinel-2-60m.tif` (B01,B09,B10) and `sentinel-1.tif` (VV,VH) (`.npy` copies are read too).
Products are resampled (bilinear) to the 10 m grid. A class-per-folder tree of multiband GeoTIFFs
(`<root>/<Class>/*.tif`, band order from `file_bands`) is accepted as well.
Single-label by default: images listing several facility types are left out (`self.skipped`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spectraclip.bands import BandSet
from spectraclip.data.base import Item, LabelledDataset
from spectraclip.data.errors import DatasetNotFoundError
from spectraclip.io.sample import Sample

CLASSES = ("CAFOs", "Landfills", "Mines", "ProcessingPlants", "RefineriesAndTerminals", "WWTreatment", "Negative")
PRODUCTS: dict[str, tuple[str, ...]] = {
    "sentinel-2-10m": ("B04", "B03", "B02", "B08"),
    "sentinel-2-20m": ("B05", "B06", "B07", "B8A", "B11", "B12"),
    "sentinel-2-60m": ("B01", "B09", "B10"),
    "sentinel-1": ("VV", "VH"),
}
_NEGATIVE = {"Negative", "Roundabout"}
DOWNLOAD = "https://stanfordmlgroup.github.io/projects/meter-ml/ (METER-ML train/val/test images + geojson)"


def _types(text: str) -> list[str]:
    out = []
    for t in (x.strip() for x in str(text).split("-")):
        t = "Negative" if t in _NEGATIVE else t
        if t and t not in out:
            out.append(t)
    return out


def _product_file(folder: Path, product: str) -> Path | None:
    for sfx in (".tif", ".tiff", ".npy"):
        if (folder / f"{product}{sfx}").is_file():
            return folder / f"{product}{sfx}"
    return None


class METERML(LabelledDataset):
    """METER-ML; `include_s1` adds VV/VH; `multilabel=True` keeps images with several facility types."""

    name = "meter-ml"
    all_bands = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    prompt_names = {"CAFOs": "concentrated animal feeding operations", "Landfills": "landfills",
                    "Mines": "coal mines", "ProcessingPlants": "natural gas processing plants",
                    "RefineriesAndTerminals": "oil refineries and petroleum terminals",
                    "WWTreatment": "wastewater treatment plants", "Negative": "land without methane sources"}
    citation = "Zhu et al., METER-ML, arXiv:2207.11166 (2022), CC-BY 4.0"

    def __init__(self, root: str | Path, split: str = "test", bands=None, include_s1: bool = False,
                 multilabel: bool = False, file_bands=None) -> None:
        root = Path(root).expanduser()
        self.multilabel = multilabel
        self.skipped: list[str] = []
        self._layout = "geojson"
        self._file_bands_plain = file_bands
        expected = f"{split}_dataset.geojson and its image folders (or <root>/<Class>/*.tif)"
        if not root.is_dir():
            raise DatasetNotFoundError(self.name, root, expected, DOWNLOAD)
        geo = root / f"{split}_dataset.geojson"
        available: list[str] = list(self.all_bands) + (list(PRODUCTS["sentinel-1"]) if include_s1 else [])
        self.products = [p for p in PRODUCTS if include_s1 or p != "sentinel-1"]
        if geo.is_file():
            items = self._geojson_items(root, geo, split)
        elif any((root / c).is_dir() for c in CLASSES):
            from spectraclip.io.readers import find_items

            self._layout = "folders"
            items = [Item(f"{c}/{p.stem}", p, (c,)) for c in CLASSES if (root / c).is_dir()
                     for p in find_items([root / c])]
            if file_bands:
                available = list(BandSet.parse(file_bands))
            elif items:
                available = list(self._read_plain(items[0]).bands)
        else:
            raise DatasetNotFoundError(self.name, root, expected, DOWNLOAD)
        if not items:
            raise DatasetNotFoundError(self.name, root, expected, DOWNLOAD)
        super().__init__(root, split, items, CLASSES, bands=bands, file_bands=file_bands, available=available)

    def _geojson_items(self, root: Path, geo: Path, split: str) -> list[Item]:
        features = json.loads(geo.read_text(encoding="utf-8")).get("features", [])
        by_name: dict[str, Path] | None = None
        items = []
        for feat in features:
            props = feat.get("properties", {})
            rel, labels = props.get("Image_Folder"), _types(props.get("Type", ""))
            if not rel or not labels:
                continue
            folder = root / rel
            if not folder.is_dir():
                if by_name is None:  # the train images are split over train_images_{1,2,3}/
                    by_name = {p.name: p for p in (root / f"{split}_images").glob("**/*") if p.is_dir()}
                folder = by_name.get(Path(rel).name, folder)
            if not folder.is_dir():
                self.skipped.append(str(rel))
                continue
            if not self.multilabel and len(labels) > 1:
                self.skipped.append(str(rel))
                continue
            items.append(Item(str(rel), folder, tuple(labels), {"lat": props.get("Latitude"),
                                                                 "lon": props.get("Longitude")}))
        return items

    def _read_plain(self, item: Item) -> Sample:
        from spectraclip.io.readers import read_sample

        return read_sample(item.path, self._file_bands_plain)

    def read(self, item: Item) -> Sample:
        if self._layout == "folders":
            return self._read_plain(item)
        import torch

        from spectraclip.io.readers import read_sample

        parts: list[Sample] = []
        for product in self.products:
            f = _product_file(item.path, product)
            if f is None:
                raise DatasetNotFoundError(self.name, item.path, f"{product}.tif in the image folder")
            parts.append(read_sample(f, ",".join(PRODUCTS[product])))
        ref = parts[0]  # sentinel-2-10m: the finest grid
        h, w = ref.pixels.shape[1:]
        arrays = []
        for s in parts:
            px = s.pixels
            if px.shape[1:] != (h, w):
                t = torch.from_numpy(np.ascontiguousarray(px))[None]
                px = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
            arrays.append(px)
        names = tuple(b for s in parts for b in s.bands.names)
        sample = Sample(np.concatenate(arrays), BandSet(names), item.id, str(item.path), ref.crs, ref.transform)
        return sample.select(BandSet([b for b in self.all_bands] + [b for b in names if b in ("VV", "VH")]))
