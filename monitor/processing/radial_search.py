"""What both spot finders share: radial sums over a frame, its seed pixels, the layout checks and the peak list.

Both finders (:mod:`monitor.processing.peakfinder8`, :mod:`monitor.processing.spotfinder`)
model the background per 1-pixel ring around the beam, by iterated clipping of
the valid pixels' sums, and search only from *seeds*: the pixels above a floor,
listed during the last pass.  Only how a ring's clipping window follows from
its sums differs, and that is the ``update`` each finder gives :meth:`RadialPasses.run`.

Speed.  Asking of every pixel whether it is valid, inside its ring's window
and above its seed floor made a full-frame pass 2.2 ms of a JUNGFRAU 1M.  Most
pixels are *quiet*: valid, and inside a window (``low``, ``high``) that lies
within every ring's window and below every seed floor.  Each row is marked
and copied in one branch-free (SIMD) loop, the quiet values are scattered
into their rings' sums without a question, and only the groups of 8 pixels
holding another (a photon over the floor, a Bragg pixel, an invalid one) take
the questions; a ring's count is its pixels less those the questions leave
out.  A finder that keeps the spread of the sampled passes skips the sum of
squares in the last pass (``spread_last=False``): one scatter a pixel.  The
spot finder's first look at each seed's box is taken there too, while the
seed's rows are in the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "PeakList", "RadialPasses", "bin_moments", "box_photons", "check_frame", "check_maps", "peak_arrays", "store_peak",
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
def box_photons(
    data: np.ndarray, mask: np.ndarray, i0: int, j0: int, r0: int, r1: int, c0: int, c1: int,
) -> tuple[float, float, float, float]:
    """Photons and valid pixels of the 3x3 and the 5x5 box at (i0, j0) inside rows [r0, r1), columns [c0, c1)."""
    s3 = 0.0
    n3 = 0.0
    s5 = 0.0
    n5 = 0.0
    if r0 <= i0 - 2 and i0 + 2 < r1 and c0 <= j0 - 2 and j0 + 2 < c1:  # inside its asic: fixed bounds, unrolled
        for di in range(5):
            for dj in range(5):
                v = data[i0 - 2 + di, j0 - 2 + dj] if mask[i0 - 2 + di, j0 - 2 + dj] else np.float32(0.0)
                valid = 1.0 if mask[i0 - 2 + di, j0 - 2 + dj] else 0.0
                s5 += v
                n5 += valid
                if 1 <= di <= 3 and 1 <= dj <= 3:
                    s3 += v
                    n3 += valid
        return s3, n3, s5, n5
    for i in range(max(i0 - 2, r0), min(i0 + 3, r1)):
        for j in range(max(j0 - 2, c0), min(j0 + 3, c1)):
            if mask[i, j]:
                s5 += data[i, j]
                n5 += 1.0
                if abs(i - i0) <= 1 and abs(j - j0) <= 1:
                    s3 += data[i, j]
                    n3 += 1.0
    return s3, n3, s5, n5


_GROUP = 8
"""Pixels whose quiet marks are read as one 64-bit word: a group of quiet pixels only is summed and passed."""
_ALL_QUIET = 0x0101010101010101


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def _mark_quiet(row: np.ndarray, valid: np.ndarray, low: float, high: float, values: np.ndarray, quiet: np.ndarray) -> int:
    """``quiet[j]`` = 1 where pixel ``j`` is valid and inside (``low``, ``high``), ``values[j]`` its value there
    and 0 elsewhere (NaN included): branch-free, so that it runs on SIMD lanes.  Returns how many are quiet."""
    zero = np.float32(0.0)
    n_quiet = 0
    for j in range(row.shape[0]):
        v = row[j]
        inside = (v > low) & (v < high) & (valid[j] != 0)
        quiet[j] = np.uint8(inside)
        values[j] = v if inside else zero
        n_quiet += inside
    return n_quiet


_DENSE_ROW = 64
"""Pixels of a row that are not quiet from which its seeds' boxes come from column sums (a heavy
background, where every tenth pixel holds a photon and is a seed) instead of one box at a time."""


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def _add_valid(row: np.ndarray, valid: np.ndarray, photons: np.ndarray, pixels: np.ndarray) -> None:
    """Each valid pixel of ``row`` into ``photons`` and a count into ``pixels``, column by column (SIMD)."""
    zero = np.float32(0.0)
    for j in range(row.shape[0]):
        ok = valid[j] != 0
        photons[j] += row[j] if ok else zero
        pixels[j] += np.float32(ok)


@numba.njit(cache=True, nogil=True)
def _column_sums(data: np.ndarray, valid8: np.ndarray, i: int, r0: int, r1: int, columns: np.ndarray) -> None:
    """``columns[0:2, j]``: photons and valid pixels of column ``j`` in rows ``i-1..i+1``; ``columns[2:4, j]``
    the same in rows ``i-2..i+2``; rows inside [``r0``, ``r1``) only."""
    columns[:] = 0.0
    for r in range(max(i - 2, r0), min(i + 3, r1)):
        if abs(r - i) <= 1:
            _add_valid(data[r], valid8[r], columns[0], columns[1])
        _add_valid(data[r], valid8[r], columns[2], columns[3])


@numba.njit(cache=True, nogil=True)
def _box_from_columns(columns: np.ndarray, j: int, c0: int, c1: int) -> tuple[float, float, float, float]:
    """:func:`box_photons` of the pixel in column ``j`` from its row's :func:`_column_sums`, columns [c0, c1) only."""
    s3 = n3 = s5 = n5 = 0.0  # in float64, as box_photons
    for jj in range(max(j - 2, c0), min(j + 3, c1)):
        s5 += columns[2, jj]
        n5 += columns[3, jj]
        if abs(jj - j) <= 1:
            s3 += columns[0, jj]
            n3 += columns[1, jj]
    return s3, n3, s5, n5


@numba.njit(cache=True, nogil=True)
def _scatter(ring: np.ndarray, values: np.ndarray, acc: np.ndarray, spread: bool) -> None:
    """Each value of a row into its bin's sum (copy = column modulo :data:`COPIES`), and its square with ``spread``."""
    cols = ring.shape[0]
    if spread:
        for j0 in range(0, cols - COPIES + 1, COPIES):
            for k in range(COPIES):
                v = values[j0 + k]
                acc[0, k, ring[j0 + k]] += v
                acc[1, k, ring[j0 + k]] += v * v
    else:
        for j0 in range(0, cols - COPIES + 1, COPIES):
            for k in range(COPIES):
                acc[0, k, ring[j0 + k]] += values[j0 + k]
    for j in range(cols - cols % COPIES, cols):
        acc[0, 0, ring[j]] += values[j]
        acc[1, 0, ring[j]] += values[j] * values[j] if spread else 0.0


@numba.njit(cache=True, nogil=True)
def _accumulate(
    data: np.ndarray, mask: np.ndarray, valid8: np.ndarray, bins: np.ndarray, window: np.ndarray, low: float,
    high: float, row_step: int, pixels: np.ndarray, spread: bool, acc: np.ndarray, floor: np.ndarray,
    seeds: np.ndarray, seed_rings: np.ndarray, seed_boxes: np.ndarray, asic_rows: int, asic_cols: int,
    values: np.ndarray, quiet: np.ndarray, columns: np.ndarray,
) -> int:
    """Per radial bin: sum, sum of squares (only with ``spread``; else 0) and count of the valid pixels
    inside ``window``, in every ``row_step``-th row (``pixels``: how many each bin has in those rows).

    Also lists, in raster order, the valid pixels above their ``floor`` (no
    threshold is lower): the only pixels that can seed a peak; with
    ``seed_boxes`` (one row per seed, else 0 rows) each seed's
    :func:`box_photons` in its asic, while its rows are in the cache, and its
    bin in ``seed_rings``.  Returns
    how many seeds there were (``seeds`` may be too short; then the search
    scans the frame).  ``valid8`` is ``mask`` seen as bytes; (``low``,
    ``high``) lies inside every bin's window and, when seeds are listed, below
    every floor; ``values`` and ``quiet`` are scratch rows of ``cols`` rounded
    up to :data:`_GROUP`, ``columns`` four (:func:`_column_sums`).
    """
    acc[:] = 0.0
    acc[2, 0, :] = pixels  # less each pixel found invalid or outside its window below
    rows, cols = data.shape
    n_seeds = 0
    capacity = seeds.shape[0]
    boxes = seed_boxes.shape[0] > 0
    words = quiet.view(np.uint64)
    all_quiet = np.uint64(_ALL_QUIET)
    quiet[cols:] = 1
    for i in range(0, rows, row_step):
        n_quiet = _mark_quiet(data[i], valid8[i], low, high, values, quiet)
        ring = bins[i]
        _scatter(ring, values, acc, spread)
        r0 = (i // asic_rows) * asic_rows
        dense = boxes and capacity > 0 and cols - n_quiet > _DENSE_ROW
        if dense:
            _column_sums(data, valid8, i, r0, r0 + asic_rows, columns)
        for w in range(words.shape[0]):
            if words[w] == all_quiet:
                continue
            for j in range(w * _GROUP, min(w * _GROUP + _GROUP, cols)):
                if quiet[j]:
                    continue
                b = ring[j]
                v = data[i, j]
                k = j % COPIES
                if not mask[i, j]:
                    acc[2, k, b] -= 1.0
                    continue
                if window[b, 0] < v < window[b, 1]:
                    acc[0, k, b] += v
                    acc[1, k, b] += v * v if spread else 0.0
                else:
                    acc[2, k, b] -= 1.0
                if capacity and v > floor[i, j]:
                    if n_seeds < capacity:
                        seeds[n_seeds] = i * cols + j
                        if boxes:
                            c0 = (j // asic_cols) * asic_cols
                            if dense:
                                s3, n3, s5, n5 = _box_from_columns(columns, j, c0, c0 + asic_cols)
                            else:
                                s3, n3, s5, n5 = box_photons(data, mask, i, j, r0, r0 + asic_rows, c0, c0 + asic_cols)
                            seed_rings[n_seeds] = b
                            seed_boxes[n_seeds, 0] = s3
                            seed_boxes[n_seeds, 1] = n3
                            seed_boxes[n_seeds, 2] = s5
                            seed_boxes[n_seeds, 3] = n5
                    n_seeds += 1
    return n_seeds


@numba.njit(cache=True, nogil=True)
def _accumulate_each(
    data: np.ndarray, mask: np.ndarray, bins: np.ndarray, window: np.ndarray, row_step: int, acc: np.ndarray,
    floor: np.ndarray, seeds: np.ndarray,
) -> int:
    """:func:`_accumulate` asking every pixel, for windows that leave most pixels out (peakfinder8's
    ``mean +- SNR sigma``): there a pixel outside costs nothing, and no scatter is saved."""
    acc[:] = 0.0
    rows, cols = data.shape
    n_seeds = 0
    capacity = seeds.shape[0]
    for i in range(0, rows, row_step):
        for j in range(cols):
            if not mask[i, j]:
                continue
            b = bins[i, j]
            v = data[i, j]
            if window[b, 0] < v < window[b, 1]:
                k = j % COPIES
                acc[0, k, b] += v
                acc[1, k, b] += v * v
                acc[2, k, b] += 1.0
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
    for k in range(acc.shape[1]):
        total += acc[0, k, b]
        total_sq += acc[1, k, b]
        count += acc[2, k, b]
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

    def __init__(self, bins: np.ndarray, *, min_res: float, max_res: float, broad_windows: bool) -> None:
        """``broad_windows``: the finder's clipping windows hold most pixels (the spot finder's
        ``mean +- (1.5 photons + 5 sigma)``), so the quiet pixels' kernel pays; else every pixel is asked."""
        self.broad_windows = broad_windows
        self.bins = bins
        n_bins = int(bins.max()) + 1
        self.pixels = np.bincount(bins.ravel(), minlength=n_bins)
        """Pixels in each ring."""
        centres = np.arange(n_bins)
        self.in_range = (centres >= min_res) & (centres < max_res)
        self.acc = np.zeros((3, COPIES, n_bins), dtype=np.float64)
        """Per radial bin: sums, sums of squares and counts (each a row per copy, so that the sums of all
        copies share the fewest cache lines)."""
        self.window = np.zeros((n_bins, 2), dtype=np.float32)
        self.seeds = np.empty(min(bins.size, 1 << 18), dtype=np.int64)
        self.seed_boxes = np.zeros((self.seeds.size, 4), dtype=np.float32)
        """Per seed of the last :meth:`run` with an ``asic_shape``: photons and valid pixels of its 3x3 and
        5x5 boxes (:func:`box_photons`); its bin in :attr:`seed_rings`."""
        self.seed_rings = np.zeros(self.seeds.size, dtype=np.uint16)
        self._pixels_by_step: dict[int, np.ndarray] = {}
        row = -(-bins.shape[1] // _GROUP) * _GROUP
        self._values = np.zeros(row, dtype=np.float32)
        self._quiet = np.zeros(row, dtype=np.uint8)
        self._columns = np.zeros((4, bins.shape[1]), dtype=np.float32)

    def run(
        self, data: np.ndarray, mask: np.ndarray, *, floor: np.ndarray, least_floor: float, iterations: int,
        row_step: int, update: Callable[[bool], None], spread_last: bool = True, asic_shape: tuple[int, int] = (0, 0),
    ) -> int:
        """``iterations`` passes of ring sums inside the window (everything at first), each followed by
        ``update(last)`` (which sets the next window from the sums); all but the last read every
        ``row_step``-th row, the last lists the seeds above ``floor``.  Returns how many seeds there were.

        ``least_floor`` is ``floor.min()`` (the finder knows it once for all frames; never give more, or
        seeds are missed).  ``spread_last=False``: the last pass leaves the sums of squares at 0 (the
        finder keeps the spread of the sampled passes), at less cost.  With an ``asic_shape``, each
        seed's :func:`box_photons` are in :attr:`seed_boxes`."""
        self.window[:, 0] = -np.inf
        self.window[:, 1] = np.inf
        n_seeds = 0
        for iteration in range(iterations):
            last = iteration == iterations - 1
            n_seeds = self._pass(
                data, mask, floor, least_floor if last else np.inf, 1 if last else row_step,
                spread=spread_last or not last, seeds=self.seeds if last else self.seeds[:0],
                asic_shape=asic_shape if last else (0, 0),
            )
            update(last)
        return n_seeds

    def _pass(
        self, data: np.ndarray, mask: np.ndarray, floor: np.ndarray, least_floor: float, row_step: int, *,
        spread: bool, seeds: np.ndarray, asic_shape: tuple[int, int],
    ) -> int:
        """One pass with the kernel that suits the finder's windows; returns the seeds listed."""
        if not self.broad_windows:
            return _accumulate_each(data, mask, self.bins, self.window, row_step, self.acc, floor, seeds)
        boxes = self.seed_boxes if asic_shape[0] else self.seed_boxes[:0]
        return _accumulate(
            data, mask, mask.view(np.uint8), self.bins, self.window, float(self.window[:, 0].max()),
            min(float(self.window[:, 1].min()), least_floor), row_step, self._pixels_every(row_step), spread,
            self.acc, floor, seeds, self.seed_rings, boxes, max(asic_shape[0], 1), max(asic_shape[1], 1),
            self._values, self._quiet, self._columns,
        )

    def _pixels_every(self, row_step: int) -> np.ndarray:
        """Pixels of each bin in every ``row_step``-th row (kept: a finder uses one or two steps)."""
        if row_step not in self._pixels_by_step:
            self._pixels_by_step[row_step] = np.bincount(
                self.bins[::row_step].ravel(), minlength=self.pixels.size
            ).astype(np.float64)
        return self._pixels_by_step[row_step]


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
