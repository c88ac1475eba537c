"""SIGINT and SIGTERM as a flag the loops read, never an exception in the middle of an MPI call.

``mpirun`` forwards a Ctrl-C or a batch system's SIGTERM to every rank; each
rank only notes it, and the collector turns it into one orderly stop.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["StopSignal"]


class StopSignal:
    """Set by SIGINT/SIGTERM once installed; ``name`` says which came first, ``count`` how many
    came (a second one asks for the stop not to wait for the frames in flight)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.count = 0

    @property
    def received(self) -> bool:
        return self.name is not None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.name is None:
            self.name = signal.Signals(signum).name
