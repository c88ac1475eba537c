"""Saying which rank died when the launcher kills the whole job for it.

When one rank is killed, the launchers (MPICH's Hydra, Open MPI's mpirun) kill
the others within milliseconds, and Hydra names some other process, if any: no
rank lives long enough to say what happened.  This small process, started by
the collector outside MPI (in a session of its own, so the launcher's cleanup
leaves it alone), watches the ranks on its host through pidfds, which become
readable the moment a process ends.  It holds the job's stderr, which the
launcher still forwards, so its one line reaches the user; once the collector is
gone too, it marks the summary checkpoints as killed, naming the rank.

A job across hosts has one watch per host: the collector's on its own, and on
each other host one started by the lowest rank there (a *node watch*), which
names a rank of its host with the host's name.  The run folder is shared, so a
node watch marks the checkpoints itself, at once (the launcher may kill it
with the step) and again when its rank is gone; the collector's watch, seeing
the collector killed with no death of its own to tell, waits a moment for a
node watch's mark before it blames the collector.

Its standard input comes from the collector: ``watch RANK PID`` lines name the
ranks to watch, ``end`` says the run is ending as it should (ranks exit from
then on), and the end of input means the collector itself is gone.  It imports
no MPI: an MPI library initialised here would join the job.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from monitor.atomic_files import write_text_atomically

__all__ = ["RankWatch", "main"]

log = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]

NODE_WATCH_GRACE_S = 1.0
"""How long the collector's watch waits, after the collector was killed, for a node watch to name
a rank of another host that died first."""


class RankWatch:
    """The collector's end of the watch: names ranks to it, and says when the run ends in order."""

    def __init__(self, process: subprocess.Popen[bytes] | None) -> None:
        self._process = process

    @classmethod
    def start(cls, *, rank: int, checkpoints: list[Path], node: bool = False) -> RankWatch:
        """Start the watch process for this rank (the collector's, or with ``node`` another host's);
        without one (it could not start) the run goes on unwatched."""
        command = [sys.executable, "-m", "monitor.rank_watch", "--parent", str(rank), str(os.getpid())]
        if node:
            command.append("--node")
        for path in checkpoints:
            command += ["--checkpoint", str(path)]
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), environment.get("PYTHONPATH")]))
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, env=environment, start_new_session=True)
        except OSError as error:
            log.warning("no watch on the ranks' processes (%s): a killed rank will not be named", error)
            return cls(None)
        return cls(process)

    def watch(self, rank: int, pid: int) -> None:
        if self._process is None:
            return
        if not _send(self._process, f"watch {rank} {pid}\n", close=False):
            self._process = None  # the watch has gone: the run goes on unwatched

    def end(self) -> None:
        """The run ends in order: ranks exit from now on, and nothing is to be said of it."""
        process, self._process = self._process, None
        if process is None:
            return
        _send(process, "end\n", close=True)
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()


def _send(process: subprocess.Popen[bytes], line: str, *, close: bool) -> bool:
    """Write a line to the watch; False if it has gone."""
    assert process.stdin is not None
    try:
        process.stdin.write(line.encode())
        process.stdin.flush()
        if close:
            process.stdin.close()
    except (BrokenPipeError, ValueError):
        return False
    return True


class _Watch:
    """The watch process's loop."""

    def __init__(self, parent: tuple[int, int], checkpoints: list[Path], *, node: bool) -> None:
        self._parent = parent
        self._checkpoints = checkpoints
        self._node = node
        self._where = f" on {socket.gethostname()}" if node else ""
        self._selector = selectors.DefaultSelector()
        self._selector.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
        self._commands = b""
        self._died: list[tuple[int, int, float]] = []

    def run(self) -> int:
        while True:
            events = self._selector.select()
            self._note_deaths(events)  # before the commands: an "end" can follow a death closely
            if any(key.data is None for key, _ in events) and not self._read_commands():
                return 0

    def _note_deaths(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _ in events:
            if key.data is not None:
                self._died_now(key)

    def _read_commands(self) -> bool:
        """Take what the collector wrote; False once the watch is over."""
        chunk = os.read(sys.stdin.fileno(), 4096)
        if not chunk:
            self._collector_gone()
            return False
        self._commands += chunk
        *lines, self._commands = self._commands.split(b"\n")
        for line in lines:
            words = line.split()
            if words == [b"end"]:  # a rank that died before it (the collector may be ending for that) is news
                self._note_deaths(self._selector.select(timeout=0))
                self._note_dying()
                return False
            if len(words) == 3 and words[0] == b"watch":
                self._watch(int(words[1]), int(words[2]))
        return True

    def _note_dying(self) -> None:
        """Ranks already on their way out when the run ends in order: killed before the ``end``.

        A killed process closes its sockets (which the collector may see, and end the run for)
        before its pidfd becomes readable, and on a loaded machine the ``end`` can come between
        the two.  Ranks that exit in order do so only after the ``end`` (the collector tells them
        to stop after it), so one already exiting then was killed."""
        for key in list(self._selector.get_map().values()):
            if key.data is not None and _exiting(key.data[1]):
                self._died_now(key)

    def _watch(self, rank: int, pid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # already gone (said when the collector goes), or no pidfd on this kernel
            return
        self._selector.register(pidfd, selectors.EVENT_READ, (rank, pid))

    def _died_now(self, key: selectors.SelectorKey) -> None:
        """The first death is the news; the launcher's killing of the others follows from it."""
        self._selector.unregister(key.fd)
        os.close(key.fd)
        rank, pid = key.data
        self._died.append((rank, pid, time.time()))
        if len(self._died) == 1:
            print(f"monitor: rank {rank} (pid {pid}){self._where} died (killed or crashed) while the run went on; "
                  f"if the launcher ends the job for it, the summary checkpoint keeps the figures up to here",
                  file=sys.stderr, flush=True)
            if self._node:  # the launcher may end this watch with the step: mark now, and again at the end
                self._mark_first_death()

    def _mark_first_death(self) -> None:
        rank, pid, at = self._died[0]
        for path in self._checkpoints:
            _mark_killed(path, how=f"killed after rank {rank} (pid {pid}){self._where} died", rank=rank, pid=pid,
                         at=at, over_the_collectors=self._node)

    def _collector_gone(self) -> None:
        """The rank that started this watch ended without saying ``end``: the run was killed.  Say so
        in the checkpoints (a node watch, only for a death on its host)."""
        if self._died:
            self._mark_first_death()
            return
        if self._node:
            return
        time.sleep(NODE_WATCH_GRACE_S)
        if any(_state(path) == "killed" for path in self._checkpoints):  # a node watch named the rank
            return
        rank, pid = self._parent
        print(f"monitor: rank {rank} (the collector, pid {pid}) died (killed or crashed); the run ended with it, "
              f"and the summary checkpoint keeps the figures up to its last write", file=sys.stderr, flush=True)
        for path in self._checkpoints:
            _mark_killed(path, how=f"killed: rank {rank} (the collector, pid {pid}) died", rank=rank, pid=pid,
                         at=time.time(), over_the_collectors=False)


_PF_EXITING = 0x4
"""The kernel's per-task flag "getting shut down", set as a process starts to exit (before its files close)."""


def _exiting(pid: int) -> bool:
    """Whether the process has begun to exit, or is gone: its ``/proc/PID/stat`` flags or state."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_says_exiting(stat)


def stat_says_exiting(stat: str) -> bool:
    """Whether a ``/proc/PID/stat`` line is a process that exits or has exited (state Z or X, or the
    PF_EXITING flag).  The command name, in brackets, may hold spaces and brackets itself."""
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0] in ("Z", "X", "x") or bool(int(fields[6]) & _PF_EXITING)


def _state(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("state")
    except (OSError, ValueError):
        return None


def _mark_killed(path: Path, *, how: str, rank: int, pid: int, at: float, over_the_collectors: bool) -> None:
    """Mark a checkpoint killed; ``over_the_collectors``: a death on another host is the better
    account than the collector's watch's "the collector died" (it died of the job's end)."""
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):  # none written yet, or not ours to mend
        return
    blamed_collector = document.get("state") == "killed" and "(the collector," in document["killed"].get("how", "")
    if document.get("state") not in ("running", "stopping") and not (over_the_collectors and blamed_collector):
        return
    # What the kill cost: the frames sent but not yet accounted for at the last checkpoint (queued in
    # the killed job's sockets and buffers, or in the dead rank's hands).
    in_flight = document.get("accounting", {}).get("in_flight")
    document.update(state="killed", killed={"how": how, "rank": rank, "pid": pid,
                                             "at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(at)),
                                             "frames_lost_with_the_job": in_flight})
    write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.rank_watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parent", nargs=2, type=int, metavar=("RANK", "PID"), required=True)
    parser.add_argument("--node", action="store_true", help="watch another host than the collector's")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):  # the parent's "end" or its death ends the watch (scancel
        signal.signal(signum, signal.SIG_IGN)        # signals every process of the job, the watch included)
    return _Watch((args.parent[0], args.parent[1]), args.checkpoint, node=args.node).run()


if __name__ == "__main__":
    sys.exit(main())
