"""Proof against ground truth, at the defaults: peaks, hit rate and d_min of the whole worker pipeline on
1,000 crystal-simulator frames of each strength, weak (median spot 3 photons), medium (8) and strong (50).

Frames come straight from :class:`monitor.simulation.SimulatedJungfrau1M`
(lysozyme in a random orientation per hit, 25 % hits, 0.2 % of packets lost,
dead, noisy and never-switching pixels), calibrated from the files it writes
(gain, pedestal, noise, bad pixels, as the dark tool and PSI ship them).
Every spot-finding and hit-finding parameter is at its default.  The figures
are those of :class:`monitor.processing.science.TruthComparison`: recall over
the whole true spots of 5 photons and more, precision over every found peak.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.simulation import SimulatedJungfrau1M
from science_runs import run_against_truth

N_FRAMES = 1000


@pytest.mark.parametrize("setting", ["weak", "medium", "strong"])
def test_defaults_find_the_truth(setting: str, tmp_path: Path) -> None:
    detector = SimulatedJungfrau1M(seed=2026, crystal=setting, hit_fraction=0.25, lost_packet_rate=0.002)
    groups = run_against_truth(detector, N_FRAMES, tmp_path).comparison.figures()
    figures, by_photons = groups["truth"], groups["truth_recall_by_photons"]
    print(
        f"\n{setting}: {N_FRAMES} frames, recall (>= 5 photons) {figures['recall_5_photons_and_more']:.4f}, "
        f"by photons {by_photons}, precision {figures['precision']:.4f} ({figures['found_peaks']} found), "
        f"hit-rate error {figures['hit_rate_error_pp']:+.2f} pp (true rate {figures['true_hit_rate']:.3f}), "
        f"d_min median relative error {figures['d_min_median_relative_error']:.4f} "
        f"over {figures['d_min_hits_compared']} hits"
    )
    assert figures["recall_5_photons_and_more"] >= 0.95
    assert figures["precision"] >= 0.98
    assert abs(figures["hit_rate_error_pp"]) < 1.0
    assert figures["d_min_median_relative_error"] < 0.05
    assert figures["d_min_hits_compared"] > 200 and groups["truth_spots_by_photons"]["5-10"] > 2000
