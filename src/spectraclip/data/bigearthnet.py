"""BigEarthNet (Sumbul et al.): 120x120 Sentinel-2 L2A patches (12 bands, one GeoTIFF per band) with
multi-label CORINE land cover, optionally paired with Sentinel-1 VV/VH patches.

- v1 (`BigEarthNet-v1.0/<patch>/<patch>_B01.tif ... _labels_metadata.json`): the 43 CORINE labels are
  mapped to the 19-class nomenclature (`bigearthnet_labels.json`); official `train.csv`/`val.csv`/
  `test.csv` patch lists are used when present, otherwise every patch is `test`.
- v2 / reBEN (`metadata.parquet` with `patch_id`, `labels`, `split`, `s1_name`;
  `BigEarthNet-S2/<tile>/<patch_id>/...`, `BigEarthNet-S1/<tile>/<s1_name>/...`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.bands import PRESETS, BandSet
from spectraclip.data.base import Item, LabelledDataset
from spectraclip.data.errors import DatasetError, DatasetNotFoundError
from spectraclip.io.layouts import bigearthnet_pairs
from spectraclip.io.sample import Sample

_LABELS_FILE = Path(__file__).with_name("bigearthnet_labels.json")
DOWNLOAD_V1 = "https://bigearth.net (BigEarthNet-S2-v1.0.tar.gz, and BigEarthNet-S1-v1.0.tar.gz for radar)"
DOWNLOAD_V2 = "https://bigearth.net (reBEN: BigEarthNet-S2.tar.zst, metadata.parquet)"
S1_BANDS = ("VV", "VH")


@cache
def label_tables() -> dict[str, Any]:
    """The 43-class and 19-class label lists and the 43->19 mapping (JSON data shipped with the package)."""
    return json.loads(_LABELS_FILE.read_text(encoding="utf-8"))


def to_19_classes(labels: Sequence[str]) -> list[str]:
    """Map CORINE (43-class) names to the 19-class nomenclature; 19-class names pass through, dropped
    classes vanish; unknown names are an error naming them."""
    t = label_tables()
    new = set(t["labels19"])
    out: list[str] = []
    for lbl in labels:
        if lbl in new:
            mapped = lbl
        elif lbl in t["map43to19"]:
            mapped = t["map43to19"][lbl]
        else:
            raise DatasetError(f"unknown BigEarthNet label {lbl!r}")
        if mapped and mapped not in out:
            out.append(mapped)
    order = {c: i for i, c in enumerate(t["labels19"])}
    return sorted(out, key=order.__getitem__)


def _is_patch(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*_labels_metadata.json"))


def _find_patches(root: Path) -> list[Path]:
    """Patch folders directly under root (or one level deeper, e.g. BigEarthNet-v1.0/)."""
    direct = sorted(p for p in root.iterdir() if _is_patch(p))
    if direct:
        return direct
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if "s1" in sub.name.lower() and "s2" not in sub.name.lower():
            continue
        found = sorted(p for p in sub.iterdir() if _is_patch(p))
        if found:
            return found
    return []


def _split_list(root: Path, split: str) -> set[str] | None:
    names = {"val": ("val", "validation"), "validation": ("val", "validation")}.get(split, (split,))
    for base in (root, root.parent):
        for n in names:
            f = base / f"{n}.csv"
            if f.is_file():
                return {line.split(",")[0].strip() for line in f.read_text().splitlines() if line.strip()}
    return None


class BigEarthNet(LabelledDataset):
    """BigEarthNet v1 or v2 (auto-detected), 19 (default) or 43 classes, S2 with optional S1 bands."""

    name = "bigearthnet"
    all_bands = PRESETS["s2-l2a"]
    multilabel = True
    citation = "Sumbul et al., BigEarthNet, IGARSS 2019 / BigEarthNet-MM 2021; reBEN 2024 (CDLA-Permissive-1.0)"

    def __init__(self, root: str | Path, split: str = "test", bands: BandSet | str | Sequence[str] | None = None,
                 num_classes: int = 19, s1_root: str | Path | None = None, include_s1: bool = False) -> None:
        root = Path(root).expanduser()
        if num_classes not in (19, 43):
            raise ValueError(f"num_classes must be 19 or 43, got {num_classes}")
        if not root.is_dir():
            raise DatasetNotFoundError(self.name, root, "patch folders with *_labels_metadata.json (v1) or "
                                       "metadata.parquet (v2)", DOWNLOAD_V1)
        t = label_tables()
        classes = t["labels19"] if num_classes == 19 else t["labels43"]
        self.num_classes = num_classes
        self.prompt_names = t["prompt_names19"] if num_classes == 19 else {}
        self.dropped: list[str] = []  # patches without any label in the chosen nomenclature
        self.s1_dirs: dict[str, Path] = {}
        want_s1 = include_s1 or s1_root is not None or (bands is not None and
                                                        bool(set(BandSet.parse(bands)) & set(S1_BANDS)))
        if (root / "metadata.parquet").is_file():
            raw, self.version = self._v2_items(root, split, want_s1, s1_root), "v2"
        else:
            raw, self.version = self._v1_items(root, split, want_s1, s1_root), "v1"
        items = []
        for pid, folder, labels in raw:
            labs = to_19_classes(labels) if num_classes == 19 else list(labels)
            if not labs:
                self.dropped.append(pid)
                continue
            items.append(Item(pid, folder, tuple(labs), {"labels_original": list(labels)}))
        if not items:
            raise DatasetNotFoundError(self.name, root, f"labelled patches for split {split!r}",
                                       DOWNLOAD_V2 if self.version == "v2" else DOWNLOAD_V1)
        available = list(PRESETS["s2-l2a"]) + (list(S1_BANDS) if want_s1 else [])
        super().__init__(root, split, items, classes, bands=bands, file_bands=None, available=available)

    def _v1_items(self, root: Path, split: str, want_s1: bool, s1_root: str | Path | None):
        patches = _find_patches(root)
        if not patches:
            raise DatasetNotFoundError(self.name, root, "<root>/<patch>/<patch>_B01.tif ... and "
                                       "<patch>_labels_metadata.json", DOWNLOAD_V1)
        listed = _split_list(root, split) if split != "all" else None
        if listed is None and split not in ("test", "all"):
            raise DatasetNotFoundError(self.name, root, f"{split}.csv (official patch list) in {root} or its "
                                       "parent; without split lists all patches are the test split")
        if want_s1:
            self._index_s1_v1(Path(s1_root) if s1_root else self._guess_s1(root), root)
        out = []
        for p in patches:
            if listed is not None and p.name not in listed:
                continue
            meta = json.loads(next(p.glob("*_labels_metadata.json")).read_text(encoding="utf-8"))
            out.append((p.name, p, meta.get("labels", [])))
        return out

    def _guess_s1(self, root: Path) -> Path:
        for cand in sorted(root.parent.iterdir()):
            if cand.is_dir() and "s1" in cand.name.lower():
                return cand
        raise DatasetNotFoundError(self.name, root.parent, "a BigEarthNet-S1 folder beside the S2 patches "
                                   "(or pass s1_root)", DOWNLOAD_V1)

    def _index_s1_v1(self, s1_root: Path, root: Path) -> None:
        if not s1_root.is_dir():
            raise DatasetNotFoundError(self.name, s1_root, "BigEarthNet-S1 patch folders", DOWNLOAD_V1)
        self.s1_dirs.update(bigearthnet_pairs(s1_root))

    def _v2_items(self, root: Path, split: str, want_s1: bool, s1_root: str | Path | None):
        import pyarrow.parquet as pq

        table = pq.read_table(root / "metadata.parquet").to_pylist()
        s2_base = root / "BigEarthNet-S2" if (root / "BigEarthNet-S2").is_dir() else root
        s1_base = Path(s1_root) if s1_root else root / "BigEarthNet-S1"
        names = {"val": {"val", "validation"}, "validation": {"val", "validation"}}.get(split, {split})
        out, missing = [], 0
        for row in table:
            if split != "all" and row.get("split") not in names:
                continue
            pid = row["patch_id"]
            folder = _v2_folder(s2_base, pid)
            if folder is None:
                missing += 1
                continue
            if want_s1:
                s1 = row.get("s1_name")
                s1_dir = _v2_folder(s1_base, s1) if s1 else None
                if s1_dir is None:
                    missing += 1
                    continue
                self.s1_dirs[pid] = s1_dir
            out.append((pid, folder, list(row.get("labels") or [])))
        self.missing = missing
        return out

    def read(self, item: Item) -> Sample:
        from spectraclip.io.readers import read_sample

        s2 = read_sample(item.path, "s2-l2a")
        if not self.s1_dirs:
            return s2
        s1_dir = self.s1_dirs.get(item.id)
        if s1_dir is None:
            raise DatasetError(f"{item.path}: no matching Sentinel-1 patch")
        s1 = read_sample(s1_dir, "s1")
        if s1.pixels.shape[1:] != s2.pixels.shape[1:]:
            raise DatasetError(f"{s1_dir}: S1 grid {s1.pixels.shape[1:]} differs from S2 {s2.pixels.shape[1:]}")
        px = np.concatenate([s2.pixels, s1.pixels])
        return Sample(px, BandSet(s2.bands.names + s1.bands.names), item.id, str(item.path), s2.crs,
                      s2.transform, {"s1_path": str(s1_dir)})

    def describe(self) -> dict:
        return {**super().describe(), "version": self.version, "num_classes": self.num_classes,
                "dropped_without_labels": len(self.dropped), "with_s1": bool(self.s1_dirs)}


def _v2_folder(base: Path, name: str) -> Path | None:
    tile = "_".join(name.split("_")[:-2])
    for cand in (base / tile / name, base / name):
        if cand.is_dir():
            return cand
    return None
