"""Dataset names the evaluator and CLI accept, mapped to the classes that read them."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from spectraclip.data.base import LabelledDataset
from spectraclip.errors import SpectraclipError

DATASETS: dict[str, tuple[str, str]] = {
    "eurosat-ms": ("spectraclip.data.eurosat:EuroSATMS", "EuroSAT multispectral, 10 classes, 13 bands"),
    "bigearthnet": ("spectraclip.data.bigearthnet:BigEarthNet", "BigEarthNet v1/v2, multi-label, 19 classes"),
    "meter-ml": ("spectraclip.data.meterml:METERML", "METER-ML methane sources, 7 classes"),
    "resisc45": ("spectraclip.data.resisc45:RESISC45", "RESISC45-style RGB scene folders"),
    "folder": ("spectraclip.data.folder:load_folder", "your own class-per-folder tree or CSV manifest"),
    "eurosat-ms-mini": ("spectraclip.data.registry:open_eurosat_mini",
                        "the 270 EuroSAT-MS patches shipped with spectraclip (no --root needed)"),
}
# Datasets that ship inside the package and need no --root.
EMBEDDED = {"eurosat-ms-mini"}
ALIASES = {"eurosat": "eurosat-ms", "eurosat-mini": "eurosat-ms-mini", "ben": "bigearthnet",
           "bigearthnet-v1": "bigearthnet", "bigearthnet-v2": "bigearthnet", "reben": "bigearthnet",
           "meterml": "meter-ml", "nwpu-resisc45": "resisc45", "manifest": "folder", "csv": "folder"}


class UnknownDatasetError(SpectraclipError, ValueError):
    """A dataset name that is not registered; the message lists the known ones."""


def available_datasets() -> dict[str, str]:
    """Registered dataset names and a one-line description of each."""
    return {name: desc for name, (_, desc) in DATASETS.items()}


def canonical_dataset_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return key


def open_eurosat_mini(root: str | Path | None = None, split: str = "test", **kwargs: Any) -> LabelledDataset:
    """The embedded EuroSAT-MS subset (extracted once into the cache; `root` is ignored)."""
    from spectraclip.data.eurosat import EuroSATMS
    from spectraclip.data.eurosat_mini import eurosat_mini_root

    return EuroSATMS(eurosat_mini_root(), split=split, **kwargs)


def needs_root(name: str) -> bool:
    """False for datasets shipped with the package."""
    return canonical_dataset_name(name) not in EMBEDDED


def load_dataset(name: str, root: str | Path | None, split: str = "test", **kwargs: Any) -> LabelledDataset:
    """Open dataset `name` at `root` (extra keyword arguments go to the dataset class)."""
    target, _ = DATASETS[canonical_dataset_name(name)]
    module, attr = target.split(":")
    factory = getattr(importlib.import_module(module), attr)
    return factory(root, split=split, **kwargs)
