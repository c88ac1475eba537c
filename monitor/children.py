"""Starting and ending the processes a handler starts to feed a run: simulated detectors, the frame assembler.

Every such child is ``python -m MODULE ...`` of this package, started the same
way whichever handler starts it: in a session of its own, so that a Ctrl-C
meant for the launcher (``mpirun`` signals whole process groups) reaches the
monitor, which then ends the child in order instead of losing it under the
running monitor; with this package on its path, wherever the monitor was
started from.  The child itself must exit when the monitor is gone
(``--exit-with-parent`` or ``--parent PID``).  :mod:`monitor.child_watch`
watches them while the run needs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["start_module", "stop_process"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def start_module(module: str, arguments: Sequence[str], *, python: str = sys.executable) -> subprocess.Popen[bytes]:
    """``python -m module arguments`` as a child of its own session; stdout and stderr are inherited."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), environment.get("PYTHONPATH")]))
    return subprocess.Popen([python, "-m", module, *arguments], env=environment, start_new_session=True)


def stop_process(process: subprocess.Popen[bytes], *, timeout_s: float = 5.0) -> int:
    """SIGTERM (the children end their work in order on it), then SIGKILL after ``timeout_s``; the exit code."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
