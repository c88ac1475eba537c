"""glibc's allocation thresholds: set for frame buffers unless the user set their own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monitor.memory import keep_frame_buffers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")


def test_the_thresholds_are_set_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)

    assert keep_frame_buffers() is True


def test_a_users_own_malloc_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")

    assert keep_frame_buffers() is False


def test_frame_buffers_from_another_thread_are_reused_instead_of_mapped_anew() -> None:
    """As ZMQ's I/O thread does: 200 buffers of 1 MiB made in one thread and freed in another."""
    script = (
        "import queue, resource, sys, threading\n"
        "from monitor.memory import keep_frame_buffers\n"
        "if sys.argv[1] == 'tuned': keep_frame_buffers()\n"
        "frames = queue.Queue(maxsize=4)\n"
        "def receive():\n"
        "    for _ in range(200): frames.put(bytearray(1 << 20))\n"
        "    frames.put(None)\n"
        "threading.Thread(target=receive).start()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "while frames.get() is not None: pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {mode: int(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                                       check=True).stdout)
              for mode in ("default", "tuned")}

    assert faults["tuned"] < faults["default"] / 10, faults
