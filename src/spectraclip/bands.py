"""The band catalog: Sentinel-2, Sentinel-1 and InSAR coherence bands, named band sets and
per-band normalisation statistics. Bands are always selected and reordered by name."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectraclip.errors import InputError


class BandError(InputError, ValueError):
    """A band name, band set or band count problem; the message names the band at fault."""


class UnknownBandError(BandError):
    """A band name that is not in the catalog."""


class MissingBandError(BandError):
    """Bands a consumer needs that the data does not have."""

    def __init__(self, missing: Sequence[str], available: Sequence[str], where: str = "") -> None:
        self.missing = tuple(missing)
        self.available = tuple(available)
        place = f" in {where}" if where else ""
        super().__init__(
            f"missing band(s) {', '.join(self.missing)}{place}; available: {', '.join(self.available)}"
        )


@dataclass(frozen=True)
class Band:
    """One spectral (or radar) band: canonical name, sensor, centre wavelength, native resolution."""

    name: str
    sensor: str
    wavelength_nm: float | None
    resolution_m: float
    common_name: str
    description: str


_S2 = [
    ("B01", 442.7, 60, "coastal", "coastal aerosol"),
    ("B02", 492.4, 10, "blue", "blue"),
    ("B03", 559.8, 10, "green", "green"),
    ("B04", 664.6, 10, "red", "red"),
    ("B05", 704.1, 20, "rededge1", "vegetation red edge 1"),
    ("B06", 740.5, 20, "rededge2", "vegetation red edge 2"),
    ("B07", 782.8, 20, "rededge3", "vegetation red edge 3"),
    ("B08", 832.8, 10, "nir", "near infrared (broad)"),
    ("B8A", 864.7, 20, "nir08", "narrow near infrared"),
    ("B09", 945.1, 60, "nir09", "water vapour"),
    ("B10", 1373.5, 60, "cirrus", "SWIR cirrus (L1C only)"),
    ("B11", 1613.7, 20, "swir16", "short-wave infrared 1.6 um"),
    ("B12", 2202.4, 20, "swir22", "short-wave infrared 2.2 um"),
]
_C_BAND_NM = 55.465763e6  # Sentinel-1 C-band, 5.405 GHz

CATALOG: dict[str, Band] = {
    **{n: Band(n, "sentinel-2", w, r, c, d) for n, w, r, c, d in _S2},
    "VV": Band("VV", "sentinel-1", _C_BAND_NM, 10, "vv", "C-band backscatter, VV polarisation (dB)"),
    "VH": Band("VH", "sentinel-1", _C_BAND_NM, 10, "vh", "C-band backscatter, VH polarisation (dB)"),
    "COH_VV": Band("COH_VV", "insar", _C_BAND_NM, 20, "coh_vv", "InSAR coherence, VV (0-1)"),
    "COH_VH": Band("COH_VH", "insar", _C_BAND_NM, 20, "coh_vh", "InSAR coherence, VH (0-1)"),
}

_ALIASES: dict[str, str] = {b.common_name.upper(): b.name for b in CATALOG.values()}
_ALIASES.update({"COH": "COH_VV", "COHERENCE": "COH_VV", "B8": "B08", "NIR08": "B8A"})

_S2_RE = re.compile(r"^B0*(\d{1,2})(A?)$")


def canonical_band_name(name: str) -> str:
    """Map a spelling users meet (`B2`, `b02`, `B8a`, `red`, `vv`) to the catalog name (`B02`, `B8A`, ...)."""
    raw = str(name).strip()
    key = raw.upper().replace("-", "_").replace(" ", "_")
    if key in CATALOG:
        return key
    m = _S2_RE.match(key)
    if m:
        number, suffix = int(m.group(1)), m.group(2)
        cand = f"B{number}A" if suffix else f"B{number:02d}"
        if cand in CATALOG:
            return cand
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownBandError(f"unknown band {raw!r}; known bands: {', '.join(CATALOG)}")


PRESETS: dict[str, tuple[str, ...]] = {
    "s2-l1c": tuple(n for n, *_ in _S2),
    "s2-l2a": tuple(n for n, *_ in _S2 if n != "B10"),
    "eurosat-ms": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"),
    "rgb": ("B04", "B03", "B02"),
    "msclip": ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"),
    "s2-10m": ("B02", "B03", "B04", "B08"),
    "s1": ("VV", "VH"),
    "coherence": ("COH_VV", "COH_VH"),
}


@dataclass(frozen=True)
class BandSet:
    """An ordered tuple of canonical band names; build one with `BandSet.parse` from a preset or a list."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        names = tuple(canonical_band_name(n) for n in self.names)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise BandError(f"band set repeats band(s) {', '.join(dup)}")
        if not names:
            raise BandError("a band set needs at least one band")
        object.__setattr__(self, "names", names)

    @classmethod
    def parse(cls, spec: str | Sequence[str] | BandSet) -> BandSet:
        """A preset name (`s2-l2a`, `rgb`, ...), a comma-separated list (`B04,B03,B02`) or a sequence."""
        if isinstance(spec, BandSet):
            return spec
        if isinstance(spec, str):
            key = spec.strip().lower()
            if key in PRESETS:
                return cls(PRESETS[key])
            parts = [p for p in re.split(r"[,\s]+", spec.strip()) if p]
            if len(parts) == 1 and not _is_band(parts[0]):
                raise BandError(
                    f"{spec!r} is neither a band-set preset ({', '.join(PRESETS)}) nor a band name"
                )
            return cls(tuple(parts))
        return cls(tuple(spec))

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        try:
            return canonical_band_name(str(name)) in self.names
        except UnknownBandError:
            return False

    def __str__(self) -> str:
        for preset, names in PRESETS.items():
            if names == self.names:
                return preset
        return ",".join(self.names)

    def indices(self, wanted: Iterable[str], where: str = "") -> list[int]:
        """Positions of `wanted` bands in this set, by name; raises MissingBandError naming absent ones."""
        wanted = [canonical_band_name(w) for w in wanted]
        missing = [w for w in wanted if w not in self.names]
        if missing:
            raise MissingBandError(missing, self.names, where)
        return [self.names.index(w) for w in wanted]

    def missing(self, wanted: Iterable[str]) -> list[str]:
        """Bands of `wanted` that this set lacks (canonical names)."""
        return [w for w in (canonical_band_name(x) for x in wanted) if w not in self.names]

    @property
    def sensors(self) -> set[str]:
        return {CATALOG[n].sensor for n in self.names}

    def to_list(self) -> list[str]:
        return list(self.names)


def _is_band(name: str) -> bool:
    try:
        canonical_band_name(name)
        return True
    except UnknownBandError:
        return False


def select_bands(array: Any, have: BandSet | Sequence[str], want: BandSet | Sequence[str], where: str = ""):
    """Reorder/select the channel axis (axis -3 of `[..., C, H, W]`) of a numpy array or torch tensor by name."""
    have, want = BandSet.parse(have), BandSet.parse(want)
    if array.shape[-3] != len(have):
        raise BandError(
            f"{where or 'array'} has {array.shape[-3]} channels but its band list names {len(have)}: {have}"
        )
    idx = have.indices(want.names, where)
    if idx == list(range(len(have))):
        return array
    return array[..., idx, :, :]


@dataclass(frozen=True)
class BandStats:
    """Per-band normalisation statistics (mean/std in the data's own units), keyed by band name."""

    mean: dict[str, float]
    std: dict[str, float]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def for_bands(self, bands: BandSet | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std arrays ordered as `bands`; a band without statistics is an error naming it."""
        bands = BandSet.parse(bands)
        missing = [b for b in bands if b not in self.mean or b not in self.std]
        if missing:
            raise MissingBandError(missing, list(self.mean), f"normalisation statistics {self.source}".strip())
        return (
            np.array([self.mean[b] for b in bands], dtype=np.float32),
            np.array([self.std[b] for b in bands], dtype=np.float32),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"mean": dict(self.mean), "std": dict(self.std), "source": self.source, **self.extra}

    @classmethod
    def from_lists(cls, bands: BandSet | Sequence[str], mean: Sequence[float], std: Sequence[float],
                   source: str = "") -> BandStats:
        bands = BandSet.parse(bands)
        if not (len(bands) == len(mean) == len(std)):
            raise BandError(f"{len(bands)} bands but {len(mean)} means and {len(std)} stds ({source})")
        return cls(dict(zip(bands, map(float, mean), strict=True)),
                   dict(zip(bands, map(float, std), strict=True)), source)


# Llama3-MS-CLIP statistics, raw L2A digital numbers (reflectance x 10000), `msclip` band order.
MSCLIP_STATS = BandStats.from_lists(
    "msclip",
    [925.161, 1183.128, 1338.041, 1667.254, 2233.633, 2460.96, 2555.569, 2619.542, 2406.497, 1841.645],
    [1205.586, 1223.713, 1399.638, 1403.298, 1378.513, 1434.924, 1491.141, 1454.089, 1473.248, 1365.08],
    source="Llama3-MS-CLIP (L2A)",
)
