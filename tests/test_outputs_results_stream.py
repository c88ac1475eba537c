"""The results stream: wire format, throttled latest-only publishing, never-blocking requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from monitor.errors import ConfigurationError, WireFormatError
from monitor.outputs.parameters import ResultsStreamParameters
from monitor.outputs.results_format import decode_message, encode_message, encode_request
from monitor.outputs.results_stream import ResultsStream, bin_image
from monitor.outputs.synthetic import synthetic_event, synthetic_snapshot

ANY_PORT = "tcp://127.0.0.1:*"


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[ResultsStream]:
    parameters = ResultsStreamParameters(url=ANY_PORT, request_url=ANY_PORT, rate_hz=100.0, bin_factor=2)
    stream = ResultsStream(parameters=parameters, monitor_parameters={"run_mode": "test"})
    stream.open(run_dir=tmp_path / "run-x")
    yield stream
    stream.close(summary={})


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def subscribe(context: zmq.Context, url: str) -> zmq.Socket:
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(url)
    return socket


def first_message(stream: ResultsStream, subscriber: zmq.Socket, snapshot: dict, timeout: float = 5.0):
    """Tick until the subscription has reached the publisher and a message arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stream.on_tick(status={"events_per_s": 123.5, "hit_rate": 0.25}, snapshot=snapshot)
        if subscriber.poll(20):
            return decode_message(subscriber.recv_multipart(copy=False))
    raise AssertionError("no message from the results stream")


def test_message_round_trip_keeps_header_and_exact_arrays() -> None:
    arrays = {"a": np.arange(12, dtype=np.uint16).reshape(3, 4), "b": np.linspace(0, 1, 5)[::2]}
    message = decode_message(encode_message({"seq": np.int64(7), "x": np.float32(0.5)}, arrays))
    assert message.header["seq"] == 7 and message.header["x"] == 0.5
    assert message.arrays["a"].dtype == np.uint16
    np.testing.assert_array_equal(message.arrays["a"], arrays["a"])
    np.testing.assert_array_equal(message.arrays["b"], arrays["b"])


def test_decode_names_the_part_whose_size_does_not_fit() -> None:
    parts = encode_message({}, {"frame": np.zeros((4, 4), np.float32)})
    with pytest.raises(WireFormatError, match="part 1 .'frame'.: 60 bytes"):
        decode_message([parts[0], bytes(60)])
    with pytest.raises(WireFormatError, match="not msgpack|not a"):
        decode_message([b"\xc1garbage"])


def test_bin_image_averages_blocks_and_drops_the_ragged_edge() -> None:
    image = np.arange(30, dtype=np.float32).reshape(5, 6)
    binned = bin_image(image, 2)
    assert binned.shape == (2, 3)
    assert binned[0, 0] == pytest.approx((0 + 1 + 6 + 7) / 4)
    assert bin_image(image, 1) is not image


def test_published_message_holds_status_aggregates_and_latest_events(stream, context) -> None:
    subscriber = subscribe(context, stream.url)
    hit = synthetic_event(41, is_hit=True)
    stream.on_result(synthetic_event(40, is_hit=False))
    stream.on_result(hit)
    stream.on_result(synthetic_event(42, is_hit=False, with_frame=False))  # no frame: not "latest"
    snapshot = synthetic_snapshot()
    message = first_message(stream, subscriber, snapshot)

    header, arrays = message.header, message.arrays
    assert header["kind"] == "update" and header["run"] == "run-x" and header["bin"] == 2
    assert header["status"] == {"events_per_s": 123.5, "hit_rate": 0.25}
    assert header["snapshot"] == {"radial_bin_px": 2, "frames": 1000, "hit_rate": 0.1}  # no latest_hit_*
    assert header["hit"]["event_id"] == 41 and header["nonhit"]["event_id"] == 40
    np.testing.assert_array_equal(arrays["hit/frame"], bin_image(hit.arrays["frame"], 2))
    np.testing.assert_array_equal(arrays["hit/peak_x"], hit.arrays["peak_x"])  # raw-frame pixels
    np.testing.assert_array_equal(arrays["snapshot/powder"], bin_image(snapshot["powder"], 2))
    assert arrays["snapshot/powder"].dtype == np.float32 and snapshot["powder"].dtype == np.uint32
    np.testing.assert_array_equal(arrays["snapshot/hit_rate_history"], snapshot["hit_rate_history"])
    assert arrays["nonhit/frame"].shape == (512, 512)


class SteppedClock:
    """The results stream's clock, 10 ms later at every reading (one per tick): throttling is checked
    without timing anything, whatever else the machine is doing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 0.01
        return self.now

    @staticmethod
    def time() -> float:
        return time.time()  # the wall-clock stamp in each message's header


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SteppedClock:
    stepped = SteppedClock()
    monkeypatch.setattr("monitor.outputs.results_stream.time", stepped)
    return stepped


def test_publishing_is_throttled_to_rate_hz(tmp_path, clock) -> None:
    parameters = ResultsStreamParameters(url=ANY_PORT, request_url=ANY_PORT, rate_hz=5.0)
    stream = ResultsStream(parameters=parameters)
    stream.open(run_dir=tmp_path)
    try:
        for _ in range(50):  # 0.5 s of ticks
            stream.on_tick(status={}, snapshot={})
        assert stream.counters()["stream_messages_published"] == 3  # t = 0, 0.2, 0.4
    finally:
        stream.close(summary={})


def test_requests_are_answered_from_the_tick_without_blocking(stream, context) -> None:
    hit = synthetic_event(7, is_hit=True)
    stream.on_result(hit)
    client = context.socket(zmq.REQ)
    client.connect(stream.request_url)

    def ask(payload: bytes):
        client.send(payload)
        deadline = time.monotonic() + 5.0
        while not client.poll(10):
            assert time.monotonic() < deadline, "no reply"
            stream.on_tick(status={"events_per_s": 1.0}, snapshot={"events": 3})
        return decode_message(client.recv_multipart())

    frame = ask(encode_request("latest_frame"))
    assert frame.header["kind"] == "frame" and frame.header["event"]["event_id"] == 7
    np.testing.assert_array_equal(frame.arrays["hit/frame"], hit.arrays["frame"])  # full resolution
    parameters = ask(encode_request("parameters")).header["parameters"]
    assert parameters["run_mode"] == "test" and parameters["outputs"]["results_stream"]["bin_factor"] == 2
    assert ask(encode_request("status")).header["snapshot"] == {"events": 3}
    assert ask(b"not a request").header["kind"] == "error"
    assert stream.counters()["stream_requests_answered"] == 4


def test_stalled_subscriber_never_blocks_the_publisher(stream, context, clock) -> None:
    stalled = subscribe(context, stream.url)
    stalled.setsockopt(zmq.RCVHWM, 1)
    first_message(stream, stalled, {})  # connected; from now on it never reads
    stream.on_result(synthetic_event(1, is_hit=True))
    snapshot = synthetic_snapshot()
    published = stream.counters()["stream_messages_published"]
    for _ in range(50):  # ~1 MB each, one per tick at 100 Hz: a publisher that waited would hang here
        stream.on_tick(status={}, snapshot=snapshot)
    assert stream.counters()["stream_messages_published"] == published + 50


def test_bind_failure_names_the_configuration_field(stream, tmp_path) -> None:
    taken = ResultsStreamParameters(url=stream.url, request_url=ANY_PORT)
    with pytest.raises(ConfigurationError, match=r"outputs\.results_stream\.url: cannot bind"):
        ResultsStream(parameters=taken).open(run_dir=tmp_path)
