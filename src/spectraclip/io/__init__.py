"""Reading rasters into `Sample`s and writing georeferenced outputs."""

from spectraclip.io.errors import BandOrderError, CorruptRasterError, InvalidPixelsError, NoRastersError
from spectraclip.io.radiometry import Radiometry, RadiometryError, convert, parse_radiometry
from spectraclip.io.readers import find_items, iter_samples, read_sample
from spectraclip.io.sample import RasterError, Sample
from spectraclip.io.writers import write_geotiff, write_sample

__all__ = [
    "BandOrderError",
    "CorruptRasterError",
    "InvalidPixelsError",
    "NoRastersError",
    "Radiometry",
    "RadiometryError",
    "RasterError",
    "Sample",
    "convert",
    "find_items",
    "iter_samples",
    "parse_radiometry",
    "read_sample",
    "write_geotiff",
    "write_sample",
]
