"""The data source interface: one named piece of data in an event."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["DataSourceProtocol"]


class DataSourceProtocol(Protocol):
    """Turns an opened event into one value (a frame, a timestamp, an id)."""

    def initialize_data_source(self) -> None:
        """Load what the source needs once per rank (calibration files, buffers)."""
        ...

    def get_data(self, *, event: dict[str, Any]) -> Any:
        """Return this source's value for the event; raise ``DataExtractionError`` if impossible."""
        ...
