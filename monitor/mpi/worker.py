"""The worker loop: event -> extract -> process -> send the result to the collector.

A worker never decides alone that the run is over: it tells the collector what
it saw (the end of an acquisition, an error, a signal, its generator running
dry) and keeps working until the collector says ``stop``.  That keeps one
place, the collector, in charge of the end of the run, whatever happened where.

While it has nothing to do it says so (``alive``) about once a second, so the
collector can tell a quiet worker from a frozen or dead one.  Its last word,
``bye``, carries its own figures; then it waits, with a deadline, for the
run's exit code.  No collective MPI call ends a run: one frozen rank cannot
hold the others.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from mpi4py import MPI

from handlers.protocol import DataEventHandlerProtocol, Event
from monitor.errors import DataExtractionError, one_line
from monitor.logs import RateLimitedLog
from monitor.mpi.messages import Outbox, poll_control
from monitor.mpi.ranks import RankLayout
from monitor.mpi.signals import StopSignal
from monitor.processing.protocol import ProcessingPipelineProtocol

__all__ = ["WorkerStats", "run_worker"]

log = logging.getLogger(__name__)

IDLE_POLLS_TO_DRAIN = 2
"""Quiet poll intervals, after the collector asks, before a worker calls itself drained.

Two, because the first may have started before the request arrived."""

ALIVE_EVERY_S = 1.0
"""A worker that has sent nothing for this long says it is alive (the collector's silence
warning comes after a few of these); a busy one says, as often, how busy it has been."""


@dataclass
class WorkerStats:
    """This rank's figures, sent in its last message (the summary's per-rank table)."""

    events: int = 0
    failed: int = 0
    bytes: int = 0
    busy_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0


class _Worker:
    def __init__(self, comm: MPI.Comm, layout: RankLayout, handler: DataEventHandlerProtocol,
                 pipeline: ProcessingPipelineProtocol, stop_signal: StopSignal, stop_timeout_s: float,
                 on_stop: Callable[[], None]) -> None:
        self._comm = comm
        self._on_stop = on_stop
        self._layout = layout
        self._handler = handler
        self._pipeline = pipeline
        self._stop_signal = stop_signal
        self._stop_timeout_s = stop_timeout_s
        self._outbox = Outbox(comm, layout.collector)
        self._ranks = {"node_rank": layout.rank, "node_pool_size": layout.size}
        self.stats = WorkerStats()
        self._started = (time.monotonic(), time.process_time())
        self._stopped = False
        self._exit_code: int | None = None
        self._draining_idles: int | None = None
        self._signals_forwarded = 0
        self._parameter_set = 0
        self._next_load_report = time.monotonic() + ALIVE_EVERY_S
        self._skipped = RateLimitedLog(log, interval_s=5.0, burst=3)

    def run(self, *, collector_started: bool) -> int:
        """Work until the collector says stop; return the run's exit code.

        ``collector_started``: False when the collector failed to start (it said why, and sends
        stop): nothing is initialized, and the rank only ends in order, at once, rather than
        spending seconds preparing for a run that never comes (and being taken for lost)."""
        self._outbox.send("hello", {"pid": os.getpid(), "host": socket.gethostname()})
        if collector_started:
            self._work()
        if not self._stopped:
            self._wait_for("stop")
        if collector_started:
            self._pipeline.end_processing_on_processing_node(**self._ranks)
        return self._say_goodbye()

    def _work(self) -> None:
        try:
            self._handler.initialize_event_handling_on_processing_node(**self._ranks)
            self._pipeline.initialize_processing_node(**self._ranks)
            self._outbox.send("ready")  # from here on, its silence means something
            self._consume_events()
        except Exception as error:  # any failure ends the whole job, reported once, by the collector
            log.debug("worker failed", exc_info=True)
            self._outbox.send("error", {"message": f"rank {self._layout.rank}: {one_line(error)}"})

    def _say_goodbye(self) -> int:
        """The last word (this rank's figures), then the run's exit code from the collector."""
        self._skipped.flush(f"events skipped on rank {self._layout.rank}")
        self.stats.wall_s = time.monotonic() - self._started[0]
        self.stats.cpu_s = time.process_time() - self._started[1]
        self._outbox.send("bye", asdict(self.stats))
        if not self._outbox.flush(self._stop_timeout_s):
            log.error("the collector (rank %d) took no message for %g s", self._layout.collector, self._stop_timeout_s)
            return 1
        self._wait_for("exit")
        return 1 if self._exit_code is None else self._exit_code

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
            self._report_load()
        elif kind == "end":
            self._outbox.send("end", {"frames_sent": info.get("frames_sent"),
                                      "frames_per_port": info.get("frames_per_port", {})})
        elif kind == "start":
            self._outbox.send("start")
        elif kind == "idle":
            self._idle()

    def _report_load(self) -> None:
        """The seconds spent on events so far, once per ALIVE_EVERY_S: the collector's busy fraction."""
        now = time.monotonic()
        if now >= self._next_load_report:
            self._next_load_report = now + ALIVE_EVERY_S
            self._outbox.send("load", {"busy_s": self.stats.busy_s})

    def _idle(self) -> None:
        if self._draining_idles is not None:
            self._draining_idles += 1
            if self._draining_idles == IDLE_POLLS_TO_DRAIN:
                self._outbox.send("drained")
        if time.monotonic() - self._outbox.last_sent > ALIVE_EVERY_S:
            self._outbox.send("alive")

    def _process(self, event: Event) -> None:
        started = time.perf_counter()
        self.stats.bytes += event.get("additional_info", {}).get("bytes", 0)
        if self._draining_idles is not None:
            self._draining_idles = 0  # a frame after "drained": the collector counts it all the same
        try:
            self._handler.open_event(event=event)
            data = self._handler.extract_data(event=event)
            result = self._pipeline.process_data(data=data, **self._ranks)
        except DataExtractionError as error:
            self.stats.failed += 1
            self._skipped.warning(f"event skipped ({self.stats.failed} so far on rank {self._layout.rank}): {error}")
            self._outbox.send("skipped", {"reason": str(error)})
        else:
            self.stats.events += 1
            result.values["parameter_set"] = self._parameter_set
            self._outbox.send_result(result)
        finally:
            self._handler.close_event(event=event)
            self.stats.busy_s += time.perf_counter() - started

    def _obey_collector(self) -> None:
        for kind, values in poll_control(self._comm, self._layout.collector):
            if kind == "stop":
                self._stopped = True
                self._on_stop()
            elif kind == "drain" and self._draining_idles is None:
                self._draining_idles = 0
            elif kind == "feedback":
                self._pipeline.receive_feedback(feedback=values)
            elif kind == "exit":
                self._exit_code = int(values["code"])
            elif kind == "parameters":  # a live change, from the next event on
                self._parameter_set = int(values["number"])
                self._pipeline.update_parameters(parameters=self._pipeline.Parameters.model_validate(values["values"]),
                                                 number=self._parameter_set)

    def _forward_signal(self) -> None:
        if self._stop_signal.count > self._signals_forwarded:
            self._signals_forwarded = self._stop_signal.count
            self._outbox.send("stop_request", {"signal": self._stop_signal.name, "count": self._stop_signal.count})

    def _wait_for(self, what: str) -> None:
        """Wait, without spinning, for the collector's ``stop`` or ``exit``; if it never comes, the
        collector is gone: a stop ends this rank at once, an exit code unknown ends it with 1."""
        limit = 4 * self._stop_timeout_s
        deadline = time.monotonic() + limit
        while not (self._stopped if what == "stop" else self._exit_code is not None):
            self._obey_collector()
            self._forward_signal()
            if time.monotonic() > deadline:
                log.error("no %s from the collector (rank %d) within %.0f s", what, self._layout.collector, limit)
                if what == "stop":
                    self._comm.Abort(1)
                return
            time.sleep(0.01)


def run_worker(comm: MPI.Comm, layout: RankLayout, handler: DataEventHandlerProtocol,
               pipeline: ProcessingPipelineProtocol, stop_signal: StopSignal, stop_timeout_s: float, *,
               collector_started: bool = True, on_stop: Callable[[], None] = lambda: None) -> int:
    """Run this rank as a worker until the collector ends the run; return the exit code.
    ``on_stop`` is called when the collector says stop: from then on ranks exit as they should."""
    return _Worker(comm, layout, handler, pipeline, stop_signal, stop_timeout_s, on_stop).run(
        collector_started=collector_started)
