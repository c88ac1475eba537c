"""Dark runs: pedestals per gain stage and bad pixels from a synchronizer-shaped stream."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
import zmq

from helpers import free_port
from monitor import wire
from monitor.dark import DarkAccumulator, main, record
from monitor.simulation import SimulatedJungfrau1M
from sources.calibration import CalibrationParameters, JungfrauCalibration

FRAMES = 30


@pytest.fixture(scope="module")
def detector() -> SimulatedJungfrau1M:
    return SimulatedJungfrau1M(seed=12, pool_size=1)


def _send_dark_runs(url: str, detector: SimulatedJungfrau1M, frames: int, stages: tuple[int, ...]) -> threading.Thread:
    """PUSH one acquisition per stage (start, frames as two modules, end), like the beamline's dark runs."""
    dark = {stage: [detector.dark_frame(n, gain_stage=stage) for n in range(frames)] for stage in stages}
    context = zmq.Context.instance()
    socket = context.socket(zmq.PUSH)
    socket.bind(url)

    def send() -> None:
        number = 1
        for stage in stages:
            socket.send_multipart(wire.build_sync_start([{"udpPorts": [50012 + k]} for k in range(2)]))
            for raw in dark[stage]:
                modules = [
                    (wire.module_header(port=50012 + k, row=k, column=0, frame_number=number, frame_index=number - 1,
                                        shape=(512, 1024)), raw[512 * k : 512 * (k + 1)])
                    for k in (1, 0)
                ]
                socket.send_multipart(wire.build_sync_frame(modules))
                number += 1
            socket.send_multipart(wire.build_sync_end([([50012 + k], [frames]) for k in range(2)]))
        socket.close(linger=5000)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def accumulator(detector: SimulatedJungfrau1M) -> DarkAccumulator:
    url = f"tcp://127.0.0.1:{free_port()}"
    sender = _send_dark_runs(url, detector, FRAMES, (0, 1, 2))
    recorded = record(url, frames_per_stage=FRAMES, idle_timeout_s=20)
    sender.join(10)
    return recorded


def test_every_stage_gets_its_frames(accumulator: DarkAccumulator) -> None:
    assert accumulator.frames == [FRAMES, FRAMES, FRAMES]


def test_pedestals_match_the_truth_within_the_noise(accumulator: DarkAccumulator, detector: SimulatedJungfrau1M) -> None:
    result = accumulator.result()
    good = ~result.bad_pixels
    for stage in range(3):
        error = result.pedestal[stage][good] - detector.pedestal[stage][good]
        expected_error = detector.noise[stage][good] / np.sqrt(FRAMES)
        assert abs(error.mean()) < 0.05
        assert np.sqrt(np.mean(error**2)) < 1.3 * np.sqrt(np.mean(expected_error**2))
        noise = result.noise[stage][good] / detector.noise[stage][good]
        assert 0.9 < np.median(noise) < 1.05


def test_bad_pixels_are_the_dead_noisy_and_never_switching_ones(
    accumulator: DarkAccumulator, detector: SimulatedJungfrau1M
) -> None:
    result = accumulator.result()
    assert (result.bad["stuck"] >= detector.bad_pixels["dead"]).all()
    assert (result.bad["noisy"] == detector.bad_pixels["noisy"]).all()
    assert (result.bad["never_switching"] == (detector.bad_pixels["stuck_gain"] | detector.bad_pixels["dead"])).all()
    truth = detector.bad_pixels["dead"] | detector.bad_pixels["noisy"] | detector.bad_pixels["stuck_gain"]
    np.testing.assert_array_equal(result.bad_pixels, truth)


def test_frame_stage_comes_from_the_majority_of_gain_bits(detector: SimulatedJungfrau1M) -> None:
    raw = detector.dark_frame(0, gain_stage=2)
    raw[:600] = 0xFFFF  # lost pixels read as G2 bits but are not counted
    assert DarkAccumulator.stage_of(raw) == 2
    assert DarkAccumulator.stage_of(detector.dark_frame(0, gain_stage=1)) == 1
    assert DarkAccumulator.stage_of(np.full((4, 4), 0x8000, np.uint16)) is None


def test_command_line_writes_files_the_calibration_reads(detector: SimulatedJungfrau1M, tmp_path: Path, capsys) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    sender = _send_dark_runs(url, detector, 5, (0, 1, 2))
    assert main([url, "--output", str(tmp_path), "--frames-per-stage", "5", "--idle-timeout", "20"]) == 0
    sender.join(10)
    assert "pedestal_files" in capsys.readouterr().out
    summary = json.loads((tmp_path / "dark_summary.json").read_text())
    assert summary["frames_per_stage"] == {"G0": 5, "G1": 5, "G2": 5}
    files = detector.write_calibration(tmp_path / "truth")
    calibration = JungfrauCalibration(
        CalibrationParameters(
            gain_files=files["gain_files"], pedestal_files=sorted(str(p) for p in tmp_path.glob("pedestal_m*.npy")),
            noise_files=sorted(str(p) for p in tmp_path.glob("noise_m*.npy")),
            mask_file=tmp_path / "bad_pixels.npy", photon_energy_kev=12.4,
        )
    )
    photons, valid = calibration.calibrate(detector.dark_frame(99, gain_stage=0))
    assert abs(float(photons[valid].mean())) < 0.005 and float(photons[valid].std()) < 0.02
    with h5py.File(tmp_path / "bad_pixels.h5", "r") as crystfel_mask:  # the same mask, as a geometry names it
        np.testing.assert_array_equal(crystfel_mask["mask"][()], np.load(tmp_path / "bad_pixels.npy").astype(np.uint16))
    # The noise map beside the pedestals: each pixel's G0 noise in photons (from 5 frames: a rough estimate).
    good = ~detector.bad_pixel_mask
    truth_photons = detector.noise[0] / (detector.gain[0] * 12.4)
    ratio = calibration.noise_photons[good] / truth_photons[good]
    assert 0.7 < float(np.median(ratio)) < 1.0
    noise = np.load(tmp_path / "noise_m0.npy")
    assert noise.shape == (3, 512, 1024)
    assert np.median(noise[0][detector.bad_pixels["noisy"][:512]]) > 10 * np.median(noise[0])


def test_a_missing_stage_is_one_clear_error(detector: SimulatedJungfrau1M, tmp_path: Path, capsys) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    sender = _send_dark_runs(url, detector, 3, (0,))
    assert main([url, "--output", str(tmp_path), "--frames-per-stage", "3", "--idle-timeout", "1"]) == 1
    sender.join(10)
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "G1" in error and "G2" in error and "G0" not in error
