"""One rank's hits in a series of CXI files, each closed after N hits, T seconds or S megabytes.

Closing is what makes an HDF5 file readable by CrystFEL, h5py and ``h5dump``
alike (no SWMR), so a file never stays open long: every closed file is a
complete plain HDF5 file, and a crash (SIGKILL, power) can leave at most the
one file in flight unfinished.  The caller checks the age at every event
(:meth:`RollingHitFiles.roll_if_old`), so a file is closed on time even when
hits stop coming.  Files are named ``<prefix>-<n>.cxi``, ``n`` counting from 0.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import numpy as np

from monitor.errors import one_line
from monitor.outputs.cxi import CXIFile
from monitor.outputs.experiment import Experiment
from monitor.outputs.parameters import HitFileParameters
from monitor.processing.protocol import ProcessedEvent

__all__ = ["RollingHitFiles"]

ROOM_IN_FRAMES = 2
"""Uncompressed frames of free space a hit needs on the disk before it is written."""

log = logging.getLogger(__name__)


class RollingHitFiles:
    """Writes hits, in order, to ``folder/<prefix>-NNNN.cxi`` files it closes by count, age and size."""

    def __init__(self, folder: Path, prefix: str, *, parameters: HitFileParameters, experiment: Experiment) -> None:
        self._folder = folder
        self._prefix = prefix
        self._parameters = parameters
        self._experiment = experiment
        self._file: CXIFile | None = None
        self._opened_at = 0.0
        self.started: list[Path] = []
        """Every file started, in order."""
        self.closed: list[Path] = []
        """Every file closed (complete), in order."""
        self.lost_hits = 0
        """Hits written to a file that a later failure left unreadable (it was removed)."""

    @property
    def current(self) -> Path | None:
        """The file in flight, if one is open."""
        return None if self._file is None else self._file.path

    def write(self, hit: ProcessedEvent) -> Path:
        """Append ``hit`` (it must carry a ``frame``) and return the file it went to.

        The file is closed right after if this hit filled it.  Raises
        :class:`OSError` when the disk has no room for it (:meth:`_check_room`)
        and whatever the write raised when it failed; a file that failed to
        open is not kept as the file in flight, and one that failed mid-write
        is given up (:meth:`_give_up`).
        """
        self._check_room(hit.arrays["frame"].nbytes)
        if self._file is None:
            self._file = self._open(hit)
        cxi = self._file
        try:
            cxi.append(hit)
            p = self._parameters
            if cxi.n_hits >= p.max_hits_per_file or cxi.size_bytes() >= p.max_file_size_mb * 1e6:
                self.close()
            else:
                cxi.flush()
        except Exception:
            self._give_up()
            raise
        return cxi.path

    def _check_room(self, frame_bytes: int) -> None:
        """Refuse a hit while the disk has no room for two more uncompressed frames: HDF5 cannot be
        trusted with a file once a write ran out of space (it may not close, or crash the process),
        so a full disk must be met here, before the write, with the files so far still whole."""
        disk = os.statvfs(self._folder)
        free = disk.f_bavail * disk.f_frsize
        if free < ROOM_IN_FRAMES * frame_bytes:
            raise OSError(errno.ENOSPC, f"No space left on device: {free / 1e6:.1f} MB free in {self._folder}, "
                                        f"a hit is written only with {ROOM_IN_FRAMES * frame_bytes / 1e6:.1f} MB")

    def _give_up(self) -> None:
        """After a failed write, the file in flight cannot be trusted: it is removed, and its hits
        counted as lost (the files closed before are whole)."""
        cxi, self._file = self._file, None
        if cxi is None:
            return
        try:
            cxi.close()
        except Exception as error:
            log.debug("closing %s after a failed write: %s", cxi.path.name, one_line(error))
        log.error("%s could not be completed: removed with its %d earlier hits", cxi.path.name, cxi.n_hits)
        self.lost_hits += cxi.n_hits
        cxi.path.unlink(missing_ok=True)

    def roll_if_old(self, now: float | None = None) -> Path | None:
        """Close the file in flight if it is ``max_file_age_s`` old; return it if closed."""
        if self._file is None:
            return None
        if (time.monotonic() if now is None else now) - self._opened_at < self._parameters.max_file_age_s:
            return None
        path = self._file.path
        self.close()
        return path

    def close(self) -> None:
        """Close the file in flight (if any): it joins :attr:`closed`."""
        if self._file is None:
            return
        cxi, self._file = self._file, None
        cxi.close()
        self.closed.append(cxi.path)
        log.debug("closed %s (%d hits)", cxi.path, cxi.n_hits)

    def _open(self, first_hit: ProcessedEvent) -> CXIFile:
        path = self._folder / f"{self._prefix}-{len(self.started):04d}.cxi"
        frame = first_hit.arrays["frame"]
        path.unlink(missing_ok=True)  # what an earlier failure to create it (a full disk) left
        cxi = CXIFile(
            path,
            frame_shape=frame.shape,
            frame_dtype=np.dtype(self._parameters.frame_dtype),
            max_peaks=self._parameters.max_peaks,
            compression=self._parameters.compression,
            experiment=self._experiment,
        )
        self.started.append(path)
        self._opened_at = time.monotonic()
        log.info("writing hits to %s", path)
        return cxi
