"""Reading rasters into `Sample`s and writing georeferenced outputs."""

from spectraclip.io.sample import RasterError, Sample

__all__ = ["RasterError", "Sample"]
