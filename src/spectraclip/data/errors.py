"""Dataset errors: missing data says what to download and where to put it."""

from __future__ import annotations

from pathlib import Path

from spectraclip.errors import SpectraclipError


class DatasetError(SpectraclipError, ValueError):
    """A dataset folder or file that exists but cannot be used; the message names it."""


class DatasetNotFoundError(SpectraclipError, FileNotFoundError):
    """The dataset is not where it was looked for; the message says what to download and where."""

    def __init__(self, dataset: str, root: str | Path, expected: str, download: str = "") -> None:
        self.dataset = dataset
        self.root = str(root)
        msg = f"{dataset} not found at {self.root}: expected {expected}."
        if download:
            msg += f" Download it from {download} and extract it so that {self.root} holds that layout."
        super().__init__(msg)
