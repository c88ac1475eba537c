"""Logging with the rank in every line, through the standard ``logging`` module."""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["setup_logging", "RateLimitedLog"]


def setup_logging(*, rank: int, verbosity: int) -> None:
    """``verbosity``: -1 quiet (warnings and errors), 0 normal, 1 verbose (debug)."""
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[max(-1, min(1, verbosity))]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank {rank} %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class RateLimitedLog:
    """The first ``burst`` lines, then at most one per ``interval_s``; the lines held back are
    counted in the next one, or by :meth:`flush` at the end.

    Bad input can arrive at the detector's frame rate: the log must say what is
    wrong without becoming the bottleneck.
    """

    def __init__(self, logger: logging.Logger, *, interval_s: float = 1.0, burst: int = 1) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._burst = burst
        self._last = -float("inf")
        self._held_back = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if self._burst > 0:
            self._burst -= 1
        elif now - self._last < self._interval_s:
            self._held_back += 1
            return
        if self._held_back:
            message += f" (and {self._held_back} similar lines held back)"
        self._logger.warning(message)
        self._last = now
        self._held_back = 0

    def flush(self, what: str) -> None:
        """Say how many lines were held back since the last one (``what``: of what kind)."""
        if self._held_back:
            self._logger.warning("%d more %s, not shown one by one", self._held_back, what)
            self._held_back = 0
