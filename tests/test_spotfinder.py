"""The spot finder: Poisson background per ring, significance over the footprint, integration, bounds."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from monitor.processing.peakfinder8 import PeakFinder8, PeakFinder8Parameters
from monitor.processing.spotfinder import SpotFinder, SpotFinderParameters, _profile_significance

SHAPE = (512, 512)
ASIC = (256, 512)


def _radius() -> np.ndarray:
    rows, cols = np.indices(SHAPE)
    return np.hypot(rows - 255.5, cols - 255.5).astype(np.float32)


def _photons(rng: np.random.Generator, background: float, spots: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Whole photons: Poisson background a pixel, and spots (y, x, photons, sigma) of Gaussian-placed photons."""
    frame = rng.poisson(background, SHAPE).astype(np.float32)
    for y, x, photons, sigma in spots:
        rows = np.rint(rng.normal(y, sigma, int(photons))).astype(int)
        cols = np.rint(rng.normal(x, sigma, int(photons))).astype(int)
        np.add.at(frame, (rows, cols), 1.0)
    return frame + rng.normal(0.0, 0.01, SHAPE).astype(np.float32)  # JUNGFRAU's noise: 1 % of a photon


def _finder(**overrides: object) -> SpotFinder:
    return SpotFinder(SpotFinderParameters(asic_shape=ASIC, **overrides), radius=_radius(),
                      noise=np.full(SHAPE, 0.01, np.float32))


def test_wide_weak_spots_on_heavy_background_are_found_whole() -> None:
    """Spots of sigma 1.5 px and 40 photons on 0.1 photons a pixel (footprint SNR ~6): peakfinder8 at its
    defaults loses them or their skirts; the spot finder gets them with their photons."""
    rng = np.random.default_rng(3)
    truth = [(60.0 + 90 * (k // 5), 60.0 + 90 * (k % 5), 40.0, 1.5) for k in range(20)]
    frame, valid = _photons(rng, 0.1, truth), np.ones(SHAPE, bool)
    spots = _finder().find(frame, valid)
    assert spots.n_found == len(truth)
    order = np.lexsort((spots.x, np.rint(spots.y / 30)))
    np.testing.assert_allclose(spots.y[order], [t[0] for t in truth], atol=1.0)
    np.testing.assert_allclose(spots.x[order], [t[1] for t in truth], atol=1.0)
    # photons within 3.5 px of a 1.5-px spot: 93 % of them, with the background's noise (sqrt(38 * 0.1) ~ 2)
    assert np.median(spots.intensity) == pytest.approx(0.93 * 40, abs=3)
    assert (spots.snr > 4).all()
    classic = PeakFinder8(PeakFinder8Parameters(asic_shape=ASIC), radius=_radius(), noise=np.full(SHAPE, 0.01, np.float32))
    peaks = classic.find(frame, valid)
    print(f"\nspot finder: {spots.n_found} of {len(truth)}, median intensity {np.median(spots.intensity):.1f}; "
          f"peakfinder8: {peaks.n_found}, median intensity {np.median(peaks.intensity) if peaks.n_found else 0:.1f}")
    assert peaks.n_found < len(truth) or np.median(peaks.intensity) < 0.8 * np.median(spots.intensity)


def test_the_gaussian_profiles_find_wide_weak_spots_the_boxes_miss() -> None:
    """8-photon spots of sigma 1.3 px on 0.03 photons a pixel (they stand ~6 sigma over their footprint's
    background): weighting each pixel by a spot's profile finds more of them than the boxes alone, with
    no more chance spots."""
    truth = np.array([(40.0 + 60 * (k // 8), 40.0 + 60 * (k % 8)) for k in range(56)])
    choices = {"profiles and boxes": (0.8, 1.4), "boxes alone": ()}
    found = dict.fromkeys(choices, 0)
    elsewhere = dict.fromkeys(choices, 0)
    for seed in range(3):
        frame = _photons(np.random.default_rng(seed), 0.03, [(y, x, 8.0, 1.3) for y, x in truth])
        for choice, sigmas in choices.items():
            spots = _finder(profile_sigmas=sigmas).find(frame, np.ones(SHAPE, bool))
            at_truth = (np.hypot(truth[:, 0, None] - spots.y, truth[:, 1, None] - spots.x) < 2).any(axis=0)
            found[choice] += int(at_truth.sum())
            elsewhere[choice] += int((~at_truth).sum())
    print(f"\nof {3 * len(truth)} spots found: {found}; elsewhere: {elsewhere}")
    assert found["profiles and boxes"] >= 1.15 * found["boxes alone"]
    assert elsewhere["profiles and boxes"] <= elsewhere["boxes alone"] + 1


def test_a_profile_narrower_than_a_pixel_is_the_one_pixel_poisson_test() -> None:
    """The profile fit's likelihood ratio, for a spot all in one pixel, is the Poisson significance of that
    pixel's photons over its background: the fit of the amplitude and the ratio are right."""
    frame = np.full((16, 16), 0.0, np.float32)
    frame[8, 8] = 6.0
    valid = np.ones(frame.shape, bool)
    bins = np.zeros(frame.shape, np.uint16)
    mean, noise_var = np.array([0.04]), np.array([0.01])
    z = _profile_significance(frame, valid, bins, mean, noise_var, 8, 8, 0.05, 0, 16, 0, 16)
    expected = 0.05  # the pixel's background plus noise variance
    assert z == pytest.approx(np.sqrt(2 * (6 * np.log(6 / expected) - (6 - expected))), rel=1e-6)
    assert _profile_significance(np.zeros_like(frame), valid, bins, mean, noise_var, 8, 8, 1.2, 0, 16, 0, 16) == 0.0


@pytest.mark.parametrize("background", [0.001, 0.01, 0.1])
def test_background_alone_makes_no_spot_and_is_measured_with_its_single_photons(background: float) -> None:
    rng = np.random.default_rng(int(background * 1000))
    finder = _finder()
    found = 0
    for _ in range(10):
        found += finder.find(_photons(rng, background, []), np.ones(SHAPE, bool)).n_found
    assert found == 0
    rings = finder.background[20:300]  # 1-pixel rings with 120-1,900 pixels each
    assert np.mean(rings) == pytest.approx(background, rel=0.1)


def test_five_photons_on_low_background_are_a_spot_and_two_are_not() -> None:
    rng = np.random.default_rng(5)
    frame = _photons(rng, 0.002, [(100.0, 100.0, 5, 0.5), (100.0, 300.0, 2, 0.5), (300.0, 200.0, 5, 0.5)])
    spots = _finder().find(frame, np.ones(SHAPE, bool))
    assert sorted(zip(np.rint(spots.y), np.rint(spots.x))) == [(100.0, 100.0), (300.0, 200.0)]


def test_boxes_never_cross_an_asic_border() -> None:
    frame = np.zeros(SHAPE, np.float32)
    frame[255, 100] = frame[256, 100] = frame[255, 101] = frame[256, 101] = 1.0  # 2 + 2 photons across rows 255/256
    assert _finder().find(frame, np.ones(SHAPE, bool)).n_found == 0
    frame[254, 100] = frame[254, 101] = 1.0  # now 4 photons on the first asic's side
    spots = _finder().find(frame, np.ones(SHAPE, bool))
    assert spots.n_found == 1 and spots.y[0] < 255.5


def test_masked_pixels_are_never_counted() -> None:
    frame = np.zeros(SHAPE, np.float32)
    frame[100:103, 100:103] = 5.0
    valid = np.ones(SHAPE, bool)
    valid[95:108, 95:108] = False
    assert _finder().find(frame, valid).n_found == 0


@pytest.mark.parametrize("changes", [
    {"min_significance": float("inf")}, {"min_photons": -1.0}, {"chance_spots_per_frame": 0.0},
    {"integration_radius": 100.0}, {"profile_sigmas": (0.1,)}, {"profile_sigmas": (1.0,) * 5}, {"min_res": 50.0, "max_res": 10.0}, {"max_num_peaks": 10**7},
])
def test_parameters_are_bounded(changes: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        SpotFinderParameters(**changes)
