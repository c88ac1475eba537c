"""Science figures of found peaks: resolution per hit, and recall and precision against a simulator's truth.

*Resolution per hit* (``d_min``, A): the d-spacing that 90 % of the hit's
peaks lie inside (lower resolution, larger d), from the peaks' distance to the
beam with the geometry's detector distance and the photon energy:
``d = lambda / (2 sin(theta))``, ``2 theta = atan(r / distance)``.  The 90 %
quantile, not the outermost peak, keeps one stray peak from setting it.

*Against the truth* (when the simulator is the source): a found peak matches a
true spot within ``MATCH_PX`` pixels.  Recall is over the true spots that are
``whole`` (no bad pixel or lost packet within 2 pixels of the centre), per
photon bin (:data:`PHOTON_BINS`) and per ideal-SNR bin (:data:`SNR_BINS`), and
over the spots any finder should see: ``DETECTABLE_PHOTONS`` or more whose
footprint SNR (the truth's I/sigma(I)) is ``DETECTABLE_SNR`` or more;
precision is over every found peak (a found spot of half a photon is a true
spot too).  The hit-rate error is the called hit rate minus the true one.  The
truth's ``d_min`` is the same 90 % statistic over its spots of at least
``DETECTABLE_PHOTONS`` photons: those a peak finder can be asked to see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DETECTABLE_PHOTONS", "MATCH_PX", "PHOTON_BINS", "SNR_BINS", "RESOLUTION_SHELLS_A", "TruthComparison",
    "d_spacing", "resolution_limit", "resolution_shell_labels",
]

MATCH_PX = 2.0
PHOTON_BINS = (0.0, 5.0, 10.0, 20.0, 50.0, math.inf)
"""Edges of the photon bins: <5, 5-10, 10-20, 20-50, >50."""
SNR_BINS = (0.0, 3.0, 5.0, 7.0, 10.0, 20.0, math.inf)
RESOLUTION_SHELLS_A = (math.inf, 10.0, 6.0, 4.0, 3.5, 3.0, 2.75, 2.5, 0.0)
"""Edges of the resolution shells of the report (A, low to high resolution)."""
DETECTABLE_PHOTONS = 5.0
DETECTABLE_SNR = 5.0
D_MIN_FRACTION = 0.9


def d_spacing(radius_px: np.ndarray, *, distance_px: float, wavelength_a: float) -> np.ndarray:
    """d-spacing (A) at a distance from the beam (pixels), for a detector ``distance_px`` pixels from the sample."""
    two_theta = np.arctan(np.asarray(radius_px, dtype=np.float64) / distance_px)
    with np.errstate(divide="ignore"):
        return wavelength_a / (2 * np.sin(two_theta / 2))


def resolution_limit(d: np.ndarray) -> float:
    """The d-spacing (A) that ``D_MIN_FRACTION`` of the given ones are at or above; NaN for none."""
    return float(np.quantile(d, 1 - D_MIN_FRACTION)) if len(d) else math.nan


def _bin_labels(edges: tuple[float, ...]) -> list[str]:
    labels = [f"{low:g}-{high:g}" for low, high in zip(edges[:-1], edges[1:])]
    labels[0], labels[-1] = f"<{edges[1]:g}", f">{edges[-2]:g}"
    return labels


def resolution_shell_labels(edges: Sequence[float] = RESOLUTION_SHELLS_A) -> list[str]:
    """``">10 A"``, ``"10-6 A"``, ..., ``"<2.5 A"``: the shells between the edges (A, low to high resolution)."""
    labels = [f"{low:g}-{high:g} A" for low, high in zip(edges[:-1], edges[1:])]
    labels[0], labels[-1] = f">{edges[1]:g} A", f"<{edges[-2]:g} A"
    return labels


class TruthComparison:
    """Accumulates found peaks against true spots, frame by frame; :meth:`figures` gives the run's figures.

    Each frame reduces to a few counts (:meth:`frame_counts`, cheap to send
    from a worker); :meth:`add_counts` folds them in, so a collector need
    never see a truth record.
    """

    N_COUNTS = 2 * (len(PHOTON_BINS) - 1) + 2 * (len(SNR_BINS) - 1) + 7
    """Length of one frame's count vector."""

    def __init__(self) -> None:
        self._counts = np.zeros(self.N_COUNTS, dtype=np.int64)
        self._d_min_errors: list[float] = []

    @staticmethod
    def frame_counts(
        found_y: np.ndarray, found_x: np.ndarray, is_hit: bool, truth: Any
    ) -> np.ndarray:
        """One frame's counts (int64): true and matched whole spots per photon and SNR bin, true and
        matched detectable spots, found and matched peaks, true and called hit, and 1 (the frame)."""
        counts = np.zeros(TruthComparison.N_COUNTS, dtype=np.int64)
        n_photon, n_snr = len(PHOTON_BINS) - 1, len(SNR_BINS) - 1
        peaks = truth.peaks
        matched_found = np.zeros(len(found_y), dtype=bool)
        if peaks:
            table = np.array([(p.y, p.x, p.photons, p.snr, p.whole) for p in peaks], dtype=np.float64)
            matched_true = np.zeros(len(peaks), dtype=bool)
            if len(found_y):
                distance = np.hypot(table[:, 0, None] - found_y[None, :], table[:, 1, None] - found_x[None, :])
                close = distance < MATCH_PX
                matched_true = close.any(axis=1)
                matched_found = close.any(axis=0)
            whole = table[:, 4] > 0
            photon_bin = np.digitize(table[whole, 2], PHOTON_BINS[1:-1])
            snr_bin = np.digitize(table[whole, 3], SNR_BINS[1:-1])
            counts[0:n_photon] = np.bincount(photon_bin, minlength=n_photon)
            counts[n_photon : 2 * n_photon] = np.bincount(photon_bin[matched_true[whole]], minlength=n_photon)
            base = 2 * n_photon
            counts[base : base + n_snr] = np.bincount(snr_bin, minlength=n_snr)
            counts[base + n_snr : base + 2 * n_snr] = np.bincount(snr_bin[matched_true[whole]], minlength=n_snr)
            detectable = whole & (table[:, 2] >= DETECTABLE_PHOTONS) & (table[:, 3] >= DETECTABLE_SNR)
            counts[base + 2 * n_snr] = int(detectable.sum())
            counts[base + 2 * n_snr + 1] = int((detectable & matched_true).sum())
        tail = 2 * n_photon + 2 * n_snr + 2
        counts[tail] = len(found_y)
        counts[tail + 1] = int(matched_found.sum())
        counts[tail + 2] = int(truth.is_hit)
        counts[tail + 3] = int(is_hit)
        counts[tail + 4] = 1  # frames
        return counts

    @staticmethod
    def true_d_min(truth: Any) -> float:
        """The truth's resolution per hit: the 90 % statistic over its spots of ``DETECTABLE_PHOTONS`` or more."""
        return resolution_limit(np.array([p.resolution for p in truth.peaks if p.photons >= DETECTABLE_PHOTONS]))

    def add_counts(self, counts: np.ndarray, *, d_min: float = math.nan, true_d_min: float = math.nan) -> None:
        """Fold in one frame's counts and, for a hit, its found and true d_min."""
        self._counts += counts
        if math.isfinite(d_min) and math.isfinite(true_d_min):
            self._d_min_errors.append(d_min / true_d_min - 1)

    @property
    def frames(self) -> int:
        return int(self._counts[-1])

    def figures(self) -> dict[str, Any]:
        """The run's figures as flat groups (each reads as one line of the summary table):

        ``truth`` (recall over spots of 5 photons and more, precision, found peaks,
        true hit rate, hit-rate error in percentage points, d_min error),
        ``truth_detectable`` (recall over the spots of 5 photons and more with a footprint
        SNR of 5 and more, and how many there were),
        ``truth_recall_by_photons`` / ``truth_spots_by_photons`` and
        ``truth_recall_by_snr`` / ``truth_spots_by_snr`` (recall, None for an empty bin,
        and whole true spots per bin).
        """
        n_photon, n_snr = len(PHOTON_BINS) - 1, len(SNR_BINS) - 1
        c = self._counts
        tail = 2 * n_photon + 2 * n_snr + 2
        detectable_true, detectable_found = int(c[tail - 2]), int(c[tail - 1])
        frames = max(int(c[tail + 4]), 1)

        def recall(true: np.ndarray, found: np.ndarray, labels: list[str]) -> dict[str, float | None]:
            return {label: round(float(f) / float(t), 4) if t else None for label, t, f in zip(labels, true, found)}

        photon_labels, snr_labels = _bin_labels(PHOTON_BINS), _bin_labels(SNR_BINS)
        snr_true, snr_found = c[2 * n_photon:2 * n_photon + n_snr], c[2 * n_photon + n_snr:tail - 2]

        strong = slice(1, n_photon)
        strong_true, strong_found = int(c[strong].sum()), int(c[n_photon:2 * n_photon][strong].sum())
        errors = np.abs(self._d_min_errors) if self._d_min_errors else np.array([])
        return {
            "truth": {
                "frames": int(c[tail + 4]),
                "recall_5_photons_and_more": round(strong_found / strong_true, 4) if strong_true else None,
                "precision": round(float(c[tail + 1]) / float(c[tail]), 4) if c[tail] else None,
                "found_peaks": int(c[tail]),
                "true_hit_rate": float(c[tail + 2]) / float(frames),
                "hit_rate_error_pp": round(100 * (float(c[tail + 3]) - float(c[tail + 2])) / frames, 3),
                "d_min_hits_compared": len(errors),
                "d_min_median_relative_error": round(float(np.median(errors)), 4) if len(errors) else None,
            },
            "truth_detectable": {
                "recall": round(detectable_found / detectable_true, 4) if detectable_true else None,
                "spots": detectable_true,
            },
            "truth_recall_by_photons": recall(c[:n_photon], c[n_photon:2 * n_photon], photon_labels),
            "truth_spots_by_photons": dict(zip(photon_labels, (int(t) for t in c[:n_photon]))),
            "truth_recall_by_snr": recall(snr_true, snr_found, snr_labels),
            "truth_spots_by_snr": dict(zip(snr_labels, (int(t) for t in snr_true))),
        }
