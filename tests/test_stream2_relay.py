"""The Stream V2 relay without MPI: every worker gets the start, each image goes to one worker with
credit, the end to one with the count, other types are counted; a moved detector is said."""

from __future__ import annotations

import json
import logging
import time

import cbor2
import pytest
import zmq

from handlers.dectris_stream2 import DectrisStream2ZmqDataEventHandler, Stream2Parameters
from helpers import free_tcp_url
from monitor.stream2.relay import ANNOUNCE, CREDIT, END, IMAGE, START, Stream2Relay


def _receive(socket: zmq.Socket, timeout_s: float = 30.0) -> list[bytes]:
    """The next message, within a deadline (a relay that hangs fails here, not the suite)."""
    assert socket.poll(int(timeout_s * 1000)), "nothing from the relay"
    return socket.recv_multipart()


@pytest.fixture
def relay_and_detector():
    source, bind = free_tcp_url(), free_tcp_url()
    context = zmq.Context()
    detector = context.socket(zmq.PUSH)
    detector.bind(source)
    relay = Stream2Relay(source=source, bind=bind, receive_hwm=4)
    relay.start()
    workers = []

    def worker(credits: int) -> zmq.Socket:
        socket = context.socket(zmq.DEALER)
        socket.connect(bind)
        for _ in range(credits):
            socket.send(CREDIT)
        workers.append(socket)
        return socket

    yield relay, detector, worker
    relay.close()
    for socket in [detector, *workers]:
        socket.close(linger=0)
    context.term()


def _drain(sockets: list[zmq.Socket], until: bytes) -> list[list[bytes]]:
    """Messages from any of ``sockets`` until one of kind ``until`` (within a deadline)."""
    poller = zmq.Poller()
    for socket in sockets:
        poller.register(socket, zmq.POLLIN)
    received: list[list[bytes]] = []
    deadline = time.monotonic() + 30
    while not any(message[0] == until for message in received):
        assert time.monotonic() < deadline, f"no {until!r} from the relay: {received}"
        for socket, _ in poller.poll(100):
            received.append(socket.recv_multipart())
    return received


def test_the_start_reaches_every_worker_each_image_one_and_the_end_carries_the_count(relay_and_detector):
    relay, detector, worker = relay_and_detector
    first, second = worker(1), worker(1)
    detector.send(cbor2.dumps({"series_id": 4, "type": "start", "series_unique_id": "u4", "number_of_images": 2}))
    assert sorted([_receive(first)[0], _receive(second)[0]]) == sorted([ANNOUNCE, START])  # one announces
    # ("type" second: the spec puts it first, but a sender that does not is still understood)
    for message in ({"type": "image", "series_id": 4, "image_id": 0}, {"type": "image", "series_id": 4, "image_id": 1},
                    {"type": "calibration"}, {"type": "end", "series_id": 4}):
        detector.send(cbor2.dumps(message))
    received = _drain([first, second], until=END)
    assert [m[0] for m in received].count(IMAGE) == 2  # one credit each: one image each
    assert json.loads([m for m in received if m[0] == END][0][2])["frames_sent"] == 2
    figures = relay.figures()
    assert figures["other_types"] == {"calibration": 1} and figures["images"] == 2
    assert figures["series"][0]["series_unique_id"] == "u4" and figures["series"][0]["ended"] == "end message"


def test_the_first_start_is_kept_for_a_worker_that_connects_later(relay_and_detector):
    relay, detector, worker = relay_and_detector
    detector.send(cbor2.dumps({"type": "start", "series_id": 1, "beam_center_x": 10.0}))
    detector.send(cbor2.dumps({"type": "image", "series_id": 1, "image_id": 0}))
    assert cbor2.loads(relay.wait_for_first_start(30))["series_id"] == 1
    late = worker(1)
    assert _receive(late)[0] == ANNOUNCE and _receive(late)[0] == IMAGE  # the image waited for its credit


def test_a_moved_detector_is_said_once(caplog):
    parameters = Stream2Parameters(data_event_handler="DectrisStream2ZmqDataEventHandler", source="tcp://dcu:31001")
    handler = DectrisStream2ZmqDataEventHandler(source=parameters.source, parameters=parameters)
    series = [{"series_id": 1, "series_unique_id": "a", "detector": {"beam_center_x": 100.0, "incident_energy": 12400}},
              {"series_id": 2, "series_unique_id": "b", "detector": {"beam_center_x": 100.0, "incident_energy": 12400}},
              {"series_id": 3, "series_unique_id": "c", "detector": {"beam_center_x": 140.0, "incident_energy": 12400}}]
    with caplog.at_level(logging.WARNING):
        handler._note_moves(series)
        handler._note_moves(series)
    moved = [r.getMessage() for r in caplog.records if "changes" in r.getMessage()]
    assert moved == ["series 3 (c) changes beam_center_x: peaks and d_min follow the first series' geometry; "
                     "restart the monitor to follow the detector"]


def test_a_worker_that_has_gone_is_forgotten_and_the_others_take_its_images():
    """A worker whose connection is gone (a lost rank) is one the ROUTER cannot reach: its
    identity (here one that never connected, so the test does not race the disconnect) is
    dropped at the first send, and its images and the end go to the others."""
    source, bind = free_tcp_url(), free_tcp_url()
    context = zmq.Context()
    detector, staying = context.socket(zmq.PUSH), context.socket(zmq.DEALER)
    detector.bind(source)
    relay = Stream2Relay(source=source, bind=bind, receive_hwm=4)
    relay._known.append(b"gone")  # before the thread starts: a worker with two credits left behind
    relay._ready.extend([b"gone", b"gone"])
    relay.start()
    try:
        staying.connect(bind)
        for _ in range(3):
            staying.send(CREDIT)
        detector.send(cbor2.dumps({"type": "start", "series_id": 2}))
        for image_id in range(3):
            detector.send(cbor2.dumps({"type": "image", "series_id": 2, "image_id": image_id}))
        detector.send(cbor2.dumps({"type": "end", "series_id": 2}))
        received = _drain([staying], until=END)
        assert [m[0] for m in received] == [ANNOUNCE, IMAGE, IMAGE, IMAGE, END]
        assert json.loads(received[-1][2])["frames_sent"] == 3 and relay.error is None
    finally:
        relay.close()
        for socket in (detector, staying):
            socket.close(linger=0)
        context.term()
