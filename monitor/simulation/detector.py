"""A simulated JUNGFRAU 1M whose every pixel has a known origin.

The frames look like what a real JUNGFRAU 1M sends (uint16, bits 0-13 ADC,
bits 14-15 gain stage ``00`` G0, ``01`` G1, ``11`` G2, ``0xFFFF`` for pixels of
lost packets) and come with the truth needed to check the science: where each
Bragg peak is, how many photons it holds, and the per-pixel pedestal and gain
maps that turn ADC values back into photons.

Content of a frame, built from three deterministic random streams keyed by
``(seed, frame_number)`` so the truth can be recomputed on any rank:

* **background**: Poisson photons from diffuse scattering, a flat level plus the
  water ring (at ``water_ring_d_a``, 3.2 A, through the geometry) and, with
  ``ice_ring_photons``, the rings of hexagonal ice (:data:`monitor.processing.ice_rings.ICE_RINGS`,
  the strongest at that many photons a pixel) (:attr:`SimulatedJungfrau1M.background`),
  drawn afresh for every frame.
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
  Gaussian of its own widths along y and x; spots that overlap add up.  Spots
  whose centre is in the module gap or within 4 pixels of a module edge are left
  out (pixels and truth alike); photons that land off the module are lost.
* **discrete photons with charge sharing**: every background photon, and every
  photon of a spot of up to ``DISCRETE_PHOTONS_MAX`` expected photons, lands at
  a point (uniform in its pixel, or from the spot's Gaussian) and its charge
  cloud (Gaussian, ``charge_cloud_px`` rms: 10 um in 320 um of silicon) spreads
  over the pixel borders it is near: a photon near a border reads e.g. 0.7 and
  0.3 in two pixels.  Brighter spots are drawn pixel by pixel (Poisson counts of
  the Gaussian integrated over each pixel): sharing changes nothing there.
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

from monitor.processing.ice_rings import ICE_RINGS
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
_EDGE_MARGIN_PX = 4
"""Spots whose centre lies closer than this to a module edge are left out."""
_PATCH_RADIUS_PX = 10
"""Half side of the pixel patch a bright spot is drawn on: 4 sigma of the widest spot."""
DISCRETE_PHOTONS_MAX = 200.0
"""Spots expected to hold up to this many photons are drawn photon by photon (positions, charge sharing)."""
_SHARES = 4
"""Pixels a photon's charge can reach: its own, the nearer neighbour in y and in x, and the one diagonal."""
_BAND_ROWS = 64
_NO_INDEX = np.empty(0, dtype=np.int64)
_NO_AMOUNT = np.empty(0, dtype=np.float64)
PIXEL_SIZE_M = 75e-6
SIMULATED_PHOTON_ENERGY_KEV = 12.4
"""The simulated detector's default photon energy (and the shipped geometry's)."""


@dataclass(frozen=True)
class PeakTruth:
    """One simulated Bragg spot.

    ``photons`` is the number of photons it deposited on its module (a Poisson
    draw of its ``expected_photons``); ``sigma`` its width (the geometric mean of
    ``sigma_y`` and ``sigma_x``, pixels); ``resolution`` its d-spacing in A.
    ``snr`` is its footprint SNR, the I/sigma(I) of an ideal integration: its
    photons over the Poisson noise of those photons plus the background and the
    electronic noise under its effective area ``A = 4*pi*sigma_y*sigma_x``,
    ``photons / sqrt(photons + A * (b + noise**2))`` (b, noise in photons per pixel
    at its centre): it depends on the spot and its surroundings only, not on any
    peak finder.  ``whole`` is False when a
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
    sigma_y: float = 0.0
    sigma_x: float = 0.0

    def to_json(self) -> dict[str, float | bool]:
        return {"y": self.y, "x": self.x, "photons": self.photons, "sigma": self.sigma, "snr": self.snr,
                "resolution": self.resolution, "whole": self.whole, "expected_photons": self.expected_photons,
                "sigma_y": self.sigma_y, "sigma_x": self.sigma_x}


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
    ys: np.ndarray, xs: np.ndarray, photons: np.ndarray, sigma_y: np.ndarray, sigma_x: np.ndarray,
    module_row0: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected photons per pixel of each bright spot, integrated over the pixel area.

    Returns flat pixel indices and expected counts, ``(2R+1)**2`` per spot, index -1
    off the spot's module (rows ``module_row0 .. +511``).  Pixel integration (erf
    differences) keeps small spots' shapes honest.
    """
    side = 2 * _PATCH_RADIUS_PX + 1
    rows, cols = MODULE_SHAPE
    n = ys.shape[0]
    index = np.empty(n * side * side, dtype=np.int64)
    expected = np.empty(n * side * side, dtype=np.float64)
    fy = np.empty(side)
    fx = np.empty(side)
    for p in range(n):
        row0 = int(round(ys[p])) - _PATCH_RADIUS_PX
        col0 = int(round(xs[p])) - _PATCH_RADIUS_PX
        scale_y = 1.0 / (math.sqrt(2.0) * sigma_y[p])
        scale_x = 1.0 / (math.sqrt(2.0) * sigma_x[p])
        for k in range(side):
            fy[k] = 0.5 * (math.erf((row0 + k + 0.5 - ys[p]) * scale_y) - math.erf((row0 + k - 0.5 - ys[p]) * scale_y))
            fx[k] = 0.5 * (math.erf((col0 + k + 0.5 - xs[p]) * scale_x) - math.erf((col0 + k - 0.5 - xs[p]) * scale_x))
        base = p * side * side
        for i in range(side):
            r = row0 + i
            for j in range(side):
                c = col0 + j
                on_module = module_row0[p] <= r < module_row0[p] + rows and 0 <= c < cols
                index[base + i * side + j] = r * cols + c if on_module else -1
                expected[base + i * side + j] = fy[i] * fx[j] * photons[p]
    return index, expected


@numba.njit(cache=True)
def _share_charge(
    ys: np.ndarray, xs: np.ndarray, module_row0: np.ndarray, cloud_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Where each photon's charge goes: ``_SHARES`` flat pixel indices (-1 off its module) and
    fractions per photon.

    A photon at raw (y, x) is read by its pixel; the part of its Gaussian charge
    cloud past the nearer border in y (and in x) goes to that neighbour.  Clouds
    are small against a pixel, so the farther borders get nothing worth drawing.
    """
    rows, cols = MODULE_SHAPE
    n = ys.shape[0]
    index = np.empty(n * _SHARES, dtype=np.int64)
    fraction = np.empty(n * _SHARES, dtype=np.float64)
    scale = 1.0 / (math.sqrt(2.0) * cloud_px) if cloud_px > 0 else math.inf
    for p in range(n):
        r = int(math.floor(ys[p] + 0.5))
        c = int(math.floor(xs[p] + 0.5))
        u = ys[p] - r
        v = xs[p] - c
        share_y = 0.5 * math.erfc((0.5 - abs(u)) * scale)
        share_x = 0.5 * math.erfc((0.5 - abs(v)) * scale)
        dr = 1 if u > 0 else -1
        dc = 1 if v > 0 else -1
        for k in range(_SHARES):
            rr = r + dr * (k // 2)
            cc = c + dc * (k % 2)
            on_module = module_row0[p] <= rr < module_row0[p] + rows and 0 <= cc < cols
            index[p * _SHARES + k] = rr * cols + cc if on_module else -1
            fraction[p * _SHARES + k] = (share_y if k // 2 else 1.0 - share_y) * (share_x if k % 2 else 1.0 - share_x)
    return index, fraction


@numba.njit(cache=True)
def _add_in_g0(
    raw: np.ndarray, touched: np.ndarray, scratch: np.ndarray, gain: np.ndarray, energy_kev: float,
    switching: np.ndarray,
) -> int:
    """Add the photons in ``scratch`` (re-zeroed here) to the G0 ADC of the ``touched`` pixels of the flat
    ``raw``; pixels whose ADC would pass the G0 switching point are left as they are and listed in
    ``switching`` (their count returned) with their photons in ``scratch``, to be encoded anew."""
    n = 0
    for k in range(touched.shape[0]):
        p = touched[k]
        adc = (raw[p] & _ADC_MAX) + scratch[p] * energy_kev * gain[p]
        if adc <= _G0_SWITCH_ADC:
            raw[p] = np.uint16(np.rint(adc))
            scratch[p] = 0.0
        else:
            switching[n] = p
            n += 1
    return n


@numba.njit(cache=True)
def _accumulate(index: np.ndarray, amount: np.ndarray, scratch: np.ndarray, touched: np.ndarray) -> int:
    """Add ``amount`` at flat ``index`` (skipping -1) into a zeroed ``scratch``; list each pixel touched
    once in ``touched`` and return how many (the caller reads and re-zeroes them)."""
    n = 0
    for k in range(index.shape[0]):
        p = index[k]
        if p < 0 or amount[k] == 0.0:
            continue
        if scratch[p] == 0.0:
            touched[n] = p
            n += 1
        scratch[p] += amount[k]
    return n


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
        ice_ring_photons: float = 0.0,
        ice_ring_width: float = 0.0015,
        charge_cloud_px: float = 0.13,
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
        if charge_cloud_px < 0:
            raise ValueError(f"charge_cloud_px must be >= 0, got {charge_cloud_px}")
        self.charge_cloud_px = charge_cloud_px
        self.crystal_settings = crystal_settings(crystal)
        widest = 1.15 * math.sqrt(self.crystal_settings.spot_aspect_max)
        if self.crystal_settings.spot_sigma_px[1] * widest * 4 > _PATCH_RADIUS_PX:
            raise ValueError(f"spot_sigma_px must stay under {_PATCH_RADIUS_PX / 4 / widest:.2f} pixels")

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
        inverse_d = 1 / self.resolution
        background = background_photons + ring_photons * np.exp(-0.5 * ((inverse_d - 1 / water_ring_d_a) / water_ring_width) ** 2)
        for d, strength in ICE_RINGS if ice_ring_photons else ():
            background += ice_ring_photons * strength * np.exp(-0.5 * ((inverse_d - 1 / d) / ice_ring_width) ** 2)
        self.background = background.astype(np.float32)
        """Mean background photons per pixel and frame."""
        self.noise_photons = (self.noise[0] / (self.gain[0] * photon_energy_kev)).astype(np.float32)
        """Each pixel's G0 noise in photons (the truth's footprint SNR counts it)."""
        self.crystal = CrystalModel(
            self.crystal_settings, photon_energy_kev=photon_energy_kev, distance_m=distance_m,
            pixel_size_m=PIXEL_SIZE_M, max_radius_px=float(self.radius.max()) + 1, seed=seed,
            on_detector=lambda y, x: self._raw_positions(y, x)[4],
        )

        self._background_total = float(self.background.sum(dtype=np.float64))
        self._background_max = float(self.background.max())
        self._background_acceptance = self._background_total / (self._background_max * self.background.size)
        self._scratch = np.zeros(n_pixels if pool_size else 0, dtype=np.float64)
        self._touched = np.empty(n_pixels if pool_size else 0, dtype=np.int64)
        """Where a frame's photons are added up (frames only: a maps-only detector makes none)."""
        self._switching = np.empty_like(self._touched)
        self._gain_g0 = np.ascontiguousarray(self.gain[0].ravel())
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
        """The truth, and the spots' photons as deposited: flat pixel indices and amounts (photons;
        a pixel more than once where photons share it).  A spot's ``photons`` are those it
        deposited on its module, so the truth is exact."""
        rng = np.random.default_rng([self.seed, frame_number, 0])
        is_hit = bool(rng.random() < self.hit_fraction)
        lost_blocks = rng.random(FRAME_SHAPE[0] // ROWS_PER_PACKET) < self.lost_packet_rate
        lost = tuple(int(b) for b in np.flatnonzero(lost_blocks))
        if not is_hit:
            return FrameTruth(frame_number, False, (), lost), _NO_INDEX, _NO_AMOUNT
        spots = self.crystal.spots(rng)
        y, x, row, col, keep = self._raw_positions(spots.y, spots.x)
        chosen = self._chosen_spots(rng, y.size)
        y, x, row, col = y[chosen], x[chosen], row[chosen], col[chosen]
        expected, resolution = spots.photons[keep][chosen], spots.resolution[keep][chosen]
        sigma_y, sigma_x = spots.sigma_y[keep][chosen], spots.sigma_x[keep][chosen]
        module_row0 = (row // MODULE_SHAPE[0]) * MODULE_SHAPE[0]
        photon_rng = np.random.default_rng([self.seed, frame_number, 5])
        index, amount, photons = self._spot_photons(photon_rng, y, x, expected, sigma_y, sigma_x, module_row0)
        near_lost = lost_blocks[(row - 2) // ROWS_PER_PACKET] | lost_blocks[(row + 2) // ROWS_PER_PACKET]
        whole = ~self._near_bad[row, col] & ~near_lost
        area = 4 * np.pi * sigma_y * sigma_x
        floor = self.background[row, col] + self.noise_photons[row, col].astype(np.float64) ** 2
        snr = photons / np.sqrt(photons + area * floor)
        peaks = tuple(
            PeakTruth(float(a), float(b), float(p), float(np.sqrt(sy * sx)), float(r), float(d), bool(ok), float(e),
                      float(sy), float(sx))
            for a, b, p, r, d, ok, e, sy, sx in zip(y, x, photons, snr, resolution, whole, expected, sigma_y, sigma_x)
        )
        orientation = tuple(float(v) for v in spots.orientation.ravel())
        return FrameTruth(frame_number, True, peaks, lost, orientation), index, amount

    def _chosen_spots(self, rng: np.random.Generator, available: int) -> np.ndarray:
        """Which of the spots on the detector the hit keeps: all, or ``spots_per_hit`` of them at random."""
        wanted = self.crystal_settings.spots_per_hit
        if wanted is None:
            return np.arange(available)
        low, high = wanted
        count = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
        return np.sort(rng.choice(available, size=min(count, available), replace=False))

    def _spot_photons(
        self, rng: np.random.Generator, y: np.ndarray, x: np.ndarray, expected: np.ndarray, sigma_y: np.ndarray,
        sigma_x: np.ndarray, module_row0: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every spot's photons: flat pixel indices, amounts, and each spot's total on its module.

        Spots up to ``DISCRETE_PHOTONS_MAX`` expected photons: a Poisson number of
        photons at Gaussian positions, charge shared at the pixel borders.  Brighter
        ones: Poisson counts per pixel of the Gaussian integrated over the pixel.
        """
        discrete = expected <= DISCRETE_PHOTONS_MAX
        counts = rng.poisson(expected[discrete])
        owner = np.repeat(np.flatnonzero(discrete), counts)
        normal = rng.standard_normal((2, owner.size))
        index, fraction = _share_charge(
            y[owner] + sigma_y[owner] * normal[0], x[owner] + sigma_x[owner] * normal[1], module_row0[owner],
            self.charge_cloud_px,
        )
        fraction[index < 0] = 0.0
        photons = np.bincount(np.repeat(owner, _SHARES), weights=fraction, minlength=y.size)
        bright = np.flatnonzero(~discrete)
        if not bright.size:
            return index, fraction, photons
        patch_index, mean = _peak_patches(
            y[bright], x[bright], expected[bright], sigma_y[bright], sigma_x[bright], module_row0[bright]
        )
        drawn = rng.poisson(mean).astype(np.float64)
        drawn[patch_index < 0] = 0.0
        photons[bright] = drawn.reshape(bright.size, -1).sum(axis=1)
        return np.concatenate([index, patch_index]), np.concatenate([fraction, drawn]), photons

    def _raw_positions(self, lab_y: np.ndarray, lab_x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Raw (y, x) of the lab positions that land on a module at least ``_EDGE_MARGIN_PX`` from its
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
            (local >= _EDGE_MARGIN_PX) & (local < MODULE_SHAPE[0] - _EDGE_MARGIN_PX)
            & (col >= _EDGE_MARGIN_PX) & (col < MODULE_SHAPE[1] - _EDGE_MARGIN_PX)
        )
        return y[keep], x[keep], (local + module * MODULE_SHAPE[0])[keep], col[keep], keep

    def frame(self, frame_number: int, *, out: np.ndarray | None = None) -> tuple[np.ndarray, FrameTruth]:
        """The raw frame (uint16, 1024 x 1024, C-contiguous) and its truth.

        ``out``, when given, is a uint16 (1024, 1024) array the frame is written
        into (no allocation); otherwise a new array is returned.
        """
        if not len(self._pool_raw):
            raise RuntimeError("this simulated detector was made with pool_size=0: maps only, no frames")
        truth, index, amount = self._draw(frame_number)
        raw = np.empty(FRAME_SHAPE, dtype=np.uint16) if out is None else out
        rng = np.random.default_rng([self.seed, frame_number, 1])
        bands = rng.integers(0, len(self._pool_raw), FRAME_SHAPE[0] // _BAND_ROWS)
        for band, pool in enumerate(bands):
            rows = slice(band * _BAND_ROWS, (band + 1) * _BAND_ROWS)
            raw[rows] = self._pool_raw[pool, rows]
        self._add_photons(raw, frame_number, index, amount)
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

    def _add_photons(self, raw: np.ndarray, frame_number: int, index: np.ndarray, amount: np.ndarray) -> None:
        """Add this frame's own background photons and the spots' photons; re-encode those pixels.

        The background is drawn afresh for every frame (its total from Poisson,
        each photon's pixel from the background map, its point uniform in that
        pixel, its charge shared like a spot's photons), so no chance cluster of
        background photons repeats from frame to frame.  Pixels that stay in G0
        (nearly all: a few photons) keep the noise the pool gave them and get the
        photons' ADC added; only those that switch gain are encoded anew.
        """
        rng = np.random.default_rng([self.seed, frame_number, 6])
        n_background = rng.poisson(self._background_total)
        background = self._background_photon_pixels(rng, n_background)
        rows, cols = np.divmod(background, FRAME_SHAPE[1])
        offsets = rng.random((2, n_background)) - 0.5
        shared, fraction = _share_charge(
            rows + offsets[0], cols + offsets[1], (rows // MODULE_SHAPE[0]) * MODULE_SHAPE[0], self.charge_cloud_px
        )
        n_touched = _accumulate(shared, fraction, self._scratch, self._touched)
        n_touched += _accumulate(index, amount, self._scratch, self._touched[n_touched:])
        flat = raw.ravel()
        n_switching = _add_in_g0(flat, self._touched[:n_touched], self._scratch, self._gain_g0, self.photon_energy_kev,
                                 self._switching)
        switching = self._switching[:n_switching].copy()
        energy = self._scratch[switching] * self.photon_energy_kev
        self._scratch[switching] = 0.0
        flat[switching] = self._encode(energy, switching, rng.standard_normal(len(switching)))
        raw.ravel()[self._dead] = 0

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
