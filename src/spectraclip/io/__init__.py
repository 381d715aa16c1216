"""Reading rasters into `Sample`s and writing georeferenced outputs."""

from spectraclip.io.errors import BandOrderError, CorruptRasterError, InvalidPixelsError, NoRastersError
from spectraclip.io.readers import find_items, iter_samples, read_sample
from spectraclip.io.sample import RasterError, Sample
from spectraclip.io.writers import write_geotiff, write_sample

__all__ = [
    "BandOrderError",
    "CorruptRasterError",
    "InvalidPixelsError",
    "NoRastersError",
    "RasterError",
    "Sample",
    "find_items",
    "iter_samples",
    "read_sample",
    "write_geotiff",
    "write_sample",
]
