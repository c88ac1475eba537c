"""The whole worker pipeline at its defaults on simulated frames, against the simulator's truth (no MPI)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitor.processing.crystallography import CrystallographyParameters, CrystallographyPipeline
from monitor.processing.science import DETECTABLE_PHOTONS, TruthComparison
from monitor.simulation import SimulatedJungfrau1M

RANKS = {"node_rank": 1, "node_pool_size": 2}
D_MIN_SPOTS = 20
"""Hits with at least this many spots of ``DETECTABLE_PHOTONS`` have their d_min checked."""


REFERENCE_PHOTONS = (5.0, 10.0)
"""The photon bin whose recall is set beside :func:`box_reference_recall`'s."""


@dataclass
class TruthRun:
    """The figures of one run: the comparison's, d_min errors of the hits with enough spots, and the whole
    true spots of :data:`REFERENCE_PHOTONS` (photons, y, x, sigma_y, sigma_x, background + noise^2)."""

    comparison: TruthComparison = field(default_factory=TruthComparison)
    d_min_errors: list[float] = field(default_factory=list)
    weak_spots: list[tuple[float, ...]] = field(default_factory=list)

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
    floor = detector.background + detector.noise_photons.astype(np.float64) ** 2
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
        run.weak_spots += [
            (p.photons, p.y, p.x, p.sigma_y, p.sigma_x, float(floor[int(round(p.y)), int(round(p.x))]))
            for p in truth.peaks if p.whole and REFERENCE_PHOTONS[0] <= p.photons < REFERENCE_PHOTONS[1]
        ]
    return run


def _at_least(mean: float, k: int) -> float:
    """P(X >= k) for X Poisson with this mean."""
    term = math.exp(-mean)
    below = 0.0
    for i in range(k):
        below += term
        term *= mean / (i + 1)
    return max(0.0, 1.0 - below)


def _inside(centre: int, half: int, position: float, sigma: float) -> float:
    """The fraction of a Gaussian spot's photons at ``position`` that fall in pixels ``centre +- half``."""
    return 0.5 * (math.erf((centre + half + 0.5 - position) / (math.sqrt(2) * sigma))
                  - math.erf((centre - half - 0.5 - position) / (math.sqrt(2) * sigma)))


def box_reference_recall(spots: list[tuple[float, ...]], chance_spots_per_frame: float = 0.01,
                         pixels: int = 1024 * 1024) -> float:
    """What counting photons in a square box finds of ``spots`` (:attr:`TruthRun.weak_spots`) when it knows
    where each spot is and picks, spot by spot, the box (1x1 to 7x7 around its nearest pixel) that finds it
    most often, at the spot finder's chance-spot rate: a box of ``a`` pixels may pass on background alone
    with probability ``chance_spots_per_frame * a / pixels`` (exact Poisson counts, no Gaussian).

    A reference for weak spots, not a bound: the finder's likelihood-ratio cut on two boxes may do a
    little better (it does on the sharpest spots), a matched filter somewhat better still; but on a
    frame whose 5-10 photon spots this reference finds at 40 %, none finds them at 95 %."""
    found = []
    for photons, y, x, sigma_y, sigma_x, floor in spots:
        row, col = int(round(y)), int(round(x))
        best = 0.0
        for half in range(4):
            area = (2 * half + 1) ** 2
            due = floor * area
            allowed = chance_spots_per_frame * area / pixels
            cut = 0
            while _at_least(due, cut) > allowed:
                cut += 1
            share = _inside(row, half, y, sigma_y) * _inside(col, half, x, sigma_x)
            best = max(best, _at_least(due + share * photons, cut))
        found.append(best)
    return float(np.mean(found)) if found else float("nan")
