"""The probe's one error class."""

from __future__ import annotations

from spectraclip.errors import SpectraclipError


class ProbeError(SpectraclipError, ValueError):
    """A probe input problem (labels, ids, model/task mismatch); the message names the file or option."""
