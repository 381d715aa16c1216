"""The one base class of every error spectraclip raises on purpose (bad input, bad option, bad file).

The CLI turns a `SpectraclipError` into its message and exit code 2; anything else is a programming
error and keeps its traceback. Each area subclasses it (rasters, bands, models, tables, ...), and
`InputError` marks the per-item input problems a batch job may skip and report.

The few classes shared by several areas live here: `ManifestError` (caption manifests, read by data,
captioning and training) and `CheckpointError` (model bundles and training checkpoints).
"""

from __future__ import annotations


class SpectraclipError(Exception):
    """A user-facing error whose message names the file, band or option at fault."""


class InputError(SpectraclipError):
    """One input item (raster, band, nodata, radiometry) cannot be used: batch jobs skip and report it."""


class FingerprintMismatchError(SpectraclipError):
    """An embeddings table (or index) made by another model or preprocessing than the one given."""


class ManifestError(SpectraclipError, ValueError):
    """A manifest that cannot be read or resumed (bad file, format, line, missing field); names file and line."""


class CheckpointError(SpectraclipError, ValueError):
    """A checkpoint or model bundle that cannot be read or does not fit; the message names the file."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelNotAvailableError(SpectraclipError, RuntimeError):
    """Weights that are neither local nor in the Hugging Face cache (e.g. offline); says what to download."""


__all__ = ["CheckpointError", "FingerprintMismatchError", "InputError", "ManifestError", "ModelNotAvailableError",
           "SpectraclipError"]
