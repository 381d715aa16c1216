"""Reading `.npy` / `.npz` arrays (CHW or HWC) whose band order the caller names."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spectraclip.bands import BandError, BandSet
from spectraclip.io.errors import BandOrderError, CorruptRasterError
from spectraclip.io.nodata import apply_nodata_policy
from spectraclip.io.radiometry import Radiometry
from spectraclip.io.sample import Sample

ARRAY_SUFFIXES = frozenset({".npy", ".npz"})
_NPZ_KEYS = ("pixels", "image", "array", "data", "x")


def _load(path: Path) -> tuple[np.ndarray, BandSet | None]:
    """The array in a .npy, or the one image array of a .npz (plus its optional `bands` names)."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False), None
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            named = None
            if "bands" in keys:
                keys.remove("bands")
                try:
                    named = BandSet(tuple(str(b) for b in npz["bands"].tolist()))
                except BandError as exc:
                    raise BandOrderError(path, f"its 'bands' entry is not a band list: {exc}") from exc
            pick = keys[0] if len(keys) == 1 else next((k for k in _NPZ_KEYS if k in keys), None)
            if pick is None:
                raise BandOrderError(
                    path, f"holds arrays {', '.join(keys) or '(none)'}; expected one, or one named "
                    f"{' / '.join(_NPZ_KEYS)}",
                )
            return npz[pick], named
    except (BandOrderError, CorruptRasterError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptRasterError(path, f"cannot load the array, file corrupt or truncated ({exc})") from exc


def to_chw(array: np.ndarray, nbands: int, path: Path) -> np.ndarray:
    """[C,H,W] from a CHW or HWC array, decided by which axis has `nbands` entries; ambiguity is an error."""
    if array.ndim == 2 and nbands == 1:
        return array[None]
    if array.ndim != 3:
        raise BandOrderError(path, f"array of shape {array.shape}; expected [C,H,W] or [H,W,C]")
    first, last = array.shape[0] == nbands, array.shape[-1] == nbands
    if first and last:
        raise BandOrderError(
            path, f"shape {array.shape} is ambiguous: both the first and last axis have {nbands} entries"
        )
    if first:
        return array
    if last:
        return np.moveaxis(array, -1, 0)
    raise BandOrderError(
        path, f"array of shape {array.shape} has no axis of {nbands} bands (expected count {nbands})"
    )


def read_array(
    path: Path, bands: BandSet | str | Sequence[str] | None, nodata: str, radiometry: Radiometry | None = None
) -> Sample:
    """A .npy/.npz image; `bands` (or a `bands` entry in the .npz) names its channel order. Arrays carry no
    radiometry tags: it is `radiometry` when given, else None (unknown)."""
    array, named = _load(path)
    want = None
    if bands is not None:
        try:
            want = BandSet.parse(bands)
        except BandError as exc:
            raise BandOrderError(path, f"bad --bands value: {exc}") from exc
    have = named if named is not None else want
    if have is None:
        raise BandOrderError(path, "a .npy/.npz array carries no band names; give its band order with --bands")
    if array.dtype.kind not in "biuf":
        raise CorruptRasterError(path, f"unsupported array dtype {array.dtype} (need integer or float)")
    pixels = np.ascontiguousarray(to_chw(array, len(have), path), dtype=np.float32)
    if want is not None and want != have:
        missing = have.missing(want.names)
        if missing:
            raise BandOrderError(
                path, f"its bands are {have}; requested band(s) {', '.join(missing)} are not among them"
            )
        pixels, have = np.ascontiguousarray(pixels[have.indices(want.names)]), want
    pixels, info, kept = apply_nodata_policy(pixels, np.isnan(pixels), have, path, nodata)
    meta = {"source": "array", "dtype": str(array.dtype), "radiometry": radiometry, **info}
    return Sample(pixels, have, path.stem, str(path), None, None, meta, kept)
