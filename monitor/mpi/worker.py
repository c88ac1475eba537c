"""The worker loop: event -> extract -> process -> send the result to the collector.

A worker never decides alone that the run is over: it tells the collector what
it saw (the end of an acquisition, an error, a signal, its generator running
dry) and keeps working until the collector says ``stop``.  That keeps one
place, the collector, in charge of the end of the run, whatever happened where.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mpi4py import MPI

from handlers.protocol import DataEventHandlerProtocol, Event
from monitor.errors import DataExtractionError
from monitor.mpi.messages import Outbox, poll_control
from monitor.mpi.ranks import RankLayout
from monitor.mpi.signals import StopSignal
from monitor.processing.protocol import ProcessingPipelineProtocol

__all__ = ["WorkerStats", "run_worker"]

log = logging.getLogger(__name__)

IDLE_POLLS_TO_DRAIN = 2
"""Quiet poll intervals, after the collector asks, before a worker calls itself drained.

Two, because the first may have started before the request arrived."""

SKIP_LOG_EVERY = 1000
"""After the first few, one skipped event in this many is logged: failures stay visible, logs readable."""


@dataclass
class WorkerStats:
    events: int = 0
    failed: int = 0
    bytes: int = 0
    busy_s: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Worker:
    def __init__(self, comm: MPI.Comm, layout: RankLayout, handler: DataEventHandlerProtocol,
                 pipeline: ProcessingPipelineProtocol, stop_signal: StopSignal, stop_timeout_s: float) -> None:
        self._comm = comm
        self._layout = layout
        self._handler = handler
        self._pipeline = pipeline
        self._stop_signal = stop_signal
        self._stop_timeout_s = stop_timeout_s
        self._outbox = Outbox(comm, layout.collector)
        self._ranks = {"node_rank": layout.rank, "node_pool_size": layout.size}
        self.stats = WorkerStats()
        self._stopped = False
        self._draining_idles: int | None = None
        self._asked_to_stop = False

    def run(self) -> WorkerStats:
        try:
            self._handler.initialize_event_handling_on_processing_node(**self._ranks)
            self._pipeline.initialize_processing_node(**self._ranks)
            self._consume_events()
        except Exception as error:  # any failure ends the whole job, reported once, by the collector
            self.stats.error = f"rank {self._layout.rank}: {type(error).__name__}: {error}"
            log.debug("worker failed", exc_info=True)
            self._outbox.send("error", {"message": self.stats.error})
        if not self._stopped:
            self._wait_for_stop()
        self._pipeline.end_processing_on_processing_node(**self._ranks)
        self._outbox.send("bye")
        self._outbox.flush()
        return self.stats

    def _consume_events(self) -> None:
        events = self._handler.event_generator(**self._ranks)
        try:
            for event in events:
                self._obey_collector()
                if self._stopped:
                    return
                self._forward_signal()
                self._handle(event)
            self._outbox.send("finished")
        finally:
            events.close()

    def _handle(self, event: Event) -> None:
        kind = event.get("kind", "frame")
        info = event.get("additional_info", {})
        if kind == "frame":
            self._process(event)
        elif kind == "end":
            self._outbox.send("end", {"frames_sent": info.get("frames_sent"),
                                      "frames_per_port": info.get("frames_per_port", {})})
        elif kind == "start":
            self._outbox.send("start")
        elif kind == "idle" and self._draining_idles is not None:
            self._draining_idles += 1
            if self._draining_idles == IDLE_POLLS_TO_DRAIN:
                self._outbox.send("drained")

    def _process(self, event: Event) -> None:
        started = time.perf_counter()
        self.stats.bytes += event.get("additional_info", {}).get("bytes", 0)
        try:
            self._handler.open_event(event=event)
            data = self._handler.extract_data(event=event)
            result = self._pipeline.process_data(data=data, **self._ranks)
        except DataExtractionError as error:
            self.stats.failed += 1
            if self.stats.failed <= 3 or self.stats.failed % SKIP_LOG_EVERY == 0:
                log.warning("event skipped (%d so far on this rank): %s", self.stats.failed, error)
            self._outbox.send("skipped", {"reason": str(error)})
        else:
            self.stats.events += 1
            self._outbox.send_result(result)
        finally:
            self._handler.close_event(event=event)
            self.stats.busy_s += time.perf_counter() - started

    def _obey_collector(self) -> None:
        for kind, values in poll_control(self._comm, self._layout.collector):
            if kind == "stop":
                self._stopped = True
            elif kind == "drain" and self._draining_idles is None:
                self._draining_idles = 0
            elif kind == "feedback":
                self._pipeline.receive_feedback(feedback=values)

    def _forward_signal(self) -> None:
        if self._stop_signal.received and not self._asked_to_stop:
            self._asked_to_stop = True
            self._outbox.send("stop_request", {"signal": self._stop_signal.name})

    def _wait_for_stop(self) -> None:
        """Wait, without spinning, for the collector's stop; abort the job if it never comes."""
        deadline = time.monotonic() + 4 * self._stop_timeout_s
        while not self._stopped:
            self._obey_collector()
            self._forward_signal()
            if time.monotonic() > deadline:
                log.error("no stop from the collector (rank %d) within %.0f s: aborting the job",
                          self._layout.collector, 4 * self._stop_timeout_s)
                self._comm.Abort(1)
            time.sleep(0.01)


def run_worker(comm: MPI.Comm, layout: RankLayout, handler: DataEventHandlerProtocol,
               pipeline: ProcessingPipelineProtocol, stop_signal: StopSignal, stop_timeout_s: float) -> WorkerStats:
    """Run this rank as a worker until the collector ends the run."""
    return _Worker(comm, layout, handler, pipeline, stop_signal, stop_timeout_s).run()
