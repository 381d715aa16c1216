"""Users' own labelled data: a class-per-folder tree or a CSV manifest, single- or multi-label.

- Folder: `<root>/<Class>/<item>` (or `<root>/{train,val,test}/<Class>/<item>`), where an item is a
  raster file, a band folder or an RGB image.
- CSV manifest: columns `path` (relative to the CSV's folder) and `label` or `labels` (several
  labels separated by `;` or `|`), optional `id` and `split`; multi-label when any row has several.
`file_bands` gives the band order of the files when they do not name their bands themselves.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from spectraclip.bands import BandSet
from spectraclip.data.base import Item, LabelledDataset
from spectraclip.data.errors import DatasetError, DatasetNotFoundError
from spectraclip.data.resisc45 import IMAGE_SUFFIXES, read_rgb_image
from spectraclip.io.sample import Sample

_SPLITS = ("train", "val", "test")


class _UserData(LabelledDataset):
    def read(self, item: Item) -> Sample:
        if item.path.suffix.lower() in IMAGE_SUFFIXES:
            return read_rgb_image(item.path, item.id)
        return super().read(item)

    def _probe_bands(self, items: Sequence[Item], file_bands) -> BandSet | None:
        if file_bands or not items:
            return BandSet.parse(file_bands) if file_bands else None
        self.file_bands = None  # read the first item to learn the bands the files carry
        return self.read(items[0]).bands


class LabelledFolder(_UserData):
    """Class-per-folder data; `split` picks a split folder when the tree has them."""

    name = "folder"

    def __init__(self, root: str | Path, split: str = "test", bands=None, file_bands=None) -> None:
        from spectraclip.io.readers import find_items

        root = Path(root).expanduser()
        expected = "<root>/<Class>/<raster or image> (one sub-folder per class)"
        if not root.is_dir():
            raise DatasetNotFoundError(self.name, root, expected)
        base = root
        if any((root / s).is_dir() for s in _SPLITS):
            if split == "all":
                bases = [root / s for s in _SPLITS if (root / s).is_dir()]
            elif (root / split).is_dir():
                bases = [root / split]
            else:
                raise DatasetNotFoundError(self.name, root, f"a {split}/ split folder")
        else:
            bases = [base]
        files: list[tuple[str, str, Path]] = []
        for b in bases:
            for cls_dir in sorted(p for p in b.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found = find_items([cls_dir]) + sorted(
                    p for p in cls_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                for f in found:
                    rel = f.relative_to(root)
                    files.append((str(rel.with_suffix("")) if f.is_file() else str(rel), cls_dir.name, f))
        if not files:
            raise DatasetNotFoundError(self.name, root, expected)
        classes = sorted({c for _, c, _ in files})
        items = [Item(i, p, (c,)) for i, c, p in files]
        available = self._probe_bands(items, file_bands)
        super().__init__(root, split, items, classes, bands=bands, file_bands=file_bands, available=available)


def _split_labels(text: str) -> list[str]:
    return [x.strip() for x in re.split(r"[;|]", text or "") if x.strip()]


class LabelledManifest(_UserData):
    """Rows of a CSV manifest (path + label(s)); rows of other splits are left out unless split="all"."""

    name = "manifest"

    def __init__(self, csv_path: str | Path, split: str = "test", bands=None, file_bands=None,
                 multilabel: bool | None = None, classes: Sequence[str] | None = None) -> None:
        path = Path(csv_path).expanduser()
        if not path.is_file():
            raise DatasetNotFoundError(self.name, path, "a CSV file with columns path,label (or labels)")
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or "path" not in rows[0] or not ({"label", "labels"} & set(rows[0])):
            raise DatasetError(f"{path}: a labelled manifest needs a header with `path` and `label`/`labels`")
        has_split = "split" in rows[0]
        items = []
        for n, row in enumerate(rows, start=2):
            if has_split and split != "all" and (row.get("split") or "").strip() not in ("", split):
                continue
            labels = _split_labels(row.get("labels") or row.get("label") or "")
            if not labels:
                raise DatasetError(f"{path}:{n}: row without a label")
            p = Path(row["path"])
            p = p if p.is_absolute() else path.parent / p
            items.append(Item((row.get("id") or "").strip() or Path(row["path"]).with_suffix("").as_posix(),
                              p, tuple(labels)))
        if not items:
            raise DatasetNotFoundError(self.name, path, f"rows of split {split!r}")
        self.multilabel = bool(multilabel) if multilabel is not None else any(len(i.labels) > 1 for i in items)
        if not self.multilabel and any(len(i.labels) > 1 for i in items):
            raise DatasetError(f"{path}: rows with several labels but multilabel=False")
        cls = list(classes) if classes else sorted({c for it in items for c in it.labels})
        available = self._probe_bands(items, file_bands)
        super().__init__(path, split, items, cls, bands=bands, file_bands=file_bands, available=available)


def load_folder(root: str | Path, split: str = "test", **kwargs) -> LabelledDataset:
    """A CSV manifest when `root` is a .csv file, else a class-per-folder tree."""
    if str(root).lower().endswith(".csv"):
        return LabelledManifest(root, split, **kwargs)
    return LabelledFolder(root, split, **kwargs)
