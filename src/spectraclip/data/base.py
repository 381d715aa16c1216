"""The shared shape of labelled datasets: items (id, path, labels), declared band names, and a
`__getitem__` that reads a `Sample` through `spectraclip.io.readers` with labels in `meta["labels"]`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spectraclip.bands import BandSet
from spectraclip.io.sample import Sample
from spectraclip.zeroshot.classes import humanize_classname


@dataclass(frozen=True)
class Item:
    """One dataset entry: a raster file or band folder, its class names, and anything else known."""

    id: str
    path: Path
    labels: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


class LabelledDataset:
    """Map-style dataset of labelled rasters. Subclasses declare `name`, `all_bands`, `multilabel`
    and fill `self.items` / `self.classes`; `file_bands` is the band order given to the reader (None when
    files name their bands), `available` the bands every item provides (default `file_bands`/`all_bands`)."""

    name: ClassVar[str] = "dataset"
    all_bands: ClassVar[tuple[str, ...]] = ()
    rgb_bands: ClassVar[tuple[str, ...]] = ("B04", "B03", "B02")
    multilabel: bool = False
    prompt_names: ClassVar[dict[str, str]] = {}
    citation: ClassVar[str] = ""

    def __init__(self, root: str | Path, split: str, items: Sequence[Item], classes: Sequence[str],
                 bands: BandSet | str | Sequence[str] | None = None,
                 file_bands: BandSet | str | Sequence[str] | None = None,
                 available: BandSet | str | Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.split = split
        self.items: list[Item] = list(items)
        self.classes: list[str] = list(classes)
        self.file_bands: BandSet | None = BandSet.parse(file_bands) if file_bands else None
        have = (BandSet.parse(available) if available else self.file_bands
                or (BandSet.parse(self.all_bands) if self.all_bands else None))
        self.bands: BandSet = BandSet.parse(bands) if bands else have  # type: ignore[assignment]
        if have is not None and bands:
            have.indices(self.bands.names, where=f"{self.name} ({self.root})")  # MissingBandError early
        unknown = sorted({lbl for it in self.items for lbl in it.labels} - set(self.classes))
        if unknown:
            raise ValueError(f"{self.name}: labels {unknown} are not among the classes {self.classes}")

    def __len__(self) -> int:
        return len(self.items)

    def read(self, item: Item) -> Sample:
        """Read the pixels of one item (subclasses with several files per item override this)."""
        from spectraclip.io.readers import read_sample

        return read_sample(item.path, self.file_bands)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        sample = self.read(item)
        if self.bands is not None and sample.bands != self.bands:
            sample = sample.select(self.bands)
        sample.id = item.id
        sample.meta.update(item.meta)
        sample.meta["labels"] = list(item.labels)
        sample.meta["dataset"] = self.name
        return sample

    @property
    def labels(self) -> list[list[str]]:
        """Class names of every item, without reading pixels."""
        return [list(it.labels) for it in self.items]

    @property
    def ids(self) -> list[str]:
        return [it.id for it in self.items]

    def targets(self) -> np.ndarray:
        """`[N]` class indices (single-label) or `[N, K]` 0/1 matrix (multi-label)."""
        index = {c: i for i, c in enumerate(self.classes)}
        if self.multilabel:
            out = np.zeros((len(self.items), len(self.classes)), dtype=np.int64)
            for n, it in enumerate(self.items):
                out[n, [index[c] for c in it.labels]] = 1
            return out
        return np.array([index[it.labels[0]] for it in self.items], dtype=np.int64)

    def class_prompt_names(self) -> list[str]:
        """The words used for each class in prompts: the dataset's own names, else humanised class names."""
        return [self.prompt_names.get(c) or humanize_classname(c) for c in self.classes]

    def describe(self) -> dict[str, Any]:
        """Provenance for reports: dataset name, root, split, size, classes and bands."""
        return {
            "name": self.name,
            "root": str(self.root),
            "split": self.split,
            "n": len(self),
            "classes": list(self.classes),
            "prompt_names": self.class_prompt_names(),
            "multilabel": self.multilabel,
            "bands": ",".join(self.bands.names) if self.bands is not None else None,
            "citation": self.citation,
        }


def sorted_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files directly in `folder` with one of `suffixes` (case-insensitive), sorted by name."""
    sfx = {s.lower() for s in suffixes}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in sfx
                  and not p.name.startswith("."))
