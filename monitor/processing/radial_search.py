"""What both spot finders share: radial sums over a frame, its seed pixels, the layout checks and the peak list.

Both finders (:mod:`monitor.processing.peakfinder8`, :mod:`monitor.processing.spotfinder`)
model the background per 1-pixel ring around the beam, by iterated clipping of
the valid pixels' sums, and search only from *seeds*: the pixels above a floor,
listed during the last pass.  Only how a ring's clipping window follows from
its sums differs, and that is the ``update`` each finder gives :meth:`RadialPasses.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "PeakList", "RadialPasses", "bin_moments", "check_frame", "check_maps", "peak_arrays", "store_peak",
]

COPIES = 4
"""Interleaved accumulator copies: neighbouring pixels share a radial bin, and one copy per column
modulo 4 breaks the read-modify-write chain that otherwise makes the pass latency-bound."""


@dataclass(frozen=True)
class PeakList:
    """Peaks of one frame (arrays of equal length, owned by the caller) and its radial statistics.

    ``n_found`` can exceed ``len(x)`` when more than ``max_num_peaks`` peaks were found.
    ``radial_offset``/``radial_sigma`` are the clipped mean and sigma per 1-pixel radial bin.
    """

    x: np.ndarray
    y: np.ndarray
    intensity: np.ndarray
    max_intensity: np.ndarray
    snr: np.ndarray
    npix: np.ndarray
    n_found: int
    radial_offset: np.ndarray
    radial_sigma: np.ndarray


@numba.njit(cache=True, nogil=True)
def _accumulate(
    data: np.ndarray, mask: np.ndarray, bins: np.ndarray, window: np.ndarray, row_step: int, acc: np.ndarray,
    floor: np.ndarray, seeds: np.ndarray,
) -> int:
    """Per radial bin: sum, sum of squares and count of the valid pixels inside ``window``.

    Also lists, in raster order, the valid pixels above their ``floor`` (no
    threshold is lower): the only pixels that can seed a peak.
    Returns how many there were (``seeds`` may be too short; then the search
    scans the frame).
    """
    acc[:] = 0.0
    rows, cols = data.shape
    n_seeds = 0
    capacity = seeds.shape[0]
    for i in range(0, rows, row_step):
        for j0 in range(0, cols, COPIES):
            for k in range(COPIES):
                j = j0 + k
                if not mask[i, j]:
                    continue
                b = bins[i, j]
                v = data[i, j]
                if window[b, 0] < v < window[b, 1]:
                    acc[k, b, 0] += v
                    acc[k, b, 1] += v * v
                    acc[k, b, 2] += 1.0
                if capacity and v > floor[i, j]:
                    if n_seeds < capacity:
                        seeds[n_seeds] = i * cols + j
                    n_seeds += 1
    return n_seeds


@numba.njit(cache=True, nogil=True)
def bin_moments(acc: np.ndarray, b: int) -> tuple[float, float, float]:
    """Count, mean and variance (never negative) of radial bin ``b`` from the sums of every copy."""
    total = 0.0
    total_sq = 0.0
    count = 0.0
    for k in range(acc.shape[0]):
        total += acc[k, b, 0]
        total_sq += acc[k, b, 1]
        count += acc[k, b, 2]
    if count == 0.0:
        return 0.0, 0.0, 0.0
    mean = total / count
    return count, mean, max(total_sq / count - mean * mean, 0.0)


@numba.njit(cache=True, nogil=True)
def store_peak(
    out_x: np.ndarray, out_y: np.ndarray, out_i: np.ndarray, out_max: np.ndarray, out_snr: np.ndarray,
    out_npix: np.ndarray, k: int, x: float, y: float, intensity: float, peak: float, snr: float, npix: int,
) -> None:
    """Write the ``k``-th peak into the arrays of :func:`peak_arrays`, if they hold that many (found peaks
    beyond are counted by the caller, not kept)."""
    if k < out_x.shape[0]:
        out_x[k] = x
        out_y[k] = y
        out_i[k] = intensity
        out_max[k] = peak
        out_snr[k] = snr
        out_npix[k] = npix


class RadialPasses:
    """The buffers of the radial passes over frames of one layout (``bins``: each pixel's 1-pixel ring),
    allocated once: per-ring sums, the clipping window, the seed list, and which rings are searched."""

    def __init__(self, bins: np.ndarray, *, min_res: float, max_res: float) -> None:
        self.bins = bins
        n_bins = int(bins.max()) + 1
        self.pixels = np.bincount(bins.ravel(), minlength=n_bins)
        """Pixels in each ring."""
        centres = np.arange(n_bins)
        self.in_range = (centres >= min_res) & (centres < max_res)
        self.acc = np.zeros((COPIES, n_bins, 3), dtype=np.float64)
        self.window = np.zeros((n_bins, 2), dtype=np.float32)
        self.seeds = np.empty(min(bins.size, 1 << 18), dtype=np.int64)

    def run(
        self, data: np.ndarray, mask: np.ndarray, *, floor: np.ndarray, iterations: int, row_step: int,
        update: Callable[[], None],
    ) -> int:
        """``iterations`` passes of ring sums inside the window (everything at first), each followed by
        ``update`` (which sets the next window from the sums); all but the last read every
        ``row_step``-th row, the last lists the seeds above ``floor``.  Returns how many seeds there were."""
        self.window[:, 0] = -np.inf
        self.window[:, 1] = np.inf
        n_seeds = 0
        for iteration in range(iterations):
            last = iteration == iterations - 1
            n_seeds = _accumulate(
                data, mask, self.bins, self.window, 1 if last else row_step, self.acc, floor,
                self.seeds if last else self.seeds[:0],
            )
            update()
        return n_seeds


def check_maps(radius: np.ndarray, noise: np.ndarray | None, asic_shape: tuple[int, int]) -> None:
    """ValueError unless ``radius`` is a 2-D map of [0, 65535) pixels that ``asic_shape`` tiles and
    ``noise`` (when given) has its shape."""
    if radius.ndim != 2:
        raise ValueError(f"radius map must be 2-D, got shape {radius.shape}")
    if radius.shape[0] % asic_shape[0] or radius.shape[1] % asic_shape[1]:
        raise ValueError(f"asic_shape {tuple(asic_shape)} does not tile a frame of shape {radius.shape}")
    if not 0 <= radius.min() and radius.max() < 65535:
        raise ValueError("radius map must lie in [0, 65535) pixels")
    if noise is not None and noise.shape != radius.shape:
        raise ValueError(f"noise map has shape {noise.shape}, the radius map {radius.shape}")


def check_frame(data: np.ndarray, mask: np.ndarray, shape: tuple[int, ...]) -> None:
    """ValueError or TypeError unless ``data`` is float32 and ``mask`` bool, both of ``shape``."""
    if data.shape != shape or mask.shape != shape:
        raise ValueError(f"data {data.shape} and mask {mask.shape} must both have shape {shape}")
    if data.dtype != np.float32 or mask.dtype != np.bool_:
        raise TypeError(f"data must be float32 and mask bool, got {data.dtype} and {mask.dtype}")


def peak_arrays(size: int) -> dict[str, np.ndarray]:
    """The arrays a search writes up to ``size`` peaks into, named as :class:`PeakList`'s fields."""
    return {
        "x": np.empty(size, np.float32),
        "y": np.empty(size, np.float32),
        "intensity": np.empty(size, np.float32),
        "max_intensity": np.empty(size, np.float32),
        "snr": np.empty(size, np.float32),
        "npix": np.empty(size, np.int32),
    }
