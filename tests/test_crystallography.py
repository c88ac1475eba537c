"""The crystallography pipeline: the per-frame result contract and the collector's aggregates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitor.console import format_summary
from monitor.processing.crystallography import CrystallographyParameters, CrystallographyPipeline
from monitor.processing.protocol import ProcessedEvent
from monitor.processing.science import TruthComparison
from monitor.simulation import SimulatedJungfrau1M
from monitor.simulation.crystal import CrystalSettings
from sources.geometry import DetectorGeometry, default_geometry_path

N_FRAMES = 40


@pytest.fixture(scope="module")
def detector() -> SimulatedJungfrau1M:
    # Large crystals: their brightest spots saturate pixels.
    return SimulatedJungfrau1M(seed=21, hit_fraction=0.4, crystal=CrystalSettings(median_photons=1000.0))


@pytest.fixture(scope="module")
def parameters(detector: SimulatedJungfrau1M, tmp_path_factory: pytest.TempPathFactory) -> CrystallographyParameters:
    files = detector.write_calibration(tmp_path_factory.mktemp("calibration"))
    return CrystallographyParameters(calibration=files, hit_rate_window=10, non_hit_frame_interval=5)


@pytest.fixture(scope="module")
def results(detector: SimulatedJungfrau1M, parameters: CrystallographyParameters) -> list[ProcessedEvent]:
    worker = CrystallographyPipeline(parameters=parameters)
    worker.initialize_processing_node(node_rank=1, node_pool_size=2)
    out = []
    for number in range(N_FRAMES):
        raw, _ = detector.frame(number)
        out.append(
            worker.process_data(
                node_rank=1, node_pool_size=2, data={"detector_data": raw, "timestamp": 1.5 * number, "event_id": number}
            )
        )
    return out


@pytest.fixture(scope="module")
def collector(parameters: CrystallographyParameters, results: list[ProcessedEvent]) -> CrystallographyPipeline:
    pipeline = CrystallographyPipeline(parameters=parameters)
    pipeline.initialize_collecting_node(node_rank=0, node_pool_size=2)
    for result in results:
        assert pipeline.collect_data(node_rank=0, node_pool_size=2, processed_data=result) is None
    return pipeline


def test_values_follow_the_contract(results: list[ProcessedEvent], detector: SimulatedJungfrau1M) -> None:
    for number, result in enumerate(results):
        values = result.values
        assert values["event_id"] == number and values["timestamp"] == 1.5 * number
        assert type(values["is_hit"]) is bool and values["is_hit"] == detector.truth(number).is_hit
        assert type(values["n_peaks"]) is int and type(values["n_saturated"]) is int
        assert 0.0 < values["frame_mean"] < 1.0  # photons per pixel: background plus peaks
        assert values["is_hit"] == (10 <= values["n_peaks"] <= 2000)


def test_peak_arrays_are_float32_raw_pixel_coordinates_near_the_truth(
    results: list[ProcessedEvent], detector: SimulatedJungfrau1M
) -> None:
    hit = next(n for n, r in enumerate(results) if r.values["is_hit"])
    arrays = results[hit].arrays
    for name in ("peak_x", "peak_y", "peak_intensity", "peak_snr", "radial_profile"):
        assert arrays[name].dtype == np.float32
    assert arrays["peak_x"].size == results[hit].values["n_peaks"]
    truth = detector.truth(hit).peaks
    distance = np.hypot(
        arrays["peak_y"][:, None] - np.array([p.y for p in truth]), arrays["peak_x"][:, None] - np.array([p.x for p in truth])
    )
    assert np.mean(distance.min(axis=1) < 1.0) > 0.98


def test_bright_hits_report_saturated_pixels(results: list[ProcessedEvent]) -> None:
    assert any(r.values["n_saturated"] > 0 for r in results if r.values["is_hit"])


def test_frames_come_with_hits_and_every_fifth_non_hit(results: list[ProcessedEvent]) -> None:
    non_hits = [r for r in results if not r.values["is_hit"]]
    assert all("frame" in r.arrays for r in results if r.values["is_hit"])
    assert [i for i, r in enumerate(non_hits) if "frame" in r.arrays] == list(range(0, len(non_hits), 5))
    frame = next(r.arrays["frame"] for r in results if "frame" in r.arrays)
    assert frame.dtype == np.float32 and frame.shape == (1024, 1024)


def test_frames_do_not_alias_the_reused_buffer(results: list[ProcessedEvent]) -> None:
    frames = [r.arrays["frame"] for r in results if "frame" in r.arrays]
    assert not np.shares_memory(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[1])


def test_collector_hit_rates(collector: CrystallographyPipeline, results: list[ProcessedEvent]) -> None:
    hits = [r.values["is_hit"] for r in results]
    assert collector.hit_rate == pytest.approx(np.mean(hits))
    assert collector.rolling_hit_rate == pytest.approx(np.mean(hits[-10:]))
    status = collector.status()
    assert status["hits"] == sum(hits) and status["hit_rate"] == pytest.approx(np.mean(hits[-10:]), abs=1e-4)


def test_powder_and_peakogram_count_every_peak(collector: CrystallographyPipeline, results: list[ProcessedEvent]) -> None:
    snapshot = collector.snapshot()
    total = sum(r.arrays["peak_x"].size for r in results)
    assert snapshot["powder"].shape == (1024, 1024) and snapshot["powder"].sum() == total
    assert snapshot["peakogram"].sum() == total
    peak = results[-1].arrays if results[-1].arrays["peak_x"].size else next(r.arrays for r in results if r.arrays["peak_x"].size)
    assert snapshot["powder"][round(float(peak["peak_y"][0])), round(float(peak["peak_x"][0]))] >= 1


def test_radial_profiles_separate_hits_and_non_hits(collector: CrystallographyPipeline) -> None:
    snapshot = collector.snapshot()
    hits, non_hits = snapshot["radial_profile_hits"], snapshot["radial_profile_non_hits"]
    assert hits.dtype == np.float32 and hits.shape == non_hits.shape
    # The simulated water ring (3.2 A: 520 pixels from the beam, 0.01 photons a pixel) stands out of the flat
    # background (0.005) in both, at the simulator's levels: the background is the photons' mean, single ones too.
    ring, flat = 520 // snapshot["radial_bin_px"], 200 // snapshot["radial_bin_px"]
    assert non_hits[flat] == pytest.approx(0.005, rel=0.2) and non_hits[ring] == pytest.approx(0.015, rel=0.2)
    assert hits[ring] == pytest.approx(non_hits[ring], abs=0.003)


def test_snapshot_holds_latest_hit_and_history(collector: CrystallographyPipeline, results: list[ProcessedEvent]) -> None:
    snapshot = collector.snapshot()
    last_hit = max(n for n, r in enumerate(results) if r.values["is_hit"])
    assert snapshot["latest_hit_event_id"] == last_hit
    np.testing.assert_array_equal(snapshot["latest_hit_peak_x"], results[last_hit].arrays["peak_x"])
    np.testing.assert_array_equal(snapshot["latest_hit_frame"], results[last_hit].arrays["frame"])
    history = snapshot["hit_rate_history"]
    assert history.shape == (N_FRAMES, 3) and history[-1, 2] == pytest.approx(collector.rolling_hit_rate)
    # ice's strongest ring (3.897 A) at 12.4 keV and 120 mm: 2 theta 14.7 degrees, 421 pixels from the beam
    inner, outer = snapshot["ice_ring_shells_px"][0]
    assert inner < 421 < outer and outer - inner < 20
    assert snapshot["powder_polar"].sum() == snapshot["powder"].sum()  # every peak in its ring and sector
    assert snapshot["powder_polar_pixels"].sum() == 1024 * 1024


def test_summary_is_json_safe(collector: CrystallographyPipeline) -> None:
    summary = json.loads(json.dumps(collector.summary()))
    assert summary["frames"] == N_FRAMES and 0 < summary["hit_rate"] < 1
    assert summary["mean_peaks_per_hit"] >= 10 and 0 < summary["saturation_rate"] <= summary["hit_rate"]
    assert len(summary["radial_profile_hits"]) == len(summary["radial_profile_non_hits"]) > 100


def test_parameters_refuse_unknown_keys_and_inverted_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="extra"):
        CrystallographyParameters(min_peaks=3)
    with pytest.raises(ValueError, match="min_num_peaks_for_hit"):
        CrystallographyPipeline(parameters=CrystallographyParameters(min_num_peaks_for_hit=5, max_num_peaks_for_hit=4))


def test_simulator_seed_calibration_equals_the_written_files(detector: SimulatedJungfrau1M, results: list[ProcessedEvent]) -> None:
    worker = CrystallographyPipeline(parameters=CrystallographyParameters(calibration={"simulator_seed": 21}))
    worker.initialize_processing_node(node_rank=1, node_pool_size=2)
    raw, _ = detector.frame(3)
    result = worker.process_data(node_rank=1, node_pool_size=2, data={"detector_data": raw, "timestamp": 0.0, "event_id": 3})
    np.testing.assert_array_equal(result.arrays["peak_x"], results[3].arrays["peak_x"])
    assert result.values["frame_mean"] == pytest.approx(results[3].values["frame_mean"], rel=1e-6)


def test_without_calibration_the_pipeline_works_on_adc_values(detector: SimulatedJungfrau1M) -> None:
    worker = CrystallographyPipeline(parameters=CrystallographyParameters(send_hit_frames=False))
    worker.initialize_processing_node(node_rank=1, node_pool_size=2)
    raw, _ = detector.frame(0)
    result = worker.process_data(node_rank=1, node_pool_size=2, data={"detector_data": raw, "timestamp": 0.0, "event_id": 0})
    # No bad-pixel mask without calibration: every pixel that arrived counts, at its ADC value (G0 pedestals).
    assert result.values["frame_mean"] == pytest.approx((raw & 0x3FFF).mean(), rel=1e-6)
    assert 1000 < result.values["frame_mean"] < 3000


def test_hits_carry_their_resolution_near_the_truth(results: list[ProcessedEvent], detector: SimulatedJungfrau1M) -> None:
    hits = [n for n, r in enumerate(results) if r.values["is_hit"]]
    assert all(r.values["d_min"] is None for r in results if not r.values["is_hit"])
    for n in hits:
        true_d_min = TruthComparison.true_d_min(detector.truth(n))
        assert 2.3 < true_d_min < 4.0
        assert results[n].values["d_min"] == pytest.approx(true_d_min, rel=0.05)


def test_summary_has_d_min_and_peaks_per_resolution_shell(
    collector: CrystallographyPipeline, results: list[ProcessedEvent]
) -> None:
    summary = collector.summary()
    d_min = sorted(r.values["d_min"] for r in results if r.values["is_hit"])
    assert summary["d_min_median_a"] == pytest.approx(float(np.median(d_min)), abs=0.05)
    assert summary["d_min_p10_a"] <= summary["d_min_median_a"] <= summary["d_min_p90_a"]
    assert collector.status()["d_min_a"] == summary["d_min_median_a"]
    shells = summary["peaks_per_resolution_shell"]
    assert list(shells)[0] == ">10 A" and list(shells)[-1] == "<2.5 A"
    assert sum(shells.values()) == sum(r.arrays["peak_x"].size for r in results if r.values["is_hit"])
    np.testing.assert_array_equal(collector.snapshot()["peaks_per_resolution_shell"], list(shells.values()))
    assert "truth" not in summary  # calibrated from files: no simulator truth to compare with


def test_with_the_simulator_as_source_the_summary_compares_with_its_truth() -> None:
    detector = SimulatedJungfrau1M(seed=4, hit_fraction=0.5)
    parameters = CrystallographyParameters(calibration={"simulator_seed": 4, "hit_fraction": 0.5}, send_hit_frames=False)
    worker, collector = CrystallographyPipeline(parameters=parameters), CrystallographyPipeline(parameters=parameters)
    worker.initialize_processing_node(node_rank=1, node_pool_size=2)
    collector.initialize_collecting_node(node_rank=0, node_pool_size=2)
    direct = TruthComparison()
    for n in range(1, 13):
        raw, truth = detector.frame(n)
        result = worker.process_data(node_rank=1, node_pool_size=2, data={"detector_data": raw, "timestamp": 0.0, "event_id": n})
        collector.collect_data(node_rank=0, node_pool_size=2, processed_data=result)
        counts = TruthComparison.frame_counts(result.arrays["peak_y"], result.arrays["peak_x"], result.values["is_hit"], truth)
        np.testing.assert_array_equal(result.arrays["truth_counts"], counts)
        direct.add_counts(counts, d_min=result.values["d_min"] or np.nan,
                          true_d_min=TruthComparison.true_d_min(truth) if truth.is_hit else np.nan)
    summary = json.loads(json.dumps(collector.summary()))
    figures = json.loads(json.dumps(direct.figures()))
    assert {key: summary[key] for key in figures} == figures
    truth = summary["truth"]
    assert truth["frames"] == 12 and truth["hit_rate_error_pp"] == 0.0 and truth["precision"] > 0.95
    assert summary["truth_recall_by_photons"][">50"] == 1.0 and summary["truth_spots_by_photons"]["<5"] > 100
    table = format_summary(summary).splitlines()  # each group reads as one line of the terminal's table
    assert any(line.startswith("truth ") and "recall_5_photons_and_more: " in line for line in table)
    assert any(line.startswith("truth_recall_by_photons ") and "5-10: " in line for line in table)
    with pytest.raises(ValueError, match="weak"):
        CrystallographyParameters(calibration={"simulator_seed": 4, "crystal": "huge"})


def test_powder_by_radius_counts_every_peak_per_pixel_of_its_ring(
    collector: CrystallographyPipeline, results: list[ProcessedEvent]
) -> None:
    density = collector.snapshot()["powder_radial"]
    radius = np.rint(DetectorGeometry.from_crystfel(default_geometry_path()).radius).astype(int)
    pixels = np.bincount(radius.ravel())
    peaks = np.concatenate([radius[np.rint(r.arrays["peak_y"]).astype(int), np.rint(r.arrays["peak_x"]).astype(int)]
                            for r in results])
    np.testing.assert_allclose(density * pixels, np.bincount(peaks, minlength=pixels.size))
