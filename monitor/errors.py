"""The project's few exception types.

Each is raised where the problem is known, with a message that names what is
wrong and where; the command line turns them into one line and an exit code.
"""

from __future__ import annotations

__all__ = [
    "MonitorError",
    "ConfigurationError",
    "DataExtractionError",
    "WireFormatError",
    "LaunchError",
]


class MonitorError(Exception):
    """Base class: an error the program reports in one line, not a traceback."""

    exit_code: int = 1


class ConfigurationError(MonitorError):
    """The YAML configuration is unreadable or invalid (message names file:line and key)."""

    exit_code = 2


class DataExtractionError(MonitorError):
    """One event's data cannot be extracted; the worker reports it and skips the event."""


class WireFormatError(DataExtractionError):
    """A ZMQ message does not have the shape the protocol documents (message part named)."""


class LaunchError(MonitorError):
    """The launcher and the MPI library do not match, or the run has one rank (message names the fix)."""

    exit_code = 2
