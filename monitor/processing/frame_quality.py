"""Per-frame quality a beamline scientist reads beside the hit: ice, spots off the ice rings, background by shell.

From what the spot finder already measured (its background per 1-pixel ring
around the beam, and its spots' positions), at the cost of a few thousand
additions a frame:

* ``ice_ring_score``: the photons the hexagonal-ice shells
  (:mod:`monitor.processing.ice_rings`) hold above their flanks (rings just
  inside and outside each shell, as wide as it), in sigma of their Poisson
  noise.  Water's broad ring rises and falls across a shell's width and cancels
  between its flanks; ice's sharp rings do not.  Frames without ice read a few
  sigma at most, frames with ice tens to thousands.
* ``n_peaks_off_ice``: the spots outside the ice shells (DIALS' "spots without
  ice"): ice crystals make spots of their own there.
* ``background_by_shell``: the mean background (photons a pixel) in each
  resolution shell of :data:`monitor.processing.science.RESOLUTION_SHELLS_A`,
  low to high resolution (None where the detector has no pixel).

:class:`QualityTotals` folds them into a run's figures on the collector.
"""

from __future__ import annotations

import math

import numpy as np

from monitor.processing.ice_rings import ice_ring_shells_px, on_ice_ring
from monitor.processing.science import RESOLUTION_SHELLS_A, resolution_shell_labels

__all__ = ["FrameQuality", "QualityTotals"]


class FrameQuality:
    """Quality figures of frames of one layout: ``d_map`` (A per pixel), ``bins`` (each pixel's 1-pixel ring)."""

    def __init__(self, d_map: np.ndarray, bins: np.ndarray) -> None:
        self._d_map = d_map
        n_bins = int(bins.max()) + 1
        self._pixels = np.bincount(bins.ravel(), minlength=n_bins).astype(np.float64)
        centres = np.arange(n_bins, dtype=np.float64)
        shells = ice_ring_shells_px(d_map, bins.astype(np.float64))
        inside = np.zeros(n_bins, dtype=bool)
        for inner, outer in shells:
            inside |= (centres >= inner) & (centres <= outer)
        rings, flanks = [], []
        for inner, outer in shells:
            width = outer - inner + 1
            ring = (centres >= inner) & (centres <= outer)
            flank = (((centres >= inner - width) & (centres < inner)) | ((centres > outer) & (centres <= outer + width)))
            flank &= ~inside
            if self._pixels[ring].sum() and self._pixels[flank].sum():
                rings.append(ring * self._pixels)
                flanks.append(flank * self._pixels)
        self._ring_weights = np.array(rings).reshape(len(rings), n_bins)
        """Per ice shell (a row each): each bin's pixels inside the shell, 0 elsewhere, so that a product with
        the background per bin is the shell's photons."""
        self._flank_weights = np.array(flanks).reshape(len(flanks), n_bins)
        """The same for each shell's flanks (rings beside it, as wide, in no other shell)."""
        self._ring_pixels = self._ring_weights.sum(axis=1)
        self._flank_pixels = self._flank_weights.sum(axis=1)
        d_of_bin = np.bincount(bins.ravel(), weights=d_map.ravel().astype(np.float64), minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            d_of_bin = d_of_bin / self._pixels
        edges = -np.asarray(RESOLUTION_SHELLS_A)
        self._shell_of_bin = np.clip(np.searchsorted(edges, -np.nan_to_num(d_of_bin, nan=np.inf), side="right") - 1,
                                     0, len(RESOLUTION_SHELLS_A) - 2)
        self._shell_pixels = np.bincount(self._shell_of_bin, weights=self._pixels, minlength=len(RESOLUTION_SHELLS_A) - 1)

    def measure(self, background: np.ndarray, peak_y: np.ndarray, peak_x: np.ndarray) -> dict[str, float | int | list]:
        """This frame's figures from its background per 1-pixel ring (photons a pixel) and its spots."""
        background = np.asarray(background, dtype=np.float64)[: self._pixels.size]
        n_in, n_out = self._ring_pixels, self._flank_pixels
        b_in = self._ring_weights @ background / n_in
        b_out = self._flank_weights @ background / n_out
        excess = float(((b_in - b_out) * n_in).sum())
        variance = float((n_in * np.maximum(b_in, 0.0) + n_in**2 / n_out * np.maximum(b_out, 0.0)).sum())
        rows = np.clip(np.rint(peak_y).astype(np.intp), 0, self._d_map.shape[0] - 1)
        cols = np.clip(np.rint(peak_x).astype(np.intp), 0, self._d_map.shape[1] - 1)
        sums = np.bincount(self._shell_of_bin, weights=background * self._pixels, minlength=self._shell_pixels.size)
        return {
            "ice_ring_score": round(excess / math.sqrt(variance + 1.0), 2) if n_in.size else None,
            "n_peaks_off_ice": int((~on_ice_ring(self._d_map[rows, cols])).sum()),
            "background_by_shell": [
                round(float(total / pixels), 5) if pixels else None for total, pixels in zip(sums, self._shell_pixels)
            ],
        }


class QualityTotals:
    """A run's quality figures from its frames' (the collector's side of :class:`FrameQuality`)."""

    def __init__(self) -> None:
        self._frames = 0
        self._ice_frames = 0
        self._hits = 0
        self._peaks_off_ice = 0
        self._background = np.zeros(len(RESOLUTION_SHELLS_A) - 1)
        self._background_frames = np.zeros(len(RESOLUTION_SHELLS_A) - 1)

    def add(self, values: dict[str, object]) -> None:
        """One frame's result values (those without quality figures are left out)."""
        if "ice_ring_score" not in values:
            return
        self._frames += 1
        self._ice_frames += bool(values["has_ice"])
        if values.get("is_hit"):
            self._hits += 1
            self._peaks_off_ice += int(values["n_peaks_off_ice"])
        shells = np.array([np.nan if b is None else b for b in values["background_by_shell"]], dtype=np.float64)
        known = np.isfinite(shells)
        self._background[known] += shells[known]
        self._background_frames += known

    def status(self) -> dict[str, float]:
        """The fraction of frames with ice so far (nothing before a frame with quality figures)."""
        return {"ice_rate": round(self._ice_frames / self._frames, 4)} if self._frames else {}

    def figures(self) -> dict[str, object]:
        """Frames with ice, spots off the ice rings per hit, and the mean background per resolution shell."""
        if not self._frames:
            return {}
        with np.errstate(invalid="ignore", divide="ignore"):
            background = self._background / self._background_frames
        return {
            "ice_rate": self._ice_frames / self._frames,
            "mean_peaks_off_ice_per_hit": self._peaks_off_ice / self._hits if self._hits else 0.0,
            "background_by_shell": {
                label: round(float(b), 5) if np.isfinite(b) else None
                for label, b in zip(resolution_shell_labels(), background)
            },
        }
