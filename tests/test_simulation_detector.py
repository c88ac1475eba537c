"""The simulated JUNGFRAU 1M: deterministic frames whose content matches their truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.simulation import FrameTruth, SimulatedJungfrau1M
from monitor.simulation.crystal import CrystalSettings, reciprocal_basis
from monitor.simulation.detector import GAIN_BITS, LOST_PIXEL


@pytest.fixture(scope="module")
def detector() -> SimulatedJungfrau1M:
    return SimulatedJungfrau1M(seed=3, hit_fraction=0.3)


def _first_hit(detector: SimulatedJungfrau1M) -> int:
    return next(n for n in range(100) if detector.truth(n).is_hit)


def test_frame_is_raw_uint16_module_major(detector: SimulatedJungfrau1M) -> None:
    raw, truth = detector.frame(5)
    assert raw.dtype == np.uint16 and raw.shape == (1024, 1024) and raw.flags.c_contiguous
    assert isinstance(truth, FrameTruth) and truth.frame_number == 5


def test_same_seed_and_frame_number_give_same_pixels_and_truth(detector: SimulatedJungfrau1M) -> None:
    other = SimulatedJungfrau1M(seed=3, hit_fraction=0.3)
    n = _first_hit(detector)
    raw_a, truth_a = detector.frame(n)
    raw_b, truth_b = other.frame(n)
    np.testing.assert_array_equal(raw_a, raw_b)
    assert truth_a == truth_b == detector.truth(n)
    assert not np.array_equal(raw_a, SimulatedJungfrau1M(seed=4).frame(n)[0])


def test_frame_written_into_given_buffer(detector: SimulatedJungfrau1M) -> None:
    out = np.zeros((1024, 1024), dtype=np.uint16)
    raw, _ = detector.frame(7, out=out)
    assert raw is out
    np.testing.assert_array_equal(out, detector.frame(7)[0])


def test_hits_hold_a_crystal_and_misses_nothing(detector: SimulatedJungfrau1M) -> None:
    truths = [detector.truth(n) for n in range(600)]
    hits = [t for t in truths if t.is_hit]
    assert abs(len(hits) / len(truths) - 0.3) < 0.05
    assert all(100 <= len(t.peaks) <= 400 for t in hits)
    assert all(not t.peaks and not t.orientation for t in truths if not t.is_hit)
    rotation = np.array(hits[0].orientation).reshape(3, 3)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


@pytest.mark.parametrize("cell", [None, (50.0, 60.0, 70.0, 90.0, 100.0, 90.0)], ids=["lysozyme", "monoclinic"])
def test_spots_are_reciprocal_lattice_points_on_the_ewald_sphere(detector: SimulatedJungfrau1M, cell) -> None:
    """From a spot's pixel back to its Miller indices: integers, with the truth's resolution."""
    if cell is not None:
        detector = SimulatedJungfrau1M(seed=9, hit_fraction=1.0, pool_size=0,
                                       crystal=CrystalSettings(unit_cell=cell, space_group="P1"))
    truth = detector.truth(_first_hit(detector))
    lab = np.array([_lab(detector, p.y, p.x) for p in truth.peaks])
    distance_px = detector.distance_m / 75e-6
    direction = np.stack([lab[:, 1], lab[:, 0], np.full(len(lab), distance_px)], axis=1)
    k = 1 / detector.wavelength_a
    q = k * direction / np.linalg.norm(direction, axis=1, keepdims=True) - [0.0, 0.0, k]
    np.testing.assert_allclose(1 / np.linalg.norm(q, axis=1), [p.resolution for p in truth.peaks], rtol=2e-3)
    rotation = np.array(truth.orientation).reshape(3, 3)
    basis = reciprocal_basis(detector.crystal_settings.unit_cell)
    hkl = np.linalg.solve(basis, (q @ rotation).T).T  # q = R B hkl
    assert np.abs(hkl - np.rint(hkl)).max() < 0.1
    if cell is not None:  # the monoclinic cell's planes: d(100) = a sin(beta), d(010) = b, d(001) = c sin(beta)
        sin_beta = np.sin(np.radians(100.0))
        np.testing.assert_allclose(1 / np.linalg.norm(basis, axis=0), [50 * sin_beta, 60.0, 70 * sin_beta])
    else:
        h, k_, l_ = np.rint(hkl).astype(int).T
        assert not ((k_ == 0) & (l_ == 0) & (h % 2 != 0)).any()  # P4_3 2_1 2: h00 only with even h


@pytest.mark.parametrize("setting, median", [("weak", 3.0), ("medium", 8.0), ("strong", 50.0)])
def test_named_settings_have_their_median_spot(setting: str, median: float) -> None:
    detector = SimulatedJungfrau1M(seed=5, crystal=setting, hit_fraction=1.0, pool_size=0)
    expected = np.array([p.expected_photons for n in range(40) for p in detector.truth(n).peaks])
    assert np.median(expected) == pytest.approx(median, rel=0.2)
    assert expected.min() < 0.5 and expected.max() > 30 * median  # fractions of a photon to bright spots


def test_intensities_fall_with_resolution(detector: SimulatedJungfrau1M) -> None:
    spots = [p for n in range(100) for p in detector.truth(n).peaks]
    d = np.array([p.resolution for p in spots])
    photons = np.array([p.expected_photons for p in spots])
    assert photons[d > 8].mean() > 2 * photons[d < 3].mean()


def test_truth_photons_are_the_spots_own_poisson_draws(detector: SimulatedJungfrau1M) -> None:
    truths = [detector.truth(n) for n in range(200)]
    spots = [p for t in truths for p in t.peaks]
    photons = np.array([p.photons for p in spots])
    expected = np.array([p.expected_photons for p in spots])
    inside = np.array([8 <= p.y % 512 <= 503 and 8 <= p.x <= 1015 for p in spots])  # no photon lost off the module
    np.testing.assert_allclose(photons[inside], np.rint(photons[inside]), atol=1e-9)  # whole photons, shared or not
    assert photons.sum() == pytest.approx(expected.sum(), rel=0.01)
    assert 0.05 < np.mean(photons == 0) and np.mean(np.abs(photons - expected)) > 0.5  # draws, not the means


def test_spots_raise_pixels_above_background_where_truth_says(detector: SimulatedJungfrau1M) -> None:
    n = _first_hit(detector)
    raw, truth = detector.frame(n)
    photons = _reference_photons(detector, raw)
    positions = np.array([(p.y, p.x) for p in truth.peaks])
    checked = 0
    for peak in truth.peaks:
        others = np.hypot(*(positions - (peak.y, peak.x)).T)
        if not (peak.whole and 5 < peak.photons < 500 and np.sort(others)[1] > 12):
            continue
        r, c = round(peak.y), round(peak.x)
        box = photons[r - 4 : r + 5, c - 4 : c + 5]
        background = 81 * float(detector.background[r, c])
        assert box.sum() == pytest.approx(peak.photons + background, abs=3 + 4 * background**0.5)
        checked += 1
    assert checked >= 10


def _reference_photons(detector: SimulatedJungfrau1M, raw: np.ndarray) -> np.ndarray:
    """Slow float64 calibration straight from the truth maps (gain bits 00, 01, 11 -> stage 0, 1, 2)."""
    stage = np.array([0, 1, 0, 2])[raw >> 14][None]
    pedestal = np.take_along_axis(detector.pedestal, stage, axis=0)[0]
    gain = np.take_along_axis(detector.gain, stage, axis=0)[0]
    return ((raw & 0x3FFF) - pedestal) / (gain * detector.photon_energy_kev)


def test_bright_spots_switch_gain_to_g1_and_g2() -> None:
    bright = SimulatedJungfrau1M(seed=3, hit_fraction=1.0, crystal=CrystalSettings(median_photons=300.0), pool_size=1)
    raw, truth = bright.frame(0)
    spot = max(truth.peaks, key=lambda p: p.photons)
    assert spot.photons > 5000
    r, c = round(spot.y), round(spot.x)
    stages = set(np.unique(raw[r - 3 : r + 4, c - 3 : c + 4] >> 14).tolist())
    assert stages == {0, 1, 3}, stages


def test_background_pixels_stay_in_g0_without_invalid_gain(detector: SimulatedJungfrau1M) -> None:
    raw, truth = detector.frame(next(n for n in range(100) if not detector.truth(n).peaks))
    gain_bits = raw >> 14
    assert (gain_bits == 2).sum() == 0
    assert (gain_bits == 0).mean() > 0.999


def test_dead_pixels_read_zero(detector: SimulatedJungfrau1M) -> None:
    raw, _ = detector.frame(11)
    dead = detector.bad_pixels["dead"]
    assert dead.sum() == 104
    assert (raw[dead] == 0).all()


def test_lost_packets_are_whole_four_row_blocks_of_ffff() -> None:
    lossy = SimulatedJungfrau1M(seed=1, lost_packet_rate=0.05, pool_size=1)
    raw, truth = lossy.frame(2)
    assert truth.lost_packets
    lost_rows = np.flatnonzero((raw == LOST_PIXEL).all(axis=1))
    expected = np.concatenate([np.arange(4 * b, 4 * b + 4) for b in truth.lost_packets])
    np.testing.assert_array_equal(lost_rows, expected)
    assert (raw == LOST_PIXEL).sum() == 4096 * len(truth.lost_packets)


def test_no_lost_packets_by_default(detector: SimulatedJungfrau1M) -> None:
    assert all(not detector.truth(n).lost_packets for n in range(200))


def test_dark_frame_in_forced_gain_reads_pedestal(detector: SimulatedJungfrau1M) -> None:
    for stage in range(3):
        raw = detector.dark_frame(0, gain_stage=stage)
        ok = ~(detector.bad_pixels["dead"] | detector.bad_pixels["stuck_gain"] | detector.bad_pixels["noisy"])
        assert ((raw[ok] & 0xC000) == GAIN_BITS[stage]).all()
        residual = (raw & 0x3FFF).astype(np.float64)[ok] - detector.pedestal[stage][ok]
        assert abs(residual.mean()) < 0.1 and residual.std() < 6
        assert (raw[detector.bad_pixels["stuck_gain"]] >> 14 == 0).all()


def test_truth_is_json_safe(detector: SimulatedJungfrau1M) -> None:
    truth = detector.truth(_first_hit(detector))
    decoded = json.loads(json.dumps(truth.to_json()))
    assert decoded["is_hit"] is True and len(decoded["peaks"]) == len(truth.peaks)
    assert decoded["peaks"][0]["photons"] == truth.peaks[0].photons
    assert decoded["peaks"][0]["resolution"] == truth.peaks[0].resolution and len(decoded["orientation"]) == 9


def test_written_gain_files_hold_six_float64_module_arrays(detector: SimulatedJungfrau1M, tmp_path) -> None:
    files = detector.write_calibration(tmp_path)
    assert len(files["gain_files"]) == 2 and files["photon_energy_kev"] == 12.4
    gains = np.fromfile(files["gain_files"][1], dtype="<f8").reshape(6, 512, 1024)
    np.testing.assert_array_equal(gains[:3], detector.gain[:, 512:])
    assert 30 < gains[0].mean() < 50 and -2 < gains[1].mean() < -1 and -0.2 < gains[2].mean() < 0
    np.testing.assert_array_equal(np.load(files["pedestal_files"][0]), detector.pedestal[:, :512])
    np.testing.assert_array_equal(np.load(files["noise_files"][1]), detector.noise[:, 512:])


def test_spots_of_many_hits_fall_on_debye_scherrer_rings() -> None:
    detector = SimulatedJungfrau1M(seed=6, hit_fraction=1.0, pool_size=0)
    radius = np.array([np.hypot(*_lab(detector, p.y, p.x)) for n in range(150) for p in detector.truth(n).peaks])
    spots = np.bincount(np.rint(radius).astype(int))[:90]
    # Lysozyme's (110), (200), (111) and (002) rings at 12.4 keV, 120 mm, 75 um pixels; between them, nothing.
    for ring in (28.6, 40.5, 51.0, 84.5):
        assert spots[round(ring) - 1 : round(ring) + 2].sum() >= 5
    assert spots[:28].sum() == spots[30:40].sum() == spots[65:71].sum() == 0


def _lab(detector: SimulatedJungfrau1M, y: float, x: float) -> tuple[float, float]:
    """Lab position (pixels from the beam) of a raw-frame position."""
    return y + (detector.module_gap_px if y >= 512 else 0.0) - (1024 + detector.module_gap_px - 1) / 2, x - 511.5


def test_a_crystal_of_ones_own_goes_from_the_yaml_to_the_simulator_process() -> None:
    from monitor.simulate import SimulatorParameters, _arguments

    own = {"unit_cell": (50.0, 60.0, 70.0, 90.0, 100.0, 90.0), "space_group": "P1", "median_photons": 20.0}
    parameters = SimulatorParameters(crystal=own, url="tcp://127.0.0.1:40000")
    assert _arguments(parameters.command_line()).crystal == CrystalSettings(**own)
    assert _arguments(SimulatorParameters(crystal="weak").command_line()).crystal == "weak"
    detector = SimulatedJungfrau1M(seed=2, hit_fraction=1.0, crystal=parameters.crystal, pool_size=0)
    assert detector.crystal_settings.unit_cell == own["unit_cell"]
    with pytest.raises(ValueError, match="unknown crystal setting"):
        SimulatedJungfrau1M(crystal="huge", pool_size=0)
