"""Invalid-pixel policy shared by the readers: NaN and declared-nodata pixels raise, get filled or stay."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from spectraclip.bands import BandSet
from spectraclip.errors import SpectraclipError
from spectraclip.io.errors import InvalidPixelsError

NodataPolicy = Literal["error", "fill", "ignore"]
NODATA_POLICIES: tuple[str, ...] = ("error", "fill", "ignore")


class NodataPolicyError(SpectraclipError, ValueError):
    """An unknown --nodata policy (names the allowed ones)."""


def check_policy(nodata: str) -> str:
    """Validate the `nodata` option early, naming the allowed values."""
    if nodata not in NODATA_POLICIES:
        raise NodataPolicyError(f"--nodata {nodata!r} is not one of {', '.join(NODATA_POLICIES)}")
    return nodata


def apply_nodata_policy(
    pixels: np.ndarray, invalid: np.ndarray, bands: BandSet, path: object, policy: str
) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
    """Apply `policy` to the `invalid` mask of `pixels` [C,H,W]; returns pixels, meta describing what was
    found, and the mask a Sample keeps (`Sample.invalid`: under "ignore" when any pixel is invalid)."""
    counts = invalid.reshape(invalid.shape[0], -1).sum(axis=1)
    per_band = {b: int(c) for b, c in zip(bands, counts, strict=True) if c}
    total = int(counts.sum())
    meta: dict[str, Any] = {
        "nodata_fraction": total / invalid.size if invalid.size else 0.0,
        "invalid_pixels": per_band,
        "nodata_policy": policy,
    }
    if not total:
        return pixels, meta, None
    npix = invalid.shape[1] * invalid.shape[2]
    listing = ", ".join(f"{b}={c}" for b, c in per_band.items())
    if policy == "error":
        raise InvalidPixelsError(
            path,
            f"{total} invalid (NaN or nodata) pixel values, per band of {npix} pixels: {listing}; "
            "use nodata='fill' (--nodata fill) to replace them by the band mean or 'ignore' to keep them",
            per_band,
        )
    if policy == "fill":
        pixels = pixels.copy()
        for c in np.flatnonzero(counts):
            if counts[c] == npix:
                raise InvalidPixelsError(
                    path, f"band {bands.names[c]} has no valid pixel (all {npix} are NaN or nodata)", per_band
                )
            valid = ~invalid[c]
            pixels[c][invalid[c]] = np.float32(pixels[c][valid].mean(dtype=np.float64))
        return pixels, meta, None
    return pixels, meta, invalid
