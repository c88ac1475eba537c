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
    "one_line",
    "shorten",
]

MAX_SHOWN = 200
"""Characters of someone else's text (a client's key, a value) that a reply or a log line shows."""


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


def one_line(error: BaseException) -> str:
    """``Type: first line`` of any exception, for a log line or a summary entry: an MPI error's
    text is a whole error stack (MPICH's), which must not become the user's message."""
    lines = str(error).strip().splitlines()
    text = lines[0].strip().removesuffix(", error stack:") if lines else ""
    name = "MPI" if type(error).__module__.startswith("mpi4py") else type(error).__name__
    return f"{name}: {text}" if text else name


def shorten(text: str) -> str:
    """Someone else's text as far as a reply or a log line shows it: a client can send megabytes."""
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"
