"""The JUNGFRAU 1M ZMQ handler on a real PUSH socket, fed with captured synchronizer messages."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import zmq

from captures import SYNC, read_capture
from handlers.jungfrau1m_zmq import DataRetrievalLayerParameters, Jungfrau1MZmqDataEventHandler
from helpers import free_port
from monitor.errors import DataExtractionError


def make_handler(url: str, **changes) -> Jungfrau1MZmqDataEventHandler:
    parameters = DataRetrievalLayerParameters(
        data_event_handler="Jungfrau1MZmqDataEventHandler", source=url, poll_interval_s=0.05, **changes)
    handler = Jungfrau1MZmqDataEventHandler(source=url, parameters=parameters)
    handler.initialize_event_handling_on_processing_node(node_rank=1, node_pool_size=2)
    return handler


@pytest.fixture
def sender():
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    url = f"tcp://127.0.0.1:{free_port()}"
    socket.bind(url)
    yield url, socket
    socket.close(linger=0)
    context.term()


def non_idle(events, count):
    return list(itertools.islice((e for e in events if e["kind"] != "idle"), count))


def test_a_captured_acquisition_becomes_start_frames_and_end(sender):
    url, socket = sender
    handler = make_handler(url)
    for parts in read_capture(SYNC / "jf1m-20frames" / "push.zmqmsgs.xz"):
        socket.send_multipart(parts)
    events = handler.event_generator(node_rank=1, node_pool_size=2)
    received = non_idle(events, 22)
    assert [e["kind"] for e in received] == ["start"] + ["frame"] * 20 + ["end"]
    assert received[-1]["additional_info"]["frames_sent"] == 20
    data = handler.extract_data(event=received[1])
    assert set(data) == {"detector_data", "timestamp", "event_id"}
    assert data["detector_data"].shape == (1024, 1024) and data["event_id"] == 1
    assert [handler.extract_data(event=e)["event_id"] for e in received[1:-1]] == list(range(1, 21))
    events.close()


def test_nothing_arriving_yields_idle_events_instead_of_blocking(sender):
    url, _ = sender
    events = make_handler(url).event_generator(node_rank=1, node_pool_size=2)
    assert [next(events)["kind"] for _ in range(3)] == ["idle"] * 3
    events.close()


def test_a_malformed_message_fails_its_event_and_the_stream_goes_on(sender):
    url, socket = sender
    handler = make_handler(url, required_data=["event_id"])
    socket.send_multipart([b'{"htype": "module"', b"xx"])
    socket.send_multipart(list(read_capture(SYNC / "jf1m-20frames" / "push.zmqmsgs.xz"))[1])
    events = handler.event_generator(node_rank=1, node_pool_size=2)
    bad, good = non_idle(events, 2)
    with pytest.raises(DataExtractionError, match="part 0: not a JSON header"):
        handler.open_event(event=bad)
    handler.open_event(event=good)
    assert handler.extract_data(event=good) == {"event_id": 1}
    events.close()


def test_frames_missing_a_module_arrive_with_those_rows_lost(sender):
    url, socket = sender
    handler = make_handler(url, required_data=["detector_data"])
    messages = list(read_capture(SYNC / "packetloss-discardpartial" / "push.zmqmsgs.xz"))
    partial = [m for m in messages if len(m) == 2 and b'"module"' in m[0]]
    socket.send_multipart(partial[0])
    (event,) = non_idle(handler.event_generator(node_rank=1, node_pool_size=2), 1)
    frame = handler.extract_data(event=event)["detector_data"]
    assert np.all(frame[:512] == 0xFFFF)


def test_rank_answers_and_single_event_retrieval():
    parameters = DataRetrievalLayerParameters(
        data_event_handler="Jungfrau1MZmqDataEventHandler", source="tcp://127.0.0.1:5555", collector_rank="last")
    handler = Jungfrau1MZmqDataEventHandler(source=parameters.source, parameters=parameters)
    assert handler.designated_collector_rank() == "last"
    assert handler.skip_rank_finalization() is False
    with pytest.raises(NotImplementedError):
        handler.initialize_event_data_retrieval()
    with pytest.raises(NotImplementedError):
        handler.retrieve_event_data("1")
