"""One rank's hits in a series of CXI files, each closed after N hits, T seconds or S megabytes.

Closing is what makes an HDF5 file readable by CrystFEL, h5py and ``h5dump``
alike (no SWMR), so a file never stays open long: every closed file is a
complete plain HDF5 file, and a crash (SIGKILL, power) can leave at most the
one file in flight unfinished.  The caller checks the age at every event
(:meth:`RollingHitFiles.roll_if_old`), so a file is closed on time even when
hits stop coming.  Files are named ``<prefix>-<n>.cxi``, ``n`` counting from 0.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from monitor.outputs.cxi import CXIFile
from monitor.outputs.experiment import Experiment
from monitor.outputs.parameters import HitFileParameters
from monitor.processing.protocol import ProcessedEvent

__all__ = ["RollingHitFiles"]

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

    @property
    def current(self) -> Path | None:
        """The file in flight, if one is open."""
        return None if self._file is None else self._file.path

    def write(self, hit: ProcessedEvent) -> Path:
        """Append ``hit`` (it must carry a ``frame``) and return the file it went to.

        The file is closed right after if this hit filled it.  Raises
        :class:`OSError` or :class:`ValueError` when the hit cannot be written;
        a file that failed to open is not kept as the file in flight.
        """
        if self._file is None:
            self._file = self._open(hit)
        cxi = self._file
        cxi.append(hit)
        p = self._parameters
        if cxi.n_hits >= p.max_hits_per_file or cxi.size_bytes() >= p.max_file_size_mb * 1e6:
            self.close()
        else:
            cxi.flush()
        return cxi.path

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
        cxi = CXIFile(
            path,
            frame_shape=frame.shape,
            frame_dtype=np.dtype(self._parameters.frame_dtype) if frame.dtype.kind == "f" else frame.dtype,
            max_peaks=self._parameters.max_peaks,
            compression=self._parameters.compression,
            experiment=self._experiment,
        )
        self.started.append(path)
        self._opened_at = time.monotonic()
        log.info("writing hits to %s", path)
        return cxi
