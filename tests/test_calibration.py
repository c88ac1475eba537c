"""JUNGFRAU calibration: photons per gain stage, masking, file reading, real captured gain bands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitor.errors import ConfigurationError
from monitor.simulation import SimulatedJungfrau1M
from monitor.simulation.crystal import CrystalSettings
from sources.calibration import CalibrationParameters, JungfrauCalibration
from sources.jungfrau1m import FrameBands
from captures import RECEIVER, read_capture

G0, G1, G2, INVALID = 0x0000, 0x4000, 0xC000, 0x8000


def _write_flat_maps(
    folder: Path, pedestal: tuple[float, float, float], gain: tuple[float, ...], n_modules: int = 2
) -> dict[str, list[str]]:
    """Calibration files with the same value in every pixel of a stage (six gains: G0-G2, HG0-HG2)."""
    files: dict[str, list[str]] = {"gain_files": [], "pedestal_files": []}
    for module in range(n_modules):
        gains = np.broadcast_to(np.array(gain, dtype="<f8")[:, None, None], (6, 512, 1024))
        gains.tofile(folder / f"gain_m{module}.bin")
        np.save(folder / f"pedestal_m{module}.npy", np.broadcast_to(np.array(pedestal, np.float32)[:, None, None], (3, 512, 1024)))
        files["gain_files"].append(str(folder / f"gain_m{module}.bin"))
        files["pedestal_files"].append(str(folder / f"pedestal_m{module}.npy"))
    return files


@pytest.fixture(scope="module")
def detector() -> SimulatedJungfrau1M:
    return SimulatedJungfrau1M(
        seed=8, hit_fraction=1.0, lost_packet_rate=0.02, crystal=CrystalSettings(median_photons=1000.0)
    )


@pytest.fixture(scope="module")
def calibration(detector: SimulatedJungfrau1M, tmp_path_factory: pytest.TempPathFactory) -> JungfrauCalibration:
    files = detector.write_calibration(tmp_path_factory.mktemp("calibration"))
    return JungfrauCalibration(CalibrationParameters(**files))


def test_known_photons_in_all_three_gain_stages_come_back_exactly(tmp_path: Path) -> None:
    # 500 ADU/photon in G0, -20 in G1, -2 in G2 at 12.5 keV: the raw values encode whole photons exactly.
    files = _write_flat_maps(tmp_path, (2000.0, 14000.0, 14500.0), (40.0, -1.6, -0.16, 100.0, -1.6, -0.16))
    calibration = JungfrauCalibration(CalibrationParameters(**files, photon_energy_kev=12.5))
    photons = np.zeros((1024, 1024))
    raw = np.full((1024, 1024), 2000, dtype=np.uint16)
    photons[0, :20] = np.arange(1, 21)
    raw[0, :20] = 2000 + 500 * np.arange(1, 21)
    photons[1, :500] = np.arange(30, 530)
    raw[1, :500] = (14000 - 20 * np.arange(30, 530)) | G1
    photons[2, :1000] = np.arange(700, 7200, 6.5)
    raw[2, :1000] = (14500 - 2 * np.arange(700, 7200, 6.5)).astype(np.uint16) | G2
    calibrated, valid = calibration.calibrate(raw)
    assert valid.all()
    np.testing.assert_allclose(calibrated, photons, rtol=1e-4, atol=0)


def test_simulated_frames_match_float64_formula_in_every_stage(
    detector: SimulatedJungfrau1M, calibration: JungfrauCalibration
) -> None:
    bright = next(n for n in range(100) if any(p.photons > 20000 for p in detector.truth(n).peaks))
    raw, _ = detector.frame(bright)
    photons, valid = calibration.calibrate(raw)
    stage = np.array([0, 1, 0, 2])[raw >> 14]
    usable = valid & (raw != 0xFFFF)
    assert {0, 1, 2} <= set(np.unique(stage[usable]).tolist())
    pedestal = np.take_along_axis(detector.pedestal.astype(np.float64), stage[None], axis=0)[0]
    gain = np.take_along_axis(detector.gain, stage[None], axis=0)[0]
    expected = ((raw & 0x3FFF) - pedestal) / (gain * detector.photon_energy_kev)
    np.testing.assert_allclose(photons[usable], expected[usable], rtol=1e-4, atol=0)


def test_lost_packets_and_bad_pixels_are_masked_and_zero(
    detector: SimulatedJungfrau1M, calibration: JungfrauCalibration
) -> None:
    raw, truth = detector.frame(1)
    assert truth.lost_packets
    photons, valid = calibration.calibrate(raw)
    lost = raw == 0xFFFF
    bad = detector.bad_pixels["dead"] | detector.bad_pixels["noisy"] | detector.bad_pixels["stuck_gain"]
    np.testing.assert_array_equal(valid, ~(lost | bad))
    assert (photons[~valid] == 0).all()
    assert calibration.n_invalid == int((lost | bad).sum())


def test_invalid_gain_bits_10_are_masked_not_calibrated(tmp_path: Path) -> None:
    files = _write_flat_maps(tmp_path, (100.0, 50.0, 20.0), (10.0, -1.0, -0.1, 30.0, -1.0, -0.1))
    calibration = JungfrauCalibration(CalibrationParameters(**files, photon_energy_kev=1.0))
    raw = np.full((1024, 1024), 110, dtype=np.uint16)
    raw[5, 7] = 110 | INVALID
    raw[9, :] = 0xFFFF
    photons, valid = calibration.calibrate(raw)
    assert not valid[5, 7] and photons[5, 7] == 0
    assert not valid[9].any() and (photons[9] == 0).all()
    assert valid.sum() == 1024 * 1024 - 1025
    assert photons[0, 0] == pytest.approx(1.0)


def test_high_gain_uses_hg_maps(tmp_path: Path) -> None:
    files = _write_flat_maps(tmp_path, (100.0, 50.0, 20.0), (10.0, -1.0, -0.1, 40.0, -2.0, -0.2))
    raw = np.full((1024, 1024), 180, dtype=np.uint16)
    normal = JungfrauCalibration(CalibrationParameters(**files, photon_energy_kev=1.0))
    high = JungfrauCalibration(CalibrationParameters(**files, photon_energy_kev=1.0, high_gain=True))
    assert normal.calibrate(raw)[0][0, 0] == pytest.approx(8.0)
    assert high.calibrate(raw)[0][0, 0] == pytest.approx(2.0)


def test_module_views_give_the_same_result_as_the_whole_frame(
    detector: SimulatedJungfrau1M, calibration: JungfrauCalibration
) -> None:
    raw, _ = detector.frame(2)
    whole = [a.copy() for a in calibration.calibrate(raw)]
    photons, valid = calibration.calibrate([raw[:512], raw[512:]])
    np.testing.assert_array_equal(photons, whole[0])
    np.testing.assert_array_equal(valid, whole[1])


def test_frame_bands_give_the_same_result_as_the_whole_frame(
    detector: SimulatedJungfrau1M, calibration: JungfrauCalibration
) -> None:
    raw, _ = detector.frame(2)
    whole = [a.copy() for a in calibration.calibrate(raw)]
    lost = np.full((256, 1024), 0xFFFF, dtype=np.uint16)
    raw[256:512] = lost
    bands = FrameBands((1024, 1024), ((0, raw[:256]), (256, lost), (512, raw[512:])))
    photons, valid = calibration.calibrate(bands)
    np.testing.assert_array_equal(photons[512:], whole[0][512:])
    np.testing.assert_array_equal(photons[:256], whole[0][:256])
    assert not valid[256:512].any() and calibration.n_invalid >= 256 * 1024


def test_buffers_are_reused_between_calls(detector: SimulatedJungfrau1M, calibration: JungfrauCalibration) -> None:
    first = calibration.calibrate(detector.frame(3)[0])
    second = calibration.calibrate(detector.frame(4)[0])
    assert first[0] is second[0] and first[1] is second[1]


def test_wrong_input_is_refused_with_a_precise_error(calibration: JungfrauCalibration) -> None:
    with pytest.raises(TypeError, match="uint16"):
        calibration.calibrate(np.zeros((1024, 1024), dtype=np.int32))
    with pytest.raises(ValueError, match="shape"):
        calibration.calibrate(np.zeros((512, 1024), dtype=np.uint16))


def test_unreadable_or_misshaped_files_name_the_file(tmp_path: Path) -> None:
    files = _write_flat_maps(tmp_path, (100.0, 50.0, 20.0), (10.0, -1.0, -0.1, 30.0, -1.0, -0.1))
    np.zeros(10).tofile(tmp_path / "short.bin")
    with pytest.raises(ConfigurationError, match="short.bin"):
        JungfrauCalibration(
            CalibrationParameters(**{**files, "gain_files": [str(tmp_path / "short.bin")] * 2}, photon_energy_kev=1.0)
        )
    with pytest.raises(ConfigurationError, match="one gain and one pedestal file per module"):
        JungfrauCalibration(CalibrationParameters(**{**files, "gain_files": files["gain_files"][:1]}, photon_energy_kev=1.0))
    with pytest.raises(ValueError, match="extra"):
        CalibrationParameters(**files, photon_energy_kev=1.0, gain=3)


def _captured_frames(case: str) -> list[np.ndarray]:
    """Whole frames of a receiver capture: each stream's module placed by its header's ``row``."""
    frames: dict[int, np.ndarray] = {}
    for stream in (0, 1):
        for parts in read_capture(RECEIVER / case / f"stream{stream}.zmqmsgs.xz"):
            header = json.loads(parts[0])
            if header["data"] == 0:
                continue
            frame = frames.setdefault(header["frameNumber"], np.zeros((1024, 1024), dtype=np.uint16))
            frame[512 * header["row"] : 512 * (header["row"] + 1)] = np.frombuffer(parts[1], "<u2").reshape(512, 1024)
    return [frames[n] for n in sorted(frames)]


@pytest.mark.parametrize("case", ["jf1m-20frames", "changing-gain-6frames"])
def test_real_capture_gain_bands_use_their_own_stage(case: str, tmp_path: Path) -> None:
    pedestal, gain = (0.5, 200.0, 300.0), (2.0, -4.0, -0.5)
    files = _write_flat_maps(tmp_path, pedestal, gain + gain)
    calibration = JungfrauCalibration(CalibrationParameters(**files, photon_energy_kev=1.0))
    frames = _captured_frames(case)
    seen: set[int] = set()
    for raw in frames:
        photons, valid = calibration.calibrate(raw)
        stage = np.array([0, 1, -1, 2])[raw >> 14]
        seen |= set(np.unique(stage).tolist())
        assert valid.all()
        adc = (raw & 0x3FFF).astype(np.float64)
        expected = (adc - np.take(pedestal, stage)) / np.take(gain, stage)
        np.testing.assert_allclose(photons, expected, rtol=1e-6)
    assert seen == {0, 1, 2}


def test_real_packet_loss_pixels_are_masked(tmp_path: Path) -> None:
    files = _write_flat_maps(tmp_path, (0.5, 200.0, 300.0), (2.0, -4.0, -0.5) * 2)
    calibration = JungfrauCalibration(CalibrationParameters(**files, photon_energy_kev=1.0))
    lost_total = 0
    for raw in _captured_frames("packetloss-20frames"):
        photons, valid = calibration.calibrate(raw)
        lost = raw == 0xFFFF
        lost_total += int(lost.sum())
        np.testing.assert_array_equal(valid, ~lost)
        assert (photons[lost] == 0).all()
    assert lost_total > 0 and lost_total % 4096 == 0


def test_saturated_pixels_and_photon_sum_are_counted_in_the_same_pass(tmp_path: Path) -> None:
    files = _write_flat_maps(tmp_path, (100.0, 50.0, 20.0), (10.0, -1.0, -0.1, 30.0, -1.0, -0.1))
    calibration = JungfrauCalibration(CalibrationParameters(**files, photon_energy_kev=1.0))
    raw = np.full((1024, 1024), 100, dtype=np.uint16)
    raw[0, :5] = 0xC000
    raw[1, 0] = 120
    raw[2, 0] = 0xFFFF
    photons, valid = calibration.calibrate(raw)
    assert calibration.n_saturated == 5 and calibration.n_invalid == 1
    assert valid[0, :5].all() and photons[0, 0] == pytest.approx(200.0)
    assert calibration.photon_sum == pytest.approx(5 * 200.0 + 2.0)


def test_noise_map_in_photons_beside_the_calibration(detector: SimulatedJungfrau1M, tmp_path: Path) -> None:
    files = detector.write_calibration(tmp_path)
    calibration = JungfrauCalibration(CalibrationParameters(**files))
    good = ~detector.bad_pixel_mask
    expected = detector.noise[0] / (detector.gain[0] * detector.photon_energy_kev)
    np.testing.assert_allclose(calibration.noise_photons[good], expected[good], rtol=1e-5)
    assert (calibration.noise_photons[~good] == 0).all()
    assert JungfrauCalibration(CalibrationParameters(**{**files, "noise_files": None})).noise_photons is None
    with pytest.raises(ConfigurationError, match="one noise file per module"):
        JungfrauCalibration(CalibrationParameters(**{**files, "noise_files": files["noise_files"][:1]}))


def test_adc_only_keeps_adc_values_and_the_mask() -> None:
    calibration = JungfrauCalibration.adc_only()
    raw = np.full((1024, 1024), 0x4000 | 1234, dtype=np.uint16)
    raw[3, 3] = 0xFFFF
    raw[4, 4] = 0x8000 | 7
    values, valid = calibration.calibrate(raw)
    assert values[0, 0] == 1234.0 and valid.sum() == 1024 * 1024 - 2
    assert values[3, 3] == 0 and values[4, 4] == 0
