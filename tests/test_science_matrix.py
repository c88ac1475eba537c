"""Right whatever the spots look like: the worker pipeline at its defaults on every cell of the simulator's
scene matrix (:data:`monitor.simulation.scenes.SCENE_MATRIX`), 500 frames each, 25 % hits.

The cells span spot widths of 0.3-1.6 pixels (anisotropic), sparse hits of
10-40 spots and dense ones of 500-2,000, backgrounds of 0.001-0.1 photons a
pixel, and strong hexagonal-ice rings, with discrete photons whose charge is
shared at pixel borders.  On each: recall >= 0.95 over the spots a finder
should see (5 photons and more, footprint SNR >= 5); over the spots that stand
5 sigma above their footprint's background alone, a recall within 0.08 of the
Neyman-Pearson bound (the most any finder could find of them at the same
chance-spot rate); precision >= 0.98, hit-rate error <= 1 percentage point, and
d_min within 10 % of the truth's for nine in ten hits with 20 spots of 5
photons or more.  The test prints the table it asserts (the README shows it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.simulation.scenes import SCENE_MATRIX, SCENES
from science_runs import run_against_truth

N_FRAMES = 500


@pytest.mark.parametrize("scene", SCENE_MATRIX)
def test_defaults_hold_on_every_scene(scene: str, tmp_path: Path) -> None:
    detector = SCENES[scene].detector(seed=2026, hit_fraction=0.25, lost_packet_rate=0.002)
    run = run_against_truth(detector, N_FRAMES, tmp_path)
    groups = run.comparison.figures()
    figures, by_photons, detectable = groups["truth"], groups["truth_recall_by_photons"], groups["truth_detectable"]
    standing, bound, n_standing = run.standing_recall()
    weak, weak_bound, n_weak = run.standing_recall((5.0, 10.0))
    print(
        f"\n| {scene} | {detectable['recall']:.3f} ({detectable['spots']}) "
        f"| {standing:.3f} ({bound:.3f}, {n_standing}) | {weak:.2f} ({weak_bound:.2f}, {n_weak}) "
        f"| {by_photons['10-20']} "
        f"| {figures['precision']:.4f} ({figures['found_peaks']}) | {figures['hit_rate_error_pp']:+.1f} pp "
        f"(true {figures['true_hit_rate']:.3f}) | {run.d_min_within_10_percent:.2f} ({len(run.d_min_errors)}) |"
    )
    targets = {
        "recall >= 0.95 (5 photons and more, footprint SNR >= 5)": detectable["recall"] >= 0.95,
        "within 0.08 of the Neyman-Pearson bound (5 photons and more, standing 5 sigma)": standing >= bound - 0.08,
        "precision >= 0.98": figures["precision"] >= 0.98,
        "hit-rate error <= 1 pp": abs(figures["hit_rate_error_pp"]) <= 1.0,
        "d_min within 10 % for 9 hits in 10 (20 spots and more)": run.d_min_within_10_percent >= 0.9,
        "over 200 spots to judge by": detectable["spots"] > 200,
    }
    assert all(targets.values()), [target for target, met in targets.items() if not met]
