"""The assembler as the monitor uses it: a child process, and a client for its stats.

The collector rank starts the assembler with :func:`start_assembler` (a
separate process, so that its receive loop never competes with the collector
for the GIL), stops it with :meth:`AssemblerProcess.stop`, and reads its
accounting with :class:`AssemblerStats`.  The child exits on its own when its
parent dies (it polls ``os.getppid()``), so no orphan keeps the ports bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import zmq

from monitor.assembler.command_line import arguments_for
from monitor.assembler.parameters import AssemblerParameters
from monitor.children import start_module, stop_process

__all__ = ["AssemblerProcess", "AssemblerStats", "start_assembler"]



class AssemblerProcess:
    """A running ``python -m monitor.assembler``; :meth:`stop` ends it (also as a context manager)."""

    def __init__(self, process: subprocess.Popen[bytes], final_report: Path | None = None) -> None:
        self.process = process
        self._final_report = final_report

    def __enter__(self) -> AssemblerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def stop(self, *, timeout: float = 10.0) -> int:
        """SIGTERM (it sends what it can within its ``stop_timeout_s`` and prints its summary),
        SIGKILL past ``timeout``."""
        return stop_process(self.process, timeout_s=timeout)


    def final_report(self) -> dict[str, Any] | None:
        """Every acquisition's final counts, as the assembler wrote them when it exited (its last
        word: the stats socket is a PUB and may lose a message); None while it runs or if it
        wrote none (killed)."""
        if self.process.poll() is None or self._final_report is None or not self._final_report.exists():
            return None
        return json.loads(self._final_report.read_text())


def start_assembler(parameters: AssemblerParameters, *, python: str = sys.executable,
                    final_report: Path | None = None) -> AssemblerProcess:
    """Start the assembler as a child process that exits if this process dies; stderr is inherited.

    It runs in a session of its own, so that a Ctrl-C meant for the launcher
    (mpirun signals whole process groups) reaches the monitor, which then stops
    the assembler in order, rather than killing it under the running monitor.
    """
    arguments = [*arguments_for(parameters), "--parent", str(os.getpid())]
    if final_report is not None:
        arguments += ["--final-report", str(final_report)]
    return AssemblerProcess(start_module("monitor.assembler", arguments, python=python), final_report)


class AssemblerStats:
    """Non-blocking reader of the assembler's stats socket (``parameters.stats``).

    Each message is a dict: ``state`` (``acquiring``, ``idle`` or ``ended``),
    ``final`` (true once per acquisition, when its ``series_end`` has been
    sent), ``acquisition`` (the counts of the open or just-ended acquisition,
    see ``AcquisitionCounts.as_dict``), ``pending``, ``queued`` and
    ``lifetime`` (counts since the assembler started).
    """

    def __init__(self, url: str, *, context: zmq.Context | None = None) -> None:
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, 1000)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(url)

    def __enter__(self) -> AssemblerStats:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def poll(self) -> dict[str, Any] | None:
        """The next stats message, or None if none is waiting (never blocks). Call until None."""
        try:
            return json.loads(self._socket.recv(zmq.NOBLOCK))
        except zmq.Again:
            return None

    def close(self) -> None:
        self._socket.close()
        if self._own_context:
            self._context.term()
