"""Data sources of a JUNGFRAU 1M frame event: the raw frame, its timestamp, its id.

An event from :mod:`handlers.jungfrau1m_zmq` carries a parsed
:class:`monitor.wire.SyncFrame` under ``"frame"``: one image per module (or
half-module), each a view of the buffer ZMQ received.  These sources turn it
into the values a pipeline works on.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from monitor.errors import DataExtractionError
from monitor.wire import PIXEL_DTYPE, SyncFrame

__all__ = [
    "JUNGFRAU1M_SHAPE",
    "LOST_PIXEL",
    "Jungfrau1MFrame",
    "FrameTimestamp",
    "FrameNumber",
    "DATA_SOURCES",
]

JUNGFRAU1M_SHAPE = (1024, 1024)
"""Two modules of 512 x 1024 pixels, module 0 on top (rows 0-511)."""

LOST_PIXEL = 0xFFFF
"""What the receiver writes where packets were lost; used here for absent modules too."""

TIMESTAMP_CLOCK_HZ = 10_000_000
"""JUNGFRAU's header timestamp counts 10 MHz ticks."""


def _frame(event: dict[str, Any]) -> SyncFrame:
    frame = event.get("frame")
    if not isinstance(frame, SyncFrame):
        raise DataExtractionError("event holds no detector frame")
    return frame


class Jungfrau1MFrame:
    """The raw 1024 x 1024 uint16 frame, modules placed by their ``row``/``column``.

    With one image covering the whole detector the value is a zero-copy view of
    the received buffer.  Otherwise the module images are copied once into a
    buffer that is reused for the next event: the value is valid only until
    then, and a pipeline copies whatever it keeps.  Rows of an absent module
    (lost on the way, or left out by a region of interest) hold ``0xFFFF``,
    the receiver's own mark for lost pixels, so they are never taken as data.
    """

    def __init__(self, shape: tuple[int, int] = JUNGFRAU1M_SHAPE) -> None:
        self._shape = shape
        self._buffer = np.empty(0, dtype=PIXEL_DTYPE)

    def initialize_data_source(self) -> None:
        self._buffer = np.full(self._shape, LOST_PIXEL, dtype=PIXEL_DTYPE)

    def get_data(self, *, event: dict[str, Any]) -> np.ndarray:
        frame = _frame(event)
        if len(frame.modules) == 1 and frame.modules[0].shape == self._shape:
            return frame.modules[0].pixels()
        buffer = self._buffer
        covered = 0
        for module in frame.modules:
            ny, nx = module.shape
            top, left = module.row * ny, module.column * nx
            if top + ny > self._shape[0] or left + nx > self._shape[1] or module.row < 0 or module.column < 0:
                raise DataExtractionError(
                    f"frame {frame.frame_number}: module at row {module.row}, column {module.column} "
                    f"of shape {list(module.shape)} falls outside the {list(self._shape)} detector"
                )
            buffer[top : top + ny, left : left + nx] = module.pixels()
            covered += ny * nx
        if covered < buffer.size:
            self._fill_absent(frame)
        return buffer

    def _fill_absent(self, frame: SyncFrame) -> None:
        """Mark the rows no module image covered in this frame as lost."""
        present = np.zeros(self._shape, dtype=bool)
        for module in frame.modules:
            ny, nx = module.shape
            present[module.row * ny : (module.row + 1) * ny, module.column * nx : (module.column + 1) * nx] = True
        self._buffer[~present] = LOST_PIXEL


class FrameTimestamp:
    """Seconds: the detector clock when it runs, else the time the frame arrived.

    The simulated detector (and PSI's detector simulator) leave ``timestamp`` at
    0; the arrival time keeps the value meaningful for rates and ordering.
    """

    def initialize_data_source(self) -> None:
        """Nothing to load."""

    def get_data(self, *, event: dict[str, Any]) -> float:
        ticks = _frame(event).modules[0].timestamp
        if ticks:
            return ticks / TIMESTAMP_CLOCK_HZ
        return float(event.get("additional_info", {}).get("received_at", time.time()))


class FrameNumber:
    """The detector's 64-bit frame number: the event id, unique across acquisitions."""

    def initialize_data_source(self) -> None:
        """Nothing to load."""

    def get_data(self, *, event: dict[str, Any]) -> int:
        return _frame(event).frame_number


DATA_SOURCES: dict[str, type] = {
    "detector_data": Jungfrau1MFrame,
    "timestamp": FrameTimestamp,
    "event_id": FrameNumber,
}
"""The data sources a YAML ``required_data`` list may name."""
