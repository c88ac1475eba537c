"""A simulated JUNGFRAU 1M whose every pixel has a known origin.

The frames look like what a real JUNGFRAU 1M sends (uint16, bits 0-13 ADC,
bits 14-15 gain stage ``00`` G0, ``01`` G1, ``11`` G2, ``0xFFFF`` for pixels of
lost packets) and come with the truth needed to check the science: where each
Bragg peak is, how many photons it holds, and the per-pixel pedestal and gain
maps that turn ADC values back into photons.

Content of a frame, built from three deterministic random streams keyed by
``(seed, frame_number)`` so the truth can be recomputed on any rank:

* **background**: Poisson photons from diffuse scattering, a flat level plus the
  water ring (at ``water_ring_d_a``, 3.2 A, through the geometry)
  (:attr:`SimulatedJungfrau1M.background`), drawn afresh for every frame.
  The electronic noise of the pixels without photons comes from a small pool
  of frames made once at construction: each frame copies each of its 16 bands
  of 64 rows from a pool frame picked at random, so a frame costs a 2 MB copy
  plus its photons.
* **electronic noise**: a few ADU per pixel and gain stage, some pixels much
  noisier (``noisy`` in :attr:`SimulatedJungfrau1M.bad_pixels`).
* **Bragg peaks** on a fraction ``hit_fraction`` of frames (the hits): the
  spots of a crystal lattice in a random orientation, cut by the Ewald sphere
  (:mod:`monitor.simulation.crystal`: a unit cell, Wilson intensities, partial
  spots, a per-hit crystal size and spot width; named strengths ``weak``,
  ``medium``, ``strong``).  Other frames hold no crystal.  Each spot is a
  Gaussian of its own width, integrated over the pixels, with Poisson photons;
  spots that overlap add up.  Spots whose centre is in the module gap or
  within 4 pixels of a module edge are left out (pixels and truth alike).
* **gain switching**: a pixel leaves G0 when its ADC would pass 14,000 and
  G1 when its ADC would fall under 1,500; in G2 an ADC at or below 0 reads
  ``0xC000`` (saturated), as on the real detector.
* **dead pixels** read 0 (G0, ADC 0) always; **never-switching** pixels stay
  in G0 and clip at ADC 16,383.
* **lost packets** (rate ``lost_packet_rate`` per packet, default 0): whole
  4-row blocks of ``0xFFFF``, as the receiver pads them.

Coordinates: a pixel's centre is at integer (row, column) in the raw frame.
The two modules sit ``module_gap_px`` apart in the lab (module 1 below module
0), with the beam at the centre of the assembled detector, ``distance_m`` from
the sample, with 75 um pixels, as in the shipped ``monitor/data/jungfrau1m.geom``.
Chip-boundary big pixels are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from monitor.simulation.crystal import CrystalModel, CrystalSettings, crystal_settings

__all__ = ["FrameTruth", "PeakTruth", "SimulatedJungfrau1M", "GAIN_BITS", "LOST_PIXEL"]

MODULE_SHAPE = (512, 1024)
FRAME_SHAPE = (1024, 1024)
ROWS_PER_PACKET = 4
GAIN_BITS = np.array([0x0000, 0x4000, 0xC000], dtype=np.uint16)
"""Bits 14-15 of a raw pixel for gain stages G0, G1, G2."""
LOST_PIXEL = 0xFFFF
_ADC_MAX = 0x3FFF
_G0_SWITCH_ADC = 14000.0
_G1_SWITCH_ADC = 1500.0
_PATCH_RADIUS_PX = 4
_BAND_ROWS = 64
_NO_INDEX = np.empty(0, dtype=np.int64)
PIXEL_SIZE_M = 75e-6
SIMULATED_PHOTON_ENERGY_KEV = 12.4
"""The simulated detector's default photon energy (and the shipped geometry's)."""


@dataclass(frozen=True)
class PeakTruth:
    """One simulated Bragg spot.

    ``photons`` is the number of photons it deposited (a Poisson draw, pixel by
    pixel, of its ``expected_photons``); ``resolution`` its d-spacing in A.  ``snr`` is its ideal
    signal-to-noise ratio: its photons over the Poisson noise of those photons
    plus the background under its effective area 4*pi*sigma**2,
    ``photons / sqrt(photons + 4*pi*sigma**2 * b)``: it depends on the spot and
    its background only, not on any peak finder.  ``whole`` is False when a
    bad pixel or a lost packet lies within 2 pixels of its centre: no finder
    can be asked to see such a spot whole.
    """

    y: float
    x: float
    photons: float
    sigma: float
    snr: float
    resolution: float
    whole: bool = True
    expected_photons: float = 0.0

    def to_json(self) -> dict[str, float | bool]:
        return {"y": self.y, "x": self.x, "photons": self.photons, "sigma": self.sigma, "snr": self.snr,
                "resolution": self.resolution, "whole": self.whole, "expected_photons": self.expected_photons}


@dataclass(frozen=True)
class FrameTruth:
    """What the simulator put in one frame.

    ``orientation`` is the crystal's rotation matrix (row-major, 9 numbers) on
    hits, empty otherwise; ``lost_packets`` holds the indices of the 4-row
    blocks (0..255 over the whole frame) that read ``0xFFFF``.
    """

    frame_number: int
    is_hit: bool
    peaks: tuple[PeakTruth, ...]
    lost_packets: tuple[int, ...] = ()
    orientation: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (plain floats, ints, lists)."""
        return {
            "frame_number": self.frame_number,
            "is_hit": self.is_hit,
            "peaks": [peak.to_json() for peak in self.peaks],
            "lost_packets": list(self.lost_packets),
            "orientation": list(self.orientation),
        }


@numba.njit(cache=True)
def _peak_patches(
    ys: np.ndarray, xs: np.ndarray, photons: np.ndarray, sigmas: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Expected photons per pixel of each peak, integrated over the pixel area.

    Returns flat pixel indices and expected counts, ``(2R+1)**2`` per peak.
    Pixel integration (erf differences) keeps small spots' shapes honest; the
    patch is renormalised so each peak's expected photons sum to its truth.
    """
    side = 2 * _PATCH_RADIUS_PX + 1
    n = ys.shape[0]
    index = np.empty(n * side * side, dtype=np.int64)
    expected = np.empty(n * side * side, dtype=np.float64)
    fy = np.empty(side)
    fx = np.empty(side)
    for p in range(n):
        row0 = int(round(ys[p])) - _PATCH_RADIUS_PX
        col0 = int(round(xs[p])) - _PATCH_RADIUS_PX
        scale = 1.0 / (math.sqrt(2.0) * sigmas[p])
        for k in range(side):
            fy[k] = 0.5 * (math.erf((row0 + k + 0.5 - ys[p]) * scale) - math.erf((row0 + k - 0.5 - ys[p]) * scale))
            fx[k] = 0.5 * (math.erf((col0 + k + 0.5 - xs[p]) * scale) - math.erf((col0 + k - 0.5 - xs[p]) * scale))
        norm = photons[p] / (fy.sum() * fx.sum())
        base = p * side * side
        for i in range(side):
            for j in range(side):
                index[base + i * side + j] = (row0 + i) * width + col0 + j
                expected[base + i * side + j] = fy[i] * fx[j] * norm
    return index, expected


def _dilate(mask: np.ndarray, reach: int) -> np.ndarray:
    """``mask`` grown by ``reach`` pixels in every direction (a square neighbourhood)."""
    grown = mask.copy()
    for axis in (0, 1):
        source = grown.copy()
        for shift in range(1, reach + 1):
            lead = [slice(None)] * 2
            lag = [slice(None)] * 2
            lead[axis], lag[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(lead)] |= source[tuple(lag)]
            grown[tuple(lag)] |= source[tuple(lead)]
    return grown


class SimulatedJungfrau1M:
    """Raw JUNGFRAU 1M frames with ground truth, deterministic in ``(seed, frame_number)``.

    Construction draws the per-pixel maps and a pool of background frames
    (about a second); :meth:`frame` then costs about a millisecond.  With
    ``pool_size=0`` only the maps are drawn (a fraction of the time), for a
    process that calibrates the simulated detector's frames but makes none.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        hit_fraction: float = 0.25,
        crystal: str | CrystalSettings = "medium",
        photon_energy_kev: float = SIMULATED_PHOTON_ENERGY_KEV,
        distance_m: float = 0.120,
        background_photons: float = 0.005,
        ring_photons: float = 0.01,
        water_ring_d_a: float = 3.2,
        water_ring_width: float = 0.03,
        module_gap_px: float = 36.0,
        noise_adu: tuple[float, float, float] = (4.0, 2.0, 1.0),
        noisy_pixel_fraction: float = 1e-4,
        dead_pixel_fraction: float = 1e-4,
        stuck_gain_fraction: float = 2e-5,
        lost_packet_rate: float = 0.0,
        pool_size: int = 8,
    ) -> None:
        if not 0.0 <= hit_fraction <= 1.0:
            raise ValueError(f"hit_fraction must be in [0, 1], got {hit_fraction}")
        if not 0.0 <= lost_packet_rate <= 1.0:
            raise ValueError(f"lost_packet_rate must be in [0, 1], got {lost_packet_rate}")
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        if photon_energy_kev <= 0:
            raise ValueError(f"photon_energy_kev must be positive, got {photon_energy_kev}")
        self.seed = seed
        self.hit_fraction = hit_fraction
        self.photon_energy_kev = photon_energy_kev
        self.distance_m = distance_m
        self.module_gap_px = module_gap_px
        self.lost_packet_rate = lost_packet_rate
        self.crystal_settings = crystal_settings(crystal)
        if self.crystal_settings.spot_sigma_px[1] * 1.15 * 4 > _PATCH_RADIUS_PX:
            raise ValueError(f"spot_sigma_px must stay under {_PATCH_RADIUS_PX / 4 / 1.15:.2f} pixels")

        rng = np.random.default_rng([seed, 0x5EED])
        shape = (3, *FRAME_SHAPE)
        self.pedestal = np.empty(shape, dtype=np.float32)
        self.pedestal[0] = np.clip(rng.normal(2000.0, 300.0, FRAME_SHAPE), 1000.0, 3000.0)
        self.pedestal[1] = rng.normal(14000.0, 300.0, FRAME_SHAPE)
        self.pedestal[2] = rng.normal(14500.0, 300.0, FRAME_SHAPE)
        self.gain = np.empty(shape, dtype=np.float64)
        self.gain[0] = rng.normal(40.0, 1.2, FRAME_SHAPE)
        self.gain[1] = rng.normal(-1.5, 0.05, FRAME_SHAPE)
        self.gain[2] = rng.normal(-0.1, 0.004, FRAME_SHAPE)
        self.high_gain = self.gain * np.array([2.5, 1.0, 1.0])[:, None, None]
        """Gain maps of the high-gain mode (HG0 ~ 2.5 x G0), written with the others; not used for frames."""
        self.noise = np.empty(shape, dtype=np.float32)
        for stage, adu in enumerate(noise_adu):
            self.noise[stage] = rng.normal(adu, 0.1 * adu, FRAME_SHAPE).clip(0.2 * adu)
        n_pixels = FRAME_SHAPE[0] * FRAME_SHAPE[1]
        counts = [int(n_pixels * f) for f in (noisy_pixel_fraction, dead_pixel_fraction, stuck_gain_fraction)]
        noisy, dead, stuck = np.split(rng.choice(n_pixels, size=sum(counts), replace=False), np.cumsum(counts)[:2])
        self.noise.reshape(3, -1)[:, noisy] *= 25.0
        self._dead = np.sort(dead)
        self._stuck = np.zeros(n_pixels, dtype=bool)
        self._stuck[stuck] = True
        self.bad_pixels = {
            "noisy": np.zeros(FRAME_SHAPE, dtype=bool),
            "dead": np.zeros(FRAME_SHAPE, dtype=bool),
            "stuck_gain": self._stuck.reshape(FRAME_SHAPE).copy(),
        }
        """Truth of the pixels a dark run should flag, by kind."""
        self.bad_pixels["noisy"].flat[noisy] = True
        self.bad_pixels["dead"].flat[dead] = True
        self._near_bad = _dilate(self.bad_pixels["noisy"] | self.bad_pixels["dead"] | self.bad_pixels["stuck_gain"], 2)
        """Pixels within 2 of a bad pixel: a spot centred there is not ``whole``."""

        self.lab_y, self.lab_x = self._lab_coordinates()
        self.radius = np.hypot(self.lab_y, self.lab_x).astype(np.float32)
        """Distance of each pixel centre from the beam, in pixels (lab, with the module gap)."""
        self.resolution = self._resolution(self.radius)
        """d-spacing of each pixel, in A."""
        self.background = (
            background_photons
            + ring_photons * np.exp(-0.5 * ((1 / self.resolution - 1 / water_ring_d_a) / water_ring_width) ** 2)
        ).astype(np.float32)
        """Mean background photons per pixel and frame."""
        self.crystal = CrystalModel(
            self.crystal_settings, photon_energy_kev=photon_energy_kev, distance_m=distance_m,
            pixel_size_m=PIXEL_SIZE_M, max_radius_px=float(self.radius.max()) + 1, seed=seed,
            on_detector=lambda y, x: self._raw_positions(y, x)[4],
        )

        self._background_total = float(self.background.sum(dtype=np.float64))
        self._background_max = float(self.background.max())
        self._background_acceptance = self._background_total / (self._background_max * self.background.size)
        self._pool_raw = np.empty((pool_size, *FRAME_SHAPE), dtype=np.uint16)
        no_photons = np.zeros(n_pixels)
        for k in range(pool_size):
            self._pool_raw[k].flat[:] = self._encode(no_photons, slice(None), rng.standard_normal(n_pixels))
            self._pool_raw[k].flat[self._dead] = 0
        if pool_size:
            self._compile_spot_kernel()

    def _compile_spot_kernel(self) -> None:
        """Draw a hit now: with a cold numba cache (a fresh install) compiling the spot kernel
        takes seconds, and a paced stream must not stall at its first hit instead."""
        for number in range(1000 if self.hit_fraction > 0 else 0):
            if self.truth(number).is_hit:  # drawing a hit's spots is what compiles the kernel
                return

    def _lab_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre positions relative to the beam, in pixels (y down the detector, x along rows)."""
        rows = np.arange(FRAME_SHAPE[0], dtype=np.float64)
        rows = rows + np.where(rows >= MODULE_SHAPE[0], self.module_gap_px, 0.0)
        centre_y = (FRAME_SHAPE[0] + self.module_gap_px - 1) / 2
        centre_x = (FRAME_SHAPE[1] - 1) / 2
        lab_y = np.broadcast_to((rows - centre_y)[:, None], FRAME_SHAPE)
        lab_x = np.broadcast_to(np.arange(FRAME_SHAPE[1]) - centre_x, FRAME_SHAPE)
        return lab_y, lab_x

    def _resolution(self, radius_px: np.ndarray) -> np.ndarray:
        """d-spacing (A) at a distance from the beam (pixels): Bragg's law at this distance and energy."""
        two_theta = np.arctan(np.asarray(radius_px, dtype=np.float64) * PIXEL_SIZE_M / self.distance_m)
        with np.errstate(divide="ignore"):
            return self.wavelength_a / (2 * np.sin(two_theta / 2))

    @property
    def wavelength_a(self) -> float:
        """The photon wavelength, A."""
        return 12.398419843320026 / self.photon_energy_kev

    def _encode(self, energy_kev: np.ndarray, pixels: np.ndarray | slice, normal: np.ndarray) -> np.ndarray:
        """Raw uint16 of the given flat pixels (indices, or a slice: no gathering) for deposited
        energies (keV), with gain switching and noise."""
        ped = self.pedestal.reshape(3, -1)[:, pixels]
        gain = self.gain.reshape(3, -1)[:, pixels]
        noise = self.noise.reshape(3, -1)[:, pixels]
        adc = ped + energy_kev * gain
        stage = np.where(adc[0] <= _G0_SWITCH_ADC, 0, np.where(adc[1] >= _G1_SWITCH_ADC, 1, 2))
        stage[self._stuck[pixels]] = 0
        chosen = np.take_along_axis(adc + noise * normal, stage[None, :], axis=0)[0]
        value = np.clip(np.rint(chosen), 0, _ADC_MAX).astype(np.uint16)
        return value | GAIN_BITS[stage]

    def truth(self, frame_number: int) -> FrameTruth:
        """The frame's truth without making its pixels (spots, orientation, hit or not, lost packets)."""
        return self._draw(frame_number)[0]

    def _draw(self, frame_number: int) -> tuple[FrameTruth, np.ndarray, np.ndarray]:
        """The truth, and the spots' photons as drawn: flat pixel indices and counts (a pixel twice
        where spots overlap).  A spot's ``photons`` are those it deposited, so the truth is exact."""
        rng = np.random.default_rng([self.seed, frame_number, 0])
        is_hit = bool(rng.random() < self.hit_fraction)
        lost_blocks = rng.random(FRAME_SHAPE[0] // ROWS_PER_PACKET) < self.lost_packet_rate
        lost = tuple(int(b) for b in np.flatnonzero(lost_blocks))
        if not is_hit:
            return FrameTruth(frame_number, False, (), lost), _NO_INDEX, _NO_INDEX
        spots = self.crystal.spots(rng)
        y, x, row, col, keep = self._raw_positions(spots.y, spots.x)
        expected, sigma, resolution = spots.photons[keep], spots.sigma[keep], spots.resolution[keep]
        index, mean = _peak_patches(y, x, expected, sigma, FRAME_SHAPE[1])
        drawn = np.random.default_rng([self.seed, frame_number, 5]).poisson(mean)
        photons = drawn.reshape(len(y), -1).sum(axis=1).astype(np.float64)
        near_lost = lost_blocks[(row - 2) // ROWS_PER_PACKET] | lost_blocks[(row + 2) // ROWS_PER_PACKET]
        whole = ~self._near_bad[row, col] & ~near_lost
        snr = photons / np.sqrt(photons + 4 * np.pi * sigma**2 * self.background[row, col])
        peaks = tuple(
            PeakTruth(float(a), float(b), float(p), float(w), float(r), float(d), bool(ok), float(e))
            for a, b, p, w, r, d, ok, e in zip(y, x, photons, sigma, snr, resolution, whole, expected)
        )
        orientation = tuple(float(v) for v in spots.orientation.ravel())
        return FrameTruth(frame_number, True, peaks, lost, orientation), index, drawn

    def _raw_positions(self, lab_y: np.ndarray, lab_x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Raw (y, x) of the lab positions that land on a module at least the patch radius from its
        edges, their nearest pixel (row, column), and which positions those are."""
        centre_y = (FRAME_SHAPE[0] + self.module_gap_px - 1) / 2
        centre_x = (FRAME_SHAPE[1] - 1) / 2
        y = lab_y + centre_y
        module = (y > MODULE_SHAPE[0] - 0.5 + self.module_gap_px / 2).astype(np.intp)
        y = y - module * self.module_gap_px
        x = lab_x + centre_x
        local = np.rint(y).astype(np.intp) - module * MODULE_SHAPE[0]
        col = np.rint(x).astype(np.intp)
        keep = (
            (local >= _PATCH_RADIUS_PX) & (local < MODULE_SHAPE[0] - _PATCH_RADIUS_PX)
            & (col >= _PATCH_RADIUS_PX) & (col < MODULE_SHAPE[1] - _PATCH_RADIUS_PX)
        )
        return y[keep], x[keep], (local + module * MODULE_SHAPE[0])[keep], col[keep], keep

    def frame(self, frame_number: int, *, out: np.ndarray | None = None) -> tuple[np.ndarray, FrameTruth]:
        """The raw frame (uint16, 1024 x 1024, C-contiguous) and its truth.

        ``out``, when given, is a uint16 (1024, 1024) array the frame is written
        into (no allocation); otherwise a new array is returned.
        """
        if not len(self._pool_raw):
            raise RuntimeError("this simulated detector was made with pool_size=0: maps only, no frames")
        truth, index, drawn = self._draw(frame_number)
        raw = np.empty(FRAME_SHAPE, dtype=np.uint16) if out is None else out
        rng = np.random.default_rng([self.seed, frame_number, 1])
        bands = rng.integers(0, len(self._pool_raw), FRAME_SHAPE[0] // _BAND_ROWS)
        for band, pool in enumerate(bands):
            rows = slice(band * _BAND_ROWS, (band + 1) * _BAND_ROWS)
            raw[rows] = self._pool_raw[pool, rows]
        self._add_photons(raw, frame_number, index, drawn)
        for block in truth.lost_packets:
            raw[block * ROWS_PER_PACKET : (block + 1) * ROWS_PER_PACKET] = LOST_PIXEL
        return raw, truth

    def _background_photon_pixels(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Flat pixel indices of ``n`` photons placed by the background map: uniform pixels, each kept
        with probability background / its maximum (rejection sampling: exact, one look-up a draw)."""
        flat = self.background.ravel()
        kept = np.empty(0, dtype=np.int64)
        while kept.size < n:
            candidates = rng.integers(0, flat.size, int(1.2 * (n - kept.size) / self._background_acceptance) + 16)
            chosen = candidates[rng.random(candidates.size) * self._background_max < flat[candidates]]
            kept = np.concatenate([kept, chosen])
        return kept[:n]

    def _add_photons(self, raw: np.ndarray, frame_number: int, index: np.ndarray, drawn: np.ndarray) -> None:
        """Add this frame's own background photons and the spots' photons; re-encode those pixels.

        The background is drawn afresh for every frame (its total from Poisson,
        each photon's pixel from the background map), so no chance cluster of
        background photons repeats from frame to frame.  Pixels that stay in G0
        (nearly all: a few photons) keep the noise the pool gave them and get the
        photons' ADC added; only those that switch gain are encoded anew.
        """
        rng = np.random.default_rng([self.seed, frame_number, 6])
        n_background = rng.poisson(self._background_total)
        background = self._background_photon_pixels(rng, n_background)
        pixels, where = np.unique(np.concatenate([background, index]), return_inverse=True)  # photons add up
        counts = np.bincount(where, weights=np.concatenate([np.ones(n_background), drawn]))
        flat = raw.ravel()
        adc = (flat[pixels] & _ADC_MAX) + counts * self.photon_energy_kev * self.gain[0].ravel()[pixels]
        in_g0 = adc <= _G0_SWITCH_ADC
        flat[pixels[in_g0]] = np.rint(adc[in_g0]).astype(np.uint16)
        switching = pixels[~in_g0]
        energy = counts[~in_g0] * self.photon_energy_kev
        flat[switching] = self._encode(energy, switching, rng.standard_normal(len(switching)))
        dead_hit = np.isin(self._dead, pixels)
        raw.ravel()[self._dead[dead_hit]] = 0

    def dark_frame(self, frame_number: int, *, gain_stage: int) -> np.ndarray:
        """A dark frame with the gain forced to ``gain_stage`` (0, 1, 2), as in a pedestal run.

        No photons: pedestal plus noise in that stage. Never-switching pixels
        stay in G0 (as they would on the detector); dead pixels read 0.
        """
        rng = np.random.default_rng([self.seed, frame_number, 2 + gain_stage])
        adc = self.pedestal[gain_stage] + self.noise[gain_stage] * rng.standard_normal(FRAME_SHAPE, dtype=np.float32)
        raw = np.clip(np.rint(adc), 0, _ADC_MAX).astype(np.uint16) | GAIN_BITS[gain_stage]
        stuck = self._stuck.reshape(FRAME_SHAPE)
        raw[stuck] = np.clip(np.rint(self.pedestal[0][stuck]), 0, _ADC_MAX).astype(np.uint16)
        raw.flat[self._dead] = 0
        return raw

    @property
    def bad_pixel_mask(self) -> np.ndarray:
        """All pixels a dark run should flag (dead, noisy, never switching): True = bad."""
        return self.bad_pixels["dead"] | self.bad_pixels["noisy"] | self.bad_pixels["stuck_gain"]

    def write_calibration(self, folder: Path) -> dict[str, Any]:
        """Write PSI-style calibration files of the truth maps, one set per module.

        * ``gain_m{i}.bin``: six float64 512 x 1024 arrays G0, G1, G2, HG0, HG1,
          HG2 (ADU/keV), raw little-endian binary, as PSI ships them;
        * ``pedestal_m{i}.npy``: float32 (3, 512, 1024) pedestal per gain stage (ADU);
        * ``noise_m{i}.npy``: float32 (3, 512, 1024) noise per gain stage (ADU), as the dark tool writes it;
        * ``bad_pixels.npy``: bool (1024, 1024), True = bad (dead, noisy, never switching).

        Returns the keyword arguments of :class:`sources.calibration.CalibrationParameters`.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        gain_files, pedestal_files, noise_files = [], [], []
        for module in range(2):
            rows = slice(module * MODULE_SHAPE[0], (module + 1) * MODULE_SHAPE[0])
            gains = np.concatenate([self.gain[:, rows], self.high_gain[:, rows]]).astype("<f8")
            gain_files.append(folder / f"gain_m{module}.bin")
            gains.tofile(gain_files[-1])
            pedestal_files.append(folder / f"pedestal_m{module}.npy")
            np.save(pedestal_files[-1], self.pedestal[:, rows])
            noise_files.append(folder / f"noise_m{module}.npy")
            np.save(noise_files[-1], self.noise[:, rows])
        mask_file = folder / "bad_pixels.npy"
        np.save(mask_file, self.bad_pixel_mask)
        return {
            "gain_files": [str(p) for p in gain_files],
            "pedestal_files": [str(p) for p in pedestal_files],
            "noise_files": [str(p) for p in noise_files],
            "mask_file": str(mask_file),
            "photon_energy_kev": self.photon_energy_kev,
        }
