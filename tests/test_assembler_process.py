"""The assembler as the monitor runs it: a child process, its command line and its stats client."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import zmq

from monitor import wire
from monitor.assembler import AssemblerParameters, AssemblerStats, start_assembler
from monitor.assembler.command_line import arguments_for, parse_arguments
from helpers import free_tcp_url
from replay import Replayer, load_case

REPOSITORY = Path(__file__).resolve().parents[1]


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_command_line_arguments_give_back_the_parameters() -> None:
    parameters = AssemblerParameters(
        streams=["tcp://127.0.0.1:30001", "tcp://127.0.0.1:30002"], bind="tcp://127.0.0.1:5555",
        stats="tcp://127.0.0.1:5556", part_timeout_s=0.25, incomplete="drop", queue="latest_only",
        queue_size=1, stop_after_acquisition=True, io_threads=3,
    )

    assert parse_arguments(arguments_for(parameters))[0] == parameters


def test_bad_command_line_values_are_one_line_and_exit_code_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitor.assembler", "tcp://127.0.0.1:30001", "--queue", "sometimes"],
        capture_output=True, text=True, cwd=REPOSITORY, timeout=30,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "assembler: --queue: Input should be 'lossless' or 'latest_only'"
    ]


def test_started_assembler_sends_the_acquisition_reports_stats_and_exits_after_it() -> None:
    with Replayer(load_case("jf1m-20frames")) as replayer:
        parameters = AssemblerParameters(
            streams=replayer.urls, bind=free_tcp_url(), stats=free_tcp_url(), status_interval_s=0.2,
            stop_after_acquisition=True,
        )
        context = zmq.Context.instance()
        pull = context.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.connect(parameters.bind)
        with start_assembler(parameters) as assembler, AssemblerStats(parameters.stats or "") as stats:
            replayer.wait_for_subscribers()
            time.sleep(0.3)  # the stats subscription, which nothing confirms
            replayer.send()
            messages = []
            while not messages or not isinstance(messages[-1], wire.SyncEnd):
                assert pull.poll(10_000), "no message from the assembler within 10 s"
                messages.append(wire.parse_sync_message(pull.recv_multipart()))
            assert assembler.wait(timeout=10) == 0
            received = []
            while (message := stats.poll()) is not None:
                received.append(message)
        pull.close()

    assert len([m for m in messages if isinstance(m, wire.SyncFrame)]) == 20
    finals = [m for m in received if m["final"]]
    assert len(finals) == 1 and finals[0]["acquisition"]["sent"] == 20
    assert all(set(m) >= {"state", "acquisition", "pending", "queued", "lifetime"} for m in received)


def test_the_assembler_exits_at_once_when_its_parent_dies() -> None:
    parent = textwrap.dedent(f"""
        import os, sys
        from monitor.assembler import AssemblerParameters, start_assembler
        child = start_assembler(AssemblerParameters(streams=["tcp://127.0.0.1:9"], bind="{free_tcp_url()}"))
        print(child.pid, flush=True)
        os._exit(0)
    """)
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, cwd=REPOSITORY, timeout=30)
    child = int(result.stdout)
    assert "the monitor that started it is gone; exiting with 0 frames not handed on" in result.stderr

    deadline = time.monotonic() + 10
    while is_running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_running(child)
