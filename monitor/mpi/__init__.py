"""The MPI layer: rank roles, the worker and collector loops, the end of a run.

Rank numbers are decided in one place, :mod:`monitor.mpi.ranks`, from the
handler's answers (collector first or last, finalization skipped or not).
Workers run the handler's event generator and the pipeline's per-event half
and send each result to the collector (the gather pattern: many workers, one
collector); the collector aggregates, reports, and decides when the run ends.
"""

from monitor.mpi.run import RunOutcome, run

__all__ = ["RunOutcome", "run"]
