"""Workers write their own hits (as Cheetah and psocake do); the collector gets only small results.

One collector writing every hit caps the whole monitor (7.8 ms of its CPU and a
4 MiB frame over MPI per hit: about 130 hits/s).  Here each worker appends its
hits to its own rolling CXI files in the run folder
(``<run>-hits-r<rank>-NNNN.cxi``) and sends on the result without its frame
and mask.  What the collector needs to account for them travels in the
result's ``values``:

* ``hit_file``: the file a hit was written to (name in the run folder);
* ``hit_file_error``: why a hit could not be written (it is counted as failed);
* ``hits_lost_with_file``: hits written before into a file that the failure left
  unreadable (removed): the collector moves them from written to failed;
* ``hit_files_closed``: files closed since the worker's last result, complete.

Every ``preview_interval_s`` a written hit keeps its frame and mask, so the
viewer and the live feed still see recent hits.  Wiring: the collector shares the run
folder at start-up (:func:`share_run_dir`, a broadcast every rank makes) and a
worker's pipeline is wrapped by :func:`writing_hits`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from monitor.errors import ConfigurationError, one_line
from monitor.outputs.experiment import Experiment, experiment_from_document
from monitor.outputs.parameters import HitFileParameters, OutputParameters
from monitor.outputs.rolling import RollingHitFiles
from monitor.processing.protocol import ProcessedEvent, ProcessingPipelineProtocol

__all__ = ["HitWritingPipeline", "WorkerHitWriter", "share_run_dir", "writing_hits"]

log = logging.getLogger(__name__)

FRAME_ARRAYS = ("frame", "valid")
"""The per-pixel arrays a written hit no longer needs to send."""

_RUN_DIR_BYTES = 4096
_BROADCAST_SLEEP_S = 0.005


class WorkerHitWriter:
    """Writes one worker's hits to rolling CXI files; hands back each result without what it wrote."""

    def __init__(self, run_dir: Path, *, rank: int, parameters: HitFileParameters, experiment: Experiment) -> None:
        self._files = RollingHitFiles(run_dir, f"{run_dir.name}-hits-r{rank:02d}", parameters=parameters,
                                      experiment=experiment)
        self._preview_interval_s = parameters.preview_interval_s
        self._last_preview = -float("inf")
        self._announced = 0
        self.written = 0
        self.failed = 0
        self.without_frame = 0

    def take(self, result: ProcessedEvent, *, now: float | None = None) -> ProcessedEvent:
        """Write ``result`` if it is a hit with a frame; return what the collector should get.

        Every call also closes the file in flight once it is too old, so files
        close on time between hits.  Non-hits pass unchanged but for their mask.
        """
        now = time.monotonic() if now is None else now
        self._files.roll_if_old(now)
        values, arrays = dict(result.values), dict(result.arrays)
        if values.get("is_hit"):
            if "frame" in arrays:
                self._write(result, values, arrays, now)
            else:
                self.without_frame += 1
        else:
            arrays.pop("valid", None)
        closed = self._files.closed[self._announced:]
        if closed:
            values["hit_files_closed"] = [path.name for path in closed]
            self._announced = len(self._files.closed)
        return ProcessedEvent(values=values, arrays=arrays)

    def _write(self, result: ProcessedEvent, values: dict[str, Any], arrays: dict[str, np.ndarray],
               now: float) -> None:
        lost_before = self._files.lost_hits
        try:
            path = self._files.write(result)
        except Exception as error:  # a full disk, a bad frame: this hit is counted, the worker goes on
            self.failed += 1
            values["hit_file_error"] = f"{one_line(error)}"
            lost = self._files.lost_hits - lost_before
            if lost:  # written (and counted) before, gone with the file that could not be completed
                self.written -= lost
                self.failed += lost
                values["hits_lost_with_file"] = lost
            if self.failed == 1:
                log.error("hit %s not written (later failures only counted): %s", values.get("event_id"),
                          one_line(error))
            return
        self.written += 1
        values["hit_file"] = path.name
        if now - self._last_preview >= self._preview_interval_s:
            self._last_preview = now  # frame and mask go on: the viewer and the live feed (NaN pixels) use them
        else:
            for name in FRAME_ARRAYS:
                arrays.pop(name, None)

    def close(self) -> dict[str, int]:
        """Close the file in flight; return the figures (also counted by the collector from the results)."""
        self._files.close()
        return self.counters()

    def counters(self) -> dict[str, int]:
        return {"hits_written": self.written, "hits_failed": self.failed, "hits_without_frame": self.without_frame,
                "hit_files": len(self._files.started)}


class HitWritingPipeline:
    """A worker's pipeline whose results pass through a :class:`WorkerHitWriter`; all else is the pipeline's."""

    def __init__(self, pipeline: ProcessingPipelineProtocol, writer: WorkerHitWriter) -> None:
        self._pipeline = pipeline
        self.writer = writer
        self._parameter_set = 0

    def process_data(self, *, node_rank: int, node_pool_size: int, data: dict[str, Any]) -> ProcessedEvent:
        result = self._pipeline.process_data(node_rank=node_rank, node_pool_size=node_pool_size, data=data)
        result.values["parameter_set"] = self._parameter_set  # in the hit file too
        return self.writer.take(result)

    def update_parameters(self, *, parameters: Any, number: int) -> None:
        self._pipeline.update_parameters(parameters=parameters, number=number)
        self._parameter_set = number

    def end_processing_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        try:
            figures = self.writer.close()
            log.info("rank %d: %s", node_rank, ", ".join(f"{key} {value}" for key, value in figures.items()))
        finally:
            self._pipeline.end_processing_on_processing_node(node_rank=node_rank, node_pool_size=node_pool_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)


def writing_hits(pipeline: ProcessingPipelineProtocol, outputs: OutputParameters,
                 document: Mapping[str, Any] | None, *, run_dir: Path | None, rank: int) -> ProcessingPipelineProtocol:
    """``pipeline`` wrapped to write its hits on this worker, or as it is when workers are not to write.

    Workers write when hit files are on with ``writer: workers`` and the
    collector shared a run folder (none when its outputs failed to open).
    """
    parameters = outputs.hit_files
    if run_dir is None or not parameters.enabled or parameters.writer != "workers":
        return pipeline
    try:
        experiment = experiment_from_document(document)
    except ConfigurationError:  # the collector met it too, opening its outputs: it reports it and ends the run
        return pipeline
    return HitWritingPipeline(pipeline, WorkerHitWriter(run_dir, rank=rank, parameters=parameters,
                                                        experiment=experiment))


def share_run_dir(comm: MPI.Comm, root: int, run_dir: Path | None) -> Path | None:
    """The collector's run folder on every rank (``root`` passes it, the others None).

    A broadcast of a fixed-size byte buffer (no pickle), waited for without
    spinning; every rank calls it once, when the collector lets the workers start.
    """
    buffer = np.zeros(_RUN_DIR_BYTES, dtype=np.uint8)
    encoded = str(run_dir).encode() if comm.rank == root and run_dir is not None else b""
    if len(encoded) >= _RUN_DIR_BYTES:  # never raise here: the other ranks are already waiting
        log.error("run folder path longer than %d bytes: the collector writes the hits", _RUN_DIR_BYTES - 1)
        encoded = b""
    buffer[: len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
    request = comm.Ibcast(buffer, root=root)
    while not request.Test():
        time.sleep(_BROADCAST_SLEEP_S)
    text = buffer.tobytes().rstrip(b"\0").decode()
    return Path(text) if text else None
