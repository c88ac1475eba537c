"""The assembler against real slsReceiver 9.2.0 captures, replayed on 127.0.0.1 sockets.

Each test replays one captured case, runs the assembler in a thread and reads
its PUSH socket as a worker would; the output must have the message shapes
PSI's synchronizer sends (tests/data/slsframesynchronizer-9.2.0) with the
real pixels, placed by row.
"""

from __future__ import annotations

import logging

import json
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from captures import SYNC, read_capture
from monitor import wire
from replay import Message, Output, Replayer, is_end, load_case, repeat_with_shifted_frames, run_through_assembler

MODULE_ROWS = 512


@pytest.fixture(autouse=True, scope="module")
def _quick_thread_switches() -> Iterator[None]:
    """Sender, assembler and reader share one interpreter here (the monitor runs the assembler
    as its own process): with the default 5 ms GIL switch interval each hand-over stalls them."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    yield
    sys.setswitchinterval(interval)


def images_by_frame_and_row(streams: list[list[Message]]) -> dict[tuple[int, int], bytes]:
    """The captured pixels of every (frame number, row) the receivers sent."""
    images = {}
    for stream in streams:
        for message in stream:
            if not is_end(message):
                header = json.loads(message[0])
                images[header["frameNumber"], header["row"]] = message[1]
    return images


def captured_pattern(rows: int, first_row: int) -> np.ndarray:
    """The simulator's pattern for module rows first_row..first_row+rows-1: ADC y//4+1, gain by column."""
    y = np.arange(first_row, first_row + rows)[:, None]
    x = np.arange(1024)[None, :]
    gain = np.where(x < 300, 0, np.where(x < 600, 1, 3))
    return ((y // 4 + 1) | (gain << 14)).astype(np.uint16)


def assert_is_synchronizer_shaped(output: Output, reference_case: str) -> None:
    """Same message kinds, and in every JSON part the same keys, as PSI's synchronizer sent.

    ``addJsonHeader`` is left out of the comparison: it is there when the
    operator set one, and the captures of the two programs differ in that.
    """
    reference = [wire.parse_sync_message(m) for m in read_capture(SYNC / reference_case / "push.zmqmsgs.xz")]
    kinds = {type(m) for m in reference}
    assert {type(m) for m in output.messages} == kinds
    for kind in kinds:
        ours = next(m for m in output.messages if isinstance(m, kind))
        theirs = next(m for m in reference if isinstance(m, kind))
        if isinstance(ours, wire.SyncFrame):
            assert [_keys(m.header) for m in ours.modules] == [_keys(m.header) for m in theirs.modules]
        else:
            assert [sorted(_keys(h)) for h in ours.headers] == [sorted(_keys(h)) for h in theirs.headers]
            assert [len(h["udpPorts"]) for h in ours.headers] == [len(h["udpPorts"]) for h in theirs.headers]


def _keys(header: dict) -> list[str]:
    """``sentFrames`` is ours: the exact frame count, which PSI's per-port counts cannot give."""
    return [key for key in header if key not in ("addJsonHeader", "sentFrames")]


def test_jf1m_frames_arrive_whole_once_each_with_captured_pixels_placed_by_row() -> None:
    streams = load_case("jf1m-20frames")
    output = run_through_assembler(streams)

    assert len(output.starts) == 1 and len(output.ends) == 1
    assert [type(m).__name__ for m in output.messages] == ["SyncStart"] + ["SyncFrame"] * 20 + ["SyncEnd"]
    assert [f.frame_number for f in output.frames] == list(range(1, 21))
    captured = images_by_frame_and_row(streams)
    for frame in output.frames:
        assert [m.header["port"] for m in frame.modules] == [50012, 50013]
        for module in frame.modules:
            assert bytes(module.data) == captured[frame.frame_number, module.row]
            np.testing.assert_array_equal(module.pixels(), captured_pattern(MODULE_ROWS, 0))
    assert output.ends[0].frames_per_port == {50012: 20, 50013: 20}
    assert output.ends[0].frames_sent == 20
    assert [h["lastFrameIndex"] for h in output.ends[0].headers] == [[20], [20]]
    assert_is_synchronizer_shaped(output, "jf1m-20frames")


def test_final_stats_account_for_every_frame() -> None:
    output = run_through_assembler(load_case("jf1m-20frames"))

    (final,) = output.final_stats
    acquisition = final["acquisition"]
    assert final["state"] == "ended"
    assert (acquisition["sent"], acquisition["assembled"], acquisition["incomplete"]) == (20, 20, 0)
    assert (acquisition["dropped"], acquisition["gaps"]) == ({}, 0)
    assert [s["images"] for s in acquisition["streams"]] == [20, 20]
    assert [s["sent"] for s in acquisition["streams"]] == [20, 20]
    assert (acquisition["first_frame"], acquisition["last_frame"]) == (1, 20)


def test_four_half_module_streams_make_one_frame_with_rows_in_place() -> None:
    streams = load_case("two-interfaces-4streams-3frames")
    output = run_through_assembler(streams)

    assert [f.frame_number for f in output.frames] == [1075, 1076, 1077]
    for frame in output.frames:
        assert sorted(m.row for m in frame.modules) == [0, 1, 2, 3]
        for module in frame.modules:
            assert module.shape == (256, 1024)
            first_row = (module.row * 256) % MODULE_ROWS
            np.testing.assert_array_equal(module.pixels(), captured_pattern(256, first_row))
    assert output.starts[0].headers[0]["detshape"] == [1, 4]
    assert output.starts[0].headers[0]["size"] == 524288
    assert output.ends[0].frames_per_port == {50012: 3, 50013: 3, 50014: 3, 50015: 3}
    assert_is_synchronizer_shaped(output, "two-interfaces-20frames")


def test_lost_packets_are_sent_marked_with_their_0xffff_blocks() -> None:
    streams = load_case("packetloss-20frames")
    output = run_through_assembler(streams, incomplete="send_marked")

    assert len(output.frames) == 20
    captured = images_by_frame_and_row(streams)
    damaged = [f for f in output.frames if not f.complete]
    assert [f.frame_number for f in damaged] == list(range(7, 21))
    for frame in damaged:
        module = next(m for m in frame.modules if m.row == 0)
        assert module.header["completeImage"] == 0
        assert bytes(module.data) == captured[frame.frame_number, 0]
        lost_rows = (module.pixels() == 0xFFFF).all(axis=1)
        assert lost_rows.any() and lost_rows.reshape(-1, 4).all(axis=1).sum() * 4 == lost_rows.sum()
    (final,) = output.final_stats
    assert (final["acquisition"]["assembled"], final["acquisition"]["incomplete"]) == (6, 14)
    assert final["acquisition"]["streams"][0]["lost_packets"] == 14
    assert_is_synchronizer_shaped(output, "packetloss-nodiscard")


def test_lost_packets_are_dropped_and_counted_under_the_drop_policy() -> None:
    output = run_through_assembler(load_case("packetloss-20frames"), incomplete="drop")

    assert [f.frame_number for f in output.frames] == list(range(1, 7))
    assert output.ends[0].frames_per_port == {50012: 6, 50013: 6}
    (final,) = output.final_stats
    assert final["acquisition"]["dropped"] == {"incomplete": 14}


@pytest.mark.parametrize("policy, frames", [("send_marked", 2), ("drop", 0)])
def test_a_stream_outside_the_roi_sends_only_its_end(policy: str, frames: int) -> None:
    output = run_through_assembler(load_case("roi-module0-only-2frames"), incomplete=policy)

    assert len(output.starts) == 1 and len(output.ends) == 1
    assert len(output.frames) == frames
    for frame in output.frames:
        assert [m.row for m in frame.modules] == [0]
        assert frame.modules[0].header["addJsonHeader"] == {"beamline": "testbeam", "detector": "JF1M"}
    assert output.ends[0].frames_per_port == {50012: frames, 50013: 0}
    (final,) = output.final_stats
    assert final["acquisition"]["incomplete"] == 2
    assert final["acquisition"]["missing_parts"] == 2


def test_roi_with_drop_policy_sends_what_psi_sends() -> None:
    output = run_through_assembler(load_case("roi-module0-only-2frames"), incomplete="drop")

    assert_is_synchronizer_shaped(output, "roi-module0-only")


def test_a_failed_start_sends_nothing_and_the_next_acquisition_is_whole() -> None:
    failed = load_case("failed-start-end-only")
    good = load_case("jf1m-20frames")
    output = run_through_assembler([f + g for f, g in zip(failed, good)])

    assert len(output.starts) == 1 and len(output.ends) == 1 and len(output.frames) == 20
    (final,) = output.final_stats
    assert final["acquisition"]["acquisition"] == 1
    assert final["lifetime"]["lone_ends"] == 2


def test_repeated_end_messages_end_the_acquisition_once() -> None:
    streams = load_case("jf1m-20frames")
    end = streams[0][-1]
    output = run_through_assembler([s + [end, end] for s in streams])

    assert len(output.ends) == 1 and len(output.frames) == 20
    assert isinstance(output.messages[-1], wire.SyncEnd)


def test_addjsonheader_and_gain_cases_pass_through_byte_for_byte() -> None:
    for case, frames in [("addjsonheader-roi-3frames", 3), ("changing-gain-6frames", 6), ("imagetest-3frames", 3)]:
        streams = load_case(case)
        output = run_through_assembler(streams)
        captured = images_by_frame_and_row(streams)
        assert len(output.frames) == frames, case
        assert all(f.complete for f in output.frames), case
        for frame in output.frames:
            for module in frame.modules:
                assert bytes(module.data) == captured[frame.frame_number, module.row], case
        if case == "imagetest-3frames":
            assert all((m.pixels() == 0x0FFE).all() for f in output.frames for m in f.modules)
        if case == "addjsonheader-roi-3frames":
            assert output.starts[0].headers[0]["addJsonHeader"] == {"beamline": "testbeam", "detector": "JF1M"}


def test_two_acquisitions_each_get_start_frames_and_end() -> None:
    first, second = load_case("imagetest-3frames"), load_case("jf1m-20frames")
    output = run_through_assembler([a + b for a, b in zip(first, second)], acquisitions=2)

    kinds = [type(m).__name__ for m in output.messages]
    assert kinds == ["SyncStart"] + ["SyncFrame"] * 3 + ["SyncEnd", "SyncStart"] + ["SyncFrame"] * 20 + ["SyncEnd"]
    assert [e.frames_sent for e in output.ends] == [3, 20]
    assert [s["acquisition"]["acquisition"] for s in output.final_stats] == [1, 2]


def test_a_thousand_frames_pass_exactly_once() -> None:
    streams = [repeat_with_shifted_frames(s, 50) for s in load_case("jf1m-20frames")]
    output = run_through_assembler(streams, timeout_s=60)

    numbers = [f.frame_number for f in output.frames]
    assert sorted(numbers) == list(range(1, 1001))
    assert all(f.complete and len(f.modules) == 2 for f in output.frames)
    assert output.ends[0].frames_per_port == {50012: 1000, 50013: 1000}
    pattern = captured_pattern(MODULE_ROWS, 0)
    for frame in output.frames[::97]:
        for module in frame.modules:
            np.testing.assert_array_equal(module.pixels(), pattern)


def _bad_copies(message: Message) -> list[Message]:
    """One message of each kind the assembler must survive, made from a real one."""
    header, data = json.loads(message[0]), message[1]
    return [
        [message[0], data[:-2]],
        [b"{not json", data],
        [wire.encode_header({**header, "bitmode": 32}), data],
        [wire.encode_header({k: v for k, v in header.items() if k != "row"}), data],
        [message[0], data, data],
        [wire.encode_header({**header, "detType": 2}), data],
    ]


def test_bad_messages_on_a_stream_are_counted_and_its_frames_still_assemble() -> None:
    streams = load_case("jf1m-20frames")
    streams[0] = streams[0][:5] + _bad_copies(streams[0][5]) + streams[0][5:]
    output = run_through_assembler(streams)

    assert [f.frame_number for f in output.frames] == list(range(1, 21))
    assert all(f.complete for f in output.frames)
    (final,) = output.final_stats
    assert [s["bad"] for s in final["acquisition"]["streams"]] == [6, 0]


def test_an_oversized_message_costs_a_reconnection_not_the_assembler() -> None:
    streams = load_case("jf1m-20frames")
    header, data = streams[0][0]

    def send_oversized(replayer: Replayer) -> None:
        replayer.send_to(0, [[header, data + data]])
        replayer.wait_for_subscribers(streams=[0])  # ZMQ dropped the connection; the SUB came back

    output = run_through_assembler(streams, before_replay=send_oversized, max_message_bytes=len(data) + 1024)

    assert [f.frame_number for f in output.frames] == list(range(1, 21))


def test_latest_only_replaces_waiting_frames_and_counts_them() -> None:
    output = run_through_assembler(
        load_case("jf1m-20frames"), queue="latest_only", queue_size=1, reader_delay_s=1.0
    )

    (final,) = output.final_stats
    superseded = final["acquisition"]["dropped"].get("superseded", 0)
    assert superseded > 0
    assert len(output.frames) + superseded == 20 == final["acquisition"]["assembled"]
    assert output.frames[-1].frame_number == 20  # the newest frame is the one kept
    assert output.ends[0].frames_sent == len(output.frames)


def test_lossless_keeps_reading_while_workers_are_away_and_its_buffer_loses_nothing() -> None:
    output = run_through_assembler(load_case("jf1m-20frames"), queue_size=2, reader_delay_s=1.0, reader_hwm=1)

    assert [f.frame_number for f in output.frames] == list(range(1, 21))
    (final,) = output.final_stats
    assert final["acquisition"]["dropped"] == {}


def test_past_its_buffer_lossless_drops_the_newest_frames_as_workers_behind(caplog) -> None:
    """A 5 MiB buffer holds two frames of 2 MiB; two more wait inside ZMQ (queue_size 1, one read)."""
    with caplog.at_level(logging.WARNING, logger="monitor.assembler"):
        output = run_through_assembler(load_case("jf1m-20frames"), queue_size=1, reader_delay_s=1.0, reader_hwm=1,
                                       buffer_mb=5)

    (final,) = output.final_stats
    behind = final["acquisition"]["dropped"]["workers_behind"]
    assert len(output.frames) + behind == 20 == final["acquisition"]["assembled"]
    assert output.frames[0].frame_number == 1 and behind >= 10
    assert output.ends[0].frames_sent == len(output.frames) == final["acquisition"]["sent"]
    assert any("workers behind: buffer full" in r.getMessage() for r in caplog.records)
