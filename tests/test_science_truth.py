"""Proof against ground truth: peaks and hit rate of the whole worker pipeline on 1,200 simulated frames.

The frames come straight from :class:`monitor.simulation.SimulatedJungfrau1M`
with its documented mix of peak strengths: 25 % hits with 20-80 peaks, other
frames 0-3 stray peaks; photons per peak log-uniform in 10-3,000, 8 % of them
log-uniform in 3,000-100,000 (G1, G2 and saturation); widths 0.6-1.2 pixels;
Poisson background with a water ring; dead, noisy and never-switching pixels
masked by the calibration; 0.5 % of packets lost.

A found peak matches a true one within 2 pixels.  Recall is over the true
peaks with SNR >= 7 (the simulator's ideal SNR, see ``PeakTruth``); precision
is over all found peaks (a found weak peak is a true peak too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.processing.crystallography import CrystallographyParameters, CrystallographyPipeline
from monitor.simulation import SimulatedJungfrau1M

N_FRAMES = 1200
MATCH_PX = 2.0


def test_peaks_and_hit_rate_match_the_truth(tmp_path: Path) -> None:
    detector = SimulatedJungfrau1M(seed=2026, hit_fraction=0.25, lost_packet_rate=0.005)
    parameters = CrystallographyParameters(calibration=detector.write_calibration(tmp_path), send_hit_frames=False)
    worker = CrystallographyPipeline(parameters=parameters)
    worker.initialize_processing_node(node_rank=1, node_pool_size=2)
    collector = CrystallographyPipeline(parameters=parameters)
    collector.initialize_collecting_node(node_rank=0, node_pool_size=2)

    strong = strong_found = found = found_true = true_hits = 0
    buffer = np.empty((1024, 1024), dtype=np.uint16)
    for number in range(N_FRAMES):
        raw, truth = detector.frame(number, out=buffer)
        result = worker.process_data(
            node_rank=1, node_pool_size=2, data={"detector_data": raw, "timestamp": 0.0, "event_id": number}
        )
        collector.collect_data(node_rank=0, node_pool_size=2, processed_data=result)
        true_hits += truth.is_hit
        x, y = result.arrays["peak_x"], result.arrays["peak_y"]
        found += x.size
        if not truth.peaks:
            continue
        true_y = np.array([p.y for p in truth.peaks])
        true_x = np.array([p.x for p in truth.peaks])
        snr = np.array([p.snr for p in truth.peaks])
        if x.size:
            distance = np.hypot(true_y[:, None] - y[None, :], true_x[:, None] - x[None, :])
            found_true += int((distance.min(axis=0) < MATCH_PX).sum())
            matched = distance.min(axis=1) < MATCH_PX
        else:
            matched = np.zeros(len(true_y), dtype=bool)
        strong += int((snr >= 7).sum())
        strong_found += int(matched[snr >= 7].sum())

    recall = strong_found / strong
    precision = found_true / found
    true_rate = true_hits / N_FRAMES
    error_points = 100 * abs(collector.hit_rate - true_rate)
    print(
        f"\n{N_FRAMES} frames: recall {recall:.4f} ({strong_found}/{strong} peaks with SNR >= 7), "
        f"precision {precision:.4f} ({found_true}/{found} found peaks), "
        f"hit rate {collector.hit_rate:.4f} vs true {true_rate:.4f} ({error_points:.2f} percentage points)"
    )
    assert recall >= 0.95
    assert precision >= 0.95
    assert error_points < 1.0
    assert true_hits > 250 and strong > 10000
