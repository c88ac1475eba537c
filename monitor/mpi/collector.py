"""The collector loop: receive from any worker, aggregate, report, and end the run.

The collector is the one place that decides the run is over, for any reason:
the end of an acquisition, ``max_events``, an idle timeout, a signal on any
rank, or an error on any rank.  Every end but an error drains: the source the
handler started is asked to end its acquisition (its end message then comes
behind the frames already sent), workers finish what they hold and say
``drained``, and only then are they told ``stop``.  An error stops at once.

No wait is without a deadline.  A worker that has said nothing for
``silent_worker_warning_s`` while others work is named in a warning (and again
when it is back); once the run is ending, one silent for ``stop_timeout_s`` is
given up as lost, with the frames it held, and the run ends without it.

When nothing arrives it polls a few more times (MPICH's probe often answers
"nothing" once before it sees a message that is already there), then sleeps
in growing steps instead of spinning in a blocking MPI probe, so an idle
monitor leaves its core free.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from mpi4py import MPI

from handlers.protocol import DataEventHandlerProtocol
from monitor.bind_check import Listener, check_listeners, check_reachable
from monitor.config import RunParameters
from monitor.control import ControlEndpoint
from monitor.live_parameters import LIVE_KEYS, ParameterSet, apply_changes
from monitor.errors import MonitorError, one_line, shorten
from monitor.mpi.messages import ControlSender, Inbox, PeerSilent, Received
from monitor.mpi.ranks import RankLayout
from monitor.mpi.signals import StopSignal
from monitor.mpi.summary import frame_accounting, write_json_atomically
from monitor.outputs.protocol import CollectorOutput
from monitor.processing.protocol import ProcessingPipelineProtocol
from monitor.rank_watch import RankWatch

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

OTHERS_WORKING_S = 1.5
"""A worker's silence is worth a warning only while another one handled an event this recently."""

HOUSEKEEPING_S = 0.05
"""How often the workers' silence and the control endpoint are looked at: a change waits at most
this long, and a run that is never steered pays one socket poll per 50 ms, not one per result."""

Phase = Literal["running", "ending_source", "draining", "stopping"]


@dataclass
class CollectorReport:
    """What the collector saw: the run's figures for the summary."""

    events_collected: int = 0
    events_failed: int = 0
    acquisitions_started: int = 0
    acquisitions_ended: int = 0
    duplicate_ends: int = 0
    frames_sent: int | None = None
    """Frames the end messages announced (the sender's count of frames handed to the workers)."""
    frames_per_port: dict[str, int] = field(default_factory=dict)
    stop_reason: str = ""
    errors: list[str] = field(default_factory=list)
    exit_code: int = 0
    lost_ranks: list[int] = field(default_factory=list)
    first_event_s: float | None = None
    last_event_s: float | None = None


StatusPrinter = Callable[[dict[str, Any]], None]


@dataclass
class _WorkerState:
    """What the collector knows of one worker."""

    last_seen: float
    last_event: float = 0.0
    ready: bool = False
    """Initialized (numba kernels compiled, sockets connected): only then is its silence news."""
    pid: int | None = None
    host: str | None = None
    results: int = 0
    named_silent: bool = False
    busy: tuple[float, float] = (0.0, 0.0)
    """(when, busy seconds) of its last load report; with the one before, its busy fraction."""
    busy_fraction: float = 0.0
    drained: bool = False
    bye: dict[str, Any] | None = None
    lost: bool = False


class _Collector:
    def __init__(self, comm: MPI.Comm, layout: RankLayout, handler: DataEventHandlerProtocol,
                 pipeline: ProcessingPipelineProtocol, run: RunParameters, stop_after_acquisition: bool,
                 source: str, stop_signal: StopSignal, print_status: StatusPrinter,
                 checkpoints: list[Path], pipeline_parameters: Any) -> None:
        self._comm = comm
        self._layout = layout
        self._handler = handler
        self._pipeline = pipeline
        self.pipeline_ready = False
        """The pipeline's collecting half is initialized: its figures exist (not after a failed start)."""
        self._run = run
        self._stop_after_acquisition = stop_after_acquisition
        self._source = source
        self._stop_signal = stop_signal
        self._print_status = print_status
        self.checkpoints = checkpoints
        self._ranks = {"node_rank": layout.rank, "node_pool_size": layout.size}
        self._control = ControlSender(comm)
        self.report = CollectorReport()
        self._started = time.monotonic()
        self._last_activity = self._started
        self._recent: deque[tuple[float, int]] = deque()
        self._workers = {rank: _WorkerState(last_seen=self._started) for rank in layout.workers}
        self._next_status = self._started + run.status_interval_s
        self._next_output_tick = self._started
        self._next_checkpoint = self._started + run.checkpoint_interval_s
        self.outputs: CollectorOutput | None = None
        self._outputs_working = True
        self._warned_no_data = False
        self._noted_preparing = False
        self._phase: Phase = "running"
        self._phase_since = self._started
        self._finished: set[int] = set()
        self._last_end: tuple[Any, ...] | None = None
        self.control: ControlEndpoint | None = None
        self._next_housekeeping = self._started
        self._live_parameters = pipeline_parameters
        self._parameter_sets = [ParameterSet(0, {}, "the configuration")]
        self._rank_watch = RankWatch(None)

    # -- the loop ---------------------------------------------------------------

    def run(self) -> CollectorReport:
        self._rank_watch = RankWatch.start(rank=self._layout.rank, checkpoints=self.checkpoints)
        inbox = Inbox(self._comm, patience_s=self._run.stop_timeout_s)
        sleep = IDLE_SLEEP_S[0]
        empty_polls = 0
        while not self._every_worker_done():
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
            except PeerSilent as silent:
                self._lose(silent.rank, str(silent))
            except Exception as error:  # the collector's own failure ends the run like a worker's
                log.debug("collector failed", exc_info=True)
                self.fail(f"rank {self._layout.rank} (collector): {one_line(error)}")
        self._rank_watch.end()
        return self.report

    def workers_started(self) -> None:
        """Every worker has just reached the start (they wait for this node to initialize): clocks
        of silence, and of a stop sent before, count from here."""
        now = time.monotonic()
        self._phase_since = now
        for state in self._workers.values():
            state.last_seen = now

    @property
    def _acquisition_open(self) -> bool:
        return self.report.acquisitions_started > self.report.acquisitions_ended

    def _every_worker_done(self) -> bool:
        return all(state.bye is not None or state.lost for state in self._workers.values())

    def _alive(self) -> list[int]:
        """Workers still expected to answer."""
        return [rank for rank, state in self._workers.items() if state.bye is None and not state.lost]

    def _handle(self, message: Received) -> None:
        kind, values = message.kind, message.values
        self._heard_from(message.source)
        if kind == "result":
            self._workers[message.source].results += 1
            self._workers[message.source].last_event = time.monotonic()
            self._collect(message)
        elif kind == "skipped":
            self._workers[message.source].last_event = time.monotonic()
            self.report.events_failed += 1
            self._note_event()
        elif kind == "ready":
            self._workers[message.source].ready = True
            # No frame can be seen before the workers are ready (on a fresh install they spend
            # seconds compiling kernels): "nothing arrived" counts from the last of them.
            self._last_activity = time.monotonic()
        elif kind == "load":
            self._note_load(self._workers[message.source], values["busy_s"])
        elif kind == "start":
            self.report.acquisitions_started += 1
            self._last_activity = time.monotonic()
        elif kind == "end":
            self._end_of_acquisition(message.source, values)
        elif kind == "drained":
            self._workers[message.source].drained = True
        elif kind == "hello":
            self._workers[message.source].pid, self._workers[message.source].host = values["pid"], values["host"]
            if values["host"] == socket.gethostname():
                self._rank_watch.watch(message.source, values["pid"])
        elif kind == "finished":
            self._finished.add(message.source)
            if self._finished >= set(self._layout.workers):
                self._begin_stop("every worker's event source ended", drain=False)
        elif kind == "stop_request":
            self._begin_stop(f"{values.get('signal', 'signal')} on rank {message.source}",
                             drain=values.get("count", 1) < 2)
        elif kind == "error":
            self.fail(values["message"])
        elif kind == "bye":
            self._workers[message.source].bye = values

    def fail(self, message: str, exit_code: int = 1) -> None:
        """Record an error as the reason the run ends (the exit code becomes non-zero)."""
        if message in self.report.errors:  # a failure that repeats on every tick is said once
            return
        self._note_error(message)
        self.report.exit_code = max(self.report.exit_code, exit_code)
        self._begin_stop("error (in errors)", drain=False)  # the message is said once, above

    def _collect(self, message: Received) -> None:
        self.report.events_collected += 1
        self._note_event()
        if self.report.errors:  # after a failure, results are only counted, not aggregated
            return
        result = message.as_processed_event()
        number = result.values.get("parameter_set", 0)
        if isinstance(number, int) and 0 <= number < len(self._parameter_sets):
            self._parameter_sets[number].count(result.values)
        feedback = self._pipeline.collect_data(processed_data=result, **self._ranks)
        if self.outputs is not None and self._outputs_working:
            self.outputs.on_result(result)
        if feedback and self._phase == "running":
            self._control.send(self._alive(), "feedback", feedback)
        if self._run.max_events is not None and self.report.events_collected >= self._run.max_events:
            self._begin_stop(f"max_events ({self._run.max_events}) reached", drain=True)

    def _note_event(self) -> None:
        now = time.monotonic()
        self._last_activity = now
        if self.report.first_event_s is None:
            self.report.first_event_s = now
        self.report.last_event_s = now
        self._recent.append((now, self.report.events_collected + self.report.events_failed))

    def _end_of_acquisition(self, source: int, values: dict[str, Any]) -> None:
        """One worker saw the end message; the others may still hold frames sent before it."""
        self._last_activity = time.monotonic()
        counts = (values.get("frames_sent"), sorted(values.get("frames_per_port", {}).items()))
        if counts == self._last_end and not self._acquisition_open:
            # PSI: an operator can make the receiver send the end again.  Starts and ends reach the
            # collector through different workers, so "open" is counted, not taken from the order.
            self.report.duplicate_ends += 1
            log.info("a repeated end message (same counts, no new start) was ignored")
            return
        self._last_end = counts
        self.report.acquisitions_ended += 1
        frames_sent = values.get("frames_sent")
        if frames_sent is not None:
            self.report.frames_sent = (self.report.frames_sent or 0) + frames_sent
        for port, count in values.get("frames_per_port", {}).items():
            key = str(port)
            self.report.frames_per_port[key] = self.report.frames_per_port.get(key, 0) + count
        log.info("acquisition %d ended (seen by rank %d): sender reports %s frames",
                 self.report.acquisitions_ended, source,
                 frames_sent if frames_sent is not None else values.get("frames_per_port"))
        if self._phase == "ending_source":
            self._start_drain()
        elif self._phase == "running" and self._stop_after_acquisition:
            self.report.stop_reason = "end of acquisition"
            self._checkpoint("stopping")
            self._start_drain()

    # -- the end of a run ---------------------------------------------------------

    def _begin_stop(self, reason: str, *, drain: bool) -> None:
        """End the run: drain what is in flight, or (an error, a second signal) stop at once."""
        if self._phase == "stopping" or (self._phase != "running" and drain):
            return
        if not self.report.stop_reason:
            self.report.stop_reason = reason
        log.info("stopping: %s", reason)
        self._checkpoint("stopping")
        if not drain:
            self._send_stop()
        elif self._stop_event_source():
            if self._acquisition_open:
                self._enter("ending_source")  # its end message comes behind the frames already sent
            else:
                self._start_drain()
        else:
            self._send_stop()  # a sender that is not ours keeps sending: nothing to wait for

    def _stop_event_source(self) -> bool:
        """The handler's optional hook (not in the seed interface): a handler without it stops nothing."""
        stop = getattr(self._handler, "stop_event_source", None)
        return bool(stop()) if stop is not None else False

    def _source_accounting(self) -> dict[str, Any]:
        """The handler's optional figures of the source; a handler without them states no count."""
        accounting = getattr(self._handler, "source_accounting", None)
        return accounting() if accounting is not None else {"sent": None, "delivered": None, "dropped": {},
                                                            "estimates": {}}

    def _enter(self, phase: Phase) -> None:
        self._phase, self._phase_since = phase, time.monotonic()

    def _start_drain(self) -> None:
        log.debug("draining the workers")
        self._enter("draining")
        self._control.send(self._alive(), "drain")

    def _send_stop(self) -> None:
        log.debug("telling the workers to stop")
        self._rank_watch.end()  # from here on, workers exit as they should
        self._enter("stopping")
        self._control.send(self._alive(), "stop")

    def _check_ending(self, now: float) -> None:
        quiet = now - self._last_activity
        if self._phase == "ending_source":
            if quiet > self._run.stop_timeout_s:
                log.warning("no end message from the source within %g s of the stop", self._run.stop_timeout_s)
                self._start_drain()
        elif self._phase == "draining":
            self._check_drain(now, quiet)
        elif self._phase == "stopping":
            for rank in self._alive():  # counted from the stop, or from its last word after it
                state = self._workers[rank]
                patience = self._patience(state)
                if now - max(self._phase_since, state.last_seen) > patience:
                    self._lose(rank, f"no answer to stop within {patience:g} s")

    def _check_drain(self, now: float, quiet: float) -> None:
        """Stop once every live worker has emptied its queue and the announced frames are in."""
        expected = self.report.frames_sent
        handled = self.report.events_collected + self.report.events_failed
        all_in = expected is None or handled >= expected
        drained = all(self._workers[rank].drained for rank in self._alive())
        if drained and (all_in or self.report.lost_ranks):  # the missing frames went with the lost rank
            self._send_stop()
        elif quiet > self._run.drain_timeout_s:
            if not all_in:
                log.warning("the sender announced %d frames but %d arrived", expected, handled)
            self._send_stop()

    def _lose(self, rank: int, why: str) -> None:
        """Give a worker up: the run goes on (or ends) without it; its frames count as lost."""
        state = self._workers[rank]
        if state.lost or state.bye is not None:
            return
        state.lost = True
        self.report.lost_ranks.append(rank)
        self.report.exit_code = max(self.report.exit_code, 1)
        log.error("rank %d%s lost: %s; the frames it held are counted as lost", rank, self._whereabouts(state), why)
        if not self._alive() and self._phase == "running":
            self._begin_stop("every worker lost", drain=False)

    def _whereabouts(self, state: _WorkerState) -> str:
        """' (pid N, dead)' where the collector can see for itself."""
        if state.pid is None:
            return ""
        if state.host != socket.gethostname():
            return f" (pid {state.pid} on {state.host})"
        return f" (pid {state.pid}, dead)" if self._dead_here(state) else f" (pid {state.pid})"

    @staticmethod
    def _dead_here(state: _WorkerState) -> bool:
        """True for a worker on this host whose process is gone."""
        if state.pid is None or state.host != socket.gethostname():
            return False
        try:
            os.kill(state.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False

    def _heard_from(self, rank: int) -> None:
        state = self._workers[rank]
        now = time.monotonic()
        if state.named_silent:
            log.warning("rank %d is back after %.0f s of silence", rank, now - state.last_seen)
            state.named_silent = False
        if state.lost and state.bye is None:
            log.warning("rank %d answers again: it is waited for once more", rank)
            self.report.lost_ranks.remove(rank)
            state.lost = False
            if self._phase == "stopping":
                self._control.send([rank], "stop")
        state.last_seen = now

    @staticmethod
    def _note_load(state: _WorkerState, busy_s: float) -> None:
        now = time.monotonic()
        then, busy_then = state.busy
        if then and now > then:
            state.busy_fraction = min(1.0, (busy_s - busy_then) / (now - then))
        state.busy = (now, busy_s)

    def _check_workers(self, now: float) -> None:
        """Name a silent worker once; once the run is ending, give one silent too long up."""
        for rank in self._alive():
            state = self._workers[rank]
            silent = now - state.last_seen
            others_working = any(now - other.last_event < OTHERS_WORKING_S
                                 for other_rank, other in self._workers.items() if other_rank != rank)
            if silent > self._run.silent_worker_warning_s and state.ready and not state.named_silent and (
                    others_working or self._phase != "running"):
                state.named_silent = True
                log.warning("rank %d%s has said nothing for %.0f s while the others work (frozen, dead, or "
                            "stuck in one event?)", rank, self._whereabouts(state), silent)
            if self._phase != "running" and silent > self._patience(state):
                self._lose(rank, f"silent for {silent:.0f} s")

    def _patience(self, state: _WorkerState) -> float:
        """How long a stop waits for a silent worker: longer while it is still preparing, unless it is
        seen dead (on this host; elsewhere only the launcher knows)."""
        if state.ready or self._dead_here(state):
            return self._run.stop_timeout_s
        return max(self._run.stop_timeout_s, self._run.prepare_timeout_s)

    # -- what time decides --------------------------------------------------------

    def _check_clock(self, now: float) -> None:
        try:
            self._report_figures(now)
        except MonitorError as error:  # e.g. a process feeding the run died: said as itself
            self.fail(f"rank {self._layout.rank} (collector): {error}", error.exit_code)
        except Exception as error:  # reporting fails: the run ends, but the checks below still run
            log.debug("reporting failed", exc_info=True)
            self.fail(f"rank {self._layout.rank} (collector): {one_line(error)}")
        if self._stop_signal.received:
            self._begin_stop(f"{self._stop_signal.name} on the collector", drain=self._stop_signal.count < 2)
        if now >= self._next_housekeeping:  # not after every result: at 100,000 results/s it shows
            self._next_housekeeping = now + HOUSEKEEPING_S
            self._check_workers(now)
            if self.control is not None:
                self._serve_control()
        if self._phase != "running":
            self._check_ending(now)
            return
        idle = now - self._last_activity
        if self.report.first_event_s is None and idle > self._run.no_data_warning_s:
            self._note_no_data(idle)
        if self._run.idle_timeout_s is not None and idle > self._run.idle_timeout_s:
            self._begin_stop(f"idle timeout: nothing arrived for {self._run.idle_timeout_s:g} s", drain=True)

    def _note_no_data(self, idle: float) -> None:
        """Blame the source only once every worker is ready: until then the frames may well be
        waiting for them (a first run after installing spends seconds compiling kernels)."""
        preparing = [rank for rank in self._alive() if not self._workers[rank].ready]
        if preparing and not self._noted_preparing:
            self._noted_preparing = True
            log.info("no frames yet after %.0f s: %d of %d workers are still preparing (compiling kernels, "
                     "connecting); waiting for them", idle, len(preparing), len(self._workers))
        elif not preparing and not self._warned_no_data:
            self._warned_no_data = True
            log.warning("no frames from %s after %.0f s: is the detector or frame sender running? Still waiting.",
                        self._source, idle)

    def _report_figures(self, now: float) -> None:
        if now >= self._next_status:
            self._next_status = now + self._run.status_interval_s
            self._print_status(self.live_figures(now))
        if self.outputs is not None and self._outputs_working and now >= self._next_output_tick:
            self._next_output_tick = now + OUTPUT_TICK_S
            self.tick_outputs(now)
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + self._run.checkpoint_interval_s
            self._checkpoint("running" if self._phase == "running" else "stopping")

    # -- live parameters -------------------------------------------------------------

    def _serve_control(self) -> None:
        """Answer ``monitor.control``: the live parameters, or a change validated like the YAML,
        numbered, and sent to every worker, which applies it at its next frame."""
        for request in self.control.poll():
            if "set" not in request.body:
                self.control.reply(request.identity, self._live_figures_of_parameters())
                continue
            changes = request.body["set"]
            try:
                if not isinstance(changes, dict) or not changes:
                    raise ValueError("set needs an object of KEY: VALUE")
                if self._phase != "running":
                    raise ValueError("the run is ending")
                updated = apply_changes(self._live_parameters, changes, type(self._pipeline))
            except ValueError as error:
                reason = shorten(str(error))
                self.control.warn(f"parameter change from {request.peer} refused: {reason}")
                self.control.reply(request.identity, {"error": reason})
                continue
            self._live_parameters = updated
            number = len(self._parameter_sets)
            self._parameter_sets.append(ParameterSet(number, changes, request.peer))
            self._control.send(self._alive(), "parameters",
                               {"number": number, "values": updated.model_dump(mode="json")})
            log.info("parameter set %d from %s: %s", number, request.peer,
                     ", ".join(f"{key}={value!r}" for key, value in changes.items()))
            self.control.reply(request.identity, {"parameter_set": number, "changes": changes})

    def _live_figures_of_parameters(self) -> dict[str, Any]:
        document = self._live_parameters.model_dump(mode="json")
        return {"parameter_set": len(self._parameter_sets) - 1,
                "parameters": {key: document[key] for key in LIVE_KEYS if key in document}}

    # -- figures -------------------------------------------------------------------

    def _checkpoint(self, state: str) -> None:
        """The summary as it stands, where the final one will be: a killed run still leaves it.

        Never raises: a stop must not wait on a checkpoint (a source whose status fails, a full
        disk).  Each target that cannot be written is an error said once; the others still are."""
        if not self.checkpoints:
            return
        try:
            handler_figures = self._handler.collecting_node_status()
        except Exception as error:  # said where the status is read each tick; the figures go on without it
            log.debug("the source's status failed in a checkpoint: %s", one_line(error))
            handler_figures = {}
        document = {"state": state, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "checkpoint": "the run had not ended when this was written: its figures stop here, and "
                                  "frames still in flight (accounting.in_flight) are neither counted nor lost",
                    **self.summary_figures(handler_figures=handler_figures, complete=False)}
        for path in self.checkpoints:
            try:
                write_json_atomically(path, document)
            except OSError as error:
                self._note_error(f"rank {self._layout.rank} (collector): cannot write the summary to {path}: "
                                 f"{error.strerror or one_line(error)}")

    def _note_error(self, message: str) -> None:
        """An error that makes the exit code non-zero but need not end the run (a summary target that
        cannot be written while frames still can be processed); said once."""
        if message not in self.report.errors:
            self.report.errors.append(message)
            self.report.exit_code = max(self.report.exit_code, 1)
            log.error("%s", message)

    def summary_figures(self, *, handler_figures: dict[str, Any], complete: bool) -> dict[str, Any]:
        """The run's figures and its frame accounting (``complete``: every component has had its
        last word; a checkpoint is not complete)."""
        report = self.report
        span = (report.last_event_s or 0) - (report.first_event_s or 0)
        handled = report.events_collected + report.events_failed
        return {
            **handler_figures,
            **(self._pipeline.summary() if self.pipeline_ready else {}),
            "accounting": frame_accounting(
                source=self._source_accounting(), processed=report.events_collected,
                failed=report.events_failed, frames_announced=report.frames_sent,
                lost_ranks=report.lost_ranks, complete=complete),
            "events_processed": report.events_collected,
            "events_failed": report.events_failed,
            "frames_sent": report.frames_sent,
            "frames_per_port": report.frames_per_port,
            "acquisitions": report.acquisitions_ended,
            "duplicate_end_messages": report.duplicate_ends,
            "collector_rank": self._layout.collector,
            "ranks": self._layout.size,
            "workers": len(self._layout.workers),
            "lost_ranks": report.lost_ranks,
            "parameter_sets": [parameter_set.as_dict() for parameter_set in self._parameter_sets],
            "events_per_s": round(handled / span, 1) if span > 0 else None,
            "stop_reason": report.stop_reason,
            "errors": report.errors,
        }

    def rank_rows(self, collector_row: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per rank: the collector's own, each worker's ``bye`` (or what it sent before it was lost)."""
        rows = []
        for rank in range(self._layout.size):
            host = self._layout.host(rank)
            if rank == self._layout.collector:
                rows.append({"rank": rank, "host": host, "role": "collector", **collector_row})
                continue
            state = self._workers[rank]
            figures = state.bye or {"events": state.results, "failed": 0, "bytes": 0, "busy_s": 0.0,
                                    "cpu_s": 0.0, "wall_s": 0.0}
            rows.append({"rank": rank, "host": host, "role": "worker" if state.bye else "worker (lost)",
                         **{key: round(value, 3) if isinstance(value, float) else value
                            for key, value in figures.items()}})
        return rows

    def send_exit_code(self, code: int) -> None:
        """Every rank exits with the collector's verdict, so any launcher reports it."""
        done = [rank for rank, state in self._workers.items() if state.bye is not None]
        self._control.send(done, "exit", {"code": code})
        self._control.flush(self._run.stop_timeout_s)

    def final_tick(self) -> None:
        """The last figures, for the report; a failure here is reported, not raised."""
        if self.outputs is None or not self._outputs_working:
            return
        try:
            self.tick_outputs(time.monotonic())
        except Exception as error:
            self.fail(f"rank {self._layout.rank} (collector): {one_line(error)}")

    def tick_outputs(self, now: float) -> None:
        status, snapshot = self.live_figures(now), self._pipeline.snapshot()
        try:
            self.outputs.on_tick(status=status, snapshot=snapshot)
        except Exception as error:  # an output failing (disk full, ...) ends the run, never silently
            self._outputs_working = False
            self.fail(f"rank {self._layout.rank} (collector outputs): {one_line(error)}")

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
        counts = [self._workers[rank].results for rank in self._layout.workers]
        figures = {
            "elapsed_s": now - self._started,
            "events": handled,
            "events_per_s": rate,
            "failed": self.report.events_failed,
            "acquisitions": self.report.acquisitions_ended,
            "parameter_set": len(self._parameter_sets) - 1,
            "worker_last_seen_s": {str(rank): round(now - state.last_seen, 1)  # str: msgpack map keys
                                   for rank, state in self._workers.items()},
            "worker_busy_fraction": {str(rank): round(state.busy_fraction if now - state.last_seen < 2 else 0.0, 3)
                                     for rank, state in self._workers.items()},
            "events_per_worker": f"{min(counts)}-{max(counts)}",
            **({"lost_ranks": ",".join(map(str, self.report.lost_ranks))} if self.report.lost_ranks else {}),
            **self._handler.collecting_node_status(),
            **(self._pipeline.status() if self.pipeline_ready else {}),
        }
        if self.outputs is not None:
            counters = self.outputs.counters()
            figures.update({key: counters[key] for key in ("hits_written", "hits_dropped") if key in counters})
        return figures


def run_collector(comm: MPI.Comm, layout: RankLayout, handler: DataEventHandlerProtocol,
                  pipeline: ProcessingPipelineProtocol, run: RunParameters, *, stop_after_acquisition: bool,
                  source: str, stop_signal: StopSignal, print_status: StatusPrinter,
                  workers_may_start: Callable[[bool], None], open_outputs: Callable[[], CollectorOutput],
                  checkpoints: list[Path], pipeline_parameters: Any, listeners: list[Listener],
                  workers_url: str | None) -> _Collector:
    """Run this rank as the collector until every worker has said its last word (or is lost).

    The collecting node initializes first (the handler may start the frame
    sender there, or write files the workers read), then lets the workers
    start with ``workers_may_start``.  Every address in ``listeners`` is tried,
    and ``workers_url`` (where workers connect) checked against their hosts,
    before anything starts.  If initialization fails, the workers are told so
    as they are let start (they end at once, without initializing), so that
    no rank waits for ever and none is taken for lost.
    Returns the collector, for the summary, the outputs and the exit code.
    """
    ranks = {"node_rank": layout.rank, "node_pool_size": layout.size}
    collector = _Collector(comm, layout, handler, pipeline, run, stop_after_acquisition, source, stop_signal,
                           print_status, checkpoints, pipeline_parameters)
    try:
        check_reachable(workers_url, here=layout.host(layout.collector),
                        remote_hosts=[layout.host(rank) for rank in layout.remote_workers])
        check_listeners(listeners)
        handler.initialize_event_handling_on_collecting_node(**ranks)
        pipeline.initialize_collecting_node(**ranks)
        collector.pipeline_ready = True
        collector.outputs = open_outputs()
        if collector.outputs is not None:
            collector.checkpoints.append(collector.outputs.run_dir / "summary.json")
        if run.control_url is not None:
            collector.control = ControlEndpoint(run.control_url, keys=run.control_keys)
            log.info("live parameters: python -m monitor.control %s get|set KEY=VALUE", run.control_url)
    except MonitorError as error:
        collector.fail(f"rank {layout.rank} (collector): {error}", exit_code=error.exit_code)
    except Exception as error:
        log.debug("collector initialization failed", exc_info=True)
        collector.fail(f"rank {layout.rank} (collector): {one_line(error)}")
    workers_may_start(not collector.report.errors)
    collector.workers_started()
    try:
        collector.run()
    finally:
        if collector.control is not None:
            collector.control.close()
    collector.final_tick()
    pipeline.end_processing_on_collecting_node(**ranks)
    return collector
