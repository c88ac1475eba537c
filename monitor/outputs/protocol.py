"""The interface the collector loop drives every output through."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from monitor.processing.protocol import ProcessedEvent

__all__ = [
    "CollectorOutput",
    "CountingOutput",
    "HIT_RATE_HISTORY",
    "ICE_RING_SHELLS_PX",
    "LATEST_HIT_PREFIX",
    "POWDER",
    "RADIAL_BIN_PX",
    "RADIAL_PROFILES",
]


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
"""Snapshot key: rows of (event id, timestamp, rolling hit rate), oldest first; or 1-D rates."""
POWDER = "powder"
"""Snapshot key: 2-D virtual powder pattern in raw-frame pixels (row, column)."""
ICE_RING_SHELLS_PX = "ice_ring_shells_px"
"""Snapshot key: (n, 2) inner and outer distance from the beam (pixels) of the hexagonal-ice shells."""
RADIAL_PROFILES = {"radial_profile_hits": "hits", "radial_profile_non_hits": "non-hits"}
"""Snapshot keys of 1-D mean radial profiles, and their legend labels."""
RADIAL_BIN_PX = "radial_bin_px"
"""Snapshot key: width of one radial-profile bin in pixels (bins are counted when absent)."""
LATEST_HIT_PREFIX = "latest_hit_"
"""Snapshot keys the results stream leaves out: it carries the latest events itself."""
