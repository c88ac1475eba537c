"""The collector loop: receive from any worker, aggregate, report, and end the run.

The collector is the one place that decides the run is over, for any reason:
the end of an acquisition (after every frame sent before it is collected),
``max_events``, an idle timeout, a signal on any rank, or an error on any
rank.  It then tells every worker to stop and waits for each one's last
message; a worker that never answers gets the job aborted, never a hang.

When nothing arrives it polls a few more times (MPICH's probe often answers
"nothing" once before it sees a message that is already there), then sleeps
in growing steps instead of spinning in a blocking MPI probe, so an idle
monitor leaves its core free.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from mpi4py import MPI

from handlers.protocol import DataEventHandlerProtocol
from monitor.config import RunParameters
from monitor.mpi.messages import Inbox, Received, send_control
from monitor.mpi.ranks import RankLayout
from monitor.mpi.signals import StopSignal
from monitor.outputs.protocol import CollectorOutput
from monitor.processing.protocol import ProcessingPipelineProtocol

__all__ = ["CollectorReport", "run_collector"]

log = logging.getLogger(__name__)

SPIN_POLLS = 4
"""Empty polls after a message before sleeping: MPICH's probe often answers "nothing" once
before it sees a message already there, but a longer spin takes the core the workers need."""

IDLE_SLEEP_S = (0.001, 0.005)
"""Sleep between empty polls after that: doubles from the first value up to the cap.

It starts at 1 ms, not less: at 2,000 frames/s a shorter first sleep woke the
collector for nearly every result, and its CPU came out of the workers' two
cores (0.2 ms: 1,750-1,890 frames/s; 1 ms: 1,950-2,230 frames/s).  Results
reach the collector at most a millisecond later, far below what a person sees."""

OUTPUT_TICK_S = 0.2
"""How often outputs (results stream, report history) get the collector's figures and snapshot."""

RATE_WINDOW_S = 2.0
"""events/s in the status line is measured over this trailing window."""


@dataclass
class CollectorReport:
    """What the collector saw: the run's figures for the summary."""

    events_collected: int = 0
    events_failed: int = 0
    acquisitions_started: int = 0
    acquisitions_ended: int = 0
    frames_sent: int | None = None
    frames_per_port: dict[str, int] = field(default_factory=dict)
    stop_reason: str = ""
    errors: list[str] = field(default_factory=list)
    first_event_s: float | None = None
    last_event_s: float | None = None


StatusPrinter = Callable[[dict[str, Any]], None]


class _Collector:
    def __init__(self, comm: MPI.Comm, layout: RankLayout, handler: DataEventHandlerProtocol,
                 pipeline: ProcessingPipelineProtocol, run: RunParameters, stop_after_acquisition: bool,
                 source: str, stop_signal: StopSignal, print_status: StatusPrinter) -> None:
        self._comm = comm
        self._layout = layout
        self._handler = handler
        self._pipeline = pipeline
        self._run = run
        self._stop_after_acquisition = stop_after_acquisition
        self._source = source
        self._stop_signal = stop_signal
        self._print_status = print_status
        self._ranks = {"node_rank": layout.rank, "node_pool_size": layout.size}
        self.report = CollectorReport()
        self._started = time.monotonic()
        self._last_activity = self._started
        self._recent: deque[tuple[float, int]] = deque()
        self._per_worker: Counter[int] = Counter()
        self._next_status = self._started + run.status_interval_s
        self._next_output_tick = self._started
        self.outputs: CollectorOutput | None = None
        self._outputs_working = True
        self._warned_no_data = False
        self._drain_started: float | None = None
        self._drained: set[int] = set()
        self._finished: set[int] = set()
        self._stop_sent_at: float | None = None
        self._said_bye: set[int] = set()

    # -- the loop ---------------------------------------------------------------

    def run(self) -> CollectorReport:
        inbox = Inbox(self._comm)
        sleep = IDLE_SLEEP_S[0]
        empty_polls = 0
        while len(self._said_bye) < len(self._layout.workers):
            now = time.monotonic()
            try:
                message = inbox.poll()
                if message is not None:
                    self._handle(message)
                    sleep, empty_polls = IDLE_SLEEP_S[0], 0
                elif (empty_polls := empty_polls + 1) > SPIN_POLLS:
                    time.sleep(sleep)
                    sleep = min(2 * sleep, IDLE_SLEEP_S[1])
                self._check_clock(now)
            except Exception as error:  # the collector's own failure ends the run like a worker's
                log.debug("collector failed", exc_info=True)
                self.fail(f"rank {self._layout.rank} (collector): {type(error).__name__}: {error}")
        return self.report

    def _handle(self, message: Received) -> None:
        kind, values = message.kind, message.values
        if kind == "result":
            self._per_worker[message.source] += 1
            self._collect(message)
        elif kind == "skipped":
            self.report.events_failed += 1
            self._note_event()
        elif kind == "start":
            self.report.acquisitions_started += 1
            self._last_activity = time.monotonic()
        elif kind == "end":
            self._end_of_acquisition(message.source, values)
        elif kind == "drained":
            self._drained.add(message.source)
        elif kind == "finished":
            self._finished.add(message.source)
            if self._finished >= set(self._layout.workers):
                self._stop("every worker's event source ended")
        elif kind == "stop_request":
            self._stop(f"{values.get('signal', 'signal')} on rank {message.source}")
        elif kind == "error":
            self.fail(values["message"])
        elif kind == "bye":
            self._said_bye.add(message.source)

    def fail(self, message: str) -> None:
        """Record an error as the reason the run ends (the exit code becomes non-zero)."""
        if message in self.report.errors:  # a failure that repeats on every tick is said once
            return
        self.report.errors.append(message)
        log.error("%s", message)
        self._stop(f"error ({message})")

    def _collect(self, message: Received) -> None:
        if self.report.errors:  # after a failure, results are only drained, not aggregated
            return
        result = message.as_processed_event()
        feedback = self._pipeline.collect_data(processed_data=result, **self._ranks)
        if self.outputs is not None and self._outputs_working:
            self.outputs.on_result(result)
        if feedback and self._stop_sent_at is None:
            send_control(self._comm, self._layout.workers, "feedback", feedback)
        self.report.events_collected += 1
        self._note_event()
        if self._run.max_events is not None and self.report.events_collected >= self._run.max_events:
            self._stop(f"max_events ({self._run.max_events}) reached")

    def _note_event(self) -> None:
        now = time.monotonic()
        self._last_activity = now
        if self.report.first_event_s is None:
            self.report.first_event_s = now
        self.report.last_event_s = now
        self._recent.append((now, self.report.events_collected + self.report.events_failed))

    def _end_of_acquisition(self, source: int, values: dict[str, Any]) -> None:
        """One worker saw the end message; the others may still hold frames sent before it."""
        self.report.acquisitions_ended += 1
        self._last_activity = time.monotonic()
        frames_sent = values.get("frames_sent")
        if frames_sent is not None:
            self.report.frames_sent = (self.report.frames_sent or 0) + frames_sent
        for port, count in values.get("frames_per_port", {}).items():
            key = str(port)
            self.report.frames_per_port[key] = self.report.frames_per_port.get(key, 0) + count
        log.info("acquisition %d ended (seen by rank %d): sender reports %s frames",
                 self.report.acquisitions_ended, source,
                 frames_sent if frames_sent is not None else values.get("frames_per_port"))
        if self._stop_after_acquisition and self._drain_started is None and self._stop_sent_at is None:
            self._drain_started = time.monotonic()
            send_control(self._comm, self._layout.workers, "drain")

    # -- what time decides --------------------------------------------------------

    def _check_clock(self, now: float) -> None:
        try:
            self._report_figures(now)
        except Exception as error:  # reporting fails: the run ends, but the checks below still run
            log.debug("reporting failed", exc_info=True)
            self.fail(f"rank {self._layout.rank} (collector): {type(error).__name__}: {error}")
        if self._stop_signal.received:
            self._stop(f"{self._stop_signal.name} on the collector")
        if self._stop_sent_at is not None:
            self._check_workers_answer(now)
            return
        if self._drain_started is not None:
            self._check_drain(now)
        idle = now - self._last_activity
        if self.report.first_event_s is None and not self._warned_no_data and idle > self._run.no_data_warning_s:
            self._warned_no_data = True
            log.warning("no frames from %s after %.0f s: is the detector or frame sender running? Still waiting.",
                        self._source, idle)
        if self._run.idle_timeout_s is not None and idle > self._run.idle_timeout_s:
            self._stop(f"idle timeout: nothing arrived for {self._run.idle_timeout_s:g} s")

    def _report_figures(self, now: float) -> None:
        if now >= self._next_status:
            self._next_status = now + self._run.status_interval_s
            self._print_status(self.live_figures(now))
        if self.outputs is not None and self._outputs_working and now >= self._next_output_tick:
            self._next_output_tick = now + OUTPUT_TICK_S
            self.tick_outputs(now)

    def _check_drain(self, now: float) -> None:
        """Stop once every worker has emptied its queue and the announced frames are in."""
        if self._drained < set(self._layout.workers):
            return
        expected = self.report.frames_sent
        handled = self.report.events_collected + self.report.events_failed
        if expected is None or handled >= expected:
            self._stop("end of acquisition")
        elif now - self._drain_started > self._run.drain_timeout_s:
            log.warning("the sender announced %d frames but %d arrived", expected, handled)
            self._stop("end of acquisition (frames missing)")

    def _check_workers_answer(self, now: float) -> None:
        if now - self._stop_sent_at > self._run.stop_timeout_s:
            silent = sorted(set(self._layout.workers) - self._said_bye)
            log.error("rank(s) %s did not stop within %.0f s: aborting the job", silent, self._run.stop_timeout_s)
            self._comm.Abort(1)

    def _stop(self, reason: str) -> None:
        if self._stop_sent_at is not None:
            return
        self.report.stop_reason = reason
        log.info("stopping: %s", reason)
        self._stop_sent_at = time.monotonic()
        send_control(self._comm, self._layout.workers, "stop")

    # -- figures -------------------------------------------------------------------

    def final_tick(self) -> None:
        """The last figures, for the report; a failure here is reported, not raised."""
        if self.outputs is None or not self._outputs_working:
            return
        try:
            self.tick_outputs(time.monotonic())
        except Exception as error:
            self.fail(f"rank {self._layout.rank} (collector): {type(error).__name__}: {error}")

    def tick_outputs(self, now: float) -> None:
        status, snapshot = self.live_figures(now), self._pipeline.snapshot()
        try:
            self.outputs.on_tick(status=status, snapshot=snapshot)
        except Exception as error:  # an output failing (disk full, ...) ends the run, never silently
            self._outputs_working = False
            self.fail(f"rank {self._layout.rank} (collector outputs): {type(error).__name__}: {error}")

    def live_figures(self, now: float) -> dict[str, Any]:
        while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
            self._recent.popleft()
        handled = self.report.events_collected + self.report.events_failed
        rate = 0.0
        if len(self._recent) >= 2:
            (t0, n0), (t1, n1) = self._recent[0], self._recent[-1]
            rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        if self._recent and now - self._recent[-1][0] > 1.0:
            rate = 0.0
        counts = [self._per_worker[rank] for rank in self._layout.workers]
        figures = {
            "elapsed_s": now - self._started,
            "events": handled,
            "events_per_s": rate,
            "failed": self.report.events_failed,
            "acquisitions": self.report.acquisitions_ended,
            "events_per_worker": f"{min(counts)}-{max(counts)}",
            **self._handler.collecting_node_status(),
            **self._pipeline.status(),
        }
        if self.outputs is not None:
            counters = self.outputs.counters()
            figures.update({key: counters[key] for key in ("hits_written", "hits_dropped") if key in counters})
        return figures


def run_collector(comm: MPI.Comm, layout: RankLayout, handler: DataEventHandlerProtocol,
                  pipeline: ProcessingPipelineProtocol, run: RunParameters, *, stop_after_acquisition: bool,
                  source: str, stop_signal: StopSignal, print_status: StatusPrinter,
                  workers_may_start: Callable[[], None], open_outputs: Callable[[], CollectorOutput],
                  ) -> tuple[CollectorReport, dict[str, Any], CollectorOutput | None]:
    """Run this rank as the collector until every worker has said its last word.

    The collecting node initializes first (the handler may start the frame
    sender there, or write files the workers read), then lets the workers
    start with ``workers_may_start``.  If initialization fails, the workers
    are still started and stopped in order, so that no rank waits for ever.
    Returns the report, the handler's own final figures, and the outputs
    (opened here, closed by the caller once the summary is complete).
    """
    ranks = {"node_rank": layout.rank, "node_pool_size": layout.size}
    collector = _Collector(comm, layout, handler, pipeline, run, stop_after_acquisition, source, stop_signal,
                           print_status)
    try:
        handler.initialize_event_handling_on_collecting_node(**ranks)
        pipeline.initialize_collecting_node(**ranks)
        collector.outputs = open_outputs()
    except Exception as error:
        log.debug("collector initialization failed", exc_info=True)
        collector.fail(f"rank {layout.rank} (collector): {type(error).__name__}: {error}")
    workers_may_start()
    report = collector.run()
    collector.final_tick()
    pipeline.end_processing_on_collecting_node(**ranks)
    return report, handler.end_event_handling_on_collecting_node(**ranks), collector.outputs
