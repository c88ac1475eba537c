"""Bragg spots found by the significance of their photons over their footprint, as a numba kernel.

peakfinder8 asks each *pixel* to stand above a threshold; a spot wider than a
pixel, or a weak one, spreads its photons over pixels that each stay under it,
and loses its skirt or all of it.  This finder asks the *footprint* instead,
with Poisson statistics, which is what a calibrated photon-counting frame
obeys (DIALS' dispersion test and CrystFEL's peakfinder9 also test a local
window against its background; here the background is a radial model, so
rings of water and ice are followed exactly):

1. **Background per radial bin** (1-pixel rings around the beam): the mean of
   the valid pixels, recomputed ``iterations`` times from only those within
   ``mean +- (1.5 + clip_sigma * sigma)`` photons.  The 1.5 photons keep
   single background photons in the mean (a clip at a few sigma alone would
   throw out every photon of a background of 0.001 a pixel and estimate 0);
   the clip throws out Bragg pixels.  All passes but the last read every
   ``statistics_row_step``-th row (speed), and their spread is the one kept;
   the last, over every row, updates the mean and lists the *seeds*: valid
   pixels holding at least ``seed_photons`` (half a photon: the photon-counting
   threshold, so every photon's pixel is one, charge sharing included) and
   ``noise_threshold`` times their noise.
2. **Significance of each seed's boxes and profile.** For a 3 x 3 and a 5 x 5 box around a
   seed (valid pixels of its module only), the photons ``S`` are compared with
   the background ``B`` the radial model expects there plus the pixels' noise
   variance, by the Poisson likelihood-ratio significance
   ``Z = sqrt(2 (S ln(S/B) - (S - B)))``: right for counts of a few photons on
   a background of 0.001 (where a Gaussian ``(S - B)/sqrt(B)`` calls 2 photons
   a 20-sigma event) and for heavy ones alike.  The 3 x 3 box suits spots under
   a pixel wide, the 5 x 5 box spots of about a pixel.  A seed whose boxes
   fall short is also tested with *matched filters*: the likelihood ratio of
   a Gaussian spot of each width in ``profile_sigmas`` (0.8 and 1.4 pixels) at
   the photons' centroid over its 7 x 7 neighbourhood, which weights each
   pixel by what the spot would put there (a box counts a wide spot's skirt,
   mostly background, as much as its core).  A seed passes when a test reaches the frame's cut
   with ``min_photons`` above ``B`` in its box (the 5 x 5 box for the profile).
3. **One spot per maximum.** A passing seed is a spot's centre when no passing
   seed within 2 pixels has more photons above background in its 5 x 5 box.
4. **Integration over the footprint**: the photons above background within
   ``integration_radius`` of the centre (the background from the radial
   model plus a local offset from a ring of 5-7 pixels around it, so a
   background that is not radial is followed too), the centroid of the
   photons above background within 2 pixels, and the SNR ``I / sigma(I)`` with
   ``sigma(I)^2 = I + n (b + noise^2)`` over the footprint's ``n`` pixels.
   Centres closer than 2 pixels after centroiding are one spot (the brighter).

Positions are raw-frame pixel coordinates with pixel centres at integers
(``x`` = column, ``y`` = row), as peakfinder8's: the output is the same
:class:`~monitor.processing.radial_search.PeakList`, so hit files, the live
feed, the results stream and the truth comparison take either finder's spots.

Why these defaults.  The cut is set by ``chance_spots_per_frame`` (0.01): a
JUNGFRAU 1M frame holds ~1.6 x 10^5 independent 3 x 3 and 5 x 5 boxes and
~1.7 x 10^5 spot areas ``4 pi sigma^2`` of the two profiles, and the one-sided
Gaussian tail 0.01 / 3.3 x 10^5 is 5.42 sigma (never below
``min_significance``).  ``profile_sigmas`` 0.8 and 1.4 pixels: a matched
filter keeps ``2r / (1 + r^2)`` of its significance on a spot ``r`` times
wider or narrower than its own, 95 % within a factor 1.4, so the two cover
spots of sigma 0.57-2 pixels; the 3 x 3 box serves sharper ones.
``min_photons`` 3: below it no box is a spot whatever its significance (at
0.001 photons a pixel two photons side by side are a "significant" pair, and
a frame has a few).  ``integration_radius`` 3.5 pixels
holds 99 % of a 1-pixel-wide spot and 90 % of a 1.6-pixel one.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from monitor.processing.radial_search import (
    PeakList, RadialPasses, bin_moments, box_photons, check_frame, check_maps, peak_arrays, store_peak,
)

__all__ = ["SpotFinder", "SpotFinderParameters"]

MAX_SPOTS_KEPT = 65536
"""Most spots kept per frame (the arrays each worker allocates for them)."""
_CLIP_PHOTONS = 1.5
"""Photons above (and below) a bin's mean always inside its clipping window: single photons count."""
_MERGE_PX = 2
_PROFILE_HALF = 3
"""Half side of the neighbourhood a Gaussian profile is fitted over (7x7: 99 % of a spot of sigma 1.6)."""
_PROFILE_PRESELECT = 0.7
"""A seed's profile is fitted only when its 5x5 box reaches this fraction of the cut: for a Gaussian spot a
matched filter's significance exceeds the best square box's by about 12 % (0.282 against 0.251 over sigma
in Gaussian noise), so seeds below 0.7 of the cut cannot pass and are spared the fit."""
_RING_INNER_PX = 5.0
_RING_OUTER_PX = 7.0


class SpotFinderParameters(BaseModel):
    """Spot finder settings; the frame must be in photons (calibrated).  Bounded like every live parameter."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    chance_spots_per_frame: float = Field(
        default=0.01, gt=0.0, le=100.0,
        description="background fluctuations allowed to pass as spots, per frame: sets each frame's significance cut",
    )
    min_significance: float = Field(
        default=4.0, ge=1.0, le=100.0,
        description="least Poisson significance (sigma) a seed's 3x3 or 5x5 box must reach over the background",
    )
    min_photons: float = Field(default=3.0, ge=0.0, le=1e6, description="photons above background a box must hold")
    seed_photons: float = Field(default=0.5, ge=0.0, le=1e6, description="pixels from this many photons up are seeds")
    noise_threshold: float = Field(default=5.0, ge=0.0, le=1e3, description="... and from this many times their noise")
    clip_sigma: float = Field(default=5.0, ge=1.0, le=100.0, description="background clipping width, sigma")
    iterations: PositiveInt = Field(default=3, le=100, description="background clipping iterations")
    statistics_row_step: PositiveInt = Field(default=16, le=512, description="all passes but the last: every n-th row")
    profile_sigmas: tuple[Annotated[float, Field(ge=0.3, le=2.0)], ...] = Field(
        default=(0.8, 1.4), max_length=4,
        description="widths (sigma, pixels) of the Gaussian spots also tested for over a seed's 7x7 (matched "
        "filters); empty: the boxes only",
    )
    integration_radius: float = Field(default=3.5, ge=1.0, le=16.0, description="footprint radius, pixels")
    min_res: float = Field(default=0.0, ge=0.0, le=1e5, description="inner radius limit, pixels from the beam")
    max_res: float = Field(default=10000.0, ge=0.0, le=1e5, description="outer radius limit, pixels from the beam")
    max_num_peaks: PositiveInt = Field(default=2048, le=MAX_SPOTS_KEPT, description="spots kept (more are counted)")
    asic_shape: tuple[PositiveInt, PositiveInt] = Field(
        default=(512, 1024), description="boxes and footprints never cross these borders (a JUNGFRAU module)"
    )

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> SpotFinderParameters:
        if self.min_res > self.max_res:
            raise ValueError(f"min_res ({self.min_res}) must not exceed max_res ({self.max_res})")
        return self


@numba.njit(cache=True, nogil=True)
def _background(
    acc: np.ndarray, clip_sigma: float, mean: np.ndarray, variance: np.ndarray, window: np.ndarray, keep_spread: bool,
) -> None:
    """Clipped mean and variance per bin from the radial sums, and the next clipping window; with
    ``keep_spread`` (sums without squares) the mean only."""
    for b in range(acc.shape[2]):
        count, m, v = bin_moments(acc, b)  # 0, 0, 0 for a bin without pixels: its window is everything
        mean[b] = m
        if keep_spread:
            continue
        variance[b] = v
        reach = _CLIP_PHOTONS + clip_sigma * math.sqrt(v) if count else np.inf
        window[b, 0] = m - reach
        window[b, 1] = m + reach


@numba.njit(cache=True, nogil=True)
def _significance(photons: float, expected: float) -> float:
    """Poisson likelihood-ratio significance (sigma) of ``photons`` where ``expected`` were due; 0 if fewer."""
    if photons <= expected:
        return 0.0
    if expected <= 1e-12:
        return np.inf
    return math.sqrt(2.0 * (photons * math.log(photons / expected) - (photons - expected)))


@numba.njit(cache=True, nogil=True)
def _box(
    data: np.ndarray, mask: np.ndarray, bins: np.ndarray, mean: np.ndarray, noise_var: np.ndarray, i0: int, j0: int,
    half: int, r0: int, r1: int, c0: int, c1: int,
) -> tuple[float, float]:
    """Photons and expected background (plus noise variance) in the box of half side ``half`` at (i0, j0),
    valid pixels inside rows [r0, r1) and columns [c0, c1) only."""
    photons = 0.0
    expected = 0.0
    for i in range(max(i0 - half, r0), min(i0 + half + 1, r1)):
        for j in range(max(j0 - half, c0), min(j0 + half + 1, c1)):
            if mask[i, j]:
                photons += data[i, j]
                expected += mean[bins[i, j]] + noise_var[bins[i, j]]
    return photons, expected


@numba.njit(cache=True, nogil=True)
def _centroid(
    data: np.ndarray, mask: np.ndarray, bins: np.ndarray, mean: np.ndarray, i0: int, j0: int,
    r0: int, r1: int, c0: int, c1: int,
) -> tuple[float, float]:
    """(y, x) centroid of the photons above background within 2 pixels of (i0, j0); (i0, j0) if none."""
    weight = 0.0
    sum_r = 0.0
    sum_c = 0.0
    for i in range(max(i0 - 2, r0), min(i0 + 3, r1)):
        for j in range(max(j0 - 2, c0), min(j0 + 3, c1)):
            if mask[i, j]:
                w = data[i, j] - mean[bins[i, j]]
                if w > 0.0:
                    weight += w
                    sum_r += w * i
                    sum_c += w * j
    if weight <= 0.0:
        return float(i0), float(j0)
    return sum_r / weight, sum_c / weight


@numba.njit(cache=True, nogil=True)
def _profile_significance(
    data: np.ndarray, mask: np.ndarray, bins: np.ndarray, mean: np.ndarray, noise_var: np.ndarray, i0: int, j0: int,
    sigma: float, r0: int, r1: int, c0: int, c1: int,
) -> float:
    """Poisson likelihood-ratio significance of a Gaussian spot of width ``sigma`` (pixels), centred on the
    photons' centroid near (i0, j0), over the 7x7 valid pixels around it: the matched filter for spots
    wider than a pixel, which weights each pixel by what the spot would put there instead of counting a
    square box's pixels alike (where a wide spot's skirt adds as much background as photons).

    The model is ``n_k ~ Poisson(B_k + A p_k)`` with ``p_k`` the profile integrated over pixel ``k`` and
    ``B_k`` the rings' background plus the noise variance; ``A`` (the spot's photons) is fitted by Newton's
    method on the concave log-likelihood, and ``Z = sqrt(2 (log L(A) - log L(0)))``."""
    y, x = _centroid(data, mask, bins, mean, i0, j0, r0, r1, c0, c1)
    ci = int(round(y))
    cj = int(round(x))
    side = 2 * _PROFILE_HALF + 1
    scale = 1.0 / (math.sqrt(2.0) * sigma)
    fy = np.empty(side)
    fx = np.empty(side)
    for k in range(side):
        fy[k] = 0.5 * (math.erf((ci - _PROFILE_HALF + k + 0.5 - y) * scale)
                       - math.erf((ci - _PROFILE_HALF + k - 0.5 - y) * scale))
        fx[k] = 0.5 * (math.erf((cj - _PROFILE_HALF + k + 0.5 - x) * scale)
                       - math.erf((cj - _PROFILE_HALF + k - 0.5 - x) * scale))
    counts = np.empty(side * side)
    profile = np.empty(side * side)
    expected = np.empty(side * side)
    n_pix = 0
    for i in range(max(ci - _PROFILE_HALF, r0), min(ci + _PROFILE_HALF + 1, r1)):
        for j in range(max(cj - _PROFILE_HALF, c0), min(cj + _PROFILE_HALF + 1, c1)):
            if mask[i, j]:
                b = bins[i, j]
                counts[n_pix] = max(data[i, j], 0.0)
                profile[n_pix] = fy[i - ci + _PROFILE_HALF] * fx[j - cj + _PROFILE_HALF]
                expected[n_pix] = max(mean[b] + noise_var[b], 1e-12)
                n_pix += 1
    total_counts = counts[:n_pix].sum()
    total_expected = expected[:n_pix].sum()
    total_profile = profile[:n_pix].sum()
    if n_pix == 0 or total_counts <= total_expected:
        return 0.0
    amplitude = (total_counts - total_expected) / total_profile
    for _ in range(20):
        slope = -total_profile
        curve = 0.0
        for k in range(n_pix):
            rate = expected[k] + amplitude * profile[k]
            slope += counts[k] * profile[k] / rate
            curve -= counts[k] * (profile[k] / rate) ** 2
        if curve >= 0.0:
            break
        step = slope / curve
        amplitude = max(amplitude - step, 0.5 * amplitude)  # never past zero, where the likelihood ends
        if abs(step) <= 1e-6 * amplitude:
            break
    gain = -amplitude * total_profile
    for k in range(n_pix):
        if counts[k] > 0.0:
            gain += counts[k] * math.log1p(amplitude * profile[k] / expected[k])
    return math.sqrt(2.0 * gain) if gain > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _candidates(
    data: np.ndarray, mask: np.ndarray, bins: np.ndarray, mean: np.ndarray, noise_var: np.ndarray, in_range: np.ndarray,
    least_expected: np.ndarray, seeds: np.ndarray, seed_rings: np.ndarray, seed_boxes: np.ndarray, n_seeds: int,
    asic_rows: int, asic_cols: int,
    min_significance: float, min_photons: float, seed_floor: np.ndarray, score: np.ndarray, out_index: np.ndarray,
    profile_sigmas: np.ndarray,
) -> int:
    """Seeds whose 3x3 or 5x5 box, or a Gaussian profile of ``profile_sigmas`` around them, is significant;
    ``score`` (a zeroed frame) gets each one's excess photons in its 5x5 box.  Returns how many (listed in ``out_index``).

    Most seeds are lone photons: their boxes' photons alone (``seed_boxes``, summed during the radial
    pass beside each seed's ring, ``seed_rings``), against the least background and noise variance any
    pixel within 3 rings could have (``least_expected``), already fall short of ``min_photons`` or of the
    significance, and neither the frame nor their expected background is read again.  (A box's pixels
    lie within 2.9 rings of its centre, and the significance falls as the background rises: the
    exact test could only fail them too.)"""
    rows, cols = data.shape
    scan_all = n_seeds > seeds.shape[0]
    preselect = _PROFILE_PRESELECT * min_significance if profile_sigmas.size else min_significance
    n = 0
    for s in range(rows * cols if scan_all else n_seeds):
        seed = s if scan_all else seeds[s]
        i0 = seed // cols
        j0 = seed % cols
        r0 = (i0 // asic_rows) * asic_rows
        c0 = (j0 // asic_cols) * asic_cols
        if scan_all:
            if not mask[i0, j0] or not data[i0, j0] > seed_floor[i0, j0]:
                continue
            ring = bins[i0, j0]
            s3, n3, s5, n5 = box_photons(data, mask, i0, j0, r0, r0 + asic_rows, c0, c0 + asic_cols)
        else:  # a listed seed is valid and over its floor
            ring = seed_rings[s]
            s3, n3, s5, n5 = seed_boxes[s, 0], seed_boxes[s, 1], seed_boxes[s, 2], seed_boxes[s, 3]
        if not in_range[ring]:
            continue
        low3 = n3 * least_expected[ring]
        low5 = n5 * least_expected[ring]
        if ((s3 - low3 < min_photons or _significance(s3, low3) < min_significance)
                and (s5 - low5 < min_photons or _significance(s5, low5) < preselect)):
            continue  # neither box (nor the profile) passes even on the least background its pixels could have
        s3, b3 = _box(data, mask, bins, mean, noise_var, i0, j0, 1, r0, r0 + asic_rows, c0, c0 + asic_cols)
        s5, b5 = _box(data, mask, bins, mean, noise_var, i0, j0, 2, r0, r0 + asic_rows, c0, c0 + asic_cols)
        small = s3 - b3 >= min_photons and _significance(s3, b3) >= min_significance
        z5 = _significance(s5, b5) if s5 - b5 >= min_photons else 0.0
        wide = z5 >= min_significance
        if not (small or wide) and z5 >= preselect:
            for sigma in profile_sigmas:
                if _profile_significance(
                    data, mask, bins, mean, noise_var, i0, j0, sigma, r0, r0 + asic_rows, c0, c0 + asic_cols,
                ) >= min_significance:
                    wide = True
                    break
        if small or wide:
            score[i0, j0] = max(s5 - b5, 1e-6)
            out_index[n] = seed
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _integrate(
    data: np.ndarray, mask: np.ndarray, bins: np.ndarray, mean: np.ndarray, noise_var: np.ndarray,
    candidates: np.ndarray, n_candidates: int, score: np.ndarray, asic_rows: int, asic_cols: int, radius: float,
    order: np.ndarray, taken: np.ndarray,
    out_x: np.ndarray, out_y: np.ndarray, out_i: np.ndarray, out_max: np.ndarray, out_snr: np.ndarray,
    out_npix: np.ndarray,
) -> int:
    """Spots at the candidates that are their neighbourhood's maximum: centroid, intensity, SNR.

    ``order`` lists the candidates brightest first, so that of two centres within
    ``_MERGE_PX`` after centroiding the brighter one is kept (``taken``, a zeroed
    frame, marks the kept centres; it and ``score`` are re-zeroed here).
    """
    rows, cols = data.shape
    n_found = 0
    centres = np.empty(n_candidates, dtype=np.int64)
    reach = int(math.ceil(radius))
    ring = int(_RING_OUTER_PX)
    for k in range(n_candidates):
        seed = candidates[order[k]]
        i0 = seed // cols
        j0 = seed % cols
        r0 = (i0 // asic_rows) * asic_rows
        c0 = (j0 // asic_cols) * asic_cols
        r1 = r0 + asic_rows
        c1 = c0 + asic_cols
        mine = score[i0, j0]
        is_max = True
        for i in range(max(i0 - _MERGE_PX, r0), min(i0 + _MERGE_PX + 1, r1)):
            for j in range(max(j0 - _MERGE_PX, c0), min(j0 + _MERGE_PX + 1, c1)):
                other = score[i, j]
                if other > mine or (other == mine and other > 0.0 and i * cols + j < seed):
                    is_max = False
        if not is_max:
            continue
        y, x = _centroid(data, mask, bins, mean, i0, j0, r0, r1, c0, c1)
        ci = int(round(y))
        cj = int(round(x))
        duplicate = False
        for i in range(max(ci - _MERGE_PX, r0), min(ci + _MERGE_PX + 1, r1)):
            for j in range(max(cj - _MERGE_PX, c0), min(cj + _MERGE_PX + 1, c1)):
                if taken[i, j]:
                    duplicate = True
        if duplicate:
            continue
        # local offset from a ring around the footprint, then the footprint's photons above background
        ring_sum = 0.0
        ring_n = 0
        for i in range(max(ci - ring, r0), min(ci + ring + 1, r1)):
            for j in range(max(cj - ring, c0), min(cj + ring + 1, c1)):
                d2 = (i - y) ** 2 + (j - x) ** 2
                if mask[i, j] and _RING_INNER_PX**2 <= d2 <= _RING_OUTER_PX**2:
                    b = bins[i, j]
                    excess = data[i, j] - mean[b]
                    if abs(excess) <= _CLIP_PHOTONS + 5.0 * math.sqrt(mean[b] + noise_var[b]):
                        ring_sum += excess
                        ring_n += 1
        offset = ring_sum / ring_n if ring_n else 0.0
        total = 0.0
        peak = 0.0
        variance = 0.0
        npix = 0
        for i in range(max(ci - reach, r0), min(ci + reach + 1, r1)):
            for j in range(max(cj - reach, c0), min(cj + reach + 1, c1)):
                if mask[i, j] and (i - y) ** 2 + (j - x) ** 2 <= radius * radius:
                    b = bins[i, j]
                    value = data[i, j] - mean[b] - offset
                    total += value
                    peak = max(peak, value)
                    variance += max(mean[b], 0.0) + noise_var[b]
                    npix += 1
        snr = total / math.sqrt(max(total, 0.0) + variance) if variance + max(total, 0.0) > 0.0 else 0.0
        taken[ci, cj] = 1
        centres[n_found] = ci * cols + cj
        store_peak(out_x, out_y, out_i, out_max, out_snr, out_npix, n_found, x, y, total, peak, snr, npix)
        n_found += 1
    for k in range(n_candidates):
        seed = candidates[k]
        score[seed // cols, seed % cols] = 0.0
    for k in range(n_found):
        taken[centres[k] // cols, centres[k] % cols] = 0
    return n_found


def _profile_share(sigmas: tuple[float, ...]) -> float:
    """Independent profile tests a pixel adds to a frame's: one per spot area ``4 pi sigma^2`` of each."""
    return sum(1.0 / (4.0 * math.pi * sigma**2) for sigma in sigmas)


@functools.lru_cache(maxsize=64)
def _one_sided_sigma(tail: float) -> float:
    """The z of a one-sided Gaussian tail probability (bisection on erfc; 1e-300 < tail < 0.5); kept per
    tail, as a frame asks the same as the last unless a parameter changed."""
    low, high = 0.0, 40.0
    for _ in range(60):
        middle = (low + high) / 2
        if 0.5 * math.erfc(middle / math.sqrt(2.0)) > tail:
            low = middle
        else:
            high = middle
    return high


class SpotFinder:
    """The spot finder on frames of one detector layout; buffers are allocated once.

    ``radius`` is each pixel's distance from the beam in pixels
    (:attr:`sources.geometry.DetectorGeometry.radius`); ``noise``, when known,
    each pixel's noise in photons
    (:attr:`sources.calibration.JungfrauCalibration.noise_photons`).
    """

    def __init__(self, parameters: SpotFinderParameters, *, radius: np.ndarray, noise: np.ndarray | None = None) -> None:
        check_maps(radius, noise, parameters.asic_shape)
        self.parameters = parameters
        self.shape = radius.shape
        self.bins = np.rint(radius).astype(np.uint16)
        n_bins = int(self.bins.max()) + 1
        noise = np.zeros(radius.shape, np.float32) if noise is None else np.asarray(noise, dtype=np.float32)
        self.seed_floor = np.maximum(parameters.seed_photons, parameters.noise_threshold * noise).astype(np.float32)
        """Each pixel's least value to be a seed (photons)."""
        self._least_seed_floor = float(self.seed_floor.min())
        self._radial = RadialPasses(
            self.bins, min_res=parameters.min_res, max_res=parameters.max_res, broad_windows=True,
        )
        pixels = self._radial.pixels
        with np.errstate(invalid="ignore", divide="ignore"):
            self._noise_var = np.nan_to_num(
                np.bincount(self.bins.ravel(), weights=noise.ravel().astype(np.float64) ** 2, minlength=n_bins) / pixels
            )
        tests_per_pixel = 1 / 9 + 1 / 25 + _profile_share(parameters.profile_sigmas)
        self._profile_sigmas = np.array(parameters.profile_sigmas, dtype=np.float64)
        self._tests = max(float(pixels[self._radial.in_range].sum()) * tests_per_pixel, 1.0)
        """Independent tests a frame is put to: its pixels over each box's (and the profile's) area."""
        self._mean = np.zeros(n_bins, dtype=np.float64)
        self._variance = np.zeros(n_bins, dtype=np.float64)
        self._candidates = np.empty(radius.size, dtype=np.int64)
        self._score = np.zeros(self.shape, dtype=np.float32)
        self._taken = np.zeros(self.shape, dtype=np.uint8)
        self.significance = parameters.min_significance
        """The last frame's significance cut (sigma)."""
        self._out = peak_arrays(parameters.max_num_peaks)

    @property
    def background(self) -> np.ndarray:
        """The last frame's background per 1-pixel radial bin (photons a pixel)."""
        return self._mean

    def find(self, data: np.ndarray, mask: np.ndarray) -> PeakList:
        """Spots of one frame (float32 photons, bool mask with True = valid)."""
        check_frame(data, mask, self.shape)
        p = self.parameters
        radial = self._radial
        n_seeds = radial.run(
            data, mask, floor=self.seed_floor, iterations=p.iterations, row_step=p.statistics_row_step,
            least_floor=self._least_seed_floor, spread_last=False, asic_shape=p.asic_shape,
            update=lambda last: _background(
                radial.acc, p.clip_sigma, self._mean, self._variance, radial.window, keep_spread=last,
            ),
        )
        rows, cols = p.asic_shape
        self.significance = max(p.min_significance, _one_sided_sigma(p.chance_spots_per_frame / self._tests))
        expected = self._mean + self._noise_var
        least_expected = -np.lib.stride_tricks.sliding_window_view(np.pad(-expected, 3, mode="edge"), 7).max(axis=1)
        n_candidates = _candidates(
            data, mask, self.bins, self._mean, self._noise_var, radial.in_range, least_expected, radial.seeds,
            radial.seed_rings, radial.seed_boxes, n_seeds, rows, cols,
            self.significance, p.min_photons, self.seed_floor, self._score, self._candidates,
            self._profile_sigmas,
        )
        listed = self._candidates[:n_candidates]
        order = np.argsort(-self._score.ravel()[listed], kind="stable")
        out = self._out
        n_found = _integrate(
            data, mask, self.bins, self._mean, self._noise_var, listed, n_candidates, self._score, rows, cols,
            p.integration_radius, order, self._taken,
            out["x"], out["y"], out["intensity"], out["max_intensity"], out["snr"], out["npix"],
        )
        kept = min(n_found, p.max_num_peaks)
        return PeakList(
            **{name: values[:kept].copy() for name, values in out.items()},
            n_found=n_found,
            radial_offset=self._mean.astype(np.float32),
            radial_sigma=np.sqrt(self._variance).astype(np.float32),
        )
