"""The interface the collector loop drives every output through."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from monitor.processing.protocol import ProcessedEvent

__all__ = ["CollectorOutput", "CountingOutput", "HIT_RATE_HISTORY", "POWDER", "RADIAL_PROFILE"]


class CollectorOutput(Protocol):
    """One thing that shows or keeps the results of a run, fed by the collector rank.

    The collector calls :meth:`open` once, :meth:`on_result` for every result
    and :meth:`on_tick` a few times a second; :meth:`close` is always called,
    whatever ended the run.  No method may block: the collector's throughput
    is the monitor's throughput.
    """

    def open(self, *, run_dir: Path) -> None:
        """Acquire sockets, files and threads; files go under ``run_dir``."""
        ...

    def on_result(self, result: ProcessedEvent) -> None:
        """Take one result, in order of arrival; keep references, do no heavy work."""
        ...

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        """Take the pipeline's latest status figures and aggregates (~5-10 Hz)."""
        ...

    def close(self, *, summary: dict[str, Any]) -> None:
        """Release everything; files written so far are complete and readable."""
        ...


@runtime_checkable
class CountingOutput(Protocol):
    """An output that counts what it did (written, dropped), for status and summary."""

    def counters(self) -> dict[str, int]:
        """Running totals, named so they read alone in a status line (``hits_dropped``)."""
        ...


HIT_RATE_HISTORY = "hit_rate_history"
"""Snapshot key: 1-D hit rate (fraction of events) over recent time bins, oldest first."""
POWDER = "powder"
"""Snapshot key: 2-D virtual powder pattern in raw-frame pixels (row, column)."""
RADIAL_PROFILE = "radial_profile"
"""Snapshot key: 1-D average radial profile (intensity per radial bin)."""
