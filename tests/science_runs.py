"""The whole worker pipeline at its defaults on simulated frames, against the simulator's truth (no MPI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitor.processing.crystallography import CrystallographyParameters, CrystallographyPipeline
from monitor.processing.science import DETECTABLE_PHOTONS, TruthComparison
from monitor.simulation import SimulatedJungfrau1M

RANKS = {"node_rank": 1, "node_pool_size": 2}
D_MIN_SPOTS = 20
"""Hits with at least this many spots of ``DETECTABLE_PHOTONS`` have their d_min checked."""


@dataclass
class TruthRun:
    """The figures of one run: the comparison's, and d_min errors of the hits with enough spots."""

    comparison: TruthComparison = field(default_factory=TruthComparison)
    d_min_errors: list[float] = field(default_factory=list)

    @property
    def d_min_within_10_percent(self) -> float:
        """Fraction of the hits with ``D_MIN_SPOTS`` spots or more whose d_min is within 10 % of the truth's."""
        errors = np.abs(self.d_min_errors)
        return float(np.mean(errors <= 0.10)) if errors.size else float("nan")


def run_against_truth(detector: SimulatedJungfrau1M, frames: int, folder: Path) -> TruthRun:
    """Calibrate ``frames`` frames from the files the detector writes into ``folder``, find spots and hits
    with every parameter at its default, and compare with the truth."""
    parameters = CrystallographyParameters(calibration=detector.write_calibration(folder), send_hit_frames=False)
    worker = CrystallographyPipeline(parameters=parameters)
    worker.initialize_processing_node(**RANKS)
    run = TruthRun()
    buffer = np.empty((1024, 1024), dtype=np.uint16)
    for number in range(frames):
        raw, truth = detector.frame(number, out=buffer)
        result = worker.process_data(**RANKS, data={"detector_data": raw, "timestamp": 0.0, "event_id": number})
        values = result.values
        counts = TruthComparison.frame_counts(result.arrays["peak_y"], result.arrays["peak_x"], values["is_hit"], truth)
        true_d_min = TruthComparison.true_d_min(truth) if truth.is_hit else np.nan
        d_min = values["d_min"] or np.nan
        run.comparison.add_counts(counts, d_min=d_min, true_d_min=true_d_min)
        if sum(p.photons >= DETECTABLE_PHOTONS for p in truth.peaks) >= D_MIN_SPOTS:
            run.d_min_errors.append(d_min / true_d_min - 1 if np.isfinite(d_min) else np.inf)
    return run
