"""The curves the viewer and the report draw, taken from a pipeline snapshot.

One place knows the shapes of the snapshot entries (see
:mod:`monitor.outputs.protocol`); pipelines that send fewer keys get fewer
curves, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.outputs.protocol import HIT_RATE_HISTORY, ICE_RING_SHELLS_PX, POWDER, RADIAL_BIN_PX, RADIAL_PROFILES

__all__ = ["Curve", "binned_powder", "hit_rate_curve", "ice_ring_shells", "polar_powder", "radial_curves"]

POWDER_BIN_PX = 4
"""Pixels a side of one virtual-powder bin: a run holds ~0.1 peak a pixel, ~2 a bin, so rings stand out."""


@dataclass(frozen=True)
class Curve:
    """One line to draw: ``name`` is the snapshot key it comes from, ``label`` its legend."""

    name: str
    label: str
    x: np.ndarray
    y: np.ndarray
    x_label: str


def hit_rate_curve(snapshot: Mapping[str, Any]) -> Curve | None:
    """Hit rate against seconds before the newest entry, or against entry number for 1-D history.

    >>> hit_rate_curve({"hit_rate_history": np.array([[1, 10.0, 0.5], [2, 12.5, 0.25]])}).x
    array([-2.5,  0. ])
    """
    history = snapshot.get(HIT_RATE_HISTORY)
    if not isinstance(history, np.ndarray) or history.size == 0:
        return None
    if history.ndim == 1:
        return Curve(HIT_RATE_HISTORY, "hit rate", np.arange(history.size, dtype=np.float64), history, "entry")
    if history.ndim == 2 and history.shape[1] >= 3:
        # rows come in collector arrival order; workers finish frames slightly out of time order
        rows = history[np.argsort(history[:, 1], kind="stable")]
        return Curve(HIT_RATE_HISTORY, "hit rate", rows[:, 1] - rows[-1, 1], rows[:, 2], "time (s, 0 = latest)")
    return None


def radial_curves(snapshot: Mapping[str, Any]) -> list[Curve]:
    """One curve per radial profile present, against radius in pixels (bins if no bin width)."""
    bin_px = snapshot.get(RADIAL_BIN_PX)
    curves = []
    for key, label in RADIAL_PROFILES.items():
        profile = snapshot.get(key)
        if not isinstance(profile, np.ndarray) or profile.ndim != 1 or profile.size == 0:
            continue
        if isinstance(bin_px, (int, float)) and bin_px > 0:
            curves.append(Curve(key, label, (np.arange(profile.size) + 0.5) * bin_px, profile, "radius (pixels)"))
        else:
            curves.append(Curve(key, label, np.arange(profile.size, dtype=np.float64), profile, "radial bin"))
    return curves


def binned_powder(snapshot: Mapping[str, Any], bin_px: int = POWDER_BIN_PX) -> np.ndarray | None:
    """The virtual powder summed over ``bin_px`` x ``bin_px`` blocks and smoothed by a 1-2-1 kernel
    along each axis (float64): peaks per pixel are mostly 0 or 1, noise to the eye, while the
    lattice's rings are continuous across blocks; None without a 2-D powder.

    >>> binned_powder({"powder": np.ones((8, 8))}, bin_px=4)
    array([[16., 16.],
           [16., 16.]])
    """
    powder = snapshot.get(POWDER)
    if not isinstance(powder, np.ndarray) or powder.ndim != 2:
        return None
    rows, cols = (n // bin_px for n in powder.shape)
    blocks = powder[: rows * bin_px, : cols * bin_px].astype(np.float64)
    return _smoothed(blocks.reshape(rows, bin_px, cols, bin_px).sum(axis=(1, 3)))


def polar_powder(snapshot: Mapping[str, Any], reach_px: int = 256) -> np.ndarray | None:
    """The virtual powder around the beam as an image (``2 reach_px`` pixels a side, the beam at its centre,
    y up), each pixel showing the peaks per pixel of its polar bin (1-pixel ring, azimuthal sector): a powder
    pattern is a function of radius with slow azimuthal changes, so the rings show as circles where the peaks
    of single pixels are noise.  NaN where the detector has no pixel; None when the snapshot has no polar powder.
    """
    counts, pixels = snapshot.get("powder_polar"), snapshot.get("powder_polar_pixels")
    if not (isinstance(counts, np.ndarray) and isinstance(pixels, np.ndarray) and counts.ndim == 2
            and counts.shape == pixels.shape):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(pixels > 0, counts / pixels, np.nan)
    y, x = np.mgrid[-reach_px:reach_px, -reach_px:reach_px] + 0.5
    ring = np.minimum(np.rint(np.hypot(x, y)).astype(np.intp), density.shape[0] - 1)
    sectors = density.shape[1]
    sector = np.minimum(((np.arctan2(y, x) + np.pi) / (2 * np.pi) * sectors).astype(np.intp), sectors - 1)
    return density[ring, sector]


def _smoothed(image: np.ndarray) -> np.ndarray:
    """``image`` smoothed by a 1-2-1 kernel along each axis (edges repeated)."""
    for axis in (0, 1):
        padded = np.pad(image, [(1, 1) if k == axis else (0, 0) for k in (0, 1)], mode="edge")
        low, high = (np.take(padded, range(start, start + image.shape[axis]), axis=axis) for start in (0, 2))
        image = 0.25 * low + 0.5 * image + 0.25 * high
    return image


def ice_ring_shells(snapshot: Mapping[str, Any]) -> list[tuple[float, float]]:
    """The hexagonal-ice shells as (inner, outer) radius in pixels; none when the snapshot has none."""
    shells = snapshot.get(ICE_RING_SHELLS_PX)
    if not isinstance(shells, np.ndarray) or shells.ndim != 2 or shells.shape[1] != 2:
        return []
    return [(float(inner), float(outer)) for inner, outer in shells]
