"""Named settings of the simulated detector that span what beamlines see, and the matrix the tests walk.

A scene is a crystal (:class:`~monitor.simulation.crystal.CrystalSettings`:
spot widths, anisotropy, spots per hit, strength) on a background (flat
photons per pixel, the water ring, hexagonal-ice rings).  Spot footprints run
from under a pixel (micro-focus, short distance) to several pixels (larger
beams, divergence, mosaic crystals, long distances); hits from a dozen spots
(small crystals, low resolution) to thousands (large cells); backgrounds from
near zero to heavy solvent, with or without ice.

:data:`SCENES` holds the named ones; :data:`SCENE_MATRIX` the cells the
science test walks (every parameter of the monitor at its default must hold on
each).  :meth:`SceneSettings.detector` makes the simulated detector of a scene.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from monitor.simulation.crystal import CrystalChoice, CrystalSettings
from monitor.simulation.detector import SimulatedJungfrau1M

__all__ = ["SCENES", "SCENE_MATRIX", "SceneSettings"]


class SceneSettings(BaseModel):
    """A crystal and its background: everything a simulated frame's content depends on but the detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crystal: CrystalChoice = "medium"
    background_photons: float = Field(default=0.005, ge=0, le=10, description="flat background, photons a pixel")
    water_ring_photons: float = Field(default=0.01, ge=0, le=10, description="water ring (3.2 A) peak, photons a pixel")
    ice_ring_photons: float = Field(
        default=0.0, ge=0, le=10, description="strongest hexagonal-ice ring (3.90 A) peak, photons a pixel; 0: no ice"
    )

    def detector(self, *, seed: int, hit_fraction: float, **options: object) -> SimulatedJungfrau1M:
        """The simulated JUNGFRAU 1M of this scene (``options``: the detector's other keywords)."""
        return SimulatedJungfrau1M(
            seed=seed, hit_fraction=hit_fraction, crystal=self.crystal, background_photons=self.background_photons,
            ring_photons=self.water_ring_photons, ice_ring_photons=self.ice_ring_photons, **options,
        )


_LARGE_CELL = (160.0, 160.0, 110.0, 90.0, 90.0, 90.0)
"""A cell of 12 times lysozyme's volume: a few thousand spots a hit on the detector."""

SCENES: dict[str, SceneSettings] = {
    "default": SceneSettings(),
    "micro_sparse": SceneSettings(
        crystal=CrystalSettings(spot_sigma_px=(0.3, 0.45), spots_per_hit=(10, 30), median_photons=8.0),
        background_photons=0.001, water_ring_photons=0.002,
    ),
    "wide_sparse": SceneSettings(
        crystal=CrystalSettings(spot_sigma_px=(1.0, 1.6), spot_aspect_max=1.6, spots_per_hit=(10, 40), median_photons=8.0),
        background_photons=0.01, water_ring_photons=0.02,
    ),
    "wide_dense_heavy": SceneSettings(
        crystal=CrystalSettings(unit_cell=_LARGE_CELL, spot_sigma_px=(0.8, 1.6), spot_aspect_max=1.6,
                                spots_per_hit=(500, 2000), median_photons=30.0),
        background_photons=0.1, water_ring_photons=0.05,
    ),
    "sparse_heavy": SceneSettings(
        crystal=CrystalSettings(spot_sigma_px=(0.5, 1.2), spot_aspect_max=1.4, spots_per_hit=(10, 40), median_photons=30.0),
        background_photons=0.1, water_ring_photons=0.05,
    ),
    "icy": SceneSettings(
        crystal=CrystalSettings(spot_sigma_px=(0.4, 1.0), spot_aspect_max=1.3, median_photons=8.0),
        background_photons=0.01, water_ring_photons=0.01, ice_ring_photons=0.3,
    ),
}
"""Named scenes: today's default; micro-focus sparse hits on almost no background; wide anisotropic sparse
hits; wide dense hits of a large cell on heavy background; sparse hits on heavy background; strong ice rings."""

SCENE_MATRIX: tuple[str, ...] = ("micro_sparse", "wide_sparse", "wide_dense_heavy", "sparse_heavy", "icy")
"""The cells the science test walks: every width, sparse and dense hits, every background, ice."""
