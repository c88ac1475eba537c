"""Science figures: d-spacing and d_min of found peaks, recall and precision against a truth record."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.processing.science import TruthComparison, d_spacing, resolution_limit
from monitor.simulation.detector import FrameTruth, PeakTruth


def _spot(y: float, x: float, photons: float, *, snr: float = 4.0, whole: bool = True) -> PeakTruth:
    return PeakTruth(y, x, photons, 0.5, snr, 3.0, whole, photons)


def test_d_spacing_is_braggs_law_through_the_detector_distance() -> None:
    # 2 theta = 30 degrees at 1 A: d = 1 / (2 sin 15 degrees) = 1.932 A
    radius = 1600 * math.tan(math.radians(30))
    assert d_spacing(np.array([radius]), distance_px=1600, wavelength_a=1.0)[0] == pytest.approx(1.9319, rel=1e-4)
    assert math.isinf(d_spacing(np.array([0.0]), distance_px=1600, wavelength_a=1.0)[0])


def test_d_min_is_the_resolution_ninety_percent_of_peaks_lie_inside() -> None:
    d = np.array([10.0, 8.0, 6.0, 5.0, 4.0, 3.5, 3.2, 3.0, 2.9, 1.0])  # one stray high-resolution peak
    assert resolution_limit(d) == pytest.approx(2.71)  # the 10 % quantile, interpolated: 1.0 + 0.9 * (2.9 - 1.0)
    assert math.isnan(resolution_limit(np.array([])))


def test_counts_and_figures_of_a_frame() -> None:
    truth = FrameTruth(1, True, (_spot(10, 10, 3), _spot(40, 40, 7, snr=6), _spot(80, 80, 60, snr=30),
                                 _spot(120, 120, 30, whole=False)))
    found_y, found_x = np.array([40.5, 80.0, 200.0]), np.array([39.5, 81.0, 200.0])  # two true, one false
    comparison = TruthComparison()
    comparison.add_counts(TruthComparison.frame_counts(found_y, found_x, True, truth), d_min=3.1, true_d_min=3.0)
    comparison.add_counts(TruthComparison.frame_counts(np.array([]), np.array([]), True, FrameTruth(2, False, ())))
    figures = comparison.figures()
    assert figures["truth_spots_by_photons"] == {"<5": 1, "5-10": 1, "10-20": 0, "20-50": 0, ">50": 1}  # not the cut one
    assert figures["truth_recall_by_photons"] == {"<5": 0.0, "5-10": 1.0, "10-20": None, "20-50": None, ">50": 1.0}
    assert figures["truth_recall_by_snr"]["5-7"] == 1.0 and figures["truth_recall_by_snr"]["3-5"] == 0.0
    assert figures["truth"] == {
        "frames": 2, "recall_5_photons_and_more": 1.0, "precision": round(2 / 3, 4), "found_peaks": 3,
        "true_hit_rate": 0.5, "hit_rate_error_pp": 50.0, "d_min_hits_compared": 1,
        "d_min_median_relative_error": round(0.1 / 3, 4),
    }
