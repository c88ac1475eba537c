"""Whole runs where something goes wrong: slow workers, lost end messages, signals, a frozen
rank, bad messages.  Each must end by itself with every frame accounted for.

As a user would: ``mpirun -n N python -m monitor CONFIG`` on the 2-core test
machine, then the exit code, what was printed and the ``--summary-json``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zmq

from helpers import MPIRUN, ROOT, assert_balanced, free_tcp_url, process_pid
from monitor import wire

pytestmark = pytest.mark.slow

SLOW = {"pipeline": "pipelines:SlowPipeline", "seconds_per_event": 0.02}
"""50 frames/s per worker, whatever the machine: slower than the simulator."""
LIGHT = {"pipeline": "FrameStatisticsPipeline"}


def start(ranks: int, config: Path, summary: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.Popen([str(MPIRUN), "-n", str(ranks), sys.executable, "-m", "monitor", str(config),
                             "--summary-json", str(summary)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(monitor: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    try:
        return monitor.communicate(timeout=timeout)
    finally:
        monitor.kill()


def rank_pid(config: Path, rank: int, timeout: float = 60) -> int:
    """The pid of one rank of the monitor started on ``config`` (MPICH's Hydra sets PMI_RANK)."""
    return process_pid(lambda command, environ: b"monitor" in command and str(config).encode() in command
                       and f"PMI_RANK={rank}".encode() in environ, f"rank {rank} of the monitor on {config}", timeout)


def wait_for_frames(monitor: subprocess.Popen[str], deadline_s: float = 60) -> None:
    """Read the status lines until frames flow (the rest of stderr stays for ``finish``)."""
    deadline = time.monotonic() + deadline_s
    assert monitor.stderr is not None
    for line in monitor.stderr:
        if "events |" in line and " 0 events" not in line or time.monotonic() > deadline:
            return


@pytest.mark.parametrize("ranks", [2, 8])
@pytest.mark.parametrize("protocol", ["receiver", "sync"])
def test_workers_slower_than_the_source_end_by_themselves_with_every_frame_accounted_for(
        config_factory, tmp_path, ranks, protocol):
    """receiver: the assembler's 40 MiB buffer (20 frames) overflows and says how much; sync: the
    frame sender is held back by the workers (PUSH), nothing is lost."""
    config = config_factory({
        "data_retrieval_layer": {"simulator": {"frames": 600, "rate_hz": 2000, "protocol": protocol},
                                 "assembler": {"buffer_mb": 40}},
        "processing_layer": SLOW, "monitor": {"status_interval_s": 5}})
    summary_file = tmp_path / "summary.json"
    out, err = finish(start(ranks, config, summary_file), timeout=150)
    summary = json.loads(summary_file.read_text())
    accounting = assert_balanced(summary, sent=600)
    print(f"{ranks} ranks, {protocol}: {accounting}")
    assert summary["stop_reason"] == "end of acquisition", err
    if protocol == "sync":
        assert accounting["dropped"] == {} and accounting["processed"] == 600
    else:
        behind = accounting["dropped"].get("workers_behind", 0)
        assert behind == summary["assembler_assembled"] - summary["assembler_sent"]
        assert accounting["processed"] == summary["assembler_sent"]  # every frame the buffer held was processed
        if ranks == 2:
            assert behind > 0 and "workers behind: buffer full" in err
    assert set(accounting["dropped"]) <= {"workers_behind"}


def test_a_source_that_pauses_past_the_acquisition_timeout_is_one_acquisition_with_nothing_lost(
        config_factory, tmp_path):
    """An external trigger that stops for a while, in live use (the run goes on across
    acquisitions): the acquisition closes on silence, and the frames after the pause show (by
    their frameIndex count) that it only paused."""
    config = config_factory({
        "data_retrieval_layer": {"simulator": {"frames": 300, "rate_hz": 500, "protocol": "receiver",
                                               "pause": [100, 3.0]},
                                 "assembler": {"acquisition_timeout_s": 1.5}, "stop_after_acquisition": False},
        "processing_layer": LIGHT, "monitor": {"max_events": 300}})
    summary_file = tmp_path / "summary.json"
    out, err = finish(start(3, config, summary_file), timeout=90)
    summary = json.loads(summary_file.read_text())
    accounting = assert_balanced(summary, sent=300)
    paused, resumed = summary["assembler_acquisitions"]
    assert paused["continued_by"] == 2 and resumed["continues"] == 1
    assert paused["sent"] + resumed["sent"] == accounting["processed"] == 300
    assert accounting.get("estimates", {}) == {}  # no frames are said to be missing
    assert "acquisition 2 continues acquisition 1: the source paused" in err


def test_workers_slow_to_prepare_are_waited_for_and_the_source_is_not_blamed(config_factory, tmp_path):
    config = config_factory({
        "data_retrieval_layer": {"simulator": {"frames": 200, "rate_hz": 200}},
        "processing_layer": {"pipeline": "pipelines:SlowStartPipeline", "seconds_to_prepare": 4.0},
        "monitor": {"no_data_warning_s": 2.0}})
    summary_file = tmp_path / "summary.json"
    out, err = finish(start(3, config, summary_file), timeout=90)
    summary = json.loads(summary_file.read_text())
    assert assert_balanced(summary, sent=200)["processed"] == 200
    assert "2 of 2 workers are still preparing" in err
    assert "no frames from" not in err


def test_a_lost_end_message_closes_the_acquisition_after_its_timeout_and_the_run_ends(config_factory, tmp_path):
    config = config_factory({
        "data_retrieval_layer": {"simulator": {"frames": 300, "rate_hz": 500, "lose_end_messages": True},
                                 "assembler": {"acquisition_timeout_s": 2.0}},
        "processing_layer": LIGHT})
    summary_file = tmp_path / "summary.json"
    out, err = finish(start(3, config, summary_file), timeout=90)
    summary = json.loads(summary_file.read_text())
    assert_balanced(summary, sent=300)
    (acquisition,) = summary["assembler_acquisitions"]
    assert acquisition["end_lost"] and acquisition["sent"] == 300
    assert "closed as 'end message lost'" in err and summary["stop_reason"] == "end of acquisition"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_drains_the_frames_in_flight_and_every_rank_ends_cleanly(
        config_factory, tmp_path, signum):
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 200}},
                             "processing_layer": LIGHT, "monitor": {"status_interval_s": 0.2}})
    summary_file = tmp_path / "summary.json"
    monitor = start(4, config, summary_file)
    wait_for_frames(monitor)
    time.sleep(random.uniform(0, 2))
    monitor.send_signal(signum)
    sent = time.monotonic()
    out, err = finish(monitor, timeout=30)
    gone_after = time.monotonic() - sent
    summary = json.loads(summary_file.read_text())
    accounting = assert_balanced(summary)
    print(f"{signum.name}: every rank gone after {gone_after:.2f} s; {accounting}")
    assert monitor.returncode == 0, err
    assert f"{signum.name} on" in summary["stop_reason"] and accounting["dropped"].get("stop", 0) == 0


def test_a_frozen_worker_is_named_and_the_run_ends_without_it(config_factory, tmp_path):
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 1200, "rate_hz": 300}},
                             "processing_layer": LIGHT, "monitor": {"stop_timeout_s": 2.0}})
    summary_file = tmp_path / "summary.json"
    monitor = start(4, config, summary_file)
    frozen = rank_pid(config, 2)
    try:
        wait_for_frames(monitor)
        os.kill(frozen, signal.SIGSTOP)
        out, err = finish(monitor, timeout=60)
    finally:
        try:
            os.kill(frozen, signal.SIGKILL)
        except ProcessLookupError:
            pass
    summary = json.loads(summary_file.read_text())
    assert monitor.returncode != 0
    assert summary["lost_ranks"] == [2] and "rank 2" in err and "lost" in err
    accounting = assert_balanced(summary, sent=1200)
    assert set(accounting["dropped"]) <= {"worker_lost"}
    assert "Run summary" in out  # printed before the job was aborted


def _module(frame: int, index: int, *, det_type: int = wire.JUNGFRAU) -> list:
    pixels = np.full((512, 1024), 100 + frame, dtype=np.uint16)
    modules = [({**wire.module_header(port=wire.FIRST_UDP_PORT + row, row=row, column=0, frame_number=frame,
                                      frame_index=index, shape=(512, 1024), packets=128, progress=0.0),
                 "detType": det_type}, memoryview(pixels)) for row in (0, 1)]
    return wire.build_sync_frame(modules)


def test_bad_messages_cost_nothing_but_themselves(config_factory, tmp_path):
    """A 200 MiB message and a header from another detector are counted as failed; the good
    frames around them are all processed; a repeated end message is recognised as one."""
    url = free_tcp_url()
    config = config_factory({"data_retrieval_layer": {"source": url, "stop_after_acquisition": True},
                             "processing_layer": LIGHT})
    summary_file = tmp_path / "summary.json"
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.bind(url)
    monitor = start(3, config, summary_file)
    try:
        ports = [wire.FIRST_UDP_PORT, wire.FIRST_UDP_PORT + 1]
        push.send_multipart(wire.build_sync_start([{"udpPorts": [port], "bitmode": 16} for port in ports]))
        messages = [_module(n, n) for n in range(1, 11)]
        messages.append([wire.encode_header({"htype": "module"}), b"\0" * (200 << 20)])
        messages += [_module(n, n) for n in range(12, 17)]
        messages.append(_module(17, 17, det_type=99))
        messages += [_module(n, n) for n in range(18, 23)]
        for message in messages:
            push.send_multipart(message, copy=False)
        end = wire.build_sync_end([([port], [22]) for port in ports])
        push.send_multipart(end)
        push.send_multipart(end)
        out, err = finish(monitor, timeout=90)
    finally:
        push.close(linger=0)
        context.term()
    assert monitor.returncode == 0, err
    summary = json.loads(summary_file.read_text())
    accounting = assert_balanced(summary, sent=22)
    assert accounting["processed"] == 20 and accounting["failed"] == 2 and accounting["dropped"] == {}
    assert summary["duplicate_end_messages"] == 1 and summary["acquisitions"] == 1
    skipped = [line for line in err.splitlines() if "event skipped" in line]
    assert any("over max_message_bytes" in line for line in skipped), err
    assert any("detType 99 is not JUNGFRAU" in line for line in skipped), err
    assert "announced" not in err  # no false loss


def test_an_output_folder_that_cannot_be_created_is_a_configuration_error(config_factory, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config = config_factory({"outputs": {"output_dir": str(blocker / "runs")}, "processing_layer": LIGHT})
    monitor = start(3, config, tmp_path / "summary.json")
    out, err = finish(monitor, timeout=60)
    assert monitor.returncode == 2
    errors = [line for line in err.splitlines() if line.startswith("monitor: error:")]
    assert len(errors) == 1, err
    assert f"outputs.output_dir: cannot create a run folder in {blocker / 'runs'}: " in errors[0]
    assert "Not a directory" in errors[0]


def test_a_killed_worker_is_named_and_leaves_a_checkpointed_summary_and_no_process_behind(config_factory, tmp_path):
    """MPICH's launcher kills the whole job when one rank dies: the rank watch names it, and what
    survives is the checkpoint, marked killed."""
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 200}},
                             "outputs": {"hit_files": {"max_hits_per_file": 5}},
                             "monitor": {"checkpoint_interval_s": 0.5}})
    summary_file = tmp_path / "summary.json"
    monitor = start(4, config, summary_file)
    victim = rank_pid(config, 2)
    wait_for_frames(monitor)
    time.sleep(3)
    os.kill(victim, signal.SIGKILL)
    out, err = finish(monitor, timeout=60)
    assert monitor.returncode != 0
    assert f"monitor: rank 2 (pid {victim}) died (killed or crashed)" in err  # Hydra itself names another pid
    checkpoint = json.loads(summary_file.read_text())
    assert checkpoint["state"] == "killed" and checkpoint["accounting"]["processed"] > 0
    assert checkpoint["killed"]["rank"] == 2 and checkpoint["killed"]["pid"] == victim
    assert checkpoint["killed"]["frames_lost_with_the_job"] == checkpoint["accounting"]["in_flight"] >= 0
    (run_dir,) = (tmp_path / "output").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["killed"]["rank"] == 2
    closed = (run_dir / "files.lst").read_text().split()
    assert closed
    for path in closed:
        with h5py.File(path, "r") as hits:  # every file listed was closed whole
            assert hits["/entry_1/data_1/data"].shape[0] == 5
    deadline = time.monotonic() + 10  # the assembler and the simulator follow their parent
    while time.monotonic() < deadline and _processes_of(config):
        time.sleep(0.2)
    assert _processes_of(config) == []


def _processes_of(config: Path) -> list[int]:
    """Every process started for this run: the ranks (named by the config) and the children they
    started (named by its ports)."""
    ports = [part for part in config.read_text().split() if part.startswith("tcp://127.0.0.1:")]
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and "monitor" in command and (
                str(config) in command or any(port.strip("[],") in command for port in ports)):
            found.append(int(entry.name))
    return found
