"""The rank watch: names the first rank that dies, and marks the checkpoint once the collector is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.rank_watch import RankWatch, stat_says_exiting


def watch_process(checkpoint: Path) -> subprocess.Popen[str]:
    """The watch as the collector starts it, with this test in the collector's place."""
    return subprocess.Popen([sys.executable, "-m", "monitor.rank_watch", "--parent", "0", str(os.getpid()),
                             "--checkpoint", str(checkpoint)], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finished(watch: subprocess.Popen[str]) -> str:
    """What the watch said, once it has exited."""
    assert watch.stderr is not None
    err = watch.stderr.read()
    watch.wait(timeout=10)
    return err


def running_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"state": "running", "accounting": {"processed": 7}}))
    return path


def test_the_first_rank_to_die_is_named_and_the_checkpoint_marked_killed_when_the_collector_goes(tmp_path):
    checkpoint = running_checkpoint(tmp_path)
    victim, other = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sleep", "60"])
    watch = watch_process(checkpoint)
    assert watch.stdin is not None
    watch.stdin.write(f"watch 2 {victim.pid}\nwatch 3 {other.pid}\n")
    watch.stdin.flush()
    time.sleep(0.5)
    victim.kill()
    time.sleep(0.2)
    other.kill()  # the launcher's cleanup: not news
    victim.wait(), other.wait()
    time.sleep(0.2)
    watch.stdin.close()  # the collector is gone without saying "end"
    err = finished(watch)

    assert err.strip().splitlines() == [
        f"monitor: rank 2 (pid {victim.pid}) died (killed or crashed) while the run went on; if the launcher ends "
        "the job for it, the summary checkpoint keeps the figures up to here"]
    document = json.loads(checkpoint.read_text())
    assert document["state"] == "killed" and document["accounting"] == {"processed": 7}
    assert document["killed"]["rank"] == 2 and document["killed"]["pid"] == victim.pid
    assert watch.returncode == 0


def test_a_collector_that_dies_first_is_named_itself(tmp_path):
    checkpoint = running_checkpoint(tmp_path)
    watch = watch_process(checkpoint)
    assert watch.stdin is not None
    watch.stdin.close()
    err = finished(watch)

    assert f"rank 0 (the collector, pid {os.getpid()}) died" in err
    assert json.loads(checkpoint.read_text())["killed"]["how"] == f"killed: rank 0 (the collector, pid {os.getpid()}) died"


def test_after_end_ranks_exit_as_they_should_and_nothing_is_said(tmp_path, capfd: pytest.CaptureFixture[str]):
    checkpoint = running_checkpoint(tmp_path)
    worker = subprocess.Popen(["sleep", "60"])
    watch = RankWatch.start(rank=0, checkpoints=[checkpoint])
    watch.watch(1, worker.pid)
    time.sleep(0.3)
    watch.end()
    worker.kill()
    worker.wait()
    time.sleep(0.2)

    assert "died" not in capfd.readouterr().err
    assert json.loads(checkpoint.read_text())["state"] == "running"


LEADER_EXITS_FIRST = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(60,)).start()
ctypes.CDLL(None, use_errno=True).syscall(60, 0)  # exit(2) of the main thread alone (x86-64): a process half gone
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the exit system call's number is x86-64's")
def test_a_rank_already_exiting_when_the_run_ends_in_order_is_named(tmp_path):
    """A killed rank closes its sockets before its pidfd is readable; if the collector ends the run for
    that in between, the rank is still named: at ``end``, a rank that has begun to exit was killed."""
    checkpoint = running_checkpoint(tmp_path)
    dying = subprocess.Popen([sys.executable, "-c", LEADER_EXITS_FIRST])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{dying.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
            time.sleep(0.05)
        watch = watch_process(checkpoint)
        assert watch.stdin is not None
        watch.stdin.write(f"watch 2 {dying.pid}\nend\n")
        watch.stdin.flush()
        err = finished(watch)
    finally:
        dying.kill()
        dying.wait()
    assert err.startswith(f"monitor: rank 2 (pid {dying.pid}) died (killed or crashed)")


@pytest.mark.parametrize(("stat", "exiting"), [
    ("4242 (python) S 1 4242 4242 0 -1 4194304 900 0 0 0", False),
    ("4242 (python) R 1 4242 4242 0 -1 4194308 900 0 0 0", True),  # PF_EXITING: on its way out
    ("4242 (a (b) c) Z 1 4242 4242 0 -1 4194304 900 0 0 0", True),  # a zombie, with brackets in its name
])
def test_the_proc_stat_line_tells_an_exiting_process(stat, exiting):
    assert stat_says_exiting(stat) is exiting
