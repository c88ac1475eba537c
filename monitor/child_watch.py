"""The processes a handler starts to feed a run (the simulated detector, the frame assembler), watched.

A child that dies under a running monitor must end the run in order, named in
one line with its exit, never hang it: a stop would otherwise wait for an end
message the dead child can no longer send.  Its death is said once (the
collector asks for the source's status several times a second) and recorded,
so that the frame accounting can name where the frames went.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass

from monitor.errors import MonitorError

__all__ = ["ChildDied", "ChildWatch"]


class ChildDied(MonitorError):
    """A process feeding the run exited while the run still needed it."""


@dataclass
class _Child:
    key: str
    description: str
    process: subprocess.Popen[bytes]
    finishes_alone: bool
    reported: bool = False


class ChildWatch:
    """The feeding processes of one run, each with what counts as a normal exit."""

    def __init__(self) -> None:
        self._children: list[_Child] = []
        self._stopping = False

    def watch(self, key: str, description: str, process: subprocess.Popen[bytes], *,
              finishes_alone: bool) -> None:
        """``key`` names it in the accounting (``KEY_died``); ``finishes_alone``: an exit with code 0
        is the end of its work (a finite simulation), not a death."""
        self._children.append(_Child(key, description, process, finishes_alone))

    def stopping(self) -> None:
        """From here on the run ends them itself: their exits are expected."""
        self._stopping = True

    def check(self) -> None:
        """Raise :class:`ChildDied` once for each child that has died since the last check."""
        for child in self._children:
            code = child.process.poll()
            if child.reported or code is None or self._stopping or (code == 0 and child.finishes_alone):
                continue
            child.reported = True
            raise ChildDied(f"{child.description} (pid {child.process.pid}) {_exit_text(code)} while the run "
                            "needed it; the run ends")

    @property
    def died(self) -> list[str]:
        """Keys of the children whose death was reported."""
        return [child.key for child in self._children if child.reported]


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
