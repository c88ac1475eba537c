"""The run's hit files, from the collector's side: the file list, the figures, and the hits it writes itself.

With ``writer: workers`` (the default) each worker writes its own hits
(:mod:`monitor.outputs.worker_hits`) and marks the results it sends: this
output only counts them, and keeps ``files.lst`` up to date as workers close
files.  A hit that reaches the collector with its frame and no mark (the
``collector`` writer, or workers not wired to write) is written here, by a
thread behind a bounded queue, so the collector loop never waits on disk: a
full queue drops the hit and counts it.  Both kinds of file roll the same way
(:class:`~monitor.outputs.rolling.RollingHitFiles`).

At open the run folder gets ``detector.geom`` and ``HIT-FILES.txt``; at close,
once every writer has closed its last file, ``files.lst`` lists them all.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from monitor.errors import MonitorError, one_line
from monitor.outputs.crystfel import FILE_LIST, GEOMETRY, hit_file_geometry, write_file_list, write_notes
from monitor.outputs.experiment import Experiment
from monitor.outputs.hdf5_filters import h5py
from monitor.outputs.parameters import HitFileParameters
from monitor.outputs.rolling import RollingHitFiles
from monitor.processing.protocol import ProcessedEvent

__all__ = ["HitFiles", "HitsNotWritten"]

log = logging.getLogger(__name__)

_STOP = ProcessedEvent(values={"stop": True})
"""Queued by :meth:`HitFiles.close` behind the last hit (compared by identity)."""

_AGE_CHECK_S = 0.5
"""The writer thread wakes this often, hits or not, to close a file that has grown old."""


class HitsNotWritten(MonitorError):
    """Hits were found that no file holds (a full disk, a failing file system): the run's exit code
    must say so, once every file that could be written is closed and listed."""


class HitFiles:
    """Hit files of a run: written by workers or here, listed in ``files.lst`` (a :class:`CollectorOutput`)."""

    def __init__(self, *, parameters: HitFileParameters, experiment: Experiment) -> None:
        self._parameters = parameters
        self._experiment = experiment
        self._queue: queue.Queue[ProcessedEvent] = queue.Queue(maxsize=parameters.queue_size)
        self._thread: threading.Thread | None = None
        self._run_dir = Path()
        self._files: RollingHitFiles | None = None
        self._seen: set[str] = set()
        """Names of every hit file a worker reported writing to."""
        self._listed: set[str] = set()
        """Names of the closed files ``files.lst`` holds."""
        self._list_lock = threading.Lock()
        """``files.lst`` is rewritten by the collector loop (workers' files) and the writer thread (its own)."""
        self._written = 0
        self._written_here = 0
        self._dropped = 0
        self._failed = 0
        self._failed_here = 0
        self._first_failure: str | None = None
        self._without_frame = 0

    @property
    def paths(self) -> list[Path]:
        """Every hit file of the run, workers' and this output's, sorted."""
        here = set(self._files.started) if self._files is not None else set()
        return sorted(here | {self._run_dir / name for name in self._seen})

    def open(self, *, run_dir: Path) -> None:
        self._run_dir = run_dir
        (run_dir / GEOMETRY).write_text(hit_file_geometry(self._experiment))
        write_notes(run_dir, compression=self._parameters.compression)
        write_file_list(run_dir, ())
        self._files = RollingHitFiles(run_dir, f"{run_dir.name}-hits", parameters=self._parameters,
                                      experiment=self._experiment)
        self._thread = threading.Thread(target=self._write_loop, name="hit-file-writer", daemon=True)
        self._thread.start()

    def on_result(self, result: ProcessedEvent) -> None:
        values = result.values
        closed = values.get("hit_files_closed")
        if closed:
            self._update_file_list(closed)
        if not values.get("is_hit"):
            return
        if "hit_file" in values:
            self._written += 1
            self._seen.add(values["hit_file"])
        elif "hit_file_error" in values:
            lost = values.get("hits_lost_with_file", 0)
            self._failed += 1 + lost
            self._written -= lost
            self._first_failure = self._first_failure or values["hit_file_error"]
        elif "frame" not in result.arrays:
            self._without_frame += 1
        else:
            try:
                self._queue.put_nowait(result)
            except queue.Full:
                self._dropped += 1

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        """Nothing to do: the writer thread rolls files on its own clock."""

    def close(self, *, summary: dict[str, Any]) -> None:
        if self._thread is None:
            return
        while self._thread.is_alive():  # a writer that died cannot take the stop: never wait for it
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._thread = None
        with self._list_lock:
            here = {path.name for path in self._files.closed}
            write_file_list(self._run_dir, self._listed | here | set(self._complete(self._seen - self._listed)))
        failed = self._failed + self._failed_here
        if failed:  # every file is closed and listed: now the run's exit code says hits are missing
            raise HitsNotWritten(f"outputs.hit_files: {failed} of {failed + self._written + self._written_here} "
                                 f"hits could not be written (the first: {self._first_failure or 'see the log'})")

    def _complete(self, names: set[str]) -> list[str]:
        """Of the workers' files never announced closed, those that open: a worker closes its last one as it
        ends, but a worker that was lost (killed, frozen) may have left its file in flight unfinished."""
        complete = []
        for name in sorted(names):
            if not (self._run_dir / name).exists():  # removed by its writer after a failure it counted
                continue
            try:
                with h5py.File(self._run_dir / name, "r"):
                    complete.append(name)
            except OSError as error:
                log.warning("%s is not a complete HDF5 file (%s): left out of %s; try h5clear -s on it",
                            name, error, FILE_LIST)
        return complete

    def counters(self) -> dict[str, int]:
        return {
            "hits_written": self._written + self._written_here,
            "hits_dropped": self._dropped,
            "hits_failed": self._failed + self._failed_here,
            "hits_without_frame": self._without_frame,
            "hit_files": len(self.paths),
        }

    def _update_file_list(self, closed: list[str]) -> None:
        """Add ``closed`` files (names) to ``files.lst``, at once."""
        with self._list_lock:
            self._listed.update(closed)
            write_file_list(self._run_dir, self._listed)

    def _write_loop(self) -> None:
        files = self._files
        try:
            while True:
                try:
                    hit: ProcessedEvent | None = self._queue.get(timeout=_AGE_CHECK_S)
                except queue.Empty:
                    hit = None  # no hit for a while: only the file's age is checked
                if hit is _STOP:
                    return
                closed_before = len(files.closed)
                if hit is not None:
                    self._write(files, hit)
                files.roll_if_old()
                if len(files.closed) > closed_before:
                    self._update_file_list([path.name for path in files.closed[closed_before:]])
        finally:
            files.close()

    def _write(self, files: RollingHitFiles, hit: ProcessedEvent) -> None:
        try:
            files.write(hit)
        except Exception as error:  # whatever one hit does, the thread goes on with the next
            log.debug("hit not written", exc_info=True)
            self._failed_here += 1
            self._first_failure = self._first_failure or one_line(error)
            if self._failed_here == 1:
                log.error("hit %s not written (later failures only counted): %s", hit.values.get("event_id"), error)
            return
        self._written_here += 1
