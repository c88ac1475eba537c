"""The live viewer, offscreen: it draws what the results stream published and survives restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6 import QtWidgets

from monitor.outputs.parameters import ResultsStreamParameters
from monitor.outputs.results_stream import ResultsStream, bin_image
from monitor.outputs.synthetic import synthetic_event, synthetic_snapshot
from monitor.viewer.layout import AssembledLayout
from monitor.viewer.subscriber import ResultsSubscriber
from monitor.viewer.window import ViewerWindow
from sources.geometry import DetectorGeometry, default_geometry_path

STATUS = {"events_per_s": 812.5, "hit_rate": 0.125, "events_dropped": 3}


@pytest.fixture(scope="module")
def application() -> QtWidgets.QApplication:
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def open_stream(run_dir: Path, url: str = "tcp://127.0.0.1:*") -> ResultsStream:
    stream = ResultsStream(parameters=ResultsStreamParameters(url=url, request_url="tcp://127.0.0.1:*",
                                                              rate_hz=20.0))
    stream.open(run_dir=run_dir)
    return stream


def run_until(application: QtWidgets.QApplication, step: Callable[[], None], done: Callable[[], bool],
              timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the viewer showed nothing"
        step()
        application.processEvents()
        time.sleep(0.01)


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[ResultsStream]:
    stream = open_stream(tmp_path / "run-a")
    yield stream
    stream.close(summary={})


def test_window_shows_the_published_numbers(application, stream, tmp_path) -> None:
    subscriber = ResultsSubscriber(stream.url)
    window = ViewerWindow(subscriber, geometry=None)  # raw layout: pixels compare one to one
    window.show()
    hit = synthetic_event(41, is_hit=True)
    snapshot = synthetic_snapshot()
    stream.on_result(hit)
    try:
        run_until(application, lambda: stream.on_tick(status=STATUS, snapshot=snapshot),
                  lambda: window.messages_shown > 0)
        seconds, rates = window.history_curve.getData()
        np.testing.assert_array_equal(rates, snapshot["hit_rate_history"][:, 2])
        np.testing.assert_allclose(seconds, snapshot["hit_rate_history"][:, 1] - snapshot["hit_rate_history"][-1, 1])
        radius, profile = window.profile_curves["radial_profile_hits"].getData()
        np.testing.assert_array_equal(profile, snapshot["radial_profile_hits"])
        np.testing.assert_array_equal(radius, (np.arange(profile.size) + 0.5) * 2)  # radial_bin_px 2
        _, profile = window.profile_curves["radial_profile_non_hits"].getData()
        np.testing.assert_array_equal(profile, snapshot["radial_profile_non_hits"])
        np.testing.assert_array_equal(window.hit_image.image, bin_image(hit.arrays["frame"], 2))
        np.testing.assert_allclose(window.peak_markers.data["x"], (hit.arrays["peak_x"] + 0.5) / 2)
        np.testing.assert_allclose(window.peak_markers.data["y"], (hit.arrays["peak_y"] + 0.5) / 2)
        assert window.powder_image.image.shape == (512, 512)
        window.poll()
        text = window.status_label.text()
        assert "events_per_s 812.5" in text and "events_dropped 3" in text and "run-a" in text
        screenshot = Path(os.environ.get("VIEWER_SCREENSHOT", tmp_path / "viewer.png"))
        assert window.grab().save(str(screenshot))
        assert screenshot.stat().st_size > 50_000  # four drawn panels, not a blank window
    finally:
        window.delete_now()
        subscriber.close()


def test_viewer_follows_the_monitor_across_a_restart(application, tmp_path) -> None:
    first = open_stream(tmp_path / "run-a")
    subscriber = ResultsSubscriber(first.url)
    window = ViewerWindow(subscriber, geometry=None)
    try:
        run_until(application, lambda: first.on_tick(status={"events_per_s": 1.0}, snapshot={}),
                  lambda: window.messages_shown > 0)
        url = first.url
        first.close(summary={})
        second = open_stream(tmp_path / "run-b", url=url)  # the monitor restarted on the same port
        try:
            run_until(application, lambda: second.on_tick(status={"events_per_s": 2.0}, snapshot={}),
                      lambda: "run-b" in window.status_label.text())
        finally:
            second.close(summary={})
        assert "events_per_s 2" in window.status_label.text()
    finally:
        window.delete_now()
        subscriber.close()


def test_assembled_layout_puts_each_peak_on_its_bright_pixel() -> None:
    geometry = DetectorGeometry.from_crystfel(default_geometry_path())
    hit = synthetic_event(5, is_hit=True, n_peaks=20)
    layout = AssembledLayout(geometry)
    image = layout.image(hit.arrays["frame"], bin_factor=1)
    x, y = layout.peaks(hit.arrays["peak_x"], hit.arrays["peak_y"], bin_factor=1)
    np.testing.assert_array_equal(image[(y - 0.5).astype(int), (x - 0.5).astype(int)],
                                  hit.arrays["frame"][hit.arrays["peak_y"].astype(int), hit.arrays["peak_x"].astype(int)])
    assert image.shape == geometry.image_shape


def test_command_line_viewer_saves_a_screenshot_of_live_data(tmp_path) -> None:
    stream = open_stream(tmp_path / "run-cli")
    stream.on_result(synthetic_event(3, is_hit=True))
    snapshot = synthetic_snapshot()
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            stream.on_tick(status=STATUS, snapshot=snapshot)
            time.sleep(0.02)

    publisher = threading.Thread(target=publish)
    publisher.start()
    png = tmp_path / "cli.png"
    try:
        result = subprocess.run([sys.executable, "-m", "monitor.viewer", stream.url, "--screenshot", str(png),
                                 "--timeout", "20"], cwd=Path(__file__).parents[1], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    finally:
        stop.set()
        publisher.join()
        stream.close(summary={})
    assert result.returncode == 0, result.stderr
    assert png.stat().st_size > 50_000
