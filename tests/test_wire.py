"""The message shapes, checked against real captures from PSI's software."""

from __future__ import annotations

import json

import numpy as np
import pytest

from captures import RECEIVER, SYNC, read_capture
from monitor.errors import WireFormatError
from monitor.wire import (
    ReceiverEnd,
    ReceiverImage,
    SyncEnd,
    SyncFrame,
    SyncStart,
    build_sync_end,
    build_sync_frame,
    build_sync_start,
    encode_header,
    module_header,
    parse_receiver_message,
    parse_sync_message,
)


def sync_case(name: str) -> list:
    return [parse_sync_message(parts) for parts in read_capture(SYNC / name / "push.zmqmsgs.xz")]


@pytest.mark.parametrize(
    ("case", "frames", "pairs", "frames_sent"),
    [
        ("jf1m-20frames", 20, {2}, 20),
        ("two-interfaces-20frames", 20, {4}, 20),
        ("packetloss-nodiscard", 100, {2}, None),
        ("packetloss-discardpartial", 100, {1, 2}, None),
        ("roi-module0-only", 0, set(), None),
    ],
)
def test_every_synchronizer_capture_parses_into_start_frames_end(case, frames, pairs, frames_sent):
    messages = sync_case(case)
    assert isinstance(messages[0], SyncStart) and isinstance(messages[-1], SyncEnd)
    body = messages[1:-1]
    assert len(body) == frames and all(isinstance(m, SyncFrame) for m in body)
    assert {len(m.modules) for m in body} == pairs
    assert messages[-1].frames_sent == frames_sent


def test_two_acquisitions_give_two_starts_and_two_ends_of_five_frames():
    kinds = [type(m).__name__ for m in sync_case("two-acquisitions-addjsonheader")]
    assert kinds == ["SyncStart"] + ["SyncFrame"] * 5 + ["SyncEnd", "SyncStart"] + ["SyncFrame"] * 5 + ["SyncEnd"]


def test_half_module_rows_come_sorted_by_port_not_by_row():
    frame = sync_case("two-interfaces-20frames")[1]
    assert [m.row for m in frame.modules] == [0, 2, 1, 3]
    assert all(m.shape == (256, 1024) for m in frame.modules)


def test_lost_packets_show_as_incomplete_frames_with_fewer_packets():
    frames = sync_case("packetloss-nodiscard")[1:-1]
    incomplete = [f for f in frames if not f.complete]
    assert len(incomplete) == 8
    assert all(f.modules[0].header["packetNumber"] < 128 for f in incomplete)


def test_series_end_counts_each_port_with_psis_spelling():
    end = sync_case("packetloss-discardpartial")[-1]
    assert end.frames_per_port == {50012: 98, 50013: 100}


@pytest.mark.parametrize("case", sorted(p.name for p in RECEIVER.iterdir() if p.is_dir()))
def test_every_receiver_capture_parses_and_ends_with_one_end_message(case):
    for stream in sorted((RECEIVER / case).glob("stream*.zmqmsgs.xz")):
        messages = [parse_receiver_message(parts) for parts in read_capture(stream)]
        assert isinstance(messages[-1], ReceiverEnd)
        assert all(isinstance(m, ReceiverImage) for m in messages[:-1])


def test_receiver_pixels_follow_the_simulators_pattern():
    first = parse_receiver_message(next(read_capture(RECEIVER / "jf1m-20frames" / "stream0.zmqmsgs.xz")))
    pixels = first.image.pixels()
    rows = np.arange(512)[:, None] // 4 + 1
    assert np.array_equal(pixels & 0x3FFF, np.broadcast_to(rows, (512, 1024)))
    assert np.array_equal(pixels[:, [0, 299, 300, 599, 600, 1023]] >> 14, np.broadcast_to([0, 0, 1, 1, 3, 3], (512, 6)))


def test_built_messages_parse_back_without_copying_pixels():
    pixels = np.arange(512 * 1024, dtype="<u2").reshape(512, 1024)
    headers = [module_header(port=50012 + k, row=k, column=0, frame_number=7, frame_index=0, shape=(512, 1024))
               for k in range(2)]
    parts = build_sync_frame([(h, memoryview(pixels)) for h in headers])
    frame = parse_sync_message(parts)
    assert frame.frame_number == 7 and [m.row for m in frame.modules] == [0, 1]
    assert np.shares_memory(frame.modules[0].pixels(), pixels)
    assert isinstance(parse_sync_message(build_sync_start([{"udpPorts": [1]}])), SyncStart)
    assert parse_sync_message(build_sync_end([([1, 2], [5, 5])])).frames_sent == 5


def _frame_parts() -> list[bytes]:
    header = module_header(port=1, row=0, column=0, frame_number=3, frame_index=0, shape=(4, 8))
    return [encode_header(header), bytes(64)]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: [p[0], bytes(63)], "data part holds 63 bytes"),
        (lambda p: [b"{not json", p[1]], "part 0: not a JSON header"),
        (lambda p: p + [p[0]], "3 parts"),
        (lambda p: [p[0].replace(b'"row":0,', b""), p[1]], "key 'row' missing"),
        (lambda p: [p[0].replace(b'"module"', b'"bogus"'), p[1]], "unknown htype 'bogus'"),
        (lambda p: [], "empty message"),
    ],
)
def test_malformed_synchronizer_messages_name_the_problem_and_the_part(mutate, message):
    with pytest.raises(WireFormatError, match=message):
        parse_sync_message(mutate(_frame_parts()))


@pytest.mark.parametrize(
    ("header", "parts", "message"),
    [
        ({"bitmode": 32}, 2, "bitmode 32 unsupported"),
        ({"detType": 2}, 2, "detType 2 is not JUNGFRAU"),
        ({}, 3, "3 parts"),
        ({"data": 1}, 1, "no data part"),
    ],
)
def test_malformed_receiver_messages_are_refused(header, parts, message):
    base = {"jsonversion": 5, "bitmode": 16, "detshape": [1, 2], "shape": [8, 4], "size": 64, "data": 1,
            "frameNumber": 1, "row": 0, "column": 0, "detType": 3}
    encoded = json.dumps({**base, **header}).encode()
    with pytest.raises(WireFormatError, match=message):
        parse_receiver_message([encoded, bytes(64), bytes(1)][:parts])
