"""The simulated detector on the wire: synchronizer-shaped PUSH, or receiver-shaped PUB streams."""

from __future__ import annotations

import json
import subprocess
import time
import sys

import numpy as np
import zmq

from helpers import free_port, free_ports
from monitor.wire import ReceiverEnd, ReceiverImage, SyncEnd, SyncFrame, SyncStart, parse_receiver_message, parse_sync_message


def run_simulator(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "monitor.simulate", *args], stderr=subprocess.PIPE, text=True)


def test_sync_protocol_sends_start_frames_end_and_records_truth(tmp_path):
    url = f"tcp://127.0.0.1:{free_port()}"
    truth = tmp_path / "truth.jsonl"
    simulator = run_simulator("--protocol", "sync", "--url", url, "--frames", "12", "--rate", "2000",
                              "--first-frame", "100", "--truth", str(truth))
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.connect(url)
    messages = []
    while not messages or not isinstance(messages[-1], SyncEnd):
        assert pull.poll(30_000), "no message from the simulator"
        messages.append(parse_sync_message(pull.recv_multipart()))
    assert simulator.wait(timeout=30) == 0
    pull.close()
    context.term()
    assert isinstance(messages[0], SyncStart) and len(messages) == 14
    frames = [m for m in messages if isinstance(m, SyncFrame)]
    assert [f.frame_number for f in frames] == list(range(100, 112))
    assert all([m.row for m in f.modules] == [0, 1] and f.modules[0].shape == (512, 1024) for f in frames)
    assert messages[-1].frames_sent == 12
    recorded = [json.loads(line) for line in truth.read_text().splitlines()]
    assert [r["frame_number"] for r in recorded] == list(range(100, 112))
    pedestal = frames[0].modules[0].pixels() & 0x3FFF
    assert 500 < np.median(pedestal) < 4000  # pedestals of a real JUNGFRAU, not zeros


def test_receiver_protocol_binds_one_pub_stream_per_half_module():
    port = free_port()
    simulator = run_simulator("--protocol", "receiver", "--url", f"tcp://127.0.0.1:{port}", "--streams", "4",
                              "--frames", "3", "--rate", "1000", "--subscriber-wait", "20")
    context = zmq.Context()
    streams = []
    for k in range(4):
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{port + k}")
        streams.append(sub)
    received: list[list] = [[] for _ in streams]
    for k, sub in enumerate(streams):
        while not received[k] or not isinstance(received[k][-1], ReceiverEnd):
            assert sub.poll(30_000), f"stream {k} sent nothing"
            received[k].append(parse_receiver_message(sub.recv_multipart()))
    assert simulator.wait(timeout=30) == 0
    for sub in streams:
        sub.close()
    context.term()
    for k, messages in enumerate(received):
        images = [m for m in messages if isinstance(m, ReceiverImage)]
        assert [m.image.frame_number for m in images] == [1, 2, 3]
        assert all(m.image.row == k and m.image.shape == (256, 1024) and m.detshape == (1, 4) for m in images)


def test_receiver_streams_drop_past_their_high_water_mark_and_the_truth_says_which(tmp_path):
    """Like slsReceiver, a slow subscriber loses images; unlike it, the simulator writes down which."""
    port = free_ports(2)
    truth = tmp_path / "truth.jsonl"
    simulator = run_simulator("--protocol", "receiver", "--url", f"tcp://127.0.0.1:{port}", "--frames", "200",
                              "--rate", "5000", "--send-hwm", "4", "--truth", str(truth))
    context = zmq.Context()
    streams = []
    for k in range(2):
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 4)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{port + k}")
        streams.append(sub)
    time.sleep(6)  # a subscriber that does not read while the acquisition runs
    received: list[list[int]] = [[] for _ in streams]
    for k, sub in enumerate(streams):
        while True:
            assert sub.poll(30_000), f"stream {k}: no end message"
            message = parse_receiver_message(sub.recv_multipart())
            if isinstance(message, ReceiverEnd):
                break
            received[k].append(message.image.frame_number)
    assert simulator.wait(timeout=30) == 0
    for sub in streams:
        sub.close()
    context.term()
    recorded = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(recorded) == 200
    for k in range(2):
        delivered = [r["frame_number"] for r in recorded if k not in r["dropped_streams"]]
        assert received[k] == delivered
        assert 0 < len(delivered) < 100  # most were dropped, and exactly those the truth names
