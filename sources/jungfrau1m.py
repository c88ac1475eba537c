"""Data sources of a JUNGFRAU 1M frame event: the raw frame, its timestamp, its id.

An event from :mod:`handlers.jungfrau1m_zmq` carries a parsed
:class:`monitor.wire.SyncFrame` under ``"frame"``: one image per module (or
half-module), each a view of the buffer ZMQ received.  These sources turn it
into the values a pipeline works on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.errors import DataExtractionError
from monitor.wire import PIXEL_DTYPE, SyncFrame

__all__ = [
    "JUNGFRAU1M_SHAPE",
    "LOST_PIXEL",
    "Jungfrau1MFrame",
    "Jungfrau1MModules",
    "FrameBands",
    "PlacedImage",
    "raw_frame",
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


@dataclass(frozen=True, slots=True)
class PlacedImage:
    """One module (or half-module) image and where its top-left pixel sits in the frame."""

    top: int
    left: int
    pixels: np.ndarray


def _placed_images(frame: SyncFrame, shape: tuple[int, int]) -> list[PlacedImage]:
    """The frame's images by their ``row``/``column``; an error names one that falls outside ``shape``."""
    placed = []
    for module in frame.modules:
        ny, nx = module.shape
        top, left = module.row * ny, module.column * nx
        if top + ny > shape[0] or left + nx > shape[1] or module.row < 0 or module.column < 0:
            raise DataExtractionError(
                f"frame {frame.frame_number}: module at row {module.row}, column {module.column} "
                f"of shape {list(module.shape)} falls outside the {list(shape)} detector"
            )
        placed.append(PlacedImage(top, left, module.pixels()))
    return placed


def _absent(images: list[PlacedImage], shape: tuple[int, int]) -> np.ndarray | None:
    """Where no image covers the frame (True), or None when the images cover it all."""
    if sum(image.pixels.size for image in images) >= shape[0] * shape[1]:
        return None
    absent = np.ones(shape, dtype=bool)
    for image in images:
        ny, nx = image.pixels.shape
        absent[image.top : image.top + ny, image.left : image.left + nx] = False
    return absent


class Jungfrau1MFrame:
    """The raw 1024 x 1024 uint16 frame, modules placed by their ``row``/``column``.

    With one image covering the whole detector the value is a zero-copy view of
    the received buffer.  Otherwise the module images are copied once into a
    buffer that is reused for the next event: the value is valid only until
    then, and a pipeline copies whatever it keeps.  Rows of an absent module
    (lost on the way, or left out by a region of interest) hold ``0xFFFF``,
    the receiver's own mark for lost pixels, so they are never taken as data.
    :class:`Jungfrau1MModules` gives the same pixels without the copy.
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
        images = _placed_images(frame, self._shape)
        for image in images:
            ny, nx = image.pixels.shape
            self._buffer[image.top : image.top + ny, image.left : image.left + nx] = image.pixels
        absent = _absent(images, self._shape)
        if absent is not None:
            self._buffer[absent] = LOST_PIXEL
        return self._buffer


@dataclass(frozen=True, slots=True)
class FrameBands:
    """A raw frame as bands of whole detector rows, in row order, covering every row once.

    Each band is ``(first row, pixels)``: a zero-copy view of a received module
    (or half-module) image, or, for rows no image brought, a shared read-only
    block of ``0xFFFF``.  Kernels that make one pass over the frame anyway
    (calibration, statistics) read the bands where they lie instead of an
    assembled copy.
    """

    shape: tuple[int, int]
    bands: tuple[tuple[int, np.ndarray], ...]


class Jungfrau1MModules:
    """The raw frame as :class:`FrameBands`: the module images where ZMQ received them, never copied.

    JUNGFRAU modules and half-modules span the detector's full width, so each
    image is a band of whole rows; a frame whose images do not (another
    detector's layout) is an extraction error that points to ``detector_data``.

    It saves the 2 MiB copy ``detector_data`` makes per frame (0.25 ms on the
    2-core test machine).  Calibration reads the bands directly: 2.18 instead
    of 2.31 ms per frame, copy included.  A light kernel can lose, though: the
    statistics pass takes 1.2 ms on the freshly received buffers and 0.36 ms
    on the cache-warm copy.  Measure before choosing.
    """

    def __init__(self, shape: tuple[int, int] = JUNGFRAU1M_SHAPE) -> None:
        self._shape = shape
        self._lost = np.empty((0, shape[1]), dtype=PIXEL_DTYPE)

    def initialize_data_source(self) -> None:
        self._lost = np.full(self._shape, LOST_PIXEL, dtype=PIXEL_DTYPE)
        self._lost.flags.writeable = False

    def get_data(self, *, event: dict[str, Any]) -> FrameBands:
        frame = _frame(event)
        images = sorted(_placed_images(frame, self._shape), key=lambda image: image.top)
        bands: list[tuple[int, np.ndarray]] = []
        row = 0
        for image in images:
            if image.left != 0 or image.pixels.shape[1] != self._shape[1] or image.top < row:
                raise DataExtractionError(
                    f"frame {frame.frame_number}: images are not bands of whole rows; use detector_data"
                )
            if image.top > row:
                bands.append((row, self._lost[row : image.top]))
            bands.append((image.top, image.pixels))
            row = image.top + image.pixels.shape[0]
        if row < self._shape[0]:
            bands.append((row, self._lost[row:]))
        return FrameBands(self._shape, tuple(bands))


def raw_frame(data: dict[str, Any]) -> np.ndarray | FrameBands | None:
    """The raw frame a pipeline was given: its bands (``detector_modules``) if extracted, else ``detector_data``."""
    return data.get("detector_modules", data.get("detector_data"))


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
    "detector_modules": Jungfrau1MModules,
    "timestamp": FrameTimestamp,
    "event_id": FrameNumber,
}
"""The data sources a YAML ``required_data`` list may name."""
