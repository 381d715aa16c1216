"""Blending overlapping window outputs into one raster with a smooth window weight, strip by strip.

Each window adds `weight x values` to a rolling buffer of output rows; rows above the next grid row of
windows are final and leave the buffer (`pop_until`), so memory is a tile's height of rows whatever the
scene size. A Hann (cosine-squared) weight falls towards the window edges, so no tile seams show; the
`uniform` weight is the plain average of the windows covering a pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spectraclip.errors import SpectraclipError

WEIGHTS: tuple[str, ...] = ("hann", "uniform")


class BlendError(SpectraclipError, ValueError):
    """A window outside the rows still open, or an unknown window weight."""


def window_weight(height: int, width: int, kind: str = "hann") -> np.ndarray:
    """`[height, width]` float32 weight: Hann (sin^2 at pixel centres, never zero) or uniform ones."""
    if kind not in WEIGHTS:
        raise BlendError(f"--weight {kind!r}: choose one of {', '.join(WEIGHTS)}")
    if kind == "uniform":
        return np.ones((height, width), np.float32)
    wy = np.sin(np.pi * (np.arange(height) + 0.5) / height) ** 2
    wx = np.sin(np.pi * (np.arange(width) + 0.5) / width) ** 2
    return np.outer(wy, wx).astype(np.float32)


class StripBlender:
    """Weighted sums of window values `[K, h, w]` over rows `[top, top + capacity)` of a `height x width`
    output; `state()` / `from_state()` carry the open rows across a resume so the result is identical."""

    def __init__(self, height: int, width: int, channels: int, capacity: int, weight: str = "hann") -> None:
        self.height, self.width, self.channels = int(height), int(width), int(channels)
        self.capacity, self.weight = int(capacity), weight
        self.top = 0
        self.sums = np.zeros((self.channels, self.capacity, self.width), np.float32)
        self.wsum = np.zeros((self.capacity, self.width), np.float32)
        self._w: dict[tuple[int, int], np.ndarray] = {}

    def _weight(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._w:
            self._w[(h, w)] = window_weight(h, w, self.weight)
        return self._w[(h, w)]

    def add(self, row: int, col: int, values: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add a window at (`row`, `col`): `values` `[K, h, w]` (or `[K]`, constant over the window) with an
        optional bool mask `valid` `[h, w]` of the pixels it speaks for."""
        if valid is None:
            raise BlendError("add() needs the window's validity mask (all True for a full window)")
        h, w = valid.shape
        r = row - self.top
        if r < 0 or r + h > self.capacity:
            raise BlendError(f"window at row {row} (height {h}) is outside the open rows {self.top}.."
                             f"{self.top + self.capacity}")
        wt = self._weight(h, w) * valid
        v = np.asarray(values, np.float32)
        if v.ndim == 1:
            self.sums[:, r:r + h, col:col + w] += v[:, None, None] * wt[None]
        else:
            self.sums[:, r:r + h, col:col + w] += v * wt[None]
        self.wsum[r:r + h, col:col + w] += wt

    def pop_until(self, row: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Finalise rows `[top, row)`: returns (top, blended values `[K, n, W]` (0 where nothing covered),
        weight sums `[n, W]`) and slides the buffer down."""
        row = min(max(row, self.top), self.height)
        n = row - self.top
        if n > self.capacity:
            raise BlendError(f"pop_until({row}) beyond the open rows {self.top}..{self.top + self.capacity}")
        top = self.top
        wsum = self.wsum[:n].copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(wsum[None] > 0, self.sums[:, :n] / np.maximum(wsum[None], 1e-30), 0.0).astype(np.float32)
        self.sums[:, : self.capacity - n] = self.sums[:, n:].copy()
        self.sums[:, self.capacity - n:] = 0
        self.wsum[: self.capacity - n] = self.wsum[n:].copy()
        self.wsum[self.capacity - n:] = 0
        self.top = row
        return top, out, wsum

    def state(self) -> dict[str, Any]:
        return {"top": self.top, "sums": self.sums, "wsum": self.wsum}

    def load_state(self, state: dict[str, Any]) -> None:
        if state["sums"].shape != self.sums.shape:
            raise BlendError(f"resume state of shape {state['sums'].shape} does not fit {self.sums.shape}")
        self.top = int(state["top"])
        self.sums[...] = state["sums"]
        self.wsum[...] = state["wsum"]


__all__ = ["WEIGHTS", "BlendError", "StripBlender", "window_weight"]
