"""The outputs fed by the real crystallography pipeline on simulated frames, as the collector will feed them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import h5py
import hdf5plugin  # noqa: F401  (registers the filters h5py needs to read back)
import numpy as np
import pytest

from monitor.outputs.cxi import INVALID_PIXEL
from monitor.outputs.group import OutputGroup, build_outputs, create_run_dir
from monitor.outputs.parameters import OutputParameters
from monitor.processing.crystallography import CrystallographyParameters, CrystallographyPipeline, SimulatedCalibration
from monitor.processing.protocol import ProcessedEvent
from monitor.simulation import SimulatedJungfrau1M

N_FRAMES = 24
RANKS = {"node_rank": 0, "node_pool_size": 2}


@pytest.fixture(scope="module")
def results() -> list[ProcessedEvent]:
    detector = SimulatedJungfrau1M(seed=3, hit_fraction=0.5)
    parameters = CrystallographyParameters(calibration=SimulatedCalibration(simulator_seed=3), non_hit_frame_interval=4)
    worker = CrystallographyPipeline(parameters=parameters)
    worker.initialize_processing_node(**RANKS)
    return [
        worker.process_data(**RANKS, data={"detector_data": detector.frame(n)[0], "timestamp": 1.7e9 + n, "event_id": n})
        for n in range(N_FRAMES)
    ]


def test_a_pipeline_run_leaves_exactly_its_hits_with_their_peaks(results, tmp_path: Path) -> None:
    collector = CrystallographyPipeline(parameters=CrystallographyParameters(non_hit_frame_interval=4))
    collector.initialize_collecting_node(**RANKS)
    parameters = OutputParameters.model_validate({"output_dir": tmp_path, "results_stream": {
        "url": "tcp://127.0.0.1:*", "request_url": "tcp://127.0.0.1:*"}})
    run_dir = create_run_dir(parameters.output_dir)
    outputs = OutputGroup(build_outputs(parameters))
    outputs.open(run_dir=run_dir)
    try:
        for result in results:
            collector.collect_data(**RANKS, processed_data=result)
            outputs.on_result(result)
            outputs.on_tick(status=collector.status(), snapshot=collector.snapshot())
    finally:
        outputs.close(summary=collector.summary())

    hits = [result for result in results if result.values["is_hit"]]
    assert 0 < len(hits) < N_FRAMES
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["hits"] == summary["outputs"]["hits_written"] == len(hits)
    with h5py.File(run_dir / f"{run_dir.name}-hits-0000.cxi", "r") as cxi:
        np.testing.assert_array_equal(cxi["entry_1/event_id"][()], [hit.values["event_id"] for hit in hits])
        mask = cxi["entry_1/data_1/mask"][()]  # once a file: the pixels no hit read
        np.testing.assert_array_equal(mask != 0, np.logical_and.reduce([~hit.arrays["valid"] for hit in hits]))
        for row, hit in enumerate(hits):
            stored, valid = cxi["entry_1/data_1/data"][row], hit.arrays["valid"]
            np.testing.assert_array_equal(stored == INVALID_PIXEL, ~valid)
            # whole photons: rounded, or a corner-shared photon's largest share (a quarter photon and more)
            assert np.abs(stored[valid] - hit.arrays["frame"][valid]).max() <= 0.75
            n = cxi["entry_1/result_1/nPeaks"][row]
            assert n == hit.arrays["peak_x"].size
            np.testing.assert_array_equal(cxi["entry_1/result_1/peakXPosRaw"][row, :n], hit.arrays["peak_x"])
            np.testing.assert_array_equal(cxi["entry_1/result_1/peakYPosRaw"][row, :n], hit.arrays["peak_y"])
    assert (run_dir / "report.png").stat().st_size > 50_000


def test_viewer_draws_a_pipeline_snapshot(results, tmp_path: Path) -> None:
    from PySide6 import QtWidgets

    from monitor.outputs.parameters import ResultsStreamParameters
    from monitor.outputs.results_stream import ResultsStream
    from monitor.viewer.subscriber import ResultsSubscriber
    from monitor.viewer.window import ViewerWindow
    from sources.geometry import DetectorGeometry, default_geometry_path

    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    collector = CrystallographyPipeline(parameters=CrystallographyParameters())
    collector.initialize_collecting_node(**RANKS)
    stream = ResultsStream(parameters=ResultsStreamParameters(url="tcp://127.0.0.1:*",
                                                              request_url="tcp://127.0.0.1:*", rate_hz=50))
    stream.open(run_dir=tmp_path / "run-pipeline")
    for result in results:
        collector.collect_data(**RANKS, processed_data=result)
        stream.on_result(result)
    subscriber = ResultsSubscriber(stream.url)
    window = ViewerWindow(subscriber, geometry=DetectorGeometry.from_crystfel(default_geometry_path()))
    window.show()
    try:
        deadline = time.monotonic() + 10
        while window.messages_shown == 0:
            assert time.monotonic() < deadline, "the viewer showed nothing"
            stream.on_tick(status=collector.status(), snapshot=collector.snapshot())
            application.processEvents()
            time.sleep(0.01)
        last_hit = [r for r in results if r.values["is_hit"]][-1]
        assert window.peak_markers.data.size == last_hit.arrays["peak_x"].size
        _, rates = window.history_curve.getData()
        np.testing.assert_array_equal(rates, collector.snapshot()["hit_rate_history"][:, 2])
        screenshot = Path(os.environ.get("VIEWER_SCREENSHOT_PIPELINE", tmp_path / "viewer.png"))
        assert window.grab().save(str(screenshot))
    finally:
        window.delete_now()
        subscriber.close()
        stream.close(summary={})
