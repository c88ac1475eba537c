"""Hexagonal ice (Ih): the d-spacings of its powder rings, and which pixels or spots lie on them.

A crystal cooled too slowly, or a jet that freezes, scatters into sharp rings
at ice's lattice spacings.  Spots there are unreliable (the ring's background
is steep, ice crystals make spots of their own), so the per-frame quality
leaves them out, and a ring's background above its neighbours' says how much
ice a frame holds.  The d-spacings are DIALS' ice-ring table (hexagonal ice,
a = 4.498, c = 7.338 A at 100 K); the relative intensities are rounded values
of ice Ih's powder pattern (the simulator draws its rings with them).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ICE_RINGS", "ICE_RING_HALF_WIDTH_INV_A", "ice_ring_shells_px", "on_ice_ring"]

ICE_RINGS: tuple[tuple[float, float], ...] = (
    (3.897, 1.00), (3.669, 0.60), (3.441, 0.55), (2.671, 0.25), (2.249, 0.30),
    (2.072, 0.25), (1.948, 0.05), (1.918, 0.15), (1.883, 0.10), (1.721, 0.03),
)
"""(d-spacing in A, relative powder intensity) of each ring, strongest first in d."""

ICE_RING_HALF_WIDTH_INV_A = 0.004
"""Half width of an ice-ring shell in 1/d (1/A), as DIALS' default (0.004): wide enough for the ring's own
width and a detector distance off by a percent, narrow enough to leave most of the frame between rings."""


def on_ice_ring(d_a: np.ndarray, half_width: float = ICE_RING_HALF_WIDTH_INV_A) -> np.ndarray:
    """True where a d-spacing (A) lies within ``half_width`` (1/A) of an ice ring."""
    inverse = 1.0 / np.asarray(d_a, dtype=np.float64)
    near = np.zeros(inverse.shape, dtype=bool)
    for d, _ in ICE_RINGS:
        near |= np.abs(inverse - 1.0 / d) <= half_width
    return near


def ice_ring_shells_px(d_map: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """(inner, outer) distance from the beam (pixels) of each ice-ring shell that pixels of ``d_map``
    (d-spacing per pixel, A) fall in, in the order of :data:`ICE_RINGS`; shape (n, 2) float64."""
    inverse = 1.0 / np.asarray(d_map, dtype=np.float64)
    shells = []
    for d, _ in ICE_RINGS:
        inside = np.abs(inverse - 1.0 / d) <= ICE_RING_HALF_WIDTH_INV_A
        if inside.any():
            shells.append((float(radius[inside].min()), float(radius[inside].max())))
    return np.array(shells, dtype=np.float64).reshape(-1, 2)
