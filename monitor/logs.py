"""Logging with the rank in every line, through the standard ``logging`` module."""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]


def setup_logging(*, rank: int, verbosity: int) -> None:
    """``verbosity``: -1 quiet (warnings and errors), 0 normal, 1 verbose (debug)."""
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[max(-1, min(1, verbosity))]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank {rank} %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
