"""Hits written to rolling CXI files by a writer thread, so the collector never waits on disk.

:meth:`HitFiles.on_result` only puts hits on a bounded queue (``put_nowait``);
a full queue drops the hit and counts it.  The writer thread compresses and
writes (h5py and the filters do the heavy work outside Python's lock), flushes
at least every ``flush_interval_s`` and starts a new file once one reaches
``max_file_size_mb``.  :meth:`close` drains the queue and closes the file.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.outputs.cxi import CXIFile
from monitor.outputs.parameters import HitFileParameters
from monitor.processing.protocol import ProcessedEvent

__all__ = ["HitFiles"]

log = logging.getLogger(__name__)

_STOP = None
"""Queued by :meth:`HitFiles.close` behind the last hit."""


class HitFiles:
    """Writes every hit that carries a frame to CXI files in the run folder (a :class:`CollectorOutput`)."""

    def __init__(self, *, parameters: HitFileParameters) -> None:
        self._parameters = parameters
        self._queue: queue.Queue[ProcessedEvent | None] = queue.Queue(maxsize=parameters.queue_size)
        self._thread: threading.Thread | None = None
        self._run_dir = Path()
        self._file: CXIFile | None = None
        self.paths: list[Path] = []
        """Every file started so far, in order."""
        self._written = 0
        self._dropped = 0
        self._failed = 0
        self._without_frame = 0

    def open(self, *, run_dir: Path) -> None:
        self._run_dir = run_dir
        self._thread = threading.Thread(target=self._write_loop, name="hit-file-writer", daemon=True)
        self._thread.start()

    def on_result(self, result: ProcessedEvent) -> None:
        if not result.values.get("is_hit"):
            return
        if "frame" not in result.arrays:
            self._without_frame += 1
            return
        try:
            self._queue.put_nowait(result)
        except queue.Full:
            self._dropped += 1

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        """Nothing to do: the writer thread flushes on its own clock."""

    def close(self, *, summary: dict[str, Any]) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    def counters(self) -> dict[str, int]:
        return {
            "hits_written": self._written,
            "hits_dropped": self._dropped,
            "hits_failed": self._failed,
            "hits_without_frame": self._without_frame,
            "hit_files": len(self.paths),
        }

    def _write_loop(self) -> None:
        interval = self._parameters.flush_interval_s
        next_flush = time.monotonic() + interval
        try:
            while True:
                try:
                    hit = self._queue.get(timeout=max(0.0, next_flush - time.monotonic()))
                except queue.Empty:
                    hit = None
                else:
                    if hit is _STOP:
                        return
                    self._write(hit)
                if time.monotonic() >= next_flush:
                    if self._file is not None:
                        self._file.flush()
                    next_flush = time.monotonic() + interval
        finally:
            self._close_file()

    def _write(self, hit: ProcessedEvent) -> None:
        try:
            if self._file is None:
                self._file = self._next_file(hit)
            self._file.append(hit)
        except (OSError, ValueError) as error:
            self._failed += 1
            if self._failed == 1:
                log.error("hit %s not written (later failures only counted): %s", hit.values.get("event_id"), error)
            return
        self._written += 1
        if self._file.size_bytes() >= self._parameters.max_file_size_mb * 1e6:
            self._close_file()

    def _next_file(self, first_hit: ProcessedEvent) -> CXIFile:
        path = self._run_dir / f"{self._run_dir.name}-hits-{len(self.paths):04d}.cxi"
        frame = first_hit.arrays["frame"]
        cxi = CXIFile(
            path,
            frame_shape=frame.shape,
            frame_dtype=np.dtype(self._parameters.frame_dtype) if frame.dtype.kind == "f" else frame.dtype,
            max_peaks=self._parameters.max_peaks,
            compression=self._parameters.compression,
        )
        self.paths.append(path)
        log.info("writing hits to %s", path)
        return cxi

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
