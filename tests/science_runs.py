"""The whole worker pipeline at its defaults on simulated frames, against the simulator's truth (no MPI)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitor.processing.crystallography import CrystallographyParameters, CrystallographyPipeline
from monitor.processing.science import DETECTABLE_PHOTONS, MATCH_PX, TruthComparison
from monitor.simulation import SimulatedJungfrau1M

RANKS = {"node_rank": 1, "node_pool_size": 2}
D_MIN_SPOTS = 20
"""Hits with at least this many spots of ``DETECTABLE_PHOTONS`` have their d_min checked."""


STANDING_SIGMA = 5.0
"""A spot *stands* when its photons are this many sigma above the background and noise of its footprint
alone, ``photons / sqrt(A (b + noise^2)) >= 5`` with ``A = 4 pi sigma_y sigma_x`` (the spot's own Poisson
noise left out, unlike the truth's ``snr``)."""
BOUND_SPOTS = 2000
"""Spots per run the Neyman-Pearson bound is computed for (a seeded random choice)."""


@dataclass
class TruthRun:
    """The figures of one run: the comparison's, d_min errors of the hits with enough spots, and the whole
    true spots of 5 photons or more that stand :data:`STANDING_SIGMA` above their footprint's background
    (photons, y, x, sigma_y, sigma_x, background + noise^2, found)."""

    comparison: TruthComparison = field(default_factory=TruthComparison)
    d_min_errors: list[float] = field(default_factory=list)
    standing_spots: list[tuple[float, ...]] = field(default_factory=list)

    @property
    def d_min_within_10_percent(self) -> float:
        """Fraction of the hits with ``D_MIN_SPOTS`` spots or more whose d_min is within 10 % of the truth's."""
        errors = np.abs(self.d_min_errors)
        return float(np.mean(errors <= 0.10)) if errors.size else float("nan")

    def standing_recall(self, photons: tuple[float, float] = (DETECTABLE_PHOTONS, math.inf)) -> tuple[float, float, int]:
        """Recall over the standing spots of ``photons`` (low, high): the finder's, the Neyman-Pearson bound's
        (:func:`neyman_pearson_recall`), and how many spots."""
        chosen = [s for s in self.standing_spots if photons[0] <= s[0] < photons[1]]
        if not chosen:
            return math.nan, math.nan, 0
        sample = np.random.default_rng(0).permutation(len(chosen))[:BOUND_SPOTS]
        bound = neyman_pearson_recall([chosen[k][:6] for k in sample])
        return float(np.mean([s[6] for s in chosen])), bound, len(chosen)


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
        found_y, found_x = result.arrays["peak_y"], result.arrays["peak_x"]
        counts = TruthComparison.frame_counts(found_y, found_x, values["is_hit"], truth)
        true_d_min = TruthComparison.true_d_min(truth) if truth.is_hit else np.nan
        d_min = values["d_min"] or np.nan
        run.comparison.add_counts(counts, d_min=d_min, true_d_min=true_d_min)
        if sum(p.photons >= DETECTABLE_PHOTONS for p in truth.peaks) >= D_MIN_SPOTS:
            run.d_min_errors.append(d_min / true_d_min - 1 if np.isfinite(d_min) else np.inf)
        for p in truth.peaks:
            background = float(floor[int(round(p.y)), int(round(p.x))])
            area = 4 * math.pi * p.sigma_y * p.sigma_x
            if p.whole and p.photons >= DETECTABLE_PHOTONS and p.photons >= STANDING_SIGMA * math.sqrt(area * background):
                found = bool(np.any(np.hypot(found_y - p.y, found_x - p.x) < MATCH_PX))
                run.standing_spots.append((p.photons, p.y, p.x, p.sigma_y, p.sigma_x, background, found))
    return run


def _pixel_shares(position: float, sigma: float, half: int) -> np.ndarray:
    """The fractions of a Gaussian spot's photons at ``position`` that fall in each pixel of the nearest
    pixel ``+- half``."""
    edges = np.arange(-half - 0.5, half + 1.0) + round(position) - position
    return np.diff(np.array([math.erf(e / (math.sqrt(2) * sigma)) for e in edges])) / 2


def neyman_pearson_recall(spots: list[tuple[float, ...]], chance_spots_per_frame: float = 0.01,
                          pixels: int = 1024 * 1024) -> float:
    """The most any spot finder could find of ``spots`` (photons, y, x, sigma_y, sigma_x, background +
    noise^2 per pixel) at the spot finder's chance-spot rate: a bound, by the Neyman-Pearson lemma.

    For each spot, an oracle that knows where the spot is, its shape and its photons tests the 9x9 pixels
    around it with the most powerful test there is, the likelihood ratio of "background + this spot"
    against "background": ``T = sum_k n_k ln(1 + s_k / b_k)`` (``s_k`` the spot's photons expected in pixel
    ``k``, ``b_k`` the background).  Its cut lets a background-only neighbourhood pass with probability
    ``chance_spots_per_frame * A / pixels`` (one test per spot area ``A = 4 pi sigma_y sigma_x``: a finder
    that does not know where spots are tests at least that many places).  ``T``'s distributions, with the
    spot's photons landing in the pixels by their shares and the background Poisson, are computed exactly
    on a fine lattice (characteristic functions, FFT).  Real finders know less (the position, the shape),
    and charge sharing and electronic noise are left out: the bound is generous."""
    found = []
    for photons, y, x, sigma_y, sigma_x, background in spots:
        shares = np.outer(_pixel_shares(y, sigma_y, 4), _pixel_shares(x, sigma_x, 4)).ravel()
        weights = np.log1p(photons * shares / background)
        step = weights.max() / 200
        lattice = np.rint(weights / step).astype(np.int64)
        count = int(round(photons))
        most = 81 * background + count
        size = 1 << int(math.ceil(math.log2(lattice.max() * (most + 10 * math.sqrt(most) + 20))))
        pixels_at = np.fft.fft(np.bincount(lattice, minlength=size))  # sum_k e^(-i t w_k), t on the lattice
        shares_at = np.fft.fft(np.bincount(lattice, weights=shares, minlength=size))
        null_cf = np.exp(background * (pixels_at - lattice.size))
        spot_cf = (shares_at + (1.0 - shares.sum())) ** count
        null = np.fft.ifft(null_cf).real
        alternative = np.fft.ifft(null_cf * spot_cf).real
        allowed = chance_spots_per_frame * 4 * math.pi * sigma_y * sigma_x / pixels
        tail = np.cumsum(null[::-1])[::-1]
        cut = int(np.argmax(tail <= allowed))
        found.append(float(np.clip(alternative[cut:].sum(), 0.0, 1.0)))
    return float(np.mean(found)) if found else float("nan")
