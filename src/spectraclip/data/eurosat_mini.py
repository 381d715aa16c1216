"""The embedded EuroSAT-MS mini dataset: 270 real Sentinel-2 patches shipped inside the package.

The archive (`eurosat_mini/eurosat-ms-mini.tar.xz`, see its ATTRIBUTION.md) is extracted once into
the cache folder (`$SPECTRACLIP_CACHE`, default `~/.cache/spectraclip`) so that every reader can use
plain file paths; the dataset itself is read by `spectraclip.data.eurosat`, like the full EuroSAT-MS.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from spectraclip.errors import SpectraclipError
from spectraclip.io.archives import extract_once

DATASET_NAME = "eurosat-ms-mini"
ARCHIVE = Path(__file__).resolve().parent / "eurosat_mini" / "eurosat-ms-mini.tar.xz"
SPLITS = ("train", "test")
N_FILES = {"train": 216, "test": 54}


class EmbeddedDataError(SpectraclipError, RuntimeError):
    """The embedded archive is missing or damaged, or could not be extracted; names the file."""


def cache_dir() -> Path:
    """The spectraclip cache folder: `$SPECTRACLIP_CACHE` if set, else `~/.cache/spectraclip`."""
    env = os.environ.get("SPECTRACLIP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spectraclip"


def _archive_digest(archive: Path) -> str:
    h = hashlib.sha256()
    with open(archive, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _is_complete(root: Path) -> bool:
    return all(sum(1 for _ in (root / s).rglob("*.tif")) == n for s, n in N_FILES.items())


def eurosat_mini_root(cache: str | os.PathLike[str] | None = None, archive: str | os.PathLike[str] | None = None
                      ) -> Path:
    """Folder holding `train/` and `test/` (`<Class>/<Class>_<id>.tif`), extracting the archive on first use.

    Extraction goes to a temporary folder that is renamed into place, keyed by the archive's hash, so
    concurrent callers and interrupted runs never see a half-written dataset.
    """
    src = Path(archive) if archive is not None else ARCHIVE
    if not src.is_file():
        raise EmbeddedDataError(f"embedded archive {src} is missing; reinstall spectraclip")
    base = (Path(cache).expanduser() if cache is not None else cache_dir()) / DATASET_NAME
    root = base / _archive_digest(src)
    return extract_once(src, root, _is_complete, EmbeddedDataError, f"the expected {N_FILES} GeoTIFFs per split")


def eurosat_mini_files(split: str = "train") -> list[Path]:
    """Sorted GeoTIFF paths of one split ("train" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {DATASET_NAME}; choose one of {', '.join(SPLITS)}")
    return sorted((eurosat_mini_root() / split).rglob("*.tif"))


def load_eurosat_mini(split: str = "test", **kwargs: Any):
    """The embedded patches of `split` (train/test/all) as the EuroSAT-MS dataset class
    (`spectraclip.data.eurosat.EuroSATMS`); keyword arguments (e.g. `bands`) go to that class."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r} for {DATASET_NAME}; choose one of train, test, all")
    from spectraclip.data.eurosat import EuroSATMS

    return EuroSATMS(eurosat_mini_root(), split=split, **kwargs)
