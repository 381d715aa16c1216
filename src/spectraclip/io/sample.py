"""The `Sample` value every reader produces, and the raster error classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectraclip.bands import BandSet
from spectraclip.errors import InputError
from spectraclip.io.radiometry import Radiometry


class RasterError(InputError):
    """A raster that cannot be used; the message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class Sample:
    """Pixels as float32 `[C, H, W]` with their band names and, when known, georeferencing.

    `crs` is a WKT/EPSG string and `transform` the 6 affine coefficients (a, b, c, d, e, f) as in
    rasterio; `modalities` names the sensor groups present (e.g. {"s2": BandSet, "s1": BandSet})
    for multi-sensor samples, `meta` holds anything else a reader knows (labels, dates; `radiometry`: the
    `io.radiometry.Radiometry` of the raw pixel values, None when unknown). `invalid` is a bool `[C, H, W]`
    mask of pixels holding NaN or a declared nodata value (kept by `nodata="ignore"` reads), None when
    every pixel is a measurement; statistics and radiometric conversion leave those pixels out.
    """

    pixels: np.ndarray
    bands: BandSet
    id: str
    path: str | None = None
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    invalid: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3:
            raise RasterError(self.path or self.id, f"expected [C,H,W] pixels, got shape {self.pixels.shape}")
        if self.pixels.shape[0] != len(self.bands):
            raise RasterError(
                self.path or self.id,
                f"{self.pixels.shape[0]} channels but {len(self.bands)} band names ({self.bands})",
            )
        if self.invalid is not None and self.invalid.shape != self.pixels.shape:
            raise RasterError(
                self.path or self.id, f"invalid-pixel mask of shape {self.invalid.shape} for pixels {self.pixels.shape}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    def read(self, *, bands: BandSet | None = None, nodata: str = "error", radiometry: Any = None) -> Sample:
        """A Sample is an item already read (`io.items.Item`): itself."""
        return self

    @classmethod
    def from_array(cls, array: Any, bands: BandSet | str | Sequence[str] | None, *, crs: str | None = None,
                   transform: Sequence[float] | None = None, id: str = "array", meta: dict[str, Any] | None = None,
                   ) -> Sample:
        """A Sample from a numpy array or torch tensor of shape `[C, H, W]` (or `[H, W]` for one band).

        Args:
            array: the pixel values (numpy array, torch tensor, or anything `numpy.asarray` takes).
            bands: the name of each channel, in order: a preset (`"s2-l2a"`, `"rgb"`), a comma list
                (`"B04,B03,B02"`) or a list of names. Bands are named, never positional, so it is required.
            crs: the coordinate reference system (WKT or `"EPSG:32631"`), when known.
            transform: the six affine coefficients (a, b, c, d, e, f) as in rasterio, when known.
            id: the id the sample has in tables and reports.
            meta: anything else known about the pixels.

        Returns:
            The Sample (float32 pixels).

        Raises:
            RasterError: `bands` is missing, or its length is not the number of channels.
        """
        if bands is None:
            raise RasterError(id, "an array has no band names: name its channels in order, e.g. "
                              "Sample.from_array(arr, bands=['B04', 'B03', 'B02']) or bands='s2-l2a' (a preset: "
                              "s2-l1c, s2-l2a, eurosat-ms, rgb, msclip, s1)")
        if hasattr(array, "detach"):  # a torch tensor, without importing torch
            array = array.detach().cpu().numpy()
        px = np.asarray(array, dtype=np.float32)
        if px.ndim == 2:
            px = px[None]
        bandset = BandSet.parse(bands)
        return cls(px, bandset, id, None, crs, tuple(float(v) for v in transform) if transform is not None else None,
                   dict(meta or {}))

    def rgb_bands(self) -> tuple[list[str], str]:
        """The three bands a picture of this sample shows and what it is: natural colour (red, green, blue),
        else false colour (NIR, red, green), else the first three bands (or one band as grey)."""
        names = self.bands.names
        for wanted, kind in ((["B04", "B03", "B02"], "natural colour"), (["B08", "B04", "B03"], "false colour"),
                             (["B8A", "B04", "B03"], "false colour")):
            if all(b in names for b in wanted):
                return wanted, kind
        if len(names) >= 3:
            return list(names[:3]), "first three bands"
        return [names[0]] * 3, f"band {names[0]}"

    def plot(self, bands: Sequence[str] | None = None, *, stretch: str = "percentile", ax: Any = None,
             title: str | None = None) -> Any:
        """Show the sample as a picture (matplotlib), torchgeo-style.

        Args:
            bands: the three bands to show as red, green and blue; default natural colour (B04, B03, B02) when
                present, else false colour (B08, B04, B03).
            stretch: `"percentile"` (2-98 %, jointly) or `"fixed"` (reflectance 0-3000), as `io.render.stretch_rgb`.
            ax: a matplotlib axes to draw into (default: a new figure).
            title: the title (default: the id and the band combination).

        Returns:
            The matplotlib figure.

        Raises:
            MissingBandError: a band asked for is not in the sample.
        """
        import matplotlib.pyplot as plt

        from spectraclip.io.render import stretch_rgb

        if bands is None:
            show, kind = self.rgb_bands()
        else:
            show, kind = list(bands), "bands"
        rgb = self.select(",".join(show)).pixels if len(set(show)) == 3 else \
            np.repeat(self.select(show[0]).pixels, 3, axis=0)
        image = stretch_rgb(rgb, "percentile" if stretch == "percentile" else "fixed", joint=True)
        if ax is None:
            fig, ax = plt.subplots(figsize=(4, 4))
        else:
            fig = ax.figure
        ax.imshow(image)
        ax.set_axis_off()
        ax.set_title(title if title is not None else f"{self.id}\n{kind}: {','.join(show)}", fontsize=9)
        return fig

    def select(self, bands: BandSet | str) -> Sample:
        """A copy holding only `bands`, in that order (by name)."""
        from spectraclip.bands import select_bands

        want = BandSet.parse(bands)
        where = self.path or self.id
        px = select_bands(self.pixels, self.bands, want, where=where)
        invalid = None if self.invalid is None else select_bands(self.invalid, self.bands, want, where=where)
        meta = dict(self.meta)
        if isinstance(meta.get("radiometry"), Radiometry):
            meta["radiometry"] = meta["radiometry"].for_bands(want.names)
        return Sample(px, want, self.id, self.path, self.crs, self.transform, meta, invalid)
