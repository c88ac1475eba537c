"""The data source interface: one named piece of data in an event."""

from __future__ import annotations

from typing import Any, Protocol

from monitor.errors import DataExtractionError, one_line

__all__ = ["DataSourceProtocol", "extract_all"]


class DataSourceProtocol(Protocol):
    """Turns an opened event into one value (a frame, a timestamp, an id)."""

    def initialize_data_source(self) -> None:
        """Load what the source needs once per rank (calibration files, buffers)."""
        ...

    def get_data(self, *, event: dict[str, Any]) -> Any:
        """Return this source's value for the event; raise ``DataExtractionError`` if impossible."""
        ...


def extract_all(sources: dict[str, DataSourceProtocol], event: dict[str, Any]) -> dict[str, Any]:
    """One value per named source; any failure, a source's bug included, is the event's ``DataExtractionError``."""
    data = {}
    for name, source in sources.items():
        try:
            data[name] = source.get_data(event=event)
        except DataExtractionError:
            raise
        except Exception as error:  # a source bug or odd input: still one event's failure
            raise DataExtractionError(f"{name}: {one_line(error)}") from error
    return data
