"""The processing pipeline interface and the per-event result it produces.

A pipeline runs in two halves: :meth:`process_data` on every worker rank (one
call per event) and :meth:`collect_data` on the collector rank (one call per
result).  The MPI layer carries a :class:`ProcessedEvent` between them: its
``values`` travel as msgpack, its ``arrays`` as raw buffers, never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = ["ProcessedEvent", "ProcessingPipelineProtocol", "Scalar", "warm_up_frames"]

Scalar = bool | int | float | str | None


@dataclass
class ProcessedEvent:
    """What one worker sends the collector for one event.

    ``values`` holds small JSON-like data (numbers, strings, short lists, nested
    dicts); ``arrays`` holds numpy arrays of any numeric dtype, sent as buffers.
    The arrays must not alias buffers the worker reuses for the next event.
    """

    values: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class ProcessingPipelineProtocol(Protocol):
    """What the MPI layer needs from a processing pipeline."""

    def __init__(self, *, parameters: Any) -> None: ...

    def initialize_processing_node(self, *, node_rank: int, node_pool_size: int) -> None: ...

    def initialize_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None: ...

    def process_data(
        self, *, node_rank: int, node_pool_size: int, data: dict[str, Any]
    ) -> ProcessedEvent:
        """Work on one event's extracted data (one call per event, on a worker)."""
        ...

    def collect_data(
        self, *, node_rank: int, node_pool_size: int, processed_data: ProcessedEvent
    ) -> dict[str, Any] | None:
        """Aggregate one result on the collector; return feedback for the workers, or None."""
        ...

    def receive_feedback(self, *, feedback: dict[str, Any]) -> None:
        """Take feedback the collector broadcast (on a worker)."""
        ...

    def update_parameters(self, *, parameters: Any, number: int) -> None:
        """Use ``parameters`` (the pipeline's own, already validated) from the next event on:
        live parameter set ``number`` (see ``monitor.live_parameters``), at a frame boundary."""
        ...

    def status(self) -> dict[str, Scalar]:
        """A few figures for the live status line (collector)."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """What a viewer draws: arrays and scalars, copies safe to keep (collector, a few times a second)."""
        ...

    def summary(self) -> dict[str, Any]:
        """Every final figure, JSON-serialisable (collector, at the end of the run)."""
        ...

    def end_processing_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None: ...

    def end_processing_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None: ...


def warm_up_frames(shape: tuple[int, int]) -> list[np.ndarray]:
    """A writable and a read-only zero frame: numba compiles a kernel once for each kind."""
    writable, read_only = np.zeros(shape, dtype=np.uint16), np.zeros(shape, dtype=np.uint16)
    read_only.flags.writeable = False
    return [writable, read_only]
