"""Reading GeoTIFFs (and anything else GDAL opens) with rasterio: band order, georeferencing, validity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spectraclip.bands import PRESETS, BandError, BandSet, canonical_band_name
from spectraclip.io.bandfolder import band_name_from_filename
from spectraclip.io.errors import BandOrderError
from spectraclip.io.nodata import apply_nodata_policy
from spectraclip.io.radiometry import Radiometry
from spectraclip.io.sample import Sample
from spectraclip.io.tiff import georef, open_raster, raster_radiometry, read_pixels


def bands_from_descriptions(descriptions: Sequence[str | None]) -> BandSet | None:
    """The band set named by the file's band descriptions, when every band has a recognisable one."""
    if not descriptions or any(not d for d in descriptions):
        return None
    try:
        return BandSet(tuple(canonical_band_name(str(d)) for d in descriptions))
    except BandError:
        return None


def missing_order_hint(count: int) -> str:
    """Advice for a file whose band order is not declared: the presets with that many bands."""
    presets = [name for name, names in PRESETS.items() if len(names) == count]
    if presets:
        options = " or ".join(f"--bands {p}" for p in presets)
        return f"give its band order, e.g. {options} (bands= in Python), or a comma list of {count} band names"
    return f"give its band order as a comma list of {count} band names with --bands (bands= in Python)"


def resolve_bands(
    path: Path, count: int, descriptions: Sequence[str | None], bands: BandSet | str | Sequence[str] | None
) -> tuple[BandSet, list[int]]:
    """Which bands a file holds and which (1-based) indexes to read for the requested `bands`."""
    described = bands_from_descriptions(descriptions)
    if bands is not None:
        try:
            want = BandSet.parse(bands)
        except BandError as exc:
            raise BandOrderError(path, f"bad --bands value: {exc}") from exc
        if described is not None:
            missing = described.missing(want.names)
            if missing:
                raise BandOrderError(
                    path,
                    f"its band descriptions name {described} but band(s) {', '.join(missing)} of the "
                    f"requested --bands {want} are not among them",
                )
            return want, [described.names.index(b) + 1 for b in want]
        if count != len(want):
            raise BandOrderError(
                path, f"has {count} band(s) but --bands {want} names {len(want)}; expected {len(want)} bands"
            )
        return want, list(range(1, count + 1))
    if described is not None:
        return described, list(range(1, count + 1))
    if count == 1:
        name = band_name_from_filename(path)
        if name is not None:
            return BandSet((name,)), [1]
    raise BandOrderError(
        path, f"has {count} band(s) and no band descriptions naming them; {missing_order_hint(count)}"
    )


def read_geotiff(
    path: Path, bands: BandSet | str | Sequence[str] | None, nodata: str, radiometry: Radiometry | None = None
) -> Sample:
    """One multi-band raster file (GeoTIFF, JP2, ...), pixel- or band-interleaved, any numeric dtype; its
    radiometry is `radiometry` when given, else what its tags say (None when they say nothing)."""
    with open_raster(path) as ds:
        have, indexes = resolve_bands(path, ds.count, ds.descriptions, bands)
        data, invalid = read_pixels(ds, path, indexes)
        crs, transform = georef(ds)
        meta: dict[str, Any] = {
            "source": "raster",
            "driver": ds.driver,
            "dtype": ds.dtypes[0],
            "nodata": ds.nodata,
            "interleave": (ds.interleaving.name.lower() if ds.interleaving else None),
            "radiometry": radiometry or raster_radiometry(ds, path, indexes, have.names),
        }
    data, info, kept = apply_nodata_policy(data, invalid, have, path, nodata)
    meta.update(info)
    return Sample(data, have, path.stem, str(path), crs, transform, meta, kept)
