"""The data event handler of recorded files, whatever their format: events split over the workers, the
run ended by the last, one event retrieved alone.

A format brings a reader (:class:`RecordedFile`: its frames, and what one
frame puts into its event) and the data sources that read such events: the
counting sources (:mod:`sources.stream2`) for images of counts, so recorded
images meet the same checks and pipeline as streamed ones, or the JUNGFRAU
sources for raw frames, calibrated as on the stream.  With ``geometry_file``
the collecting node writes the first file's detector (its ``start``) there,
as a CrystFEL geometry, before the pipeline reads ``processing_layer.geometry_file``.
``retrieve_event_data("17")`` (the 18th frame over all files) or
``retrieve_event_data("FILE//17")`` opens one frame.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from handlers.parameters import CountingSourceParameters
from handlers.file_replay import FileEvent, FileReplay, matching_files, worker_share
from handlers.protocol import Event
from monitor.errors import ConfigurationError, DataExtractionError
from sources.protocol import extract_all
from sources.stream2 import DATA_SOURCES, write_geometry

__all__ = ["RecordedFile", "RecordedFilesHandler", "RecordedFilesParameters"]


class RecordedFile(Protocol):
    """One open file of frames."""

    @property
    def frames(self) -> int: ...

    def event_data(self, frame: int, index: int) -> dict[str, Any]:
        """What frame ``frame`` (the ``index``-th of the replay) puts into its event for the data
        sources; DataExtractionError if it cannot be read."""
        ...

    def close(self) -> None: ...


class RecordedFilesParameters(CountingSourceParameters):
    """The ``data_retrieval_layer`` section: ``source`` is a file or a glob of them."""

    stop_after_acquisition: bool = True
    """Files end by themselves; kept for the MPI layer, which reads it of every handler."""


class RecordedFilesHandler:
    """A data event handler for recorded files of one kind (interface: handlers.protocol).

    A subclass names its ``reader`` (path, series number -> :class:`RecordedFile`), and its
    ``Parameters`` and ``data_sources`` where they are not the counting ones.
    """

    Parameters: type[BaseModel] = RecordedFilesParameters
    reader: Callable[[Path, int], RecordedFile]
    data_sources: dict[str, type] = DATA_SOURCES

    def __init__(self, *, source: str, parameters: RecordedFilesParameters) -> None:
        self._parameters = parameters
        self._sources = {name: self.data_sources[name]() for name in parameters.required_data}
        self._files: dict[Path, RecordedFile] = {}
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
                self._files[path] = self.reader(path, number)
            self._replay = FileReplay(list(self._files), [f.frames for f in self._files.values()])
            self._total = len(self._replay)
        return self._replay

    def initialize_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Check every file opens; write the first file's geometry if asked."""
        self._open()
        geometry_file = getattr(self._parameters, "geometry_file", None)
        if geometry_file is not None:
            start = getattr(next(iter(self._files.values())), "start", None)
            if start is None:
                raise ConfigurationError("data_retrieval_layer.geometry_file: these files describe no detector")
            write_geometry(geometry_file, start)

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
        files = [{"file": str(path), "images": recorded.frames} for path, recorded in self._files.items()]
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
        data = self._files[file_event.path].event_data(file_event.frame, file_event.index)
        event.update(data)  # type: ignore[typeddict-item]
        event["opened"] = tuple(data)  # type: ignore[typeddict-unknown-key]

    def close_event(self, *, event: Event) -> None:
        """Let the frame's buffers go now rather than at the next event."""
        for key in event.pop("opened", ()):  # type: ignore[misc]
            event.pop(key, None)  # type: ignore[misc]

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
        for recorded in self._files.values():
            recorded.close()
        self._files.clear()
        self._replay = None
