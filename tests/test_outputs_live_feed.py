"""The live feed answers indexamajig's REQ sockets with hits as CrystFEL's MsgPack reader takes them."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from monitor.outputs.experiment import Experiment
from monitor.outputs.group import build_outputs
from monitor.outputs.live_feed import LiveFeed
from monitor.outputs.parameters import LiveFeedParameters, OutputParameters
from monitor.outputs.synthetic import synthetic_event
from sources.geometry import default_geometry_path

SHAPE = (64, 96)
EXPERIMENT = Experiment(photon_energy_ev=9000.0, detector_distance_m=0.1, geometry_path=default_geometry_path())


@pytest.fixture
def feed(tmp_path: Path):
    feed = LiveFeed(parameters=LiveFeedParameters(enabled=True, url="tcp://127.0.0.1:*", queue_size=3),
                    experiment=EXPERIMENT)
    feed.open(run_dir=tmp_path)
    yield feed
    feed.close(summary={})


@pytest.fixture
def request_socket(feed: LiveFeed):
    context = zmq.Context()
    socket = context.socket(zmq.REQ)  # what indexamajig --zmq-request connects
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(feed.url)
    yield socket
    socket.close()
    context.term()


def masked_hit(event_id: int):
    hit = synthetic_event(event_id, is_hit=True, shape=SHAPE, n_peaks=5)
    hit.arrays["valid"] = np.ones(SHAPE, dtype=bool)
    hit.arrays["valid"][3, 4] = False
    return hit


def test_a_request_gets_one_hit_in_crystfels_msgpack_layout(feed: LiveFeed, request_socket: zmq.Socket) -> None:
    hit = masked_hit(7)
    feed.on_result(hit)
    request_socket.send(b"next")
    reply = msgpack.unpackb(request_socket.recv(), raw=False)

    assert reply["data"]["type"] == "<f4" and reply["data"]["shape"] == list(SHAPE)
    image = np.frombuffer(reply["data"]["data"], dtype="<f4").reshape(SHAPE)
    assert np.isnan(image[3, 4])  # CrystFEL marks non-finite pixels bad: the mask travels as NaN
    image = image.copy()
    image[3, 4] = hit.arrays["frame"][3, 4]
    np.testing.assert_array_equal(image, hit.arrays["frame"])
    assert reply["peak_list"] == {"fs": hit.arrays["peak_x"].astype(float).tolist(),
                                  "ss": hit.arrays["peak_y"].astype(float).tolist(),
                                  "intensity": hit.arrays["peak_intensity"].astype(float).tolist()}
    assert all(isinstance(value, float) for value in reply["peak_list"]["fs"])  # CrystFEL reads them as float64
    assert (reply["beam_energy"], reply["detector_distance"], reply["event_id"]) == (9000.0, 0.1, 7)
    keys = list(reply)  # CrystFEL matches a key by the length of the one in the map: none may start another
    assert not [(a, b) for a in keys for b in keys if a != b and b.startswith(a)]
    assert feed.counters()["feed_hits_served"] == 1


def test_a_request_waits_for_the_next_hit_and_only_the_latest_hits_wait(feed: LiveFeed,
                                                                        request_socket: zmq.Socket) -> None:
    request_socket.send(b"next")
    assert not request_socket.poll(300)  # nothing to serve yet: parked, not refused
    feed.on_result(synthetic_event(1, is_hit=False, shape=SHAPE))  # non-hits and frameless hits are not served
    feed.on_result(synthetic_event(2, is_hit=True, shape=SHAPE, with_frame=False))
    feed.on_result(masked_hit(3))
    assert msgpack.unpackb(request_socket.recv(), raw=False)["event_id"] == 3
    for event_id in range(10, 15):  # nobody asks: the queue keeps the latest 3
        feed.on_result(masked_hit(event_id))
    served = []
    for _ in range(3):
        request_socket.send(b"next")
        served.append(msgpack.unpackb(request_socket.recv(), raw=False)["event_id"])
    assert served == [12, 13, 14]
    assert feed.counters() == {"feed_hits_served": 4, "feed_hits_replaced": 2, "feed_requests": 4,
                               "feed_bad_requests": 0}


def test_the_feed_writes_a_geometry_for_msgpack_and_is_built_when_enabled(tmp_path: Path,
                                                                          feed: LiveFeed) -> None:
    text = (tmp_path / "live-feed.geom").read_text()
    for line in ("data = data", "peak_list = peak_list", "photon_energy = beam_energy eV",
                 "clen = detector_distance m"):
        assert f"\n{line}\n" in text, line
    assert "dim0" not in text and "peak_list_type" not in text and "mask =" not in text  # one 2-D array
    parameters = OutputParameters.model_validate({"live_feed": {"enabled": True}, "results_stream": {
        "enabled": False}, "report": {"enabled": False}})
    assert [type(output).__name__ for output in build_outputs(parameters)] == ["HitFiles", "LiveFeed"]


def test_a_socket_that_is_not_req_is_counted_and_ignored(feed: LiveFeed) -> None:
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(feed.url)
    dealer.send_multipart([b"one", b"two", b"three"])
    try:
        for _ in range(50):
            if feed.counters()["feed_bad_requests"]:
                break
            dealer.poll(20)
        assert feed.counters()["feed_bad_requests"] == 1 and feed.counters()["feed_requests"] == 0
    finally:
        dealer.close()
        context.term()
