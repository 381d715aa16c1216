"""The one base class of every error spectraclip raises on purpose (bad input, bad option, bad file).

The CLI turns a `SpectraclipError` into its message and exit code 2; anything else is a programming
error and keeps its traceback. Each area subclasses it (rasters, bands, models, tables, ...), and
`InputError` marks the per-item input problems a batch job may skip and report.
"""

from __future__ import annotations


class SpectraclipError(Exception):
    """A user-facing error whose message names the file, band or option at fault."""


class InputError(SpectraclipError):
    """One input item (raster, band, nodata, radiometry) cannot be used: batch jobs skip and report it."""


class FingerprintMismatchError(SpectraclipError):
    """An embeddings table (or index) made by another model or preprocessing than the one given."""


__all__ = ["FingerprintMismatchError", "InputError", "SpectraclipError"]
