"""The viewer window: hit-rate history, latest hit with its peaks, virtual powder, radial profile.

A 20 Hz timer asks the subscriber for the newest message and redraws from it;
nothing here blocks on the network.  Panels whose data a pipeline does not
send stay empty.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from monitor.outputs.plot_data import hit_rate_curve, radial_curves
from monitor.outputs.protocol import POWDER, RADIAL_PROFILES
from monitor.outputs.results_format import ResultsMessage
from monitor.viewer.layout import layout_for
from monitor.viewer.parameters_panel import ParametersPanel
from monitor.viewer.subscriber import ResultsSubscriber
from sources.geometry import DetectorGeometry

__all__ = ["ViewerWindow"]

_POLL_MS = 50
_LEVEL_PERCENTILES = (1.0, 99.7)
_PEAK_PEN = pg.mkPen((255, 60, 60), width=1.5)
_PROFILE_COLOURS = ((255, 180, 60), (120, 200, 120))

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


class ViewerWindow(QtWidgets.QMainWindow):
    """Shows the newest results-stream message; survives the monitor restarting."""

    def __init__(self, subscriber: ResultsSubscriber, *, geometry: DetectorGeometry | None,
                 parameters: ParametersPanel | None = None) -> None:
        super().__init__()
        self._subscriber = subscriber
        self._geometry = geometry
        self._last_header: dict[str, Any] = {}
        self._last_arrival = 0.0
        self.messages_shown = 0
        self.setWindowTitle(f"JUNGFRAU monitor – {subscriber.url}")
        self.resize(1400, 1000)

        self.status_label = QtWidgets.QLabel("waiting for the monitor…")
        self.status_label.setWordWrap(True)
        graphics = pg.GraphicsLayoutWidget()
        central = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(central)
        column.addWidget(self.status_label)
        column.addWidget(graphics, stretch=1)
        self.setCentralWidget(central)
        self.parameters = parameters
        if parameters is not None:  # the monitor's control endpoint: thresholds changed from here
            dock = QtWidgets.QDockWidget("Live parameters", self)
            dock.setWidget(parameters)
            self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)
            parameters.refresh()

        self.history_plot = graphics.addPlot(title="Hit-rate history", labels={"left": "hit rate", "bottom": "time (s)"})
        self.history_plot.getAxis("left").enableAutoSIPrefix(False)
        self.history_curve = self.history_plot.plot(pen=pg.mkPen((80, 170, 255), width=2))
        self.hit_plot = graphics.addPlot(title="Latest hit")
        self.hit_image = self._image_panel(self.hit_plot)
        self.peak_markers = pg.ScatterPlotItem(symbol="o", size=14, pen=_PEAK_PEN, brush=None)
        self.hit_plot.addItem(self.peak_markers)
        graphics.nextRow()
        self.powder_plot = graphics.addPlot(title="Virtual powder")
        self.powder_image = self._image_panel(self.powder_plot)
        self.profile_plot = graphics.addPlot(title="Mean radial profile", labels={"left": "intensity", "bottom": "radius"})
        self.profile_plot.getAxis("left").enableAutoSIPrefix(False)
        self.profile_plot.addLegend(offset=(-10, 10))
        self.profile_curves = {
            key: self.profile_plot.plot(pen=pg.mkPen(colour, width=2), name=label)
            for (key, label), colour in zip(RADIAL_PROFILES.items(), _PROFILE_COLOURS)
        }

        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self.poll)
        self._timer.start(_POLL_MS)

    def delete_now(self) -> None:
        """Close and delete the window and its plots while Python is whole.

        Left to PySide's exit hook, the plots are deleted during interpreter
        shutdown, where pyqtgraph's Python overrides crash it now and then.
        """
        self._timer.stop()
        self.close()
        self.deleteLater()
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)

    @staticmethod
    def _image_panel(plot: pg.PlotItem) -> pg.ImageItem:
        image = pg.ImageItem()
        image.setColorMap(pg.colormap.get("viridis"))
        plot.addItem(image)
        plot.setAspectLocked(True)
        plot.invertY(True)  # row 0 on top, as the report and CrystFEL draw frames
        return image

    def poll(self) -> None:
        """Show the newest message if one arrived; refresh the status line either way."""
        message = self._subscriber.latest()
        if message is not None:
            self.show_message(message)
        self._show_status()

    def show_message(self, message: ResultsMessage) -> None:
        header, arrays = message.header, message.arrays
        self._last_header, self._last_arrival = header, time.monotonic()
        if header.get("kind") != "update":  # "end": keep the last plots
            return
        bin_factor = int(header.get("bin", 1))
        snapshot = {**(header.get("snapshot") or {}), **{
            name.removeprefix("snapshot/"): array for name, array in arrays.items() if name.startswith("snapshot/")}}
        if (history := hit_rate_curve(snapshot)) is not None:
            self.history_curve.setData(history.x, history.y)
            self.history_plot.setLabel("bottom", history.x_label)
        for curve in radial_curves(snapshot):
            self.profile_curves[curve.name].setData(curve.x, curve.y)
            self.profile_plot.setLabel("bottom", curve.x_label)
        if (powder := snapshot.get(POWDER)) is not None:
            layout = layout_for(self._geometry, powder.shape, bin_factor)
            self._draw_image(self.powder_image, layout.image(np.log1p(np.clip(powder, 0, None)), bin_factor=bin_factor))
            self.powder_plot.setTitle(f"Virtual powder (log, {layout.name})")
        if (frame := arrays.get("hit/frame")) is not None:
            layout = layout_for(self._geometry, frame.shape, bin_factor)
            self._draw_image(self.hit_image, layout.image(frame, bin_factor=bin_factor))
            x, y = layout.peaks(arrays.get("hit/peak_x", np.empty(0)), arrays.get("hit/peak_y", np.empty(0)),
                                bin_factor=bin_factor)
            self.peak_markers.setData(x=x, y=y)
            hit = header.get("hit") or {}
            d_min = f", d_min {hit['d_min']:.2f} \u212b" if isinstance(hit.get("d_min"), (int, float)) else ""
            score = hit.get("ice_ring_score")
            ice = f", ice rings {score:.0f} \u03c3" if isinstance(score, (int, float)) else ""
            self.hit_plot.setTitle(
                f"Latest hit: event {hit.get('event_id')}, {x.size} peaks{d_min}{ice} ({layout.name})")
        self.messages_shown += 1

    @staticmethod
    def _draw_image(item: pg.ImageItem, image: np.ndarray) -> None:
        finite = image[np.isfinite(image)]
        low, high = np.percentile(finite, _LEVEL_PERCENTILES) if finite.size else (0.0, 1.0)
        item.setImage(image, levels=(low, max(high, low + 1e-6)))

    def _show_status(self) -> None:
        header = self._last_header
        if not header:
            return
        age = time.monotonic() - self._last_arrival
        state = "run ended" if header.get("kind") == "end" else f"last update {age:.1f} s ago"
        figures = " · ".join(f"{name} {_format(value)}" for name, value in (header.get("status") or {}).items())
        self.status_label.setText(
            f"<b>{header.get('run')}</b> · {state} · {figures} · "
            f"viewer: {self._subscriber.received} received, {self._subscriber.skipped} skipped"
            f" ({self._subscriber.malformed} malformed)"
        )
