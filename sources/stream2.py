"""Data sources of a Stream V2 image event, and the detector its start message describes.

An event from :mod:`handlers.dectris_stream2` carries the decoded
:class:`~monitor.stream2.messages.Image` under ``"image"`` and its series'
:class:`SeriesFrames` under ``"series"``.  The sources turn them into the
values a pipeline works on: the chosen channel as a
:class:`~sources.counting.CountingFrame` (no copy), a timestamp, an event id.

:func:`crystfel_geometry` writes the start message's detector as a CrystFEL
geometry: one panel over the whole image (module gaps are masked pixels, so
no peak crosses them), the beam centre, pixel size, distance and energy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.atomic_files import write_text_atomically
from monitor.errors import ConfigurationError, DataExtractionError
from monitor.stream2.messages import Image, SeriesStart
from sources.counting import CountingFrame

__all__ = ["DATA_SOURCES", "EVENT_ID_SERIES_STRIDE", "SeriesFrames", "crystfel_geometry", "write_geometry"]

log = logging.getLogger(__name__)

EVENT_ID_SERIES_STRIDE = 1_000_000_000
"""An event id is ``series_id * stride + image_id``: unique across series (series 3, image 17 -> 3000000017)."""


@dataclass(frozen=True)
class SeriesFrames:
    """What every image of one series shares: its start message, the channel read, and its validity map."""

    start: SeriesStart
    channel: str
    valid: np.ndarray

    @classmethod
    def of(cls, start: SeriesStart, channel: str | None) -> SeriesFrames:
        """The series as read on ``channel`` (None: the first the detector lists)."""
        chosen = start.channels[0] if channel is None else channel
        if chosen not in start.channels:
            raise DataExtractionError(
                f"series {start.series_id}: no channel {chosen!r} (the detector sends {', '.join(start.channels)})"
            )
        valid = start.valid_pixels(chosen)
        valid.flags.writeable = False
        return cls(start, chosen, valid)

    def event(self, image_id: int, pixels: np.ndarray) -> dict[str, Any]:
        """What a recorded image of this series puts into its event (see ``handlers.recorded_files``)."""
        return {"image": Image(series_id=0, image_id=image_id, data={self.channel: pixels}, time_s=None),
                "series": self}

    def frame(self, image: Image) -> CountingFrame:
        """The image's channel, checked against the start message (a wrong type or size is one event's error)."""
        counts = image.data.get(self.channel)
        where = f"image {image.image_id} of series {image.series_id}"
        if counts is None:
            raise DataExtractionError(f"{where}: no channel {self.channel!r} (it has {', '.join(image.data)})")
        if (counts.dtype.kind, counts.dtype.itemsize) != (self.start.dtype.kind, self.start.dtype.itemsize):
            raise DataExtractionError(f"{where}: pixels are {counts.dtype}, the start message said {self.start.dtype}")
        if counts.shape != self.start.shape:
            raise DataExtractionError(
                f"{where}: image is {list(counts.shape)}, the start message said {list(self.start.shape)}"
            )
        return CountingFrame(counts, self.valid, self.start.nodata, self.start.saturation_value)


def _image(event: dict[str, Any]) -> tuple[Image, SeriesFrames]:
    image, series = event.get("image"), event.get("series")
    if not isinstance(image, Image) or not isinstance(series, SeriesFrames):
        raise DataExtractionError("event holds no Stream V2 image")
    return image, series


class Stream2Frame:
    """The image's channel as a :class:`~sources.counting.CountingFrame`: a view of the decompressed buffer."""

    def initialize_data_source(self) -> None:
        """Nothing to load: masks come with each series."""

    def get_data(self, *, event: dict[str, Any]) -> CountingFrame:
        image, series = _image(event)
        return series.frame(image)


class Stream2Timestamp:
    """Unix seconds: when the exposure started, by the detector (``series_date`` + ``start_time``), else
    when the image arrived (a recorded image, a sender that gives no times)."""

    def initialize_data_source(self) -> None:
        """Nothing to load."""

    def get_data(self, *, event: dict[str, Any]) -> float:
        image, _ = _image(event)
        if image.time_s is not None:
            return image.time_s
        return float(event.get("additional_info", {}).get("received_at", time.time()))


class Stream2EventId:
    """``series_id * EVENT_ID_SERIES_STRIDE + image_id``: unique across the series of a run."""

    def initialize_data_source(self) -> None:
        """Nothing to load."""

    def get_data(self, *, event: dict[str, Any]) -> int:
        image, _ = _image(event)
        return image.series_id * EVENT_ID_SERIES_STRIDE + image.image_id


DATA_SOURCES: dict[str, type] = {
    "detector_data": Stream2Frame,
    "timestamp": Stream2Timestamp,
    "event_id": Stream2EventId,
}
"""The data sources a YAML ``required_data`` list may name for a Stream V2 handler."""


def crystfel_geometry(start: SeriesStart) -> str:
    """The start message's detector as a CrystFEL geometry (one panel; the beam at its beam centre)."""
    missing = [name for name, value in (("detector distance", start.distance_m), ("incident energy",
               start.photon_energy_ev), ("pixel size", start.pixel_size_m), ("beam centre", start.beam_center_px))
               if value is None]
    if missing:
        raise DataExtractionError(f"series {start.series_id} ({start.series_unique_id}) has no {missing[0]}: "
                                  "no geometry")
    rows, cols = start.shape
    beam_x, beam_y = start.beam_center_px
    return "\n".join([
        f"; {start.detector_description or 'detector'} as the start message of series {start.series_id}"
        f" ({start.series_unique_id or 'no unique id'}) describes it, written by the monitor.",
        "; One panel over the whole image: module gaps are masked pixels.",
        "",
        f"photon_energy = {start.photon_energy_ev:.6g}   ; eV",
        f"clen = {start.distance_m:.6g}   ; m",
        f"res = {1 / start.pixel_size_m:.6f}   ; pixels per metre",
        "adu_per_photon = 1",
        "data = /entry_1/data_1/data",
        "dim0 = %",
        "dim1 = ss",
        "dim2 = fs",
        "",
        "p0/min_fs = 0",
        f"p0/max_fs = {cols - 1}",
        "p0/min_ss = 0",
        f"p0/max_ss = {rows - 1}",
        "p0/fs = +1.000000x +0.000000y",
        "p0/ss = +0.000000x -1.000000y",
        f"p0/corner_x = {-beam_x:.4f}",
        f"p0/corner_y = {beam_y:.4f}",
        "",
    ])


def write_geometry(path: Path, start: SeriesStart) -> None:
    """Write :func:`crystfel_geometry` to ``path`` (whole or not at all): the file the pipeline and
    the hit files read (``geometry_file``); a start without distance or energy is a configuration error."""
    try:
        text = crystfel_geometry(start)
    except DataExtractionError as error:
        raise ConfigurationError(f"data_retrieval_layer.geometry_file: {error}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, text)
    log.info("wrote the detector of series %d (%s, %d x %d) to %s", start.series_id,
             start.detector_description or "no description", start.shape[1], start.shape[0], path)
