"""The data event handler of recorded files, whatever their format: events split over the workers, the
run ended by the last, one event retrieved alone.

A format brings a reader (:class:`RecordedFile`: the series it describes,
its frames, one frame's pixels); the handler replays the files' frames
through the counting data sources (:mod:`sources.stream2`), so recorded
images meet the same checks and pipeline as streamed ones: counts are photons
(``processing_layer.calibration: photon_counting``), the file's mask and
no-data value mark invalid pixels.  With ``geometry_file`` the collecting node
writes the first file's detector there (CrystFEL) before the pipeline reads
``processing_layer.geometry_file``.  ``retrieve_event_data("17")`` (the 18th
frame over all files) or ``retrieve_event_data("FILE//17")`` opens one frame.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from handlers.counting_parameters import CountingSourceParameters
from handlers.file_replay import FileEvent, FileReplay, matching_files, worker_share
from handlers.protocol import Event
from monitor.errors import DataExtractionError
from monitor.stream2.messages import Image, SeriesStart
from sources.protocol import extract_all
from sources.stream2 import DATA_SOURCES, SeriesFrames, write_geometry

__all__ = ["RecordedFile", "RecordedFilesHandler", "RecordedFilesParameters"]


class RecordedFile(Protocol):
    """One open file of frames."""

    start: SeriesStart
    """What its frames share: size, type, mask, and what it says of the experiment."""

    @property
    def frames(self) -> int: ...

    def image(self, frame: int) -> np.ndarray:
        """The pixels of frame ``frame``; DataExtractionError if it cannot be read."""
        ...

    def event_id(self, frame: int, index: int) -> int:
        """The event id of frame ``frame``, the ``index``-th of the replay."""
        ...

    def close(self) -> None: ...


class RecordedFilesParameters(CountingSourceParameters):
    """The ``data_retrieval_layer`` section: ``source`` is a file or a glob of them."""

    stop_after_acquisition: bool = True
    """Files end by themselves; kept for the MPI layer, which reads it of every handler."""


class RecordedFilesHandler:
    """A data event handler for recorded files of one kind (interface: handlers.protocol).

    A subclass names its ``Parameters`` and its ``reader`` (path, series number -> :class:`RecordedFile`).
    """

    Parameters: type[RecordedFilesParameters] = RecordedFilesParameters
    reader: Callable[[Path, int], RecordedFile]

    def __init__(self, *, source: str, parameters: RecordedFilesParameters) -> None:
        self._parameters = parameters
        self._sources = {name: DATA_SOURCES[name]() for name in parameters.required_data}
        self._files: dict[Path, tuple[RecordedFile, SeriesFrames]] = {}
        self._replay: FileReplay | None = None
        self._total = 0

    def designated_collector_rank(self) -> Literal["first", "last"]:
        return self._parameters.collector_rank

    def skip_rank_finalization(self) -> bool:
        return self._parameters.skip_rank_finalization

    def _open(self) -> FileReplay:
        """Open every file (its experiment, its image count) and order their events."""
        if self._replay is None:
            for number, path in enumerate(matching_files(self._parameters.source)):
                recorded = self.reader(path, number)
                self._files[path] = (recorded, SeriesFrames.of(recorded.start, None))
            self._replay = FileReplay(list(self._files), [f.frames for f, _ in self._files.values()])
            self._total = len(self._replay)
        return self._replay

    def initialize_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Check every file opens; write the first file's geometry if asked."""
        self._open()
        if self._parameters.geometry_file is not None:
            first, _ = next(iter(self._files.values()))
            write_geometry(self._parameters.geometry_file, first.start)

    def collecting_node_status(self) -> dict[str, Any]:
        return {"frames_expected": len(self._open())}

    def stop_event_source(self) -> bool:
        """Files have no sender to stop: the workers stop where they are."""
        return False

    def source_accounting(self) -> dict[str, Any]:
        """Every image of the files is one the run was to process."""
        return {"sent": self._total, "delivered": self._total, "dropped": {}, "estimates": {}}

    def end_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> dict[str, Any]:
        """The files replayed and their images."""
        files = [{"file": str(path), "images": recorded.frames} for path, (recorded, _) in self._files.items()]
        self._close()
        return {"replayed_files": files}

    def initialize_event_handling_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        for source in self._sources.values():
            source.initialize_data_source()
        self._open()

    def event_generator(self, *, node_rank: int, node_pool_size: int) -> Generator[Event, None, None]:
        """This worker's share of the images (see :mod:`handlers.file_replay`); ends after the last."""
        share = worker_share(node_rank=node_rank, node_pool_size=node_pool_size,
                             collector=self._parameters.collector_rank)
        try:
            yield from self._open().generator(share=share)
        finally:
            self._close()

    def open_event(self, *, event: Event) -> None:
        """Read (and decompress) the event's image."""
        file_event = event.get("file_event")
        if not isinstance(file_event, FileEvent):
            raise DataExtractionError("event holds no file frame")
        recorded, series = self._files[file_event.path]
        image = Image(series_id=0, image_id=recorded.event_id(file_event.frame, file_event.index),
                      data={series.channel: recorded.image(file_event.frame)}, start_time_s=None)
        event.update(image=image, series=series)  # type: ignore[typeddict-unknown-key]

    def close_event(self, *, event: Event) -> None:
        event.pop("image", None)  # type: ignore[misc]

    def extract_data(self, *, event: Event) -> dict[str, Any]:
        return extract_all(self._sources, event)

    def initialize_event_data_retrieval(self) -> None:
        """Open the files for :meth:`retrieve_event_data`."""
        for source in self._sources.values():
            source.initialize_data_source()
        self._open()

    def retrieve_event_data(self, event_id: str) -> dict[str, Any]:
        """One image's data by global index (``"17"``) or ``"FILE//INDEX"``."""
        event: Event = {"kind": "frame", "additional_info": {}}
        event["file_event"] = self._open().event(event_id)  # type: ignore[typeddict-unknown-key]
        self.open_event(event=event)
        try:
            return self.extract_data(event=event)
        finally:
            self.close_event(event=event)

    def _close(self) -> None:
        for recorded, _ in self._files.values():
            recorded.close()
        self._files.clear()
        self._replay = None
