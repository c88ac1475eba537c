"""Per-frame quality: the ice-ring score tells frames with ice from frames without, the background by
resolution shell is the simulator's, spots on ice rings are counted apart; the run's figures add up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.processing.crystallography import CrystallographyParameters, CrystallographyPipeline
from monitor.processing.ice_rings import on_ice_ring
from monitor.processing.science import RESOLUTION_SHELLS_A
from monitor.simulation.scenes import SCENES

RANKS = {"node_rank": 1, "node_pool_size": 2}
FRAMES = 12


def _results(scene: str, folder: Path) -> tuple[list[dict], CrystallographyPipeline, object]:
    detector = SCENES[scene].detector(seed=8, hit_fraction=0.5)
    parameters = CrystallographyParameters(calibration=detector.write_calibration(folder), send_hit_frames=False)
    worker, collector = CrystallographyPipeline(parameters=parameters), CrystallographyPipeline(parameters=parameters)
    worker.initialize_processing_node(**RANKS)
    collector.initialize_collecting_node(**RANKS)
    values = []
    for number in range(FRAMES):
        result = worker.process_data(**RANKS, data={"detector_data": detector.frame(number)[0], "timestamp": 0.0,
                                                    "event_id": number})
        collector.collect_data(**RANKS, processed_data=result)
        values.append({**result.values, "peak_y": result.arrays["peak_y"], "peak_x": result.arrays["peak_x"]})
    return values, collector, detector


@pytest.mark.parametrize(("scene", "ice"), [("icy", True), ("default", False), ("sparse_heavy", False)])
def test_the_ice_ring_score_tells_frames_with_ice_from_frames_without(scene: str, ice: bool, tmp_path: Path) -> None:
    values, collector, detector = _results(scene, tmp_path)
    scores = [v["ice_ring_score"] for v in values]
    print(f"\n{scene}: ice-ring scores {min(scores):.1f} to {max(scores):.1f} sigma")
    assert all(v["has_ice"] == ice for v in values)
    assert (min(scores) > 30) if ice else (max(scores) < 5)
    assert collector.status()["ice_rate"] == (1.0 if ice else 0.0)
    # the background per shell is the simulator's (its mean over the shell's pixels), spots and all
    d = detector.resolution
    edges = np.asarray(RESOLUTION_SHELLS_A)
    measured = collector.summary()["background_by_shell"]
    for (label, level), high, low in zip(measured.items(), edges[:-1], edges[1:]):
        inside = (d <= high) & (d > low)
        if inside.sum() > 10_000:
            assert level == pytest.approx(float(detector.background[inside].mean()), rel=0.15, abs=0.0005), label


def test_spots_on_ice_rings_are_counted_apart(tmp_path: Path) -> None:
    values, collector, detector = _results("icy", tmp_path)
    for v in values:
        rows, cols = np.rint(v["peak_y"]).astype(int), np.rint(v["peak_x"]).astype(int)
        assert v["n_peaks_off_ice"] == int((~on_ice_ring(detector.resolution[rows, cols])).sum()) <= v["n_peaks"]
    hits = [v for v in values if v["is_hit"]]
    assert collector.summary()["mean_peaks_off_ice_per_hit"] == pytest.approx(
        np.mean([v["n_peaks_off_ice"] for v in hits]))
