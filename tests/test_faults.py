"""Whole runs where a part of the machinery fails: a process feeding the run dies, a port is taken,
the disk fills, a client abuses the control endpoint.  Each ends by itself (or goes on) in order,
says what happened in one line, and accounts for every frame.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import zmq
from ruamel.yaml import YAML

from helpers import ROOT, assert_balanced, free_port, process_pid
from test_run_endings import LIGHT, finish, start, wait_for_frames

pytestmark = pytest.mark.slow


def child_pid(module: str, marker: str, timeout: float = 60) -> int:
    """The pid of the ``python -m MODULE`` child whose command line holds ``marker`` (its URL)."""
    return process_pid(lambda command, _: module.encode() in command and any(marker.encode() in part
                                                                             for part in command),
                       f"{module} process with {marker}", timeout)


def errors_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("monitor: error:")]


def settings(config: Path) -> dict:
    return YAML(typ="safe").load(config.read_text())


@pytest.mark.parametrize("child", ["monitor.assembler", "monitor.simulate"])
def test_a_killed_child_process_ends_the_run_in_order_with_every_frame_accounted_for(config_factory, tmp_path,
                                                                                    child):
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 200}},
                             "processing_layer": LIGHT})
    layer = settings(config)["data_retrieval_layer"]
    marker = layer["assembler"]["bind"] if child == "monitor.assembler" else layer["simulator"]["url"]
    summary_file = tmp_path / "summary.json"
    monitor = start(3, config, summary_file)
    victim = child_pid(child, marker)
    wait_for_frames(monitor)
    os.kill(victim, signal.SIGKILL)
    out, err = finish(monitor, timeout=90)
    assert monitor.returncode == 1, err
    name = "the frame assembler" if child == "monitor.assembler" else "the simulated detector"
    said = [line for line in err.splitlines() if f"{name} (pid {victim}) was killed by SIGKILL" in line]
    assert len(said) == 2, err  # as it happens, and once more under the summary
    summary = json.loads(summary_file.read_text())
    assert summary["state"] == "complete" and summary["lost_ranks"] == []
    accounting = assert_balanced(summary)
    print(f"{child} killed: {accounting}")
    assert accounting["processed"] > 0 and "Traceback" not in err


@pytest.mark.parametrize("key", ["monitor.control_url", "outputs.metrics.port", "data_retrieval_layer.assembler.bind",
                                 "outputs.results_stream.request_url"])
def test_a_taken_port_is_one_line_and_exit_2_before_anything_starts(config_factory, tmp_path, key):
    port = free_port()
    changes = {"processing_layer": LIGHT}
    if key == "monitor.control_url":
        changes["monitor"] = {"control_url": f"tcp://127.0.0.1:{port}"}
    elif key == "outputs.metrics.port":
        changes["outputs"] = {"metrics": {"enabled": True, "port": port}}
    elif key == "data_retrieval_layer.assembler.bind":
        changes["data_retrieval_layer"] = {"assembler": {"bind": f"tcp://127.0.0.1:{port}"}}
    else:
        changes["outputs"] = {"results_stream": {"request_url": f"tcp://127.0.0.1:{port}"}}
    config = config_factory(changes)
    summary_file = tmp_path / "summary.json"
    with socket.create_server(("127.0.0.1", port)):
        monitor = start(3, config, summary_file)
        out, err = finish(monitor, timeout=90)
    assert monitor.returncode == 2, err
    errors = errors_in(err)
    assert len(errors) == 1, err
    assert f"{key}: cannot listen on 127.0.0.1:{port}: Address already in use" in errors[0]
    assert "started the simulated" not in err and "started the frame assembler" not in err
    summary = json.loads(summary_file.read_text())
    assert summary["lost_ranks"] == [] and "worker_lost" not in summary["accounting"]["dropped"], err
    assert "lost" not in err


def test_a_full_disk_costs_the_hits_it_cannot_hold_and_the_run_ends_in_order(config_factory, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        statistics = os.statvfs(disk)
        # room for the run folder and a few compressed hits above the two uncompressed frames a hit needs free
        (disk / "filler").write_bytes(b"\0" * (statistics.f_bavail * statistics.f_frsize - (11 << 20)))
        config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 300, "rate_hz": 500}},
                                 "outputs": {"output_dir": str(disk / "output")}})
        summary_file = tmp_path / "summary.json"
        monitor = start(3, config, summary_file)
        out, err = finish(monitor, timeout=180)
        assert monitor.returncode == 1, err
        summary = json.loads(summary_file.read_text())  # the other target: the run folder is full
        assert summary["state"] == "complete"
        assert_balanced(summary, sent=300)
        outputs = summary["outputs"]
        print(f"full disk: {outputs}")
        assert outputs["hits_failed"] > 0
        assert "Run summary" in out and "Traceback" not in err
        assert any("No space left on device" in line for line in errors_in(err)), err
        (run_dir,) = (disk / "output").iterdir()
        assert not list(run_dir.glob(".*.partial"))
        listed = (run_dir / "files.lst").read_text().split() if (run_dir / "files.lst").exists() else []
        for path in listed:
            with h5py.File(path, "r") as hits:  # every listed file reads whole
                assert hits["/entry_1/data_1/data"].shape[0] > 0
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_a_hostile_control_client_changes_nothing_and_the_run_goes_on(config_factory, tmp_path):
    """Six raw bytes, values no frame can be searched with, a 5 MB key and a client that floods
    without reading the answers: every frame is processed, no parameter set is made."""
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 1000, "rate_hz": 200,
                                                                    "protocol": "sync"}}})
    url = settings(config)["monitor"]["control_url"]
    summary_file = tmp_path / "summary.json"
    monitor = start(3, config, summary_file)
    wait_for_frames(monitor)
    host, port = url.removeprefix("tcp://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"\x01\x00\x01\x00\x00\x00")  # a ZMTP 1.0 greeting
    refused = [_ask(url, {"set": change}) for change in (
        {"peakfinder8.adc_threshold": float("nan")}, {"peakfinder8.min_peak_intensity": float("inf")},
        {"peakfinder8.max_num_peaks": 10**12}, {"peakfinder8.min_pixel_count": -3},
        {"peakfinder8.min_pixel_count": 300}, {"x" * (5 << 20): 1})]
    _flood(url, requests=20000)
    out, err = finish(monitor, timeout=120)
    assert monitor.returncode == 0, err
    assert [answer is None or "error" in answer for answer in refused] == [True] * len(refused), refused
    assert all(len(json.dumps(answer)) < 1000 for answer in refused if answer)
    summary = json.loads(summary_file.read_text())
    assert assert_balanced(summary, sent=1000)["processed"] == 1000
    assert [parameter_set["number"] for parameter_set in summary["parameter_sets"]] == [0]
    control_lines = [line for line in err.splitlines() if "control" in line or "refused" in line]
    assert len(control_lines) < 20 and max(map(len, control_lines), default=0) < 1000, control_lines[:5]
    assert "said nothing" not in err  # the workers were never taken for silent


def _ask(url: str, body: dict, timeout_s: float = 30) -> dict | None:
    """One request; None when the monitor dropped it (a 5 MB request ends its sender's connection)."""
    context = zmq.Context()
    client = context.socket(zmq.REQ)
    client.setsockopt(zmq.LINGER, 0)
    try:
        client.connect(url)
        client.send(json.dumps(body).encode())
        return json.loads(client.recv()) if client.poll(int(timeout_s * 1000)) else None
    finally:
        client.close()
        context.term()


def _flood(url: str, *, requests: int) -> None:
    """Requests sent as fast as ZeroMQ takes them, answers never read."""
    context = zmq.Context()
    flooder = context.socket(zmq.DEALER)
    flooder.setsockopt(zmq.LINGER, 0)
    flooder.setsockopt(zmq.SNDHWM, 0)
    flooder.connect(url)
    try:
        for _ in range(requests):
            flooder.send_multipart([b"", b'{"get": true}'])
    finally:
        flooder.close()
        context.term()


def test_the_control_client_pointed_at_another_service_says_so_in_one_line():
    context = zmq.Context()
    other = context.socket(zmq.REP)
    port = other.bind_to_random_port("tcp://127.0.0.1")
    try:
        client = subprocess.Popen([sys.executable, "-m", "monitor.control", f"tcp://127.0.0.1:{port}", "get"],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert other.poll(60_000)
        other.recv()
        other.send(b"\x93\xff\xfe\x00 not json")  # a msgpack answer, say
        out, err = client.communicate(timeout=60)
    finally:
        other.close(linger=0)
        context.term()
    assert client.returncode == 2
    assert err.splitlines() == [f"monitor.control: error: the answer from tcp://127.0.0.1:{port} is not a monitor's "
                                "control reply: is it the monitor.control_url?"]


def test_an_error_while_workers_still_prepare_waits_for_them_and_loses_none(config_factory, tmp_path):
    """A first run compiles its kernels for tens of seconds, saying nothing: a stop meanwhile waits
    for them (up to prepare_timeout_s), not only stop_timeout_s."""
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 200}},
                             "processing_layer": {"pipeline": "pipelines:SlowStartPipeline", "seconds_to_prepare": 8.0},
                             "monitor": {"stop_timeout_s": 1.0}})
    summary_file = tmp_path / "summary.json"
    monitor = start(3, config, summary_file)
    os.kill(child_pid("monitor.simulate", settings(config)["data_retrieval_layer"]["simulator"]["url"]),
            signal.SIGKILL)
    out, err = finish(monitor, timeout=120)
    assert monitor.returncode == 1, err
    summary = json.loads(summary_file.read_text())
    assert summary["lost_ranks"] == [] and "lost" not in err, err
    assert [row["role"] for row in summary["per_rank"]] == ["collector", "worker", "worker"]
