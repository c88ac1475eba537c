"""The viewer's live-parameter panel, offscreen, against a control endpoint that answers as the
collector does: it shows the set in force and sends what the user changed."""

from __future__ import annotations

import os
import threading
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtWidgets

from helpers import free_tcp_url
from monitor.control import ControlEndpoint
from monitor.viewer.parameters_panel import ParametersPanel
from monitor.viewer.subscriber import ResultsSubscriber
from monitor.viewer.window import ViewerWindow

IN_FORCE = {"min_num_peaks_for_hit": 10, "max_num_peaks_for_hit": 2000,
            "peakfinder8": {"adc_threshold": None, "min_pixel_count": 2}}


@pytest.fixture
def collector():
    """A control endpoint in a thread: answers get with IN_FORCE, records every set."""
    url = free_tcp_url()
    endpoint = ControlEndpoint(url)
    received: list[dict] = []
    running = True

    def answer() -> None:
        while running:
            for incoming in endpoint.poll():
                if "set" in incoming.body:
                    received.append(incoming.body["set"])
                    endpoint.reply(incoming.identity, {"parameter_set": len(received), "changes": incoming.body["set"]})
                else:
                    endpoint.reply(incoming.identity, {"parameter_set": len(received), "parameters": IN_FORCE})
            time.sleep(0.005)

    thread = threading.Thread(target=answer)
    thread.start()
    yield url, received
    running = False
    thread.join()
    endpoint.close()


def test_the_panel_changes_a_threshold_of_a_running_monitor(collector, tmp_path):
    url, received = collector
    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    subscriber = ResultsSubscriber(free_tcp_url())
    panel = ParametersPanel(url)
    window = ViewerWindow(subscriber, geometry=None, parameters=panel)
    window.show()
    try:
        assert panel.fields["min_num_peaks_for_hit"].text() == "10"
        assert panel.fields["peakfinder8.adc_threshold"].text() == "null"
        panel.fields["min_num_peaks_for_hit"].setText("12")
        panel.fields["peakfinder8.min_pixel_count"].setText("3")
        panel.apply()
        application.processEvents()
        png = tmp_path / "viewer-parameters.png"
        window.resize(1400, 1000)
        window.grab().save(str(png))
        outcome = panel.state.text()
    finally:
        window.delete_now()
        subscriber.close()
    assert received == [{"min_num_peaks_for_hit": 12, "peakfinder8.min_pixel_count": 3}]
    assert outcome.startswith("parameter set 1 sent: min_num_peaks_for_hit=12")
    assert png.stat().st_size > 20_000
