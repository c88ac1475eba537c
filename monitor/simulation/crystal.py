"""Bragg spots of a real crystal lattice on a flat detector: what a still shot of a crystal gives.

A crystal is a unit cell (from the YAML, e.g. lysozyme's P4_3 2_1 2 cell) with a
structure-factor table drawn once: each reflection ``hkl`` inside the detector's
resolution gets a Wilson-distributed intensity (exponential, the acentric
distribution) times the Wilson fall-off ``exp(-B / (2 d^2))``; systematic
absences of the space group read zero.  Symmetry mates get independent draws
(a simplification: nothing here needs merged intensities).

Each hit draws a random orientation (a uniform random rotation), a crystal
size (a lognormal intensity scale) and a spot width (each spot +-15 % of it,
and anisotropic with ``spot_aspect_max``: sigma_y / sigma_x log-uniform in
[1/max, max]; ``spots_per_hit`` keeps a random subset for sparse hits), rotates the reciprocal
lattice and cuts it with the Ewald sphere at the photon energy.  A reciprocal
lattice point at excitation error ``e`` (its distance from the sphere, 1/A) is
recorded with partiality ``exp(-e^2 / (2 w^2))``, ``w = rlp_radius + mosaicity * |q|``:
partial spots, weak near the sphere's edge of acceptance.  The spot lands where
its diffracted beam meets the detector plane at ``distance_m``; its resolution
is ``d = 1/|q|``.

Strength settings are named (:data:`CRYSTAL_SETTINGS`): ``weak``, ``medium`` and
``strong`` have median spot intensities of 3, 8 and 50 photons, so spots range
from fractions of a photon to tens of thousands (bright low-resolution spots of
large crystals switch gain and saturate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

__all__ = [
    "CRYSTAL_SETTINGS", "CrystalChoice", "CrystalModel", "CrystalSettings", "Spots", "crystal_settings",
    "crystal_from_text", "crystal_to_text",
]

_ABSENCES = {
    "P1": (),
    "P43212": (("h00", 2), ("0k0", 2), ("00l", 4)),
}
"""Reflection conditions per space group: (axial row, n): on that row the index must be a multiple of n."""
_MIN_PARTIALITY = 0.05
_CALIBRATION_SHOTS = 16
"""Orientations drawn at construction to set the photon scale from the requested median spot."""


class CrystalSettings(BaseModel):
    """A crystal and how strongly it diffracts (the YAML ``crystal`` keys of the simulator)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_cell: tuple[PositiveFloat, PositiveFloat, PositiveFloat, PositiveFloat, PositiveFloat, PositiveFloat] = Field(
        default=(79.1, 79.1, 37.9, 90.0, 90.0, 90.0), description="a, b, c (A), alpha, beta, gamma (degrees): lysozyme"
    )
    space_group: str = Field(default="P43212", description="systematic absences: P43212 or P1")
    median_photons: PositiveFloat = Field(default=8.0, description="median spot intensity over all spots, photons")
    wilson_b: float = Field(default=25.0, ge=0, description="Wilson B factor, A^2: intensity falls with resolution")
    size_spread: float = Field(default=0.35, ge=0, description="lognormal sigma of the per-hit crystal scale")
    mosaicity_rad: float = Field(default=0.0006, ge=0, description="widens reciprocal lattice points with |q|")
    rlp_radius: PositiveFloat = Field(default=0.0003, description="reciprocal lattice point radius, 1/A")
    spot_sigma_px: tuple[PositiveFloat, PositiveFloat] = Field(
        default=(0.35, 0.75), description="per-hit spot width range (Gaussian sigma, pixels); each spot +-15 %"
    )
    spot_aspect_max: float = Field(
        default=1.0, ge=1.0, le=4.0,
        description="anisotropic spots: each spot's sigma_y / sigma_x drawn log-uniformly in [1/this, this]",
    )
    spots_per_hit: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None, description="per hit, keep a random subset of this many spots (log-uniform in the range) of "
        "those that land on the detector: sparse hits of small crystals, or a cap; null: every spot",
    )


CRYSTAL_SETTINGS = {
    "weak": CrystalSettings(median_photons=3.0),
    "medium": CrystalSettings(median_photons=8.0),
    "strong": CrystalSettings(median_photons=50.0),
}
"""Named strengths, weak to strong: median spot 3, 8 and 50 photons."""


CrystalChoice = Literal["weak", "medium", "strong"] | CrystalSettings
"""What a YAML ``crystal`` key holds: a named strength, or the settings themselves (a unit cell of one's own)."""


def crystal_to_text(crystal: CrystalChoice) -> str:
    """A choice for the command line: the name, or the settings as JSON."""
    return crystal if isinstance(crystal, str) else crystal.model_dump_json()


def crystal_from_text(text: str) -> CrystalChoice:
    """The inverse of :func:`crystal_to_text` (pydantic's ValidationError, a ValueError, for bad JSON keys)."""
    return CrystalSettings.model_validate_json(text) if text.lstrip().startswith("{") else text


def crystal_settings(setting: str | CrystalSettings) -> CrystalSettings:
    """A named setting (``weak``, ``medium``, ``strong``) or the given settings as they are."""
    if isinstance(setting, CrystalSettings):
        return setting
    try:
        return CRYSTAL_SETTINGS[setting]
    except KeyError:
        raise ValueError(f"unknown crystal setting {setting!r}: use one of {', '.join(CRYSTAL_SETTINGS)}") from None


@dataclass(frozen=True)
class Spots:
    """Spots of one shot (arrays of equal length): lab position in pixels from the beam (y down the
    detector, x along its rows), expected photons, widths along y and x (Gaussian sigma, pixels),
    resolution d (A), and the crystal's orientation (3 x 3 rotation matrix)."""

    y: np.ndarray
    x: np.ndarray
    photons: np.ndarray
    sigma_y: np.ndarray
    sigma_x: np.ndarray
    resolution: np.ndarray
    orientation: np.ndarray


def reciprocal_basis(cell: tuple[float, ...]) -> np.ndarray:
    """Columns a*, b*, c* (1/A) of a unit cell, with a along x (the usual orthogonalisation)."""
    a, b, c = cell[:3]
    alpha, beta, gamma = (math.radians(v) for v in cell[3:])
    cos_a, cos_b, cos_g, sin_g = math.cos(alpha), math.cos(beta), math.cos(gamma), math.sin(gamma)
    volume = a * b * c * math.sqrt(1 - cos_a**2 - cos_b**2 - cos_g**2 + 2 * cos_a * cos_b * cos_g)
    direct = np.array([
        [a, b * cos_g, c * cos_b],
        [0.0, b * sin_g, c * (cos_a - cos_b * cos_g) / sin_g],
        [0.0, 0.0, volume / (a * b * sin_g)],
    ])
    return np.linalg.inv(direct).T


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed rotation (from a normalised 4-D Gaussian quaternion)."""
    w, x, y, z = (q := rng.standard_normal(4)) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


class CrystalModel:
    """Spots of one crystal at one photon energy and detector distance, deterministic in its seed.

    ``max_radius_px`` (the detector's corner) bounds the resolution of the
    reflection table; construction draws the table and sets the photon scale
    so that the median spot that lands on the detector (``on_detector``, a
    test of lab positions y, x in pixels; everywhere if None) holds
    ``settings.median_photons``.
    """

    def __init__(
        self, settings: CrystalSettings, *, photon_energy_kev: float, distance_m: float, pixel_size_m: float,
        max_radius_px: float, seed: int, on_detector: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if settings.space_group not in _ABSENCES:
            raise ValueError(f"unknown space group {settings.space_group!r}: use one of {', '.join(_ABSENCES)}")
        self.settings = settings
        self.wavelength_a = 12.398419843320026 / photon_energy_kev
        self.distance_px = distance_m / pixel_size_m
        two_theta_max = math.atan(max_radius_px / self.distance_px)
        self.d_limit_a = self.wavelength_a / (2 * math.sin(two_theta_max / 2))
        """Resolution at the detector's corner: the table holds every reflection of lower resolution."""
        basis = reciprocal_basis(settings.unit_cell)
        q_max = 1.0 / self.d_limit_a
        reach = [int(q_max / np.linalg.norm(basis[:, k])) + 1 for k in range(3)]
        hkl = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in reach], indexing="ij"), axis=-1).reshape(-1, 3)
        q = hkl @ basis.T
        q_length = np.linalg.norm(q, axis=1)
        keep = (q_length > 0) & (q_length <= q_max) & ~self._absent(hkl, settings.space_group)
        self._q = np.ascontiguousarray(q[keep])
        self._q_length = q_length[keep]
        rng = np.random.default_rng([seed, 0xC0FFEE])
        wilson = np.exp(-settings.wilson_b * self._q_length**2 / 2)
        self._intensity = rng.exponential(1.0, self._q.shape[0]) * wilson
        self._width = settings.rlp_radius + settings.mosaicity_rad * self._q_length
        self._reach = 1.01 * math.sqrt(-2 * math.log(_MIN_PARTIALITY)) * self._width
        """Largest excitation error a recorded spot can have, per reflection (1/A), with 1 % to spare."""
        self._photon_scale = 1.0
        shots = [self.spots(rng) for _ in range(_CALIBRATION_SHOTS)]
        unscaled = np.concatenate([s.photons[on_detector(s.y, s.x)] if on_detector else s.photons for s in shots])
        self._photon_scale = settings.median_photons / float(np.median(unscaled))

    @staticmethod
    def _absent(hkl: np.ndarray, space_group: str) -> np.ndarray:
        absent = np.zeros(len(hkl), dtype=bool)
        for row, n in _ABSENCES[space_group]:
            axis = row.index("h") if "h" in row else row.index("k") if "k" in row else row.index("l")
            others = [k for k in range(3) if k != axis]
            on_row = (hkl[:, others[0]] == 0) & (hkl[:, others[1]] == 0)
            absent |= on_row & (hkl[:, axis] % n != 0)
        return absent

    @property
    def reflections(self) -> int:
        """Reflections in the table (inside the detector's resolution, absences left out)."""
        return self._q.shape[0]

    def spots(self, rng: np.random.Generator) -> Spots:
        """One shot: a random orientation, crystal scale and spot width; the spots that reach the plane."""
        s = self.settings
        rotation = _random_rotation(rng)
        scale = self._photon_scale * math.exp(s.size_spread * rng.standard_normal())
        width_px = rng.uniform(*s.spot_sigma_px)
        k = 1.0 / self.wavelength_a
        # |k_in + q|^2 - k^2 = 2 k q_z + |q|^2 (beam along +z): one dot product finds the few
        # points near the sphere, and only those are rotated in full.
        q_z = self._q @ rotation[2]
        near = np.flatnonzero(np.abs(2 * k * q_z + self._q_length**2) < 2 * k * self._reach)
        out = self._q[near] @ rotation.T + np.array([0.0, 0.0, k])
        excitation = np.linalg.norm(out, axis=1) - k
        partiality = np.exp(-0.5 * (excitation / self._width[near]) ** 2)
        keep = (partiality >= _MIN_PARTIALITY) & (out[:, 2] > 0)
        chosen = near[keep]
        out, partiality = out[keep], partiality[keep]
        photons = scale * self._intensity[chosen] * partiality
        x = self.distance_px * out[:, 0] / out[:, 2]
        y = self.distance_px * out[:, 1] / out[:, 2]
        sigma = width_px * rng.uniform(0.85, 1.15, chosen.size)
        # sigma_y / sigma_x = aspect, their geometric mean the spot's width
        aspect = np.exp(rng.uniform(-1.0, 1.0, chosen.size) * math.log(s.spot_aspect_max) / 2)
        return Spots(y, x, photons, sigma * aspect, sigma / aspect, 1.0 / self._q_length[chosen], rotation)
