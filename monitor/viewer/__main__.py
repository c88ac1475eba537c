"""``python -m monitor.viewer tcp://HOST:PORT``: open the live viewer on a results stream."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from monitor.errors import MonitorError
from monitor.viewer.subscriber import ResultsSubscriber
from monitor.viewer.parameters_panel import ParametersPanel
from monitor.viewer.window import ViewerWindow
from sources.geometry import DetectorGeometry, default_geometry_path


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m monitor.viewer", description=__doc__)
    parser.add_argument("url", help="the monitor's results stream, e.g. tcp://127.0.0.1:5610")
    parser.add_argument("--geometry", type=Path, default=default_geometry_path(),
                        help="CrystFEL .geom to assemble frames with (default: the shipped JUNGFRAU 1M)")
    parser.add_argument("--raw", action="store_true", help="show frames as read out, without geometry")
    parser.add_argument("--control", metavar="URL",
                        help="the monitor's control_url: a panel to change thresholds while it runs")
    parser.add_argument("--key", type=Path, metavar="FILE", help="with --control: this client's secret key (CURVE)")
    parser.add_argument("--server-key", type=Path, metavar="FILE",
                        help="with --control: the monitor's public key (CURVE)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="save the window to PNG once data has been shown, then exit (for tests and reports)")
    parser.add_argument("--messages", type=int, default=1, metavar="N",
                        help="with --screenshot: wait until N messages have been drawn (history builds up)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="with --screenshot: give up (exit 1) after this many seconds without data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    try:
        geometry = None if arguments.raw else DetectorGeometry.from_crystfel(arguments.geometry)
    except MonitorError as error:
        print(f"monitor.viewer: {error}", file=sys.stderr)
        return error.exit_code
    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    subscriber = ResultsSubscriber(arguments.url)
    panel = None if arguments.control is None else ParametersPanel(
        arguments.control, client_key=arguments.key, server_key=arguments.server_key)
    window = ViewerWindow(subscriber, geometry=geometry, parameters=panel)
    window.show()
    if arguments.screenshot is not None:
        _screenshot_when_shown(window, arguments.screenshot, messages=arguments.messages,
                               timeout_s=arguments.timeout)
    code = application.exec()
    window.delete_now()
    subscriber.close()
    return code


def _screenshot_when_shown(window: ViewerWindow, path: Path, *, messages: int, timeout_s: float) -> None:
    """Once ``messages`` have been drawn, grab the window to ``path`` and quit (exit 1 on timeout)."""
    elapsed = QtCore.QElapsedTimer()
    elapsed.start()

    def check() -> None:
        if window.messages_shown >= messages:
            window.grab().save(str(path))
            QtWidgets.QApplication.exit(0)
        elif elapsed.elapsed() > timeout_s * 1000:
            print(f"monitor.viewer: no data in {timeout_s} s", file=sys.stderr)
            QtWidgets.QApplication.exit(1)

    timer = QtCore.QTimer(window)
    timer.timeout.connect(check)
    timer.start(100)


if __name__ == "__main__":
    sys.exit(main())
