"""Where a raw-frame image and its peaks land on screen: assembled by the detector geometry, or raw.

Published images are binned (``bin`` in the header) while peak positions stay
in raw-frame pixels; a layout turns both into one display space, where image
pixel (row, column) covers ``[column, column + 1) x [row, row + 1)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sources.geometry import DetectorGeometry

__all__ = ["AssembledLayout", "FrameLayout", "RawLayout", "layout_for"]


class FrameLayout(Protocol):
    name: str

    def image(self, frame: np.ndarray, *, bin_factor: int) -> np.ndarray:
        """The image to draw for a (binned) raw-frame-shaped array."""
        ...

    def peaks(self, x: np.ndarray, y: np.ndarray, *, bin_factor: int) -> tuple[np.ndarray, np.ndarray]:
        """Display (x, y) of raw-frame peak positions (column, row; pixel centres at integers)."""
        ...


class RawLayout:
    """The frame as the detector reads it out: row 0 on top, binned pixels kept."""

    name = "raw"

    def image(self, frame: np.ndarray, *, bin_factor: int) -> np.ndarray:
        return frame

    def peaks(self, x: np.ndarray, y: np.ndarray, *, bin_factor: int) -> tuple[np.ndarray, np.ndarray]:
        return (x + 0.5) / bin_factor, (y + 0.5) / bin_factor


class AssembledLayout:
    """The frame as seen from the sample, modules and gaps placed by a CrystFEL geometry."""

    name = "assembled"

    def __init__(self, geometry: DetectorGeometry) -> None:
        self._geometry = geometry

    def image(self, frame: np.ndarray, *, bin_factor: int) -> np.ndarray:
        full = np.full(self._geometry.frame_shape, np.nan, dtype=np.float32)
        expanded = frame.repeat(bin_factor, axis=0).repeat(bin_factor, axis=1)
        full[: expanded.shape[0], : expanded.shape[1]] = expanded  # binning dropped a ragged edge
        return self._geometry.assemble(full)

    def peaks(self, x: np.ndarray, y: np.ndarray, *, bin_factor: int) -> tuple[np.ndarray, np.ndarray]:
        row, column = self._geometry.image_position(y, x)
        return column + 0.5, row + 0.5


def layout_for(geometry: DetectorGeometry | None, binned_shape: tuple[int, ...], bin_factor: int) -> FrameLayout:
    """The assembled layout when ``geometry`` describes frames of this size, else the raw one."""
    if geometry is not None and len(binned_shape) == 2:
        rows, columns = geometry.frame_shape
        if rows // bin_factor == binned_shape[0] and columns // bin_factor == binned_shape[1]:
            return AssembledLayout(geometry)
    return RawLayout()
