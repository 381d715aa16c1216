"""EuroSAT-MS (Helber et al., 2019): 27,000 Sentinel-2 L1C patches, 64x64, 13 bands, 10 classes.

Accepted layouts under `root`:
- `<root>/<Class>/<Class>_<n>.tif` (the released zip, also found under `ds/images/remote_sensing/
  otherDatasets/sentinel_2/tif/` or `EuroSATallBands/`),
- split folders `<root>/{train,val,test}/<Class>/...`,
- the standard split files (`eurosat-{train,val,test}.txt`, as used by torchgeo, one file name per
  line) in `root` or its parent; without split files or folders every file counts as `test`.
Files hold the 13 bands in order B01..B12 with **B8A last**.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from spectraclip.bands import PRESETS, BandSet
from spectraclip.data.base import Item, LabelledDataset, sorted_files
from spectraclip.data.errors import DatasetNotFoundError
from spectraclip.zeroshot.classes import EUROSAT_WORDING

CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
           "PermanentCrop", "Residential", "River", "SeaLake")
SPLITS = ("train", "val", "test")
_SUFFIXES = (".tif", ".tiff")
_NESTED = ("ds/images/remote_sensing/otherDatasets/sentinel_2/tif", "EuroSATallBands", "EuroSAT_MS", "2750")
DOWNLOAD = "https://zenodo.org/records/7711810 (EuroSAT_MS.zip)"


def _has_classes(folder: Path) -> bool:
    return folder.is_dir() and any((folder / c).is_dir() for c in CLASSES)


def _class_files(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for c in CLASSES:
        if (folder / c).is_dir():
            out += [(c, p) for p in sorted_files(folder / c, _SUFFIXES)]
    return out


def _split_file(root: Path, split: str) -> Path | None:
    for base in (root, root.parent):
        for name in (f"eurosat-{split}.txt", f"{split}.txt"):
            if (base / name).is_file():
                return base / name
    return None


class EuroSATMS(LabelledDataset):
    """EuroSAT multispectral; `split` is train/val/test or "all"; `bands` selects a subset by name."""

    name = "eurosat-ms"
    all_bands = PRESETS["eurosat-ms"]
    multilabel = False
    prompt_names = EUROSAT_WORDING  # the class wording OpenAI CLIP used for EuroSAT prompts
    citation = "Helber et al., EuroSAT, IEEE JSTARS 2019 (MIT licence)"

    def __init__(self, root: str | Path, split: str = "test",
                 bands: BandSet | str | Sequence[str] | None = None) -> None:
        root = Path(root).expanduser()
        if split not in (*SPLITS, "all"):
            raise ValueError(f"unknown EuroSAT-MS split {split!r}; choose train, val, test or all")
        expected = ("<root>/<Class>/<Class>_<n>.tif or <root>/{train,test}/<Class>/<Class>_<n>.tif "
                    f"for the classes {', '.join(CLASSES)}")
        if not root.is_dir():
            raise DatasetNotFoundError(self.name, root, expected, DOWNLOAD)
        base = next((root / n for n in _NESTED if _has_classes(root / n)), root)
        split_dirs = {s: base / s for s in SPLITS if _has_classes(base / s)}
        if split_dirs:
            chosen = list(split_dirs) if split == "all" else [split]
            if split != "all" and split not in split_dirs:
                raise DatasetNotFoundError(self.name, root, f"a {split}/ folder beside {', '.join(split_dirs)}")
            files = [(f"{s}/{c}/{p.stem}", c, p) for s in chosen for c, p in _class_files(split_dirs[s])]
            how = "split folders"
        elif _has_classes(base):
            all_files = [(f"{c}/{p.stem}", c, p) for c, p in _class_files(base)]
            listing = _split_file(root, split) if split != "all" else None
            if listing is not None:
                wanted = {Path(line.strip()).stem for line in listing.read_text().splitlines() if line.strip()}
                files = [f for f in all_files if f[2].stem in wanted]
                how = f"split file {listing}"
            elif split in ("test", "all"):
                files, how = all_files, "all files (no split files found)"
            else:
                raise DatasetNotFoundError(self.name, root, f"eurosat-{split}.txt (standard split file) in "
                                           f"{root} or split folders; without them all files are the test split")
        else:
            raise DatasetNotFoundError(self.name, root, expected, DOWNLOAD)
        if not files:
            raise DatasetNotFoundError(self.name, root, expected, DOWNLOAD)
        items = [Item(i, p, (c,)) for i, c, p in files]
        super().__init__(root, split, items, CLASSES, bands=bands, file_bands="eurosat-ms")
        self.split_source = how

    def describe(self) -> dict:
        return {**super().describe(), "split_source": self.split_source}
