"""peakfinder8: radial statistics, region growing, local background, centre of mass, limits."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.processing.peakfinder8 import PeakFinder8, PeakFinder8Parameters

SHAPE = (256, 256)


def _radius() -> np.ndarray:
    rows, cols = np.indices(SHAPE)
    return np.hypot(rows - 127.5, cols - 127.5).astype(np.float32)


def _frame(rng: np.random.Generator, peaks: list[tuple[float, float, float]], sigma: float = 1.0) -> np.ndarray:
    """Gaussian background (mean 10, sd 1) plus Gaussian spots (y, x, integrated intensity)."""
    frame = rng.normal(10.0, 1.0, SHAPE)
    rows, cols = np.indices(SHAPE)
    for y, x, intensity in peaks:
        frame += intensity / (2 * np.pi * sigma**2) * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * sigma**2))
    return frame.astype(np.float32)


def _finder(**overrides: object) -> PeakFinder8:
    parameters = PeakFinder8Parameters(
        adc_threshold=0.0, asic_shape=(128, 256), statistics_row_step=1, **overrides
    )
    return PeakFinder8(parameters, radius=_radius())


def test_finds_spots_at_their_centre_of_mass_with_their_intensity() -> None:
    truth = [(40.3, 60.7, 300.0), (90.0, 200.2, 500.0), (200.6, 30.4, 400.0), (170.2, 150.8, 250.0)]
    peaks = _finder().find(_frame(np.random.default_rng(1), truth), np.ones(SHAPE, bool))
    assert peaks.n_found == len(truth) == len(peaks.x)
    order = np.argsort(peaks.y)
    expected = np.array(sorted(truth))
    np.testing.assert_allclose(peaks.y[order], expected[:, 0], atol=0.25)
    np.testing.assert_allclose(peaks.x[order], expected[:, 1], atol=0.25)
    # Only pixels above threshold are integrated: most, not all, of each spot.
    assert ((peaks.intensity[order] > 0.6 * expected[:, 2]) & (peaks.intensity[order] < 1.05 * expected[:, 2])).all()
    assert (peaks.snr > 50).all() and (peaks.npix >= 3).all()


def test_background_alone_gives_no_peaks_and_its_radial_statistics() -> None:
    frame = _frame(np.random.default_rng(2), [])
    peaks = _finder().find(frame, np.ones(SHAPE, bool))
    assert peaks.n_found == 0
    populated = slice(20, 120)
    np.testing.assert_allclose(peaks.radial_offset[populated], 10.0, atol=0.25)
    np.testing.assert_allclose(peaks.radial_sigma[populated], 1.0, atol=0.2)


def test_radial_statistics_are_the_iterated_sigma_clipping_of_every_pixel() -> None:
    frame = _frame(np.random.default_rng(3), [(60.0, 60.0, 2000.0), (100.0, 180.0, 800.0)])
    mask = np.random.default_rng(4).random(SHAPE) > 0.05
    finder = _finder(minimum_snr=3.0, iterations=4)
    peaks = finder.find(frame, mask)
    bins = finder.bins[mask]
    values = frame[mask].astype(np.float64)
    n_bins = finder.bins.max() + 1
    lower = np.full(n_bins, -np.inf)
    upper = np.full(n_bins, np.inf)
    for _ in range(4):
        inside = (values > lower[bins]) & (values < upper[bins])
        count = np.bincount(bins[inside], minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(bins[inside], values[inside], n_bins) / count
            sd = np.sqrt(np.bincount(bins[inside], values[inside] ** 2, n_bins) / count - mean**2)
        lower, upper = mean - 3 * sd, mean + 3 * sd
    populated = count > 0
    np.testing.assert_allclose(peaks.radial_offset[populated], mean[populated], rtol=1e-5)
    np.testing.assert_allclose(peaks.radial_sigma[populated], sd[populated], rtol=1e-4)


def test_subsampled_clipping_reaches_the_same_peaks() -> None:
    frame = _frame(np.random.default_rng(5), [(40.0, 40.0, 300.0), (200.0, 100.0, 300.0)])
    full = _finder().find(frame, np.ones(SHAPE, bool))
    sampled = PeakFinder8(
        PeakFinder8Parameters(adc_threshold=0.0, asic_shape=(128, 256), statistics_row_step=8), radius=_radius()
    ).find(frame, np.ones(SHAPE, bool))
    np.testing.assert_allclose(sampled.y, full.y, atol=0.15)
    # Bins holding a spot converge less tightly from the subsample: within a third of the noise sigma.
    np.testing.assert_allclose(sampled.radial_offset[20:120], full.radial_offset[20:120], atol=0.3)
    assert np.median(np.abs(sampled.radial_offset[20:120] - full.radial_offset[20:120])) < 0.01


def test_masked_pixels_never_make_a_peak() -> None:
    frame = _frame(np.random.default_rng(6), [(50.0, 50.0, 400.0), (50.0, 150.0, 400.0)])
    mask = np.ones(SHAPE, bool)
    mask[45:56, 145:156] = False
    frame[~mask] = 0.0
    peaks = _finder().find(frame, mask)
    assert peaks.n_found == 1 and abs(peaks.x[0] - 50.0) < 0.3


def test_pixel_count_limits_drop_single_hot_pixels_and_large_blobs() -> None:
    frame = _frame(np.random.default_rng(7), [(60.0, 60.0, 400.0)])
    frame[30, 200] = 200.0
    frame[180:189, 180:189] += 50.0
    peaks = _finder(max_pixel_count=50).find(frame, np.ones(SHAPE, bool))
    assert peaks.n_found == 1 and abs(peaks.y[0] - 60.0) < 0.3


def test_regions_do_not_grow_across_asic_borders() -> None:
    # A spot centred on the border between the two 128-row asics is split in two halves.
    frame = _frame(np.random.default_rng(8), [(127.5, 60.0, 2000.0)], sigma=1.5)
    peaks = _finder().find(frame, np.ones(SHAPE, bool))
    assert peaks.n_found == 2
    assert peaks.y.min() <= 127.0 and peaks.y.max() >= 128.0


def test_resolution_limits_exclude_inner_and_outer_peaks() -> None:
    truth = [(120.0, 137.0, 400.0), (120.0, 197.0, 400.0), (20.0, 20.0, 400.0)]
    peaks = _finder(min_res=30, max_res=100).find(_frame(np.random.default_rng(9), truth), np.ones(SHAPE, bool))
    assert peaks.n_found == 1 and abs(peaks.x[0] - 197.0) < 0.3


def test_more_peaks_than_kept_are_counted() -> None:
    truth = [(20.0 + 25 * i, 20.0 + 25 * j, 400.0) for i in range(9) for j in range(9)]
    # min_res: near the beam a radial bin has so few pixels that two spots spoil its statistics.
    finder = _finder(max_num_peaks=10, min_res=30)
    peaks = finder.find(_frame(np.random.default_rng(10), truth), np.ones(SHAPE, bool))
    expected = sum(np.hypot(y - 127.5, x - 127.5) >= 30 for y, x, _ in truth)
    assert peaks.n_found == expected > 70 and len(peaks.x) == 10


def test_a_seed_list_overflow_falls_back_to_a_full_scan() -> None:
    frame = _frame(np.random.default_rng(11), [(60.0, 60.0, 400.0)])
    finder = _finder()
    finder._radial.seeds = finder._radial.seeds[:3]  # fewer slots than pixels above the ADC threshold (0 here)
    peaks = finder.find(frame, np.ones(SHAPE, bool))
    assert peaks.n_found == 1 and abs(peaks.y[0] - 60.0) < 0.3


def test_bad_input_is_refused() -> None:
    finder = _finder()
    with pytest.raises(TypeError, match="float32"):
        finder.find(np.zeros(SHAPE), np.ones(SHAPE, bool))
    with pytest.raises(ValueError, match="shape"):
        finder.find(np.zeros((10, 10), np.float32), np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="tile"):
        PeakFinder8(PeakFinder8Parameters(asic_shape=(100, 256)), radius=_radius())


def _photon_frame(rng: np.random.Generator, noise: float) -> np.ndarray:
    """Photon-counting data: no background photons, electronic noise of ``noise`` photons."""
    return rng.normal(0.0, noise, SHAPE).astype(np.float32)


def test_weak_spots_pass_a_floor_in_units_of_the_noise_and_not_the_old_absolute_one() -> None:
    frame = _photon_frame(np.random.default_rng(12), 0.01)
    frame[60:62, 60:62] += np.array([[3.0, 1.0], [1.0, 1.0]], np.float32)  # a 6-photon spot
    noise = np.full(SHAPE, 0.01, np.float32)
    parameters = {"asic_shape": (128, 256), "statistics_row_step": 1}
    found = PeakFinder8(PeakFinder8Parameters(**parameters), radius=_radius(), noise=noise).find(frame, np.ones(SHAPE, bool))
    assert found.n_found == 1 and abs(found.y[0] - 60.33) < 0.1 and found.intensity[0] == pytest.approx(6.0, abs=0.1)
    old = PeakFinder8(PeakFinder8Parameters(adc_threshold=2.5, min_pixel_count=3, **parameters), radius=_radius())
    assert old.find(frame, np.ones(SHAPE, bool)).n_found == 0


def test_lone_background_photons_make_no_peak() -> None:
    rng = np.random.default_rng(13)
    frame = _photon_frame(rng, 0.01)
    rows, cols = rng.integers(0, 256, (2, 300))
    frame[rows, cols] += 1.0  # lone photons, some of them neighbours
    frame[200, 40:44] += 1.0  # four in a row: 4 photons, under min_peak_intensity
    finder = PeakFinder8(PeakFinder8Parameters(asic_shape=(128, 256)), radius=_radius(), noise=np.full(SHAPE, 0.01, np.float32))
    assert finder.find(frame, np.ones(SHAPE, bool)).n_found == 0


def test_threshold_floor_comes_from_noise_fallback_or_absolute_threshold() -> None:
    noise = np.random.default_rng(14).uniform(0.01, 0.02, SHAPE).astype(np.float32)
    defaults = PeakFinder8Parameters(asic_shape=(128, 256))
    np.testing.assert_allclose(PeakFinder8(defaults, radius=_radius(), noise=noise).floor, 5.0 * noise, rtol=1e-6)
    assert (PeakFinder8(defaults, radius=_radius()).floor == 0.5).all()
    absolute = defaults.model_copy(update={"adc_threshold": 2.5})
    assert (PeakFinder8(absolute, radius=_radius(), noise=noise).floor == 2.5).all()
    with pytest.raises(ValueError, match="noise map"):
        PeakFinder8(defaults, radius=_radius(), noise=np.ones((10, 10), np.float32))
