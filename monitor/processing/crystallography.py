"""The serial-crystallography pipeline: calibrate, find Bragg peaks, call hits; aggregate on the collector.

Worker side (one call per frame): the raw JUNGFRAU frame is calibrated to
photons with its validity mask (:mod:`sources.calibration`, or ADC values when
calibration is off), Bragg peaks are found by the spot finder chosen with
``spot_finder``: ``spotfinder`` (:mod:`monitor.processing.spotfinder`, the
significance of a spot's photons over its footprint; the default) or
``peakfinder8`` (:mod:`monitor.processing.peakfinder8`, its classic keys), and
the frame is a *hit* when ``min_num_peaks_for_hit <= n_peaks <= max_num_peaks_for_hit``.

What a worker sends (:class:`ProcessedEvent`), the contract outputs rely on:

* ``values``: ``event_id`` (int), ``timestamp`` (float), ``is_hit`` (bool),
  ``n_peaks`` (int, found, even beyond those sent), ``n_saturated`` (int,
  pixels reading ``0xC000``), ``frame_mean`` (float, mean of valid pixels),
  ``d_min`` (float, A: the resolution per hit, see :mod:`monitor.processing.science`;
  None for non-hits and without a detector distance in the geometry); with a
  detector distance also the frame's quality (:mod:`monitor.processing.frame_quality`):
  ``ice_ring_score`` (sigma), ``has_ice`` (the score at ``ice_ring_sigma`` or more),
  ``n_peaks_off_ice`` and ``background_by_shell`` (photons a pixel per resolution shell);
  with the simulator's truth (``calibration: {simulator_seed: ...}``) also
  ``true_d_min`` (float or None);
* ``arrays``: ``peak_x``, ``peak_y`` (float32, raw-frame pixels, x = column,
  y = row, pixel centres at integers), ``peak_intensity``, ``peak_snr``
  (float32), ``radial_profile`` (float32, background per ``radial_bin_px``-wide
  ring from the beam: the finder's clipped radial mean), and ``frame``
  (float32 calibrated 1024 x 1024) for hits and every ``non_hit_frame_interval``-th
  non-hit of a worker, when ``send_hit_frames``, with ``valid`` beside it (bool,
  True = a valid reading: the hit files' mask; invalid pixels read 0 photons);
  with the simulator's truth also ``truth_counts`` (int64,
  :meth:`TruthComparison.frame_counts`).

Collector side: hit rate (over the last ``hit_rate_window`` frames and since
the start), saturation rate (frames with a saturated pixel), virtual powder
pattern (peak counts per raw pixel), mean radial profile of hits and of
non-hits, peakogram (peak radius vs log10 intensity), latest hit with its peaks,
d_min per hit (median, and a histogram), peaks per resolution shell, and the
science figures against the simulator's truth (recall and precision per photon
and SNR bin, hit-rate error, d_min error) when it is the source.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt

from monitor.errors import DataExtractionError
from monitor.processing.peakfinder8 import PeakFinder8, PeakFinder8Parameters, PeakList
from monitor.processing.protocol import ProcessedEvent, Scalar, warm_up_frames
from monitor.processing.frame_quality import FrameQuality, QualityTotals
from monitor.processing.ice_rings import ice_ring_shells_px
from monitor.processing.spotfinder import SpotFinder, SpotFinderParameters
from monitor.processing.science import (
    RESOLUTION_SHELLS_A, TruthComparison, d_spacing, resolution_limit, resolution_shell_labels,
)
from monitor.simulation import SimulatedJungfrau1M
from monitor.simulation.detector import SIMULATED_PHOTON_ENERGY_KEV
from monitor.simulation.crystal import CrystalChoice
from sources.calibration import CalibrationParameters, JungfrauCalibration
from sources.counting import CountingCalibration
from sources.geometry import DetectorGeometry, default_geometry_path
from sources.jungfrau1m import raw_frame

__all__ = ["CrystallographyParameters", "CrystallographyPipeline", "SimulatedCalibration"]

_PEAKOGRAM_LOG_RANGE = (0.0, 6.0)
"""log10 of peak intensity covered by the peakogram (1 to 1e6 photons)."""
_PEAKOGRAM_LOG_BINS = 60
_POWDER_SECTORS = 36
"""Azimuthal sectors (10 degrees) of the polar virtual powder: 1-pixel rings, so a lattice's rings stay sharp,
over arcs long enough to hold a few peaks each, so they stand out of the counting noise."""
_D_MIN_EDGES_A = np.linspace(0.0, 20.0, 2001)
"""d_min per hit is kept as a histogram (0.01 A bins; 20 A and beyond in the last): bounded memory in a long run."""


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


class SimulatedCalibration(BaseModel):
    """Calibrate with the simulated detector's own maps (no files): for runs on ``source: simulator``."""

    model_config = ConfigDict(extra="forbid")

    simulator_seed: int = Field(default=0, description="must be the simulator's seed: it draws the maps")
    crystal: CrystalChoice = Field(default="medium", description="the simulator's crystal: weak, medium, strong, or settings")
    hit_fraction: float = Field(default=0.25, ge=0, le=1, description="the simulator's hit fraction")
    compare_with_truth: bool = Field(
        default=True, description="recall, precision and hit-rate error against the simulator's truth"
    )

    def detector(self) -> SimulatedJungfrau1M:
        """The simulated detector's maps and truth (no frames)."""
        return SimulatedJungfrau1M(
            seed=self.simulator_seed, crystal=self.crystal, hit_fraction=self.hit_fraction, pool_size=0
        )


class CrystallographyParameters(BaseModel):
    """The ``processing_layer`` section for this pipeline."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = "CrystallographyPipeline"
    calibration: CalibrationParameters | SimulatedCalibration | Literal["photon_counting"] | None = Field(
        default=None, description="calibration files, or the simulator's maps; leave out to work on ADC values; "
        "photon_counting: frames are photon counts with their masks (EIGER2, Jungfraujoch), searched as one asic "
        "(module gaps are masked pixels)"
    )
    geometry_file: Path | None = Field(default=None, description="CrystFEL .geom; the shipped JUNGFRAU 1M if absent")
    photon_energy_kev: PositiveFloat | None = Field(
        default=None, description="for d_min; default: the calibration's, else the geometry's photon_energy"
    )
    spot_finder: Literal["spotfinder", "peakfinder8"] = Field(
        default="spotfinder", description="spotfinder (significance over the footprint) or peakfinder8 (its classic keys)"
    )
    spotfinder: SpotFinderParameters = SpotFinderParameters()
    peakfinder8: PeakFinder8Parameters = PeakFinder8Parameters()
    min_num_peaks_for_hit: NonNegativeInt = Field(
        default=4, description="fewest spots of a hit: the spot finder lets ~0.01 chance spots a frame through, so 4 "
        "by chance are rare (4e-6 a frame even at 0.1), and a sparse hit of a dozen spots is still one "
        "(peakfinder8, with more chance peaks, wants 10)",
    )
    max_num_peaks_for_hit: NonNegativeInt = 2000
    ice_ring_sigma: float = Field(
        default=10.0, ge=0.0, le=1e6, allow_inf_nan=False,
        description="a frame has ice when its ice shells hold this many sigma of photons over their flanks",
    )
    hit_rate_window: PositiveInt = Field(default=200, description="frames in the rolling hit rate")
    hit_rate_history: PositiveInt = Field(default=2000, description="rolling hit-rate points kept for plots")
    radial_bin_px: PositiveInt = Field(default=4, description="ring width of the radial profile, pixels")
    send_hit_frames: bool = True
    non_hit_frame_interval: NonNegativeInt = Field(
        default=100, description="also send every n-th non-hit frame of a worker (0: never)"
    )


class CrystallographyPipeline:
    """Peaks and hits per frame on workers; rates, powder, profiles and peakogram on the collector."""

    Parameters = CrystallographyParameters

    def __init__(self, *, parameters: CrystallographyParameters) -> None:
        if parameters.min_num_peaks_for_hit > parameters.max_num_peaks_for_hit:
            raise ValueError("min_num_peaks_for_hit must not exceed max_num_peaks_for_hit")
        self.parameters = parameters
        self._geometry: DetectorGeometry | None = None

    def _load_geometry(self) -> DetectorGeometry:
        return DetectorGeometry.from_crystfel(self.parameters.geometry_file or default_geometry_path())

    # ---- worker ---------------------------------------------------------------------------------

    def initialize_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Read calibration and geometry, allocate buffers, compile the kernels before the first frame."""
        p = self.parameters
        self._geometry = self._load_geometry()
        n_modules = self._geometry.frame_shape[0] // 512
        self._calibration = self._make_calibration(n_modules)
        self._d_map = self._resolution_map()
        self._finder = self._make_finder(p)
        self._quality = None if self._d_map is None else FrameQuality(self._d_map, self._finder.bins)
        self._bin_pixels = np.bincount(self._finder.bins.ravel()).astype(np.float64)
        self._ring = np.arange(self._bin_pixels.size) // p.radial_bin_px
        self._ring_pixels = np.bincount(self._ring, weights=self._bin_pixels)
        self._non_hits = 0
        for frame in warm_up_frames(self._geometry.frame_shape):
            self.process_data(node_rank=node_rank, node_pool_size=node_pool_size,
                              data={"detector_data": frame, "event_id": -1, "timestamp": 0.0})
        self._non_hits = 0

    def _make_finder(self, parameters: CrystallographyParameters) -> SpotFinder | PeakFinder8:
        """The chosen spot finder, with the calibration's noise map (photons)."""
        finder, settings = (
            (SpotFinder, parameters.spotfinder) if parameters.spot_finder == "spotfinder"
            else (PeakFinder8, parameters.peakfinder8)
        )
        if parameters.calibration == "photon_counting":
            settings = settings.model_copy(update={"asic_shape": self._geometry.frame_shape})
        return finder(settings, radius=self._geometry.radius, noise=self._calibration.noise_photons)

    def _resolution_map(self) -> np.ndarray | None:
        """d-spacing (A) of each raw pixel, or None without a detector distance or photon energy.

        The photon energy is ``photon_energy_kev``, else the calibration's, else the geometry file's.
        """
        p, geometry = self.parameters, self._geometry
        calibration_energy = (
            p.calibration.photon_energy_kev if isinstance(p.calibration, CalibrationParameters)
            else SIMULATED_PHOTON_ENERGY_KEV if isinstance(p.calibration, SimulatedCalibration) else None
        )
        energy = p.photon_energy_kev or calibration_energy or geometry.photon_energy_kev
        if energy is None or geometry.clen_m is None:
            return None
        distance_px = geometry.clen_m / geometry.pixel_size_m
        return d_spacing(geometry.radius, distance_px=distance_px, wavelength_a=12.398419843320026 / energy).astype(
            np.float32
        )

    def _make_calibration(self, n_modules: int) -> JungfrauCalibration | CountingCalibration:
        calibration = self.parameters.calibration
        self._truth = None
        if calibration == "photon_counting":
            return CountingCalibration()
        if calibration is None:
            return JungfrauCalibration.adc_only(n_modules=n_modules)
        if isinstance(calibration, SimulatedCalibration):
            detector = calibration.detector()
            if calibration.compare_with_truth:
                self._truth = detector
            return JungfrauCalibration.from_maps(
                pedestal=detector.pedestal, gain=detector.gain, photon_energy_kev=detector.photon_energy_kev,
                bad_pixels=detector.bad_pixel_mask, noise=detector.noise,
            )
        return JungfrauCalibration(calibration)

    def process_data(self, *, node_rank: int, node_pool_size: int, data: dict[str, Any]) -> ProcessedEvent:
        """Calibrate, find peaks, call the hit; copy out what the collector needs (the frame buffer is reused)."""
        p = self.parameters
        raw = raw_frame(data)
        if raw is None:
            raise DataExtractionError("no raw frame: required_data needs detector_modules or detector_data")
        photons, valid = self._calibration.calibrate(raw)
        peaks = self._finder.find(photons, valid)
        is_hit = p.min_num_peaks_for_hit <= peaks.n_found <= p.max_num_peaks_for_hit
        n_valid = photons.size - self._calibration.n_invalid
        d_min = self._d_min(peaks) if is_hit else None
        arrays = {
            "peak_x": peaks.x,
            "peak_y": peaks.y,
            "peak_intensity": peaks.intensity,
            "peak_snr": peaks.snr,
            "radial_profile": self._rebin(peaks.radial_offset),
        }
        if p.send_hit_frames and self._frame_wanted(is_hit):
            arrays["frame"] = photons.copy()
            arrays["valid"] = valid.copy()
        return ProcessedEvent(
            values={
                "event_id": int(data["event_id"]),
                "timestamp": float(data["timestamp"]),
                "is_hit": bool(is_hit),
                "n_peaks": int(peaks.n_found),
                "n_saturated": int(self._calibration.n_saturated),
                "frame_mean": self._calibration.photon_sum / n_valid if n_valid else math.nan,
                "d_min": d_min,
                **self._frame_quality(peaks),
                **self._compare_with_truth(int(data["event_id"]), peaks, is_hit, arrays),
            },
            arrays=arrays,
        )

    def _frame_quality(self, peaks: PeakList) -> dict[str, Any]:
        """Ice, spots off the ice rings, background by shell (nothing without a detector distance)."""
        if self._quality is None:
            return {}
        quality = self._quality.measure(peaks.radial_offset, peaks.y, peaks.x)
        score = quality["ice_ring_score"]
        return {**quality, "has_ice": score is not None and score >= self.parameters.ice_ring_sigma}

    def _d_min(self, peaks: PeakList) -> float | None:
        if self._d_map is None or not len(peaks.x):
            return None
        rows = np.clip(np.rint(peaks.y).astype(np.intp), 0, self._d_map.shape[0] - 1)
        cols = np.clip(np.rint(peaks.x).astype(np.intp), 0, self._d_map.shape[1] - 1)
        return resolution_limit(self._d_map[rows, cols])

    def _compare_with_truth(
        self, event_id: int, peaks: PeakList, is_hit: bool, arrays: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        """With the simulator's truth: this frame's counts (into ``arrays``) and the true d_min."""
        if self._truth is None or event_id < 0:
            return {}
        truth = self._truth.truth(event_id)
        arrays["truth_counts"] = TruthComparison.frame_counts(peaks.y, peaks.x, is_hit, truth)
        true_d_min = TruthComparison.true_d_min(truth) if truth.is_hit else math.nan
        return {"true_d_min": true_d_min if math.isfinite(true_d_min) else None}

    def _frame_wanted(self, is_hit: bool) -> bool:
        if is_hit:
            return True
        self._non_hits += 1
        interval = self.parameters.non_hit_frame_interval
        return bool(interval) and (self._non_hits - 1) % interval == 0

    def _rebin(self, radial_offset: np.ndarray) -> np.ndarray:
        """Mean background in each ``radial_bin_px`` ring: its 1-pixel bins weighted by their pixels (float32).

        Rings no pixel falls in (inside the first module edge, say) read 0.
        """
        weighted = np.bincount(self._ring, weights=radial_offset * self._bin_pixels)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(weighted / self._ring_pixels).astype(np.float32)

    def receive_feedback(self, *, feedback: dict[str, Any]) -> None:
        """This pipeline sends no feedback."""

    def update_parameters(self, *, parameters: CrystallographyParameters, number: int) -> None:
        """New thresholds from the next frame on; the spot finder is rebuilt only if its own changed."""
        old = self.parameters
        changed = (parameters.spot_finder, parameters.spotfinder, parameters.peakfinder8) != (
            old.spot_finder, old.spotfinder, old.peakfinder8)
        if changed and self._geometry is not None:
            self._finder = self._make_finder(parameters)
        self.parameters = parameters

    def end_processing_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Nothing to release: buffers go with the process."""

    # ---- collector ------------------------------------------------------------------------------

    def initialize_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Zeroed aggregates, sized from the geometry."""
        p = self.parameters
        self._geometry = self._load_geometry()
        shape = self._geometry.frame_shape
        n_rings = int(np.rint(self._geometry.radius.max())) // p.radial_bin_px + 1
        self._events = 0
        self._hits = 0
        self._saturated_frames = 0
        self._peaks_in_hits = 0
        self._quality_totals = QualityTotals()
        self._recent = deque(maxlen=p.hit_rate_window)
        self._history: deque[tuple[int, float, float]] = deque(maxlen=p.hit_rate_history)
        self._powder = np.zeros(shape, dtype=np.uint32)
        self._radial_sum = {True: np.zeros(n_rings), False: np.zeros(n_rings)}
        self._radial_frames = {True: 0, False: 0}
        self._peakogram = np.zeros((n_rings, _PEAKOGRAM_LOG_BINS), dtype=np.uint32)
        self._latest_hit: ProcessedEvent | None = None
        self._d_map = self._resolution_map()
        self._radius_px = np.rint(self._geometry.radius).astype(np.intp)
        self._radius_pixels = np.bincount(self._radius_px.ravel())
        self._powder_radial = np.zeros(self._radius_pixels.size, dtype=np.int64)
        self._d_min_counts = np.zeros(_D_MIN_EDGES_A.size - 1, dtype=np.int64)
        azimuth = np.arctan2(self._geometry.y, self._geometry.x)
        sector = np.minimum(((azimuth + np.pi) / (2 * np.pi) * _POWDER_SECTORS).astype(np.intp), _POWDER_SECTORS - 1)
        self._polar_bin = self._radius_px * _POWDER_SECTORS + sector
        self._powder_polar = np.zeros((self._radius_pixels.size, _POWDER_SECTORS), dtype=np.uint32)
        self._polar_pixels = np.bincount(self._polar_bin.ravel(), minlength=self._powder_polar.size).reshape(
            self._powder_polar.shape).astype(np.uint32)
        self._ice_shells = (
            np.empty((0, 2)) if self._d_map is None else ice_ring_shells_px(self._d_map, self._geometry.radius)
        )
        self._shell_peaks = np.zeros(len(RESOLUTION_SHELLS_A) - 1, dtype=np.int64)
        self._truth_comparison = TruthComparison()

    def collect_data(
        self, *, node_rank: int, node_pool_size: int, processed_data: ProcessedEvent
    ) -> dict[str, Any] | None:
        """Fold one frame's result into the aggregates."""
        values, arrays = processed_data.values, processed_data.arrays
        is_hit = bool(values["is_hit"])
        self._events += 1
        self._hits += is_hit
        self._saturated_frames += values["n_saturated"] > 0
        self._recent.append(is_hit)
        self._quality_totals.add(values)
        self._history.append((values["event_id"], values["timestamp"], self.rolling_hit_rate))
        profile = arrays["radial_profile"]
        self._radial_sum[is_hit][: profile.size] += profile
        self._radial_frames[is_hit] += 1
        x, y = arrays["peak_x"], arrays["peak_y"]
        if x.size:
            rows = np.clip(np.rint(y).astype(np.intp), 0, self._powder.shape[0] - 1)
            cols = np.clip(np.rint(x).astype(np.intp), 0, self._powder.shape[1] - 1)
            np.add.at(self._powder, (rows, cols), 1)
            self._add_to_peakogram(rows, cols, arrays["peak_intensity"])
            np.add.at(self._powder_radial, self._radius_px[rows, cols], 1)
            np.add.at(self._powder_polar.ravel(), self._polar_bin[rows, cols], 1)
        if is_hit:
            self._peaks_in_hits += values["n_peaks"]
            if "frame" in arrays or self._latest_hit is None or "frame" not in self._latest_hit.arrays:
                self._latest_hit = processed_data  # the viewer's latest hit is one it can draw
            if x.size:
                self._add_resolution(values.get("d_min"), rows, cols)
        if "truth_counts" in arrays:
            self._truth_comparison.add_counts(
                arrays["truth_counts"], d_min=_number(values.get("d_min")), true_d_min=_number(values.get("true_d_min"))
            )
        return None

    def _add_resolution(self, d_min: float | None, rows: np.ndarray, cols: np.ndarray) -> None:
        """A hit's d_min into its histogram, its peaks into the resolution shells."""
        if d_min is not None:
            index = int(np.searchsorted(_D_MIN_EDGES_A, d_min, side="right")) - 1
            self._d_min_counts[min(index, self._d_min_counts.size - 1)] += 1
        if self._d_map is not None:
            d = self._d_map[rows, cols]
            shell = np.searchsorted(-np.asarray(RESOLUTION_SHELLS_A), -d, side="right") - 1
            shell = np.clip(shell, 0, self._shell_peaks.size - 1)
            self._shell_peaks += np.bincount(shell, minlength=self._shell_peaks.size)

    def _powder_density(self) -> np.ndarray:
        """Peaks per pixel in each 1-pixel ring around the beam (float64): the virtual powder's
        Debye-Scherrer rings as sharp maxima; 0 where no pixel lies."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(self._powder_radial / self._radius_pixels)

    def _d_min_quantile(self, q: float) -> float | None:
        """A quantile of d_min over the hits so far (A, to the histogram's 0.01 A), None before the first."""
        total = int(self._d_min_counts.sum())
        if not total:
            return None
        index = int(np.searchsorted(np.cumsum(self._d_min_counts), q * total))
        return round(float(_D_MIN_EDGES_A[index] + _D_MIN_EDGES_A[index + 1]) / 2, 3)

    def _shells(self) -> dict[str, int]:
        """Peaks of hits per resolution shell, keyed ``">10 A"``, ``"10-6 A"``, ... (low to high resolution)."""
        return dict(zip(resolution_shell_labels(), (int(n) for n in self._shell_peaks)))

    def _add_to_peakogram(self, rows: np.ndarray, cols: np.ndarray, intensity: np.ndarray) -> None:
        ring = np.rint(self._geometry.radius[rows, cols]).astype(np.intp) // self.parameters.radial_bin_px
        low, high = _PEAKOGRAM_LOG_RANGE
        level = np.log10(np.maximum(intensity, 10**low))
        column = np.clip(((level - low) / (high - low) * _PEAKOGRAM_LOG_BINS).astype(np.intp), 0, _PEAKOGRAM_LOG_BINS - 1)
        np.add.at(self._peakogram, (np.minimum(ring, self._peakogram.shape[0] - 1), column), 1)

    @property
    def hit_rate(self) -> float:
        """Hits over frames since the start (fraction)."""
        return self._hits / self._events if self._events else 0.0

    @property
    def rolling_hit_rate(self) -> float:
        """Hits over the last ``hit_rate_window`` frames (fraction)."""
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    def _mean_profile(self, hits: bool) -> np.ndarray:
        frames = self._radial_frames[hits]
        return (self._radial_sum[hits] / frames if frames else np.zeros_like(self._radial_sum[hits])).astype(np.float32)

    def status(self) -> dict[str, Scalar]:
        return {
            "hit_rate": round(self.rolling_hit_rate, 4),
            "hit_rate_total": round(self.hit_rate, 4),
            "hits": self._hits,
            "saturation_rate": round(self._saturated_frames / self._events, 4) if self._events else 0.0,
            "d_min_a": self._d_min_quantile(0.5),
            **self._quality_totals.status(),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self._events,
            "hits": self._hits,
            "hit_rate": self.hit_rate,
            "rolling_hit_rate": self.rolling_hit_rate,
            "hit_rate_window": self.parameters.hit_rate_window,
            "saturation_rate": self._saturated_frames / self._events if self._events else 0.0,
            "mean_peaks_per_hit": self._peaks_in_hits / self._hits if self._hits else 0.0,
            "powder_peaks": int(self._powder.sum()),
            "radial_bin_px": self.parameters.radial_bin_px,
            "radial_profile_hits": self._mean_profile(True).tolist(),
            "radial_profile_non_hits": self._mean_profile(False).tolist(),
            "d_min_median_a": self._d_min_quantile(0.5),
            "d_min_p10_a": self._d_min_quantile(0.1),
            "d_min_p90_a": self._d_min_quantile(0.9),
            "peaks_per_resolution_shell": self._shells(),
            **self._quality_totals.figures(),
            **(self._truth_comparison.figures() if self._truth_comparison.frames else {}),
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything a viewer draws, as arrays and scalars (safe to send or keep: nothing here changes them later).

        ``powder`` (uint32, raw-frame shape: peaks per pixel), ``radial_profile_hits``
        / ``radial_profile_non_hits`` (float32 per ``radial_bin_px`` ring),
        ``peakogram`` (uint32, ring x log10-intensity bin over ``peakogram_log_range``),
        ``hit_rate_history`` (float64 rows of event id, timestamp, rolling hit rate),
        ``latest_hit_event_id`` with ``latest_hit_peak_x``/``_y``/``_intensity``
        and ``latest_hit_d_min_a`` (absent until a hit arrived) and
        ``latest_hit_frame`` (when that hit came with its frame),
        ``resolution_shells_a`` (shell edges, A, low to high resolution) with
        ``peaks_per_resolution_shell`` (int64: peaks of hits per shell),
        ``powder_radial`` (float64: peaks per pixel of each 1-pixel ring from the beam), and the
        figures of :meth:`status` (``d_min_a``: median d_min of the hits so far), and
        ``ice_ring_shells_px`` ((n, 2) float64: inner and outer radius, pixels, of each ice-ring shell),
        ``powder_polar`` (uint32: peaks per 1-pixel ring and 10-degree sector around the beam, lab frame)
        with ``powder_polar_pixels`` (uint32: the pixels of each such bin).
        """
        snapshot: dict[str, Any] = {
            **self.status(),
            "frames": self._events,
            "powder": self._powder.copy(),
            "radial_bin_px": self.parameters.radial_bin_px,
            "radial_profile_hits": self._mean_profile(True),
            "radial_profile_non_hits": self._mean_profile(False),
            "peakogram": self._peakogram.copy(),
            "peakogram_log_range": _PEAKOGRAM_LOG_RANGE,
            "hit_rate_history": np.array(self._history, dtype=np.float64).reshape(-1, 3),
            "powder_radial": self._powder_density(),
            "resolution_shells_a": np.array(RESOLUTION_SHELLS_A),
            "peaks_per_resolution_shell": self._shell_peaks.copy(),
            "ice_ring_shells_px": self._ice_shells,
            "powder_polar": self._powder_polar.copy(),
            "powder_polar_pixels": self._polar_pixels,
        }
        if self._latest_hit is not None:
            # A collected result's arrays are its own (received fresh, never reused or changed),
            # so they are handed out as they are: no 4 MiB frame copy at every tick.
            arrays = self._latest_hit.arrays
            snapshot.update(
                latest_hit_event_id=self._latest_hit.values["event_id"],
                latest_hit_peak_x=arrays["peak_x"],
                latest_hit_peak_y=arrays["peak_y"],
                latest_hit_peak_intensity=arrays["peak_intensity"],
                latest_hit_d_min_a=self._latest_hit.values.get("d_min"),
            )
            if "frame" in arrays:
                snapshot["latest_hit_frame"] = arrays["frame"]
        return snapshot

    def end_processing_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Nothing to flush: outputs read :meth:`summary` and :meth:`snapshot`."""
