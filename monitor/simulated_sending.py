"""What every simulated detector does as a child of the monitor: send at a rate, stop in order, die with it.

Shared by the JUNGFRAU simulator (:mod:`monitor.simulate`) and the simulated
EIGER2 (:mod:`monitor.stream2.simulator`), which differ only in what they send.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

__all__ = ["STOP", "StopRequest", "exit_with_parent", "paced"]


class StopRequest:
    """SIGTERM/SIGINT as a flag: the acquisition ends early, in order, like a detector stop."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


STOP = StopRequest()
"""The process's stop request (installed by the simulator's ``main``)."""


def paced(count: int, rate_hz: float, first: int, pause: tuple[int, float] | None = None) -> Iterator[int]:
    """Frame numbers at ``rate_hz`` until :data:`STOP` is requested, catching up after a slow frame rather
    than drifting; ``pause`` (frames, seconds): after that many frames, nothing for that long."""
    start = time.perf_counter()
    for i in range(count):
        if STOP.requested:
            return
        if pause is not None and i == pause[0]:
            start += pause[1]
        delay = start + i / rate_hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield first + i


def exit_with_parent() -> None:
    """Started by the monitor, a simulator must not outlive it (e.g. after a kill -9)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
