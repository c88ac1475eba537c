"""What every recorded-file handler shares: the events split across workers, start, retrieval by id.

A file source knows its events before the run starts (frame ``k`` of the
files, in order), so no sender spreads them: worker ``w`` of ``W`` replays
events ``w, w + W, w + 2W, ...`` (``node_rank``/``node_pool_size``, the
collector's rank left out), each event exactly once over the run; the first
worker announces the acquisition.  The run ends by itself once every worker
has replayed its share.  :meth:`FileReplay.event` and the event-id forms let a
handler's ``retrieve_event_data`` open one chosen event: the global index
(``"17"``), or ``"FILE//INDEX"`` (the frame's index in that file, as OM names
file events).
"""

from __future__ import annotations

import glob
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from handlers.protocol import Event
from monitor.errors import ConfigurationError, DataExtractionError

__all__ = ["FileEvent", "FileReplay", "matching_files", "worker_share"]


def matching_files(source: str) -> list[Path]:
    """The files a ``source`` path or glob names, sorted; one clear line when there are none."""
    paths = sorted(Path(p) for p in glob.glob(source)) if glob.has_magic(source) else [Path(source)]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise ConfigurationError(f"data_retrieval_layer.source: no file {missing[0] if missing else source!r}")
    return paths


def worker_share(*, node_rank: int, node_pool_size: int, collector: Literal["first", "last"]) -> tuple[int, int]:
    """This worker's number among the workers and how many there are (the collector replays nothing)."""
    workers = node_pool_size - 1
    index = node_rank - 1 if collector == "first" else node_rank
    if not 0 <= index < workers:
        raise ValueError(f"rank {node_rank} of {node_pool_size} is the collector, not a worker")
    return index, workers


@dataclass(frozen=True)
class FileEvent:
    """One frame of the recorded files: its global index, its file and its index there."""

    index: int
    path: Path
    frame: int

    @property
    def label(self) -> str:
        return f"{self.path}//{self.frame}"


class FileReplay:
    """The ordered events of a list of files (``frames[k]``: how many frames file ``k`` holds)."""

    def __init__(self, paths: Sequence[Path], frames: Sequence[int]) -> None:
        self._events = [FileEvent(0, path, frame) for path, count in zip(paths, frames) for frame in range(count)]
        self._events = [FileEvent(k, e.path, e.frame) for k, e in enumerate(self._events)]
        self._by_label = {event.label: event for event in self._events}

    def __len__(self) -> int:
        return len(self._events)

    def event(self, event_id: str | int) -> FileEvent:
        """The event of a global index or ``FILE//INDEX``; DataExtractionError if there is none."""
        text = str(event_id).strip()
        found = self._by_label.get(text)
        if found is None and text.lstrip("-").isdigit() and 0 <= int(text) < len(self._events):
            found = self._events[int(text)]
        if found is None:
            raise DataExtractionError(f"no event {text!r} in these files ({len(self._events)} events: "
                                      f"0-{len(self._events) - 1}, or FILE//INDEX)")
        return found

    def generator(self, *, share: tuple[int, int]) -> Generator[Event, None, None]:
        """This worker's events in order, the first worker's behind a start event."""
        index, workers = share
        if index == 0:
            yield {"kind": "start", "additional_info": {"events": len(self._events)}}
        for event in self._events[index::workers]:
            info: dict[str, Any] = {"received_at": time.time(), "file": str(event.path), "file_frame": event.frame}
            yield {"kind": "frame", "file_event": event, "additional_info": info}  # type: ignore[typeddict-unknown-key]
