"""One run of the monitor on every rank: roles, the loops, the final gather, finalization."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from mpi4py import MPI

from monitor.config import MonitorConfig

if TYPE_CHECKING:
    from monitor.outputs.group import OutputGroup
from monitor.mpi.collector import CollectorReport, StatusPrinter, run_collector
from monitor.mpi.ranks import RankLayout
from monitor.mpi.signals import StopSignal
from monitor.mpi.worker import run_worker

__all__ = ["RunOutcome", "run"]

log = logging.getLogger(__name__)

_STATS = ("events", "failed", "bytes", "busy_s", "cpu_s", "wall_s")
"""Each rank's final figures, gathered as one float64 vector per rank (a buffer, not a pickle)."""


@dataclass(frozen=True)
class RunOutcome:
    """How the run ended on this rank; ``summary`` is set on the collector only."""

    exit_code: int
    summary: dict[str, Any] | None


def run(config: MonitorConfig, *, print_status: StatusPrinter, comm: MPI.Comm | None = None) -> RunOutcome:
    """Run the monitor on this rank; every rank of ``comm`` must call it."""
    comm = comm or MPI.COMM_WORLD
    started, cpu_started = time.monotonic(), time.process_time()
    handler_parameters = config.handler_parameters
    handler = config.handler_class(source=handler_parameters.source, parameters=handler_parameters)
    layout = RankLayout.from_handler(rank=comm.rank, size=comm.size, designated=handler.designated_collector_rank())
    pipeline = config.pipeline_class(parameters=config.pipeline_parameters)
    stop_signal = StopSignal()
    stop_signal.install()

    if layout.is_collector:
        report, handler_summary, outputs = run_collector(
            comm, layout, handler, pipeline, config.run,
            stop_after_acquisition=handler_parameters.stop_after_acquisition,
            source=handler_parameters.source, stop_signal=stop_signal,
            print_status=print_status, workers_may_start=lambda: _quiet_barrier(comm),
            open_outputs=lambda: _open_outputs(config),
        )
        mine = [report.events_collected, report.events_failed, 0, 0.0]
        exit_code = 1 if report.errors else 0
    else:
        _quiet_barrier(comm)  # the collecting node initializes first
        stats = run_worker(comm, layout, handler, pipeline, stop_signal, config.run.stop_timeout_s)
        mine = [stats.events, stats.failed, stats.bytes, stats.busy_s]
        exit_code = 0

    table = _gather_stats(comm, layout, mine + [time.process_time() - cpu_started, time.monotonic() - started])
    summary = None
    if layout.is_collector:
        summary = _summary(report, table, layout, {**handler_summary, **pipeline.summary()})
        if outputs is not None:
            summary["output_dir"] = str(outputs.run_dir)
            exit_code = _close_outputs(outputs, summary) or exit_code
    exit_code = _agree_exit_code(comm, layout, exit_code)
    if not handler.skip_rank_finalization():
        MPI.Finalize()
    return RunOutcome(exit_code=exit_code, summary=summary)


def _open_outputs(config: MonitorConfig) -> OutputGroup:
    """The run's folder and the outputs the YAML asks for (collector only: they bind and write)."""
    from monitor.outputs.group import OutputGroup, build_outputs, create_run_dir

    run_dir = create_run_dir(config.outputs.output_dir)
    outputs = OutputGroup(build_outputs(config.outputs, monitor_parameters=config.document))
    outputs.open(run_dir=run_dir)
    log.info("writing this run's outputs to %s", run_dir)
    return outputs


def _close_outputs(outputs: OutputGroup, summary: dict[str, Any]) -> int:
    """Close every output (files readable afterwards); 1 if one failed to, else 0."""
    try:
        outputs.close(summary=summary)
    except Exception as error:
        message = f"closing outputs: {type(error).__name__}: {error}"
        log.error("%s", message)
        summary["errors"].append(message)
        return 1
    return 0


def _quiet_barrier(comm: MPI.Comm) -> None:
    """A barrier that sleeps while it waits: MPICH's blocking one spins every waiting rank's core."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.005)


def _gather_stats(comm: MPI.Comm, layout: RankLayout, mine: list[float]) -> np.ndarray | None:
    send = np.asarray(mine, dtype=np.float64)
    receive = np.empty((layout.size, len(_STATS)), dtype=np.float64) if layout.is_collector else None
    comm.Gather(send, receive, root=layout.collector)
    return receive


def _agree_exit_code(comm: MPI.Comm, layout: RankLayout, exit_code: int) -> int:
    """Every rank exits with the collector's verdict, so any launcher reports it."""
    code = np.array([exit_code], dtype=np.int32)
    comm.Bcast(code, root=layout.collector)
    return int(code[0])


def _summary(report: CollectorReport, table: np.ndarray, layout: RankLayout,
             extra: dict[str, Any]) -> dict[str, Any]:
    span = (report.last_event_s or 0) - (report.first_event_s or 0)
    handled = report.events_collected + report.events_failed
    per_rank = []
    for rank, row in enumerate(table):
        figures = dict(zip(_STATS, row.tolist()))
        per_rank.append({"rank": rank, "role": layout.role(rank), **{
            key: int(value) if key in ("events", "failed", "bytes") else round(value, 3)
            for key, value in figures.items()
        }})
    return {
        **extra,
        "events_processed": report.events_collected,
        "events_failed": report.events_failed,
        "frames_sent": report.frames_sent,
        "frames_per_port": report.frames_per_port,
        "acquisitions": report.acquisitions_ended,
        "collector_rank": layout.collector,
        "ranks": layout.size,
        "workers": len(layout.workers),
        "events_per_s": round(handled / span, 1) if span > 0 else None,
        "wall_time_s": round(float(table[layout.collector][-1]), 3),
        "stop_reason": report.stop_reason,
        "errors": report.errors,
        "per_rank": per_rank,
    }
