"""The data event handler interface (the seed interface, kept name for name).

An event handler knows where events come from (a ZMQ stream, a file, ...) and
how each one is opened and turned into data through its data sources.  It also
owns the rank bookkeeping that depends on the data source: which rank collects
(:meth:`designated_collector_rank`) and whether MPI finalization is skipped.
The MPI layer (:mod:`monitor.mpi`) obeys those answers and calls nothing else
that knows about ranks.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal, Protocol, TypedDict

__all__ = ["DataEventHandlerProtocol", "Event", "EventKind"]

EventKind = Literal["frame", "start", "end", "idle"]
"""What an event is.

``frame``: one detector frame, to be opened and extracted.  ``start``/``end``:
the start and end of an acquisition (``end`` carries the sender's frame
counts).  ``idle``: nothing arrived for one poll interval; yielded so that the
MPI layer stays responsive to stop requests without the generator blocking.
"""


class Event(TypedDict, total=False):
    """One item of an event generator; handlers add their own keys."""

    kind: EventKind
    additional_info: dict[str, Any]


class DataEventHandlerProtocol(Protocol):
    """What the MPI layer needs from a data event handler."""

    def __init__(self, *, source: str, parameters: Any) -> None: ...

    def designated_collector_rank(self) -> Literal["first", "last"]:
        """Which end of the rank range collects: rank 0 ("first") or size-1 ("last")."""
        ...

    def skip_rank_finalization(self) -> bool:
        """True when the program must not call ``MPI.Finalize`` itself."""
        ...

    def initialize_event_handling_on_collecting_node(
        self, *, node_rank: int, node_pool_size: int
    ) -> None: ...

    def initialize_event_handling_on_processing_node(
        self, *, node_rank: int, node_pool_size: int
    ) -> None: ...

    def collecting_node_status(self) -> dict[str, Any]:
        """Live figures of what the handler runs on the collector (e.g. a frame assembler's drops)."""
        ...

    def stop_event_source(self) -> bool:
        """Ask the source the collecting node started to end its acquisition now (a stop: signal,
        ``max_events``); True if it will, so that an end message follows the frames already sent
        and the run can drain them; False when the source is not this handler's to stop.

        Not in the seed interface, and optional: a stop that waits for frames in flight needs
        a last message behind them, and only the sender can put it there.
        """
        ...

    def source_accounting(self) -> dict[str, Any]:
        """What the source side knows of the frames, from each component's last word:
        ``sent`` (the source's own count, or None), ``delivered`` (frames handed to the
        workers, or None), ``dropped`` (reason -> count) and ``estimates`` (labelled figures
        that are not counts).  Call after ``end_event_handling_on_collecting_node``.  Optional:
        without it the accounting relies on the end messages alone."""
        ...

    def end_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> dict[str, Any]:
        """Stop what the collecting node started; return figures for the final summary.

        Not in the seed interface: it is the counterpart of
        ``initialize_event_handling_on_collecting_node``, so that whatever a
        handler starts there (a simulator, an assembler) ends with the run and
        reports into its summary (e.g. the simulator's true hit rate).
        """
        ...

    def event_generator(
        self, *, node_rank: int, node_pool_size: int
    ) -> Generator[Event, None, None]:
        """Yield events on a worker rank, and an ``idle`` event at least every poll interval."""
        ...

    def open_event(self, *, event: Event) -> None: ...

    def close_event(self, *, event: Event) -> None: ...

    def extract_data(self, *, event: Event) -> dict[str, Any]:
        """Return one value per required data source; raise ``DataExtractionError`` if impossible."""
        ...

    def initialize_event_data_retrieval(self) -> None: ...

    def retrieve_event_data(self, event_id: str) -> dict[str, Any]: ...
