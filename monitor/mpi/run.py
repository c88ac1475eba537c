"""One run of the monitor on every rank: roles, the loops, the summary, finalization."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mpi4py import MPI

from monitor.bind_check import Listener, tcp_listener
from monitor.config import MonitorConfig
from monitor.errors import MonitorError, one_line
from monitor.mpi.collector import StatusPrinter, run_collector
from monitor.mpi.ranks import RankLayout
from monitor.mpi.signals import StopSignal
from monitor.mpi.summary import write_json_atomically
from monitor.mpi.worker import run_worker
from monitor.outputs.worker_hits import share_run_dir, writing_hits
from monitor.rank_watch import RankWatch

if TYPE_CHECKING:
    from monitor.outputs.group import OutputGroup

__all__ = ["RunOutcome", "run"]

HOST_NAME_BYTES = 256
"""Room for a host name (POSIX allows 255 bytes)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """How the run ended on this rank; ``summary`` is set on the collector only.  ``abort``: a rank
    was lost, so the job must end with ``MPI_Abort`` (after the summary is shown) rather than
    ``MPI_Finalize``, which would wait for it."""

    exit_code: int
    summary: dict[str, Any] | None
    abort: bool = False


def run(config: MonitorConfig, *, print_status: StatusPrinter, comm: MPI.Comm | None = None,
        summary_json: Path | None = None) -> RunOutcome:
    """Run the monitor on this rank; every rank of ``comm`` must call it.

    ``summary_json``: where the collector checkpoints the summary during the
    run and writes the final one (as in the run folder's ``summary.json``).
    A worker that was lost (frozen, or dead where the launcher let the others
    live) cannot take part in MPI's finalization: the collector then ends the
    job with ``MPI_Abort`` once every file is written and closed.
    """
    comm = comm or MPI.COMM_WORLD
    comm.Set_errhandler(MPI.ERRORS_RETURN)  # a dead peer is an exception here, not MPICH's error stack
    started, cpu_started = time.monotonic(), time.process_time()
    handler_parameters = config.handler_parameters
    handler = config.handler_class(source=handler_parameters.source, parameters=handler_parameters)
    hosts, pids = _gather_whereabouts(comm)
    layout = RankLayout.from_handler(rank=comm.rank, size=comm.size, designated=handler.designated_collector_rank(),
                                     hosts=hosts, pids=pids)
    connect_workers_to = getattr(handler, "connect_workers_to", None)  # optional: not in the seed interface
    workers_url = connect_workers_to(layout.host(layout.collector)) if connect_workers_to is not None else None
    pipeline = config.pipeline_class(parameters=config.pipeline_parameters)
    stop_signal = StopSignal()
    stop_signal.install()

    # Workers write their own hits: once the collector lets them start, it broadcasts its run
    # folder (share_run_dir), and a worker's pipeline writes the hits it finds there.
    if not layout.is_collector:
        collector_started = _share_start(comm, layout.collector, None)  # the collecting node initializes first
        run_dir = share_run_dir(comm, layout.collector, None)
        pipeline = writing_hits(pipeline, config.outputs, config.document, run_dir=run_dir, rank=layout.rank)
        watch = _watch_this_host(layout, [path for path in (summary_json, run_dir and run_dir / "summary.json")
                                          if path is not None])
        try:
            exit_code = run_worker(comm, layout, handler, pipeline, stop_signal, config.run.stop_timeout_s,
                                   collector_started=collector_started, on_stop=watch.end)
        finally:
            watch.end()
        _finalize(handler)
        return RunOutcome(exit_code=exit_code, summary=None)

    opened: list[OutputGroup] = []
    collector = run_collector(
        comm, layout, handler, pipeline, config.run,
        stop_after_acquisition=handler_parameters.stop_after_acquisition,
        source=handler_parameters.source, stop_signal=stop_signal,
        print_status=print_status,
        workers_may_start=lambda started: (
            _share_start(comm, layout.collector, started),
            share_run_dir(comm, layout.collector, opened[0].run_dir if opened else None)),
        open_outputs=lambda: opened.append(_open_outputs(config)) or opened[0],
        checkpoints=[summary_json] if summary_json else [], pipeline_parameters=config.pipeline_parameters,
        listeners=_listening_addresses(config, handler), workers_url=workers_url,
    )
    log.debug("every worker has said its last word")
    report = collector.report
    if not report.lost_ranks:
        # The workers' verdict, then MPI's end: they exit (and tear down, 0.3 s of CPU each) while
        # the summary and the outputs are finished here.  A failure in those still makes this
        # rank's exit code, and so the launcher's, non-zero.
        collector.send_exit_code(report.exit_code)
        _finalize(handler)
    handler_summary = handler.end_event_handling_on_collecting_node(node_rank=layout.rank, node_pool_size=layout.size)
    log.debug("the source has ended")
    summary = {
        **collector.summary_figures(handler_figures=handler_summary, complete=True),
        "wall_time_s": round(time.monotonic() - started, 3),
    }
    summary["per_rank"] = collector.rank_rows({
        "events": report.events_collected, "failed": report.events_failed, "bytes": 0, "busy_s": 0.0,
        "cpu_s": round(time.process_time() - cpu_started, 3), "wall_s": summary["wall_time_s"]})
    exit_code = report.exit_code
    outputs = collector.outputs
    if outputs is not None:
        summary["output_dir"] = str(outputs.run_dir)
        exit_code = _close_outputs(outputs, summary) or exit_code
    log.debug("outputs closed")
    if report.lost_ranks:
        exit_code = max(exit_code, 1)
    if summary_json is not None:
        try:  # the verdict too: a launcher that kills tasks as they exit may report a signal instead
            write_json_atomically(summary_json, {"state": "complete", **summary, "exit_code": exit_code})
        except OSError as error:  # the table is still printed; the exit code says the file is missing
            summary["errors"].append(f"cannot write the summary to {summary_json}: {error.strerror or one_line(error)}")
            exit_code = max(exit_code, 1)
    return RunOutcome(exit_code=exit_code, summary=summary, abort=bool(report.lost_ranks))


def _watch_this_host(layout: RankLayout, checkpoints: list[Path]) -> RankWatch:
    """On a host other than the collector's, its lowest rank watches the ranks there (the collector
    watches its own host's): a rank killed anywhere is named with its host."""
    if layout.node_watcher(layout.rank) != layout.rank:
        return RankWatch(None)
    watch = RankWatch.start(rank=layout.rank, checkpoints=checkpoints, node=True)
    for rank in layout.ranks_on(layout.host(layout.rank)):
        watch.watch(rank, layout.pids[rank])
    return watch


def _listening_addresses(config: MonitorConfig, handler: Any) -> list[Listener]:
    """Every TCP address the collector's node will listen on: the handler's children (its optional
    hook), the outputs, the control endpoint."""
    handler_listeners = getattr(handler, "listening_addresses", None)
    return [*(handler_listeners() if handler_listeners is not None else []),
            *config.outputs.listening_addresses(),
            *tcp_listener("monitor.control_url", config.run.control_url)]


def _finalize(handler: Any) -> None:
    if not handler.skip_rank_finalization():
        MPI.Finalize()


def _open_outputs(config: MonitorConfig) -> OutputGroup:
    """The run's folder and the outputs the YAML asks for (collector only: they bind and write)."""
    from monitor.outputs.group import OutputGroup, build_outputs, create_run_dir

    run_dir = create_run_dir(config.outputs.output_dir)
    outputs = OutputGroup(build_outputs(config.outputs, monitor_parameters=config.document))
    outputs.open(run_dir=run_dir)
    log.info("writing this run's outputs to %s", run_dir)
    return outputs


def _close_outputs(outputs: OutputGroup, summary: dict[str, Any]) -> int:
    """Close every output (files readable afterwards); 1 if one failed to, else 0.  The outputs'
    counters (hits written, failed, ...) join the summary."""
    try:
        outputs.close(summary=summary)
    except Exception as error:  # said once, with the summary's other errors
        summary["errors"].append(str(error) if isinstance(error, MonitorError)
                                 else f"closing outputs: {one_line(error)}")
        return 1
    finally:
        summary["outputs"] = outputs.counters()
    return 0


def _gather_whereabouts(comm: MPI.Comm) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Every rank's host name and pid, by rank, on every rank (fixed-size buffers: nothing pickled)."""
    mine = np.zeros(HOST_NAME_BYTES + 8, dtype=np.uint8)
    name = socket.gethostname().encode()[: HOST_NAME_BYTES - 1]
    mine[: len(name)] = np.frombuffer(name, dtype=np.uint8)
    mine[HOST_NAME_BYTES:] = np.frombuffer(np.int64(os.getpid()).tobytes(), dtype=np.uint8)
    everyone = np.zeros((comm.size, mine.size), dtype=np.uint8)
    request = comm.Iallgather(mine, everyone)
    while not request.Test():
        time.sleep(0.005)
    hosts = tuple(row[:HOST_NAME_BYTES].tobytes().rstrip(b"\0").decode(errors="replace") for row in everyone)
    pids = tuple(int(np.frombuffer(row[HOST_NAME_BYTES:].tobytes(), dtype=np.int64)[0]) for row in everyone)
    return hosts, pids


def _share_start(comm: MPI.Comm, root: int, started: bool | None) -> bool:
    """Whether the collector (``root``, which passes it) started.  Every rank waits here until all
    have come (an all-reduce, so that it is a barrier too), sleeping: MPICH's blocking collectives
    spin every waiting rank's core."""
    failed = np.array([comm.rank == root and not started], dtype=np.uint8)
    verdict = np.zeros(1, dtype=np.uint8)
    request = comm.Iallreduce(failed, verdict, op=MPI.MAX)
    while not request.Test():
        time.sleep(0.005)
    return not verdict[0]
