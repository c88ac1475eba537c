"""Bragg peak finding with the peakfinder8 method (Cheetah, OM, CrystFEL), as a numba kernel.

The method, on a calibrated frame with its validity mask and a radius map:

1. **Radial statistics.** Pixels are binned by ``rint(radius)``.  Per bin, the
   mean and standard deviation of the valid pixels are computed, then
   recomputed ``iterations`` times from only the pixels inside
   ``(mean - min_snr*sigma, max(floor, mean + min_snr*sigma))``: an
   iterative sigma clipping that leaves Bragg peaks out of the background.
   A pixel's threshold is the upper bound of the last iteration in its bin,
   or its own *floor* where that is higher (see below).
2. **Peak growth.** Every valid pixel above its threshold seeds a region
   that grows through its 8 neighbours above their thresholds, without leaving
   its asic (module).  Regions outside ``[min_pixel_count, max_pixel_count]``
   are dropped.
3. **Local background.** Around the region's centre of mass, the valid pixels
   within ``2*local_bg_radius`` that are below threshold and in no region give
   a local offset and sigma.
4. **Integration.** Intensity = sum of (pixel - local offset) over the region;
   centre of mass weighted by pixel values; SNR = intensity / local sigma.
   A peak needs SNR >= ``min_snr`` and a maximum above the brightest
   background pixel.

**The floor** (OM's and Cheetah's ``adc_threshold``) is, by default, in units
of the detector's noise: ``noise_threshold`` times each pixel's noise (in the
frame's units: photons when calibrated; from the dark run's noise map), or
``fallback_threshold`` where no noise map is known.  On JUNGFRAU the noise is
a few percent of a photon, so the floor lets single photons through where the
background is near zero, and the radial statistics decide elsewhere: weak
reflections of a few photons are found, and ``min_pixel_count`` 2 with the SNR
cut keeps lone background photons out.  An absolute ``adc_threshold`` replaces
the floor everywhere.  (The earlier absolute default of 2.5 photons missed every
spot under 10 photons.)

Peak positions are raw-frame pixel coordinates with pixel centres at integers
(``x`` = column, ``y`` = row).

Two deliberate differences, for speed, neither changing the result's meaning:

* all clipping iterations but the last read every ``statistics_row_step``-th
  row only (whole rows, so memory is read contiguously); the last one uses
  every pixel, so the thresholds come from the full frame (in radial bins that
  hold a bright spot they converge less tightly: within a fraction of sigma
  of the classic's, elsewhere they agree to 1 %).  A full pass costs
  1.5-2 ms here (scattering into radial bins is latency-bound): five of them
  would take the whole budget.  ``statistics_row_step=1`` gives the classic method.
* the last pass also lists the pixels above their floor (no threshold is
  lower), and only those are tried as seeds, instead of a scan of the frame
  (unless the list overflows).
"""

from __future__ import annotations

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt, model_validator

from monitor.processing.radial_search import (
    PeakList, RadialPasses, bin_moments, check_frame, check_maps, peak_arrays, store_peak,
)

__all__ = ["PeakFinder8", "PeakFinder8Parameters", "PeakList"]


MAX_PEAKS_KEPT = 65536
"""Most peaks kept per frame: far above any crystal's (a few thousand), and it bounds the arrays every
worker allocates for them to a few MB."""


class PeakFinder8Parameters(BaseModel):
    """peakfinder8 settings; intensities are in the units of the frame (photons when calibrated).

    Every value is bounded (finite, non-negative, ``min <= max``, counts within what a frame and a
    worker's memory hold): the same model checks the YAML and each change made during a run, so a
    value no frame could be searched with is refused before any worker sees it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    adc_threshold: NonNegativeFloat | None = Field(
        default=None, description="absolute floor of every pixel's threshold (frame units); null: from the noise"
    )
    noise_threshold: NonNegativeFloat = Field(
        default=5.0, description="floor of a pixel's threshold in units of its noise, where the noise map is known"
    )
    fallback_threshold: NonNegativeFloat = Field(
        default=0.5, description="floor where no noise map is known (frame units: half a photon)"
    )
    minimum_snr: NonNegativeFloat = Field(default=6.0, description="clipping width and peak SNR cut")
    min_pixel_count: PositiveInt = Field(default=2, description="fewest pixels above threshold in a peak")
    max_pixel_count: PositiveInt = Field(default=200, description="most pixels above threshold in a peak")
    min_peak_intensity: NonNegativeFloat = Field(
        default=4.5,
        description="fewest integrated photons (frame units) in a peak: chance clusters of lone background photons "
        "stay out",
    )
    local_bg_radius: PositiveInt = Field(default=3, le=64, description="local background within twice this, pixels")
    min_res: NonNegativeFloat = Field(default=0.0, description="inner radius limit, pixels")
    max_res: NonNegativeFloat = Field(default=10000.0, description="outer radius limit, pixels")
    iterations: PositiveInt = Field(default=5, le=100, description="sigma-clipping iterations")
    max_num_peaks: PositiveInt = Field(default=2048, le=MAX_PEAKS_KEPT,
                                       description="peaks beyond this are counted, not kept")
    statistics_row_step: PositiveInt = Field(
        default=8, description="clipping iterations but the last use every n-th row only"
    )
    asic_shape: tuple[PositiveInt, PositiveInt] = Field(
        default=(512, 1024), description="regions never cross asic borders (a JUNGFRAU module by default)"
    )

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> PeakFinder8Parameters:
        if self.min_pixel_count > self.max_pixel_count:
            raise ValueError(f"min_pixel_count ({self.min_pixel_count}) must not exceed max_pixel_count "
                             f"({self.max_pixel_count})")
        if self.min_res > self.max_res:
            raise ValueError(f"min_res ({self.min_res:g}) must not exceed max_res ({self.max_res:g})")
        return self


@numba.njit(cache=True, nogil=True)
def _update_thresholds(
    acc: np.ndarray, min_snr: float, bin_floor: np.ndarray, in_range: np.ndarray, offset: np.ndarray,
    sigma: np.ndarray, window: np.ndarray,
) -> None:
    """Clipped mean/sigma per bin and the next clipping window; bins out of range never pass."""
    for b in range(acc.shape[2]):
        count, mean, variance = bin_moments(acc, b)
        if count == 0.0:
            offset[b] = 0.0
            sigma[b] = 0.0
            window[b, 0] = -np.inf
            window[b, 1] = np.inf
        else:
            spread = np.sqrt(variance)
            offset[b] = mean
            sigma[b] = spread
            window[b, 0] = mean - min_snr * spread
            window[b, 1] = max(mean + min_snr * spread, bin_floor[b])
        if not in_range[b]:
            window[b, 1] = np.inf


@numba.njit(cache=True, nogil=True)
def _search(
    data: np.ndarray, mask: np.ndarray, bins: np.ndarray, window: np.ndarray, offset: np.ndarray,
    floor: np.ndarray, seeds: np.ndarray, n_seeds: int, asic_rows: int, asic_cols: int, min_pix: int, max_pix: int,
    bg_radius: int, min_snr: float, min_intensity: float, in_peak: np.ndarray, queue: np.ndarray, touched: np.ndarray,
    out_x: np.ndarray, out_y: np.ndarray, out_i: np.ndarray, out_max: np.ndarray, out_snr: np.ndarray,
    out_npix: np.ndarray,
) -> int:
    """Grow regions above threshold, measure local background, keep peaks; return how many were found.

    Seeds are the listed pixels, or every pixel when the list overflowed.  A pixel is above
    threshold when it exceeds both its bin's threshold and its own floor.
    """
    rows, cols = data.shape
    upper = window[:, 1]
    n_touched = 0
    n_found = 0
    ring = 2 * bg_radius
    scan_all = n_seeds > seeds.shape[0]
    for s in range(rows * cols if scan_all else n_seeds):
        seed = s if scan_all else seeds[s]
        i0 = seed // cols
        j0 = seed % cols
        if in_peak[i0, j0] or not mask[i0, j0] or not data[i0, j0] > max(upper[bins[i0, j0]], floor[i0, j0]):
            continue
        asic_r0 = (i0 // asic_rows) * asic_rows
        asic_c0 = (j0 // asic_cols) * asic_cols
        in_peak[i0, j0] = 1
        touched[n_touched] = i0 * cols + j0
        n_touched += 1
        queue[0] = i0 * cols + j0
        n = 1
        head = 0
        sum_i = 0.0
        sum_r = 0.0
        sum_c = 0.0
        while head < n:
            p = queue[head]
            head += 1
            r = p // cols
            c = p % cols
            v = data[r, c] - offset[bins[r, c]]
            sum_i += v
            sum_r += v * r
            sum_c += v * c
            for dr in range(-1, 2):
                rr = r + dr
                if rr < asic_r0 or rr >= asic_r0 + asic_rows:
                    continue
                for dc in range(-1, 2):
                    cc = c + dc
                    if cc < asic_c0 or cc >= asic_c0 + asic_cols or in_peak[rr, cc]:
                        continue
                    if mask[rr, cc] and data[rr, cc] > max(upper[bins[rr, cc]], floor[rr, cc]):
                        in_peak[rr, cc] = 1
                        queue[n] = rr * cols + cc
                        touched[n_touched] = rr * cols + cc
                        n += 1
                        n_touched += 1
        if n < min_pix or n > max_pix or abs(sum_i) < 1e-10:
            continue
        com_r = int(np.rint(sum_r / abs(sum_i)))
        com_c = int(np.rint(sum_c / abs(sum_i)))
        bg_n = 0
        bg_sum = 0.0
        bg_sq = 0.0
        bg_max = 0.0
        for dr in range(-ring, ring):
            rr = com_r + dr
            if rr < asic_r0 or rr >= asic_r0 + asic_rows:
                continue
            for dc in range(-ring, ring):
                cc = com_c + dc
                if cc < asic_c0 or cc >= asic_c0 + asic_cols or dr * dr + dc * dc > ring * ring:
                    continue
                v = data[rr, cc]
                if mask[rr, cc] and not in_peak[rr, cc] and v < max(upper[bins[rr, cc]], floor[rr, cc]):
                    bg_n += 1
                    bg_sum += v
                    bg_sq += v * v
                    bg_max = max(bg_max, v)
        if bg_n > 0:
            local_offset = bg_sum / bg_n
            variance = bg_sq / bg_n - local_offset * local_offset
            local_sigma = np.sqrt(variance) if variance >= 0.0 else 0.01
        else:
            local_offset = offset[bins[com_r, com_c]]
            local_sigma = 0.01
        total = 0.0
        raw_total = 0.0
        peak_max = 0.0
        sum_r = 0.0
        sum_c = 0.0
        for k in range(n):
            p = queue[k]
            r = p // cols
            c = p % cols
            v = data[r, c]
            total += v - local_offset
            raw_total += v
            sum_r += v * r
            sum_c += v * c
            peak_max = max(peak_max, v - local_offset)
        if abs(raw_total) < 1e-10:
            continue
        snr = total / local_sigma if local_sigma > 1e-10 else 0.0
        if snr < min_snr or total < min_intensity or peak_max < bg_max - local_offset:
            continue
        y = sum_r / abs(raw_total)
        x = sum_c / abs(raw_total)
        if not (asic_r0 <= y <= asic_r0 + asic_rows - 1 and asic_c0 <= x <= asic_c0 + asic_cols - 1):
            continue
        store_peak(out_x, out_y, out_i, out_max, out_snr, out_npix, n_found, x, y, total, peak_max, snr, n)
        n_found += 1
    for k in range(n_touched):
        p = touched[k]
        in_peak[p // cols, p % cols] = 0
    return n_found


class PeakFinder8:
    """peakfinder8 on frames of one detector layout; buffers are allocated once.

    ``radius`` is the distance of each pixel from the beam in pixels (e.g.
    :attr:`sources.geometry.DetectorGeometry.radius`); ``noise``, when known,
    each pixel's noise in the frame's units (e.g.
    :attr:`sources.calibration.JungfrauCalibration.noise_photons`): it sets
    the threshold floor unless ``adc_threshold`` is given.
    """

    def __init__(
        self, parameters: PeakFinder8Parameters, *, radius: np.ndarray, noise: np.ndarray | None = None
    ) -> None:
        check_maps(radius, noise, parameters.asic_shape)
        self.parameters = parameters
        self.shape = radius.shape
        self.bins = np.rint(radius).astype(np.uint16)
        n_bins = int(self.bins.max()) + 1
        self.floor = self._floor(parameters, noise, radius.shape)
        """Each pixel's threshold floor (frame units): see the module docstring."""
        self._least_floor = float(self.floor.min())
        self._bin_floor = np.full(n_bins, np.inf, dtype=np.float32)
        positive = self.floor.ravel() > 0  # a dead pixel's noise (0) does not lower its bin's floor
        np.minimum.at(self._bin_floor, self.bins.ravel()[positive], self.floor.ravel()[positive])
        self._bin_floor[~np.isfinite(self._bin_floor)] = 0.0
        self._radial = RadialPasses(
            self.bins, min_res=parameters.min_res, max_res=parameters.max_res, broad_windows=False,
        )
        self._offset = np.zeros(n_bins, dtype=np.float32)
        self._sigma = np.zeros(n_bins, dtype=np.float32)
        self._in_peak = np.zeros(self.shape, dtype=np.uint8)
        self._queue = np.empty(radius.size, dtype=np.int64)
        self._touched = np.empty(radius.size, dtype=np.int64)
        self._out = peak_arrays(parameters.max_num_peaks)

    @staticmethod
    def _floor(parameters: PeakFinder8Parameters, noise: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        if parameters.adc_threshold is not None:
            return np.full(shape, parameters.adc_threshold, dtype=np.float32)
        if noise is None:
            return np.full(shape, parameters.fallback_threshold, dtype=np.float32)
        return np.ascontiguousarray(parameters.noise_threshold * noise, dtype=np.float32)

    def find(self, data: np.ndarray, mask: np.ndarray) -> PeakList:
        """Peaks of one frame (float32 data, bool mask with True = valid)."""
        check_frame(data, mask, self.shape)
        p = self.parameters
        radial = self._radial
        n_seeds = radial.run(
            data, mask, floor=self.floor, least_floor=self._least_floor, iterations=p.iterations,
            row_step=p.statistics_row_step,
            update=lambda last: _update_thresholds(
                radial.acc, p.minimum_snr, self._bin_floor, radial.in_range, self._offset, self._sigma, radial.window,
            ),
        )
        out = self._out
        n_found = _search(
            data, mask, self.bins, radial.window, self._offset, self.floor, radial.seeds, n_seeds,
            p.asic_shape[0], p.asic_shape[1], p.min_pixel_count, p.max_pixel_count, p.local_bg_radius,
            p.minimum_snr, p.min_peak_intensity, self._in_peak, self._queue, self._touched,
            out["x"], out["y"], out["intensity"], out["max_intensity"], out["snr"], out["npix"],
        )
        kept = min(n_found, p.max_num_peaks)
        return PeakList(
            **{name: values[:kept].copy() for name, values in out.items()},
            n_found=n_found,
            radial_offset=self._offset.copy(),
            radial_sigma=self._sigma.copy(),
        )
