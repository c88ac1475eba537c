"""Frames of photon-counting detectors (DECTRIS EIGER2, and JUNGFRAU behind Jungfraujoch): counts are photons.

A :class:`CountingFrame` is what their data sources give a pipeline: the image
as the detector sent it (any integer type), the series' pixel mask as a
validity map, and the two special values: ``nodata`` (no reading: gaps,
masked pixels, lost data) and the saturation value.
:class:`CountingCalibration` turns it into the float32 photons and validity
mask a pipeline works on, the same contract as the JUNGFRAU calibration's,
without any calibration: there is nothing to convert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.stream2.cbor import nodata_of

__all__ = ["CountingCalibration", "CountingFrame"]


@dataclass(frozen=True, slots=True)
class CountingFrame:
    """One image of a counting detector; ``counts`` may be a read-only view of a received buffer."""

    counts: np.ndarray
    valid: np.ndarray
    """True where the pixel mask lets the pixel hold data (shared by a series' frames: never written)."""
    nodata: int
    saturation: int | None

    @classmethod
    def unmasked(cls, counts: np.ndarray) -> CountingFrame:
        """Every pixel valid but those at the dtype's no-data value (a frame from no series, e.g. a warm-up)."""
        return cls(counts, np.ones(counts.shape, dtype=bool), nodata_of(counts.dtype), None)


class CountingCalibration:
    """Photons (float32) and validity (bool) of counting frames, in buffers reused frame after frame.

    Invalid pixels (masked, or at ``nodata``) read 0 photons.  ``n_invalid``,
    ``n_saturated`` (valid pixels at or above the saturation value) and
    ``photon_sum`` describe the last frame, as the JUNGFRAU calibration's do.
    """

    noise_photons = None
    """No dark noise: a counting detector has none to speak of, so peak finding uses its fallback floor."""

    def __init__(self) -> None:
        self._photons = np.empty((0, 0), dtype=np.float32)
        self._valid = np.empty((0, 0), dtype=bool)
        self.n_invalid = 0
        self.n_saturated = 0
        self.photon_sum = 0.0

    def calibrate(self, raw: CountingFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frame's photons and validity; both are valid until the next call."""
        frame = raw if isinstance(raw, CountingFrame) else CountingFrame.unmasked(raw)
        counts = frame.counts
        if counts.ndim != 2 or frame.valid.shape != counts.shape:
            raise ValueError(f"counting frame of shape {counts.shape} with a mask of shape {frame.valid.shape}")
        if self._photons.shape != counts.shape:
            self._photons = np.empty(counts.shape, dtype=np.float32)
            self._valid = np.empty(counts.shape, dtype=bool)
        np.not_equal(counts, frame.nodata, out=self._valid)
        self._valid &= frame.valid
        np.multiply(counts, self._valid, out=self._photons, casting="unsafe")
        self.n_invalid = self._valid.size - int(np.count_nonzero(self._valid))
        self.n_saturated = (
            0 if frame.saturation is None else int(np.count_nonzero((counts >= frame.saturation) & self._valid))
        )
        self.photon_sum = float(self._photons.sum(dtype=np.float64))
        return self._photons, self._valid
