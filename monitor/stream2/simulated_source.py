"""The simulated EIGER2 as a run's source: started beside the collector, stopped with the run, its truth read.

The simulator runs as its own process (``python -m monitor.stream2.simulator``)
so that drawing and compressing images never competes with the collector for
its interpreter; it exits with the monitor (``--exit-with-parent``).  Its
truth (one line per image sent) gives the run's true hit rate and the count
of images sent, the source's own word for the frame accounting.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from monitor.child_watch import ChildWatch
from monitor.children import start_module, stop_process
from monitor.stream2.simulator import Stream2SimulatorParameters

__all__ = ["SimulatedStream2"]

log = logging.getLogger(__name__)


class SimulatedStream2:
    """One simulator process and its truth file."""

    def __init__(self, parameters: Stream2SimulatorParameters) -> None:
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if parameters.truth_file is None:  # keep the truth anyway: the summary compares against it
            self._scratch = tempfile.TemporaryDirectory(prefix="monitor-stream2-")
            parameters = parameters.model_copy(update={"truth_file": Path(self._scratch.name) / "truth.jsonl"})
        self._parameters = parameters
        self._process: subprocess.Popen[bytes] | None = None
        self._watch = ChildWatch()
        self.sent: int | None = None
        """Images sent, by the truth (after :meth:`finish`)."""

    def start(self) -> None:
        self._process = start_module("monitor.stream2.simulator",
                                     ["--exit-with-parent", *self._parameters.command_line()])
        self._watch.watch("simulator", "the simulated EIGER2", self._process, finishes_alone=True)
        log.info("started the simulated EIGER2 %s on %s (pid %d)", self._parameters.detector,
                 self._parameters.url, self._process.pid)

    def check(self) -> None:
        """Raise :class:`~monitor.child_watch.ChildDied` if the simulator died before the run asked it
        to stop (it exits with code 0 after its series)."""
        self._watch.check()

    @property
    def died(self) -> list[str]:
        return self._watch.died

    def stop(self) -> None:
        """End the series now: the simulator sends its end message behind the images already sent."""
        self._watch.stopping()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def finish(self) -> dict[str, Any]:
        """Wait for the simulator to exit (stop it if it lingers); the truth's figures for the summary."""
        self._watch.stopping()
        if self._process is not None:
            stop_process(self._process)
        truth = self._parameters.truth_file
        hits = []
        if truth is not None and truth.exists():
            with truth.open() as lines:
                hits = [json.loads(line)["is_hit"] for line in lines if line.strip()]
        if self._scratch is not None:
            self._scratch.cleanup()
        self.sent = len(hits)
        return {"true_hit_rate": sum(hits) / len(hits) if hits else None, "simulated_frames": len(hits)}
