"""Radiometry of pixel values: how a file's raw numbers map to physical reflectance (scale, offset,
processing level), what a raster's tags or metadata say about it, and re-expressing pixels in another one.

Sentinel-2 L1C/L2A digital numbers are reflectance x 10000; from processing baseline 04.00 (25 January
2022) the products add 1000 (`RADIO_ADD_OFFSET` / `BOA_ADD_OFFSET` = -1000), so the same ground reads
1000 higher. Sentinel-1 backscatter in dB and coherence need no conversion (identity).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectraclip.bands import BandError, canonical_band_name
from spectraclip.errors import SpectraclipError

Values = float | tuple[float, ...]

S2_QUANTIFICATION = 10000.0
BASELINE_04_OFFSET_DN = -1000.0
_OFFSET_KEYS = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")
_QUANT_KEYS = ("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE")
_PRODUCT_KEYS = ("PRODUCT_ID", "PRODUCT_URI", "PRODUCT_NAME", "DATATAKE_IDENTIFIER", "DATASTRIP_ID", "GRANULE_ID")
_LEVEL_KEYS = ("PROCESSING_LEVEL", "PRODUCT_TYPE", *_PRODUCT_KEYS)
_LEVEL_RE = re.compile(r"(?:LEVEL-?|MSIL?|MSI_L|(?<![A-Z0-9])L)(1C|2A)(?![A-Z0-9])")
_BASELINE_RE = re.compile(r"_N(\d{2})\.?(\d{2})(?:_|$)")


class RadiometryError(SpectraclipError, ValueError):
    """A bad `--radiometry` value or radiometry declaration, or per-band radiometry lacking a band."""


@dataclass(frozen=True)
class Radiometry:
    """Physical reflectance = raw * scale + offset; per band when `scale`/`offset` are tuples that follow
    `bands`. `level` is the processing level (L1C, L2A) when known, `source` says where this came from."""

    scale: Values = 1.0
    offset: Values = 0.0
    level: str | None = None
    source: str = ""
    bands: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        scale, offset = _values(self.scale), _values(self.offset)
        n = {len(v) for v in (scale, offset) if isinstance(v, tuple)}
        if len(n) > 1 or (n and self.bands and len(self.bands) not in n):
            raise RadiometryError(
                f"radiometry from {self.source or 'declaration'}: per-band scale {scale} / offset {offset} / "
                f"bands {self.bands} differ in length"
            )
        # per-band values that are all equal are one value (so equal radiometries compare equal)
        if isinstance(scale, tuple) and len(set(scale)) == 1:
            scale = scale[0]
        if isinstance(offset, tuple) and len(set(offset)) == 1:
            offset = offset[0]
        if any(not math.isfinite(s) or s == 0 for s in _as_tuple(scale)):
            raise RadiometryError(
                f"radiometry from {self.source or 'declaration'}: scale {scale} must be finite and non-zero"
            )
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "offset", offset)
        per_band = isinstance(scale, tuple) or isinstance(offset, tuple)
        object.__setattr__(self, "bands", tuple(self.bands) if per_band else ())

    @property
    def per_band(self) -> bool:
        """Whether scale or offset differ between bands."""
        return isinstance(self.scale, tuple) or isinstance(self.offset, tuple)

    def same_units(self, other: Radiometry) -> bool:
        """Same raw-to-reflectance mapping (level and source aside)."""
        return (self.scale, self.offset, self.bands) == (other.scale, other.offset, other.bands)

    def coefficients(self, bands: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scale and offset as float64 arrays: one value for a single-valued radiometry, else one per band of
        `bands` (picked by name from `self.bands`; positional when either is unknown)."""
        if not self.per_band:
            return np.array([self.scale], np.float64), np.array([self.offset], np.float64)
        n = len(self.bands) or len(_as_tuple(self.scale if isinstance(self.scale, tuple) else self.offset))
        scale = np.broadcast_to(np.asarray(self.scale, np.float64), (n,))
        offset = np.broadcast_to(np.asarray(self.offset, np.float64), (n,))
        if bands is None or not self.bands:
            return scale.copy(), offset.copy()
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise RadiometryError(
                f"radiometry from {self.source or 'declaration'} covers bands {', '.join(self.bands)}, "
                f"not {', '.join(missing)}"
            )
        idx = [self.bands.index(b) for b in bands]
        return scale[idx], offset[idx]

    def for_bands(self, bands: Sequence[str]) -> Radiometry:
        """The radiometry of `bands` only (by name), e.g. after selecting bands of a Sample (unchanged when it
        is one value for all bands, or per band without band names)."""
        if not self.per_band or not self.bands:
            return self
        scale, offset = self.coefficients(bands)
        return Radiometry(tuple(scale.tolist()), tuple(offset.tolist()), self.level, self.source, tuple(bands))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for model configs and table metadata)."""
        out: dict[str, Any] = {"scale": _jsonable(self.scale), "offset": _jsonable(self.offset), "level": self.level}
        if self.per_band:
            out["bands"] = list(self.bands)
        if self.source:
            out["source"] = self.source
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Radiometry:
        """Inverse of `to_dict`."""
        try:
            return cls(_jsonable(data.get("scale", 1.0)), _jsonable(data.get("offset", 0.0)), data.get("level"),
                       str(data.get("source", "")), tuple(data.get("bands") or ()))
        except (TypeError, ValueError) as exc:
            raise RadiometryError(f"radiometry declaration {dict(data)!r}: {exc}") from exc

    def __str__(self) -> str:
        level = f"{self.level} " if self.level else ""
        return f"{level}reflectance = raw x {self.scale} + {self.offset}" + (f" ({self.source})" if self.source else "")


def _values(v: Any) -> Values:
    if isinstance(v, list | tuple | np.ndarray):
        return tuple(float(x) for x in v)
    return float(v)


def _as_tuple(v: Values) -> tuple[float, ...]:
    return v if isinstance(v, tuple) else (v,)


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else float(v)


# ----------------------------------------------------------------------------- --radiometry values
REFLECTANCE = Radiometry(1.0, 0.0, None, "reflectance")
_NAMED: dict[str, tuple[float, float, str | None]] = {
    "dn": (1e-4, 0.0, None),
    "l2a": (1e-4, 0.0, "L2A"),
    "l1c": (1e-4, 0.0, "L1C"),
    "l2a-offset": (1e-4, -0.1, "L2A"),
    "baseline-04": (1e-4, -0.1, None),
    "offset-1000": (1e-4, -0.1, None),
    "reflectance": (1.0, 0.0, None),
}
RADIOMETRY_CHOICES: tuple[str, ...] = (*_NAMED, "scale=S,offset=O")


def parse_radiometry(spec: str) -> Radiometry:
    """The radiometry a `--radiometry` value names: dn / l2a / l1c (x1e-4), l2a-offset / baseline-04 /
    offset-1000 (DN - 1000, then x1e-4), reflectance (identity), or `scale=S,offset=O[,level=L]`."""
    key = str(spec).strip().lower().replace("_", "-")
    if key in _NAMED:
        scale, offset, level = _NAMED[key]
        return Radiometry(scale, offset, level, f"--radiometry {key}")
    fields: dict[str, str] = {}
    for part in (p for p in key.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in ("scale", "offset", "level") or not value.strip():
            raise RadiometryError(_bad_spec(spec))
        fields[name.strip()] = value.strip()
    if not fields or not ({"scale", "offset"} & fields.keys()):
        raise RadiometryError(_bad_spec(spec))
    try:
        scale, offset = float(fields.get("scale", 1.0)), float(fields.get("offset", 0.0))
    except ValueError as exc:
        raise RadiometryError(_bad_spec(spec)) from exc
    level = fields["level"].upper() if "level" in fields else None
    return Radiometry(scale, offset, level, f"--radiometry {spec}")


def _bad_spec(spec: str) -> str:
    return f"--radiometry {spec!r} is not one of {', '.join(RADIOMETRY_CHOICES)}"


def as_radiometry(value: str | Radiometry | None) -> Radiometry | None:
    """A `radiometry=` argument as a Radiometry (strings parsed as `--radiometry` values)."""
    if value is None or isinstance(value, Radiometry):
        return value
    return parse_radiometry(value)


# ------------------------------------------------------------------------------ tags and metadata
def from_tags(
    tags: Mapping[str, Any] | None = None,
    *,
    band_tags: Sequence[Mapping[str, Any]] = (),
    scales: Sequence[float] = (),
    offsets: Sequence[float] = (),
    bands: Sequence[str] = (),
    source: str = "",
) -> Radiometry | None:
    """What a raster says about its radiometry, or None when it says nothing.

    `tags` are the file's (or a product's metadata) key/values, `band_tags` each band's, `scales` /
    `offsets` GDAL's per-band scale/offset (rasterio `ds.scales` / `ds.offsets`), `bands` the band names.
    GDAL scale/offset other than 1/0 are taken as given (physical = raw * scale + offset; divided by a
    quantification tag when the scale is 1, i.e. offsets in DN). Otherwise `BOA_ADD_OFFSET` /
    `RADIO_ADD_OFFSET` (per band, or `<KEY>_B4`-style), `*QUANTIFICATION_VALUE` and `PROCESSING_BASELINE`
    (or the `_Nxxyy_` of a product id; >= 04.00 means -1000 DN) give Sentinel-2 reflectance.
    """
    tags = _upper(tags or {})
    per_band = [_upper(t) for t in band_tags] or [{} for _ in bands]
    bands = tuple(bands)
    level = _level(tags)
    quant = _quantification(tags)
    if any(float(s) != 1.0 for s in scales) or any(float(o) != 0.0 for o in offsets):
        n = max(len(scales), len(offsets))
        sc = tuple(float(s) for s in scales) or (1.0,) * n
        of = tuple(float(o) for o in offsets) or (0.0,) * n
        if quant and all(s == 1.0 for s in sc):
            sc, of = tuple(s / quant for s in sc), tuple(o / quant for o in of)
        return Radiometry(sc, of, level, f"{source or 'raster'} scale/offset", bands if len(bands) == n else ())
    adds = [_band_offset(tags, t, b) for t, b in zip(per_band, bands or [None] * len(per_band), strict=False)]
    if not adds:  # no band information: one value for the whole raster
        adds = [_first_number(tags, _OFFSET_KEYS)]
    quants = [_quantification(t) or quant for t in per_band] or [quant]
    baseline = _baseline(tags)
    if all(a is None for a in adds) and all(q is None for q in quants) and baseline is None:
        return None
    default_add = BASELINE_04_OFFSET_DN if baseline is not None and baseline >= 4.0 else 0.0
    qs = [q or S2_QUANTIFICATION for q in quants]
    qs = qs * len(adds) if len(qs) == 1 else qs
    what = [k for k in (*_OFFSET_KEYS, *_QUANT_KEYS)
            if any(t.startswith(k) for t in tags) or any(k in t for t in per_band)]
    if baseline is not None:
        what.append(f"baseline {baseline:05.2f}")
    return Radiometry(
        tuple(1.0 / q for q in qs),
        tuple((default_add if a is None else a) / q for a, q in zip(adds, qs, strict=True)),
        level,
        f"{source or 'raster'} {', '.join(what)}",
        bands if len(bands) == len(adds) else (),
    )


def stack(parts: Sequence[Radiometry], bands: Sequence[str], source: str = "") -> Radiometry:
    """One per-band Radiometry from single-band ones (a band folder: one file per band)."""
    scale = [float(p.coefficients()[0][0]) for p in parts]
    offset = [float(p.coefficients()[1][0]) for p in parts]
    levels = {p.level for p in parts if p.level}
    return Radiometry(tuple(scale), tuple(offset), levels.pop() if len(levels) == 1 else None,
                      source or "; ".join(sorted({p.source for p in parts})), tuple(bands))


def _upper(tags: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in tags.items()}


def _number(v: Any) -> float | None:
    try:
        x = float(str(v).strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _first_number(tags: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    for k in keys:
        if k in tags and (x := _number(tags[k])) is not None:
            return x
    return None


def _quantification(tags: Mapping[str, Any]) -> float | None:
    """The quantification value (10000 for Sentinel-2 DN); a non-positive one counts as absent."""
    q = _first_number(tags, _QUANT_KEYS)
    return q if q is not None and q > 0 else None


def _band_offset(tags: Mapping[str, Any], band_tags: Mapping[str, Any], band: str | None) -> float | None:
    """A band's add-offset: its own tag, a `<KEY>_B04` / `<KEY>_B4` dataset tag, or the dataset's one value."""
    own = _first_number(band_tags, _OFFSET_KEYS)
    if own is not None:
        return own
    if band:
        names = {band.upper()}
        try:
            canon = canonical_band_name(band)
            names |= {canon, canon.replace("B0", "B")}
        except BandError:
            pass
        named = _first_number(tags, [f"{k}_{n}" for k in _OFFSET_KEYS for n in sorted(names)])
        if named is not None:
            return named
    return _first_number(tags, _OFFSET_KEYS)


def _baseline(tags: Mapping[str, Any]) -> float | None:
    """The processing baseline (4.0 for 04.00) from `PROCESSING_BASELINE` or a product id's `_N0400_`."""
    if "PROCESSING_BASELINE" in tags and (x := _number(tags["PROCESSING_BASELINE"])) is not None:
        return x
    for k in _PRODUCT_KEYS:
        m = _BASELINE_RE.search(str(tags.get(k, "")))
        if m:
            return int(m.group(1)) + int(m.group(2)) / 100
    return None


def _level(tags: Mapping[str, Any]) -> str | None:
    """L1C or L2A from `PROCESSING_LEVEL` (Level-2A), `PRODUCT_TYPE` (S2MSI2A) or a product id (MSIL2A)."""
    for k in _LEVEL_KEYS:
        m = _LEVEL_RE.search(str(tags.get(k, "")).upper())
        if m:
            return "L" + m.group(1)
    return None


# ------------------------------------------------------------------------------------- conversion
def convert(
    pixels: np.ndarray,
    src: Radiometry,
    dst: Radiometry,
    *,
    bands: Sequence[str] | None = None,
    invalid: np.ndarray | None = None,
) -> np.ndarray:
    """`pixels` ([..., C, H, W] for per-band radiometry) given in `src` units re-expressed in `dst` units as
    float32: (raw * src.scale + src.offset - dst.offset) / dst.scale. `bands` names the channels (for
    per-band radiometry); pixels under `invalid` (NaN / nodata markers) keep their value."""
    out = np.asarray(pixels, dtype=np.float32)
    if src.same_units(dst):
        return out
    s_scale, s_offset = src.coefficients(bands)
    d_scale, d_offset = dst.coefficients(bands)
    # (raw + shift) * gain with shift = (src.offset - dst.offset) / src.scale: integer DN shifted by whole
    # DN stay exact, and a change of scale rounds once
    gain, shift = s_scale / d_scale, (s_offset - d_offset) / s_scale
    if gain.size == 1:
        g, b = np.float32(gain[0]), np.float32(shift[0])
    else:
        if out.ndim < 3 or out.shape[-3] != gain.size:
            raise RadiometryError(
                f"per-band radiometry of {gain.size} bands ({src.source or dst.source}) for pixels of shape "
                f"{out.shape}; expected [..., {gain.size}, H, W]"
            )
        g, b = gain.astype(np.float32)[:, None, None], shift.astype(np.float32)[:, None, None]
    converted = (out + b) * g
    if invalid is not None:
        converted = np.where(invalid, out, converted)
    return converted


__all__ = [
    "RADIOMETRY_CHOICES",
    "REFLECTANCE",
    "Radiometry",
    "RadiometryError",
    "as_radiometry",
    "convert",
    "from_tags",
    "parse_radiometry",
    "stack",
]
