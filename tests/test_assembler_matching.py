"""The matching rules on their own: images -> frames -> acquisitions, no sockets, a clock we set."""

from __future__ import annotations

import json
import logging

import pytest

from monitor import wire
from monitor.assembler.matching import FrameMatcher, Outgoing, OutgoingEnd, OutgoingFrame

SHAPE = [8, 4]  # [nx, ny] on the wire: small images keep these tests fast


def image(frame: int, row: int, *, complete: bool = True, shape: list[int] = SHAPE) -> list[bytes]:
    size = shape[0] * shape[1] * 2
    header = wire.receiver_header(
        frameNumber=frame, acqIndex=frame, row=row, shape=shape, size=size, completeImage=int(complete)
    )
    return [wire.encode_header(header), bytes([row + 1]) * size]


END = [wire.encode_header(wire.receiver_end_header())]


class Matcher:
    """A FrameMatcher over ``streams`` streams that records what it emits."""

    def __init__(self, streams: int = 2, *, timeout: float = 1.0, max_pending: int = 8, incomplete: str = "send_marked"):
        self.out: list[Outgoing] = []
        self.matcher = FrameMatcher(
            urls=[f"tcp://127.0.0.1:{30001 + i}" for i in range(streams)], part_timeout_s=timeout,
            max_pending_frames=max_pending, incomplete=incomplete, emit=self.out.append,  # type: ignore[arg-type]
        )

    def add(self, stream: int, message: list[bytes], now: float = 0.0) -> None:
        self.matcher.add(stream, message, now)

    def frames(self) -> list[wire.SyncFrame]:
        return [wire.parse_sync_message(o.parts()) for o in self.out if isinstance(o, OutgoingFrame)]  # type: ignore[misc]

    def numbers(self) -> list[int]:
        return [f.frame_number for f in self.frames()]

    def rows(self) -> list[list[int]]:
        return [[m.row for m in f.modules] for f in self.frames()]

    def kinds(self) -> list[str]:
        return [type(o).__name__.removeprefix("Outgoing") for o in self.out]


def test_images_are_passed_on_as_the_very_buffers_received() -> None:
    m = Matcher()
    parts = [image(1, 0), image(1, 1)]
    m.add(0, parts[0])
    m.add(1, parts[1])

    (frame,) = [o for o in m.out if isinstance(o, OutgoingFrame)]
    assert [data for _, _, data in frame.images][0] is parts[0][1]
    assert [data for _, _, data in frame.images][1] is parts[1][1]


def test_a_frame_goes_out_once_all_its_parts_are_in_start_message_first() -> None:
    m = Matcher()
    m.add(0, image(1, 0))
    assert m.out == []
    m.add(1, image(1, 1))

    assert m.kinds() == ["Start", "Frame"]
    assert m.rows() == [[0, 1]]
    start = wire.parse_sync_message(m.out[0].parts())
    assert [h["udpPorts"] for h in start.headers] == [[50012], [50013]]  # type: ignore[union-attr]


def test_a_frame_a_stream_skipped_is_resolved_when_that_stream_moves_on() -> None:
    m = Matcher()
    m.add(1, image(1, 1))
    m.add(0, image(2, 0))  # stream 0 never sends frame 1
    assert m.numbers() == [1]
    assert m.rows() == [[1]]
    m.add(1, image(2, 1))

    assert m.numbers() == [1, 2]
    counts = m.matcher.current
    assert counts is not None and (counts.assembled, counts.incomplete, counts.missing_parts) == (1, 1, 1)
    assert counts.streams[0].gaps == 0  # its first frame: a gap is only between two of its own


def test_a_frame_missing_a_part_waits_for_the_timeout_then_goes_out_incomplete() -> None:
    m = Matcher(timeout=0.5)
    m.add(0, image(1, 0), now=10.0)
    m.matcher.expire(10.4)
    assert m.numbers() == []
    assert m.matcher.next_deadline() == pytest.approx(10.5)
    m.matcher.expire(10.5)

    assert m.numbers() == [1] and m.rows() == [[0]]


def test_the_drop_policy_counts_the_incomplete_frame_and_sends_nothing() -> None:
    m = Matcher(timeout=0.5, incomplete="drop")
    m.add(0, image(1, 0), now=0.0)
    m.matcher.expire(1.0)

    assert m.numbers() == []
    assert m.matcher.current is not None and m.matcher.current.dropped == {"incomplete": 1}


def test_a_frame_waits_at_most_the_timeout_for_a_silent_stream() -> None:
    m = Matcher(timeout=0.5)
    m.add(1, image(1, 1), now=0.0)
    m.add(0, image(1, 0), now=0.0)
    m.add(0, image(2, 0), now=1.0)  # stream 1 silent since 0.0
    assert m.numbers() == [1]
    m.matcher.expire(1.5)

    assert m.numbers() == [1, 2]


def test_an_image_arriving_after_its_frame_timed_out_is_counted_late_not_sent_twice() -> None:
    m = Matcher(timeout=0.5)
    m.add(0, image(1, 0), now=0.0)
    m.matcher.expire(0.6)
    m.add(1, image(1, 1), now=0.7)

    assert m.numbers() == [1]
    counts = m.matcher.current
    assert counts is not None and counts.streams[1].late == 1 and counts.streams[1].images == 1


def test_the_pending_table_is_bounded_and_streams_ahead_are_paused_at_half() -> None:
    m = Matcher(max_pending=4)
    for frame in range(1, 3):
        m.add(0, image(frame, 0))
    assert m.matcher.readable() == [False, True]  # only the stream the oldest frame waits for
    for frame in range(3, 10):
        m.add(0, image(frame, 0))

    assert m.matcher.pending == 4
    assert m.numbers() == [1, 2, 3, 4, 5]  # the oldest, resolved incomplete to keep the bound


def test_an_acquisition_whose_end_messages_were_lost_closes_after_the_acquisition_timeout() -> None:
    m = Matcher(timeout=0.5)
    m.matcher = FrameMatcher(urls=m.matcher._urls, part_timeout_s=0.5, max_pending_frames=8,
                             incomplete="send_marked", emit=m.out.append, acquisition_timeout_s=3.0)
    for frame in (1, 2, 3):
        header = wire.receiver_header(frameNumber=frame, row=0, shape=SHAPE, size=64, frameIndex=frame - 1,
                                      progress=100.0 * frame / 12)
        for stream in (0, 1):
            m.add(stream, [wire.encode_header({**header, "row": stream}), bytes(64)], now=float(frame))
    assert m.matcher.next_deadline() == 3.0 + 3.0
    m.matcher.expire(5.9)
    assert m.kinds()[-1] == "Frame"

    m.matcher.expire(6.0)
    assert m.kinds()[-1] == "End" and m.matcher.current is None
    counts = m.out[-1].acquisition
    assert counts.end_lost and len(m.frames()) == 3
    assert counts.estimated_not_received() == 9  # frame 3 of 12 by its progress (25 %)
    assert "end message lost (about 9 frames never arrived, estimated from progress)" in counts.summary()


def _silent_then_more(first_frame_index_after: int) -> Matcher:
    """Frames 1-3 of 12, six seconds of silence (acquisition timeout 3 s), then frames 4-5 whose
    ``frameIndex`` starts at ``first_frame_index_after``."""
    m = Matcher(timeout=0.5)
    m.matcher = FrameMatcher(urls=m.matcher._urls, part_timeout_s=0.5, max_pending_frames=8,
                             incomplete="send_marked", emit=m.out.append, acquisition_timeout_s=3.0)
    indices = [0, 1, 2, first_frame_index_after, first_frame_index_after + 1]
    for frame, index in zip((1, 2, 3, 4, 5), indices):
        now = float(frame) if frame <= 3 else 6.0 + frame
        if frame == 4:
            m.matcher.expire(now)
        header = wire.receiver_header(frameNumber=frame, row=0, shape=SHAPE, size=64, frameIndex=index,
                                      progress=100.0 * (index + 1) / 12)
        for stream in (0, 1):
            m.add(stream, [wire.encode_header({**header, "row": stream}), bytes(64)], now=now)
    return m


def test_a_source_that_only_paused_continues_its_acquisition_and_nothing_is_estimated_lost() -> None:
    m = _silent_then_more(first_frame_index_after=3)  # the receiver's count goes on: same acquisition
    first = next(o.acquisition for o in m.out if isinstance(o, OutgoingEnd))
    second = m.matcher.current

    assert first.end_lost and first.continued_by == 2 and second.continues == 1
    assert first.estimated_not_received() is None
    assert "continued as acquisition 2" in first.summary()
    assert "continues acquisition 1 after a pause" in second.summary()
    assert m.numbers() == [1, 2, 3, 4, 5]


def test_a_new_acquisition_after_a_lost_end_is_not_taken_for_a_pause() -> None:
    m = _silent_then_more(first_frame_index_after=0)  # the receiver counts afresh: a new acquisition
    first = next(o.acquisition for o in m.out if isinstance(o, OutgoingEnd))

    assert first.end_lost and first.continued_by is None and m.matcher.current.continues is None
    assert first.estimated_not_received() == 9


def test_a_stream_that_sends_nothing_is_named_once(caplog: pytest.LogCaptureFixture) -> None:
    m = Matcher(timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="monitor.assembler"):
        for frame in range(1, 6):
            m.add(0, image(frame, 0), now=float(frame))
            m.matcher.expire(frame + 0.6)
    named = [r.getMessage() for r in caplog.records if "has sent nothing" in r.getMessage()]
    assert len(named) == 1 and "stream 1 (tcp://127.0.0.1:30002)" in named[0]
    assert m.numbers() == [1, 2, 3, 4, 5]


def test_a_clean_acquisition_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    m = Matcher()
    with caplog.at_level(logging.WARNING, logger="monitor.assembler"):
        for frame in (1, 2, 3):
            m.add(0, image(frame, 0))
            m.add(1, image(frame, 1))
        m.add(0, END)
        m.add(1, END)
    assert caplog.records == [] and m.kinds()[-1] == "End"
    assert not m.out[-1].acquisition.end_lost


def test_the_acquisition_ends_once_every_stream_has_sent_its_end() -> None:
    m = Matcher()
    for frame in (1, 2):
        m.add(0, image(frame, 0))
        m.add(1, image(frame, 1))
    m.add(0, END)
    assert m.kinds()[-1] == "Frame"
    m.add(1, END)

    assert m.kinds() == ["Start", "Frame", "Frame", "End"]
    assert m.matcher.current is None


def test_series_end_counts_what_was_actually_sent() -> None:
    m = Matcher()
    m.add(0, image(1, 0))
    m.add(1, image(1, 1))
    m.add(0, END)
    m.add(1, END)
    for item in m.out:
        if not isinstance(item, OutgoingEnd):
            item.sent()
    end = next(o for o in m.out if isinstance(o, OutgoingEnd))

    parsed = wire.parse_sync_message(end.parts())
    assert parsed.frames_per_port == {50012: 1, 50013: 1}  # type: ignore[union-attr]
    assert [h["lastFrameIndex"] for h in parsed.headers] == [[1], [1]]  # type: ignore[union-attr]


def test_end_messages_with_no_acquisition_open_and_repeated_ends_change_nothing() -> None:
    m = Matcher()
    m.add(0, END)  # a failed start
    m.add(1, END)
    m.add(0, image(1, 0))
    m.add(1, image(1, 1))
    m.add(0, END)
    m.add(0, END)  # repeated within the acquisition
    m.add(1, END)
    m.add(1, END)  # repeated after it

    assert m.kinds() == ["Start", "Frame", "End"]
    assert (m.matcher.lifetime.lone_ends, m.matcher.lifetime.duplicate_ends) == (3, 1)
    assert m.matcher.lifetime.acquisitions == 1


def test_a_stream_that_ended_and_sends_data_again_starts_the_next_acquisition() -> None:
    m = Matcher()
    m.add(0, image(1, 0))
    m.add(1, image(1, 1))
    m.add(0, END)  # stream 1's end is lost
    m.add(0, image(5, 0))
    m.add(1, image(5, 1))

    assert m.kinds() == ["Start", "Frame", "End", "Start", "Frame"]
    first = m.out[2]
    assert isinstance(first, OutgoingEnd) and first.acquisition.streams[1].end_missing


def test_an_acquisition_closes_when_the_other_streams_stay_silent_after_one_ended() -> None:
    m = Matcher(timeout=0.5)
    m.add(0, image(1, 0), now=0.0)
    m.add(1, image(1, 1), now=0.0)
    m.add(0, END, now=0.1)
    m.matcher.expire(0.4)
    assert m.kinds()[-1] == "Frame"
    m.matcher.expire(0.5)

    assert m.kinds()[-1] == "End"


def test_four_half_module_streams_are_two_receivers_in_start_and_end() -> None:
    m = Matcher(streams=4)
    for row in range(4):
        m.add(row, image(1, row, shape=[1024, 256]))  # half a module: the grouping needs the real height
    for row in range(4):
        m.add(row, END)

    start, end = wire.parse_sync_message(m.out[0].parts()), wire.parse_sync_message(m.out[-1].parts())
    assert [h["udpPorts"] for h in start.headers] == [[50012, 50013], [50014, 50015]]  # type: ignore[union-attr]
    assert [h["udpPorts"] for h in end.headers] == [[50012, 50013], [50014, 50015]]  # type: ignore[union-attr]


def _bad_messages() -> dict[str, list[bytes]]:
    header, data = image(3, 0)
    fields = json.loads(header)
    without_row = {k: v for k, v in fields.items() if k != "row"}
    return {
        "wrong size": [header, data[:-2]],
        "invalid JSON": [b"{frameNumber: 3", data],
        "unknown bitmode": [wire.encode_header({**fields, "bitmode": 32}), data],
        "missing key": [wire.encode_header(without_row), data],
        "three parts": [header, data, data],
        "another detector": [wire.encode_header({**fields, "detType": 2}), data],
        "missing synchronizer key": [wire.encode_header({k: v for k, v in fields.items() if k != "modId"}), data],
    }


def test_bad_messages_are_counted_logged_once_and_do_not_disturb_the_frames(caplog: pytest.LogCaptureFixture) -> None:
    m = Matcher()
    m.add(0, image(1, 0))
    m.add(1, image(1, 1))
    with caplog.at_level(logging.WARNING, logger="monitor.assembler"):
        for message in _bad_messages().values():
            m.add(0, message)
    m.add(0, image(2, 0))
    m.add(1, image(2, 1))

    assert m.numbers() == [1, 2] and m.rows() == [[0, 1], [0, 1]]
    counts = m.matcher.current
    assert counts is not None and counts.streams[0].bad == len(_bad_messages())
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("stream 0 (tcp://127.0.0.1:30001): frame 3: message ignored: ")
    assert "data part holds 62 bytes" in line


@pytest.mark.parametrize("kind", list(_bad_messages()))
def test_each_kind_of_bad_message_is_counted(kind: str) -> None:
    m = Matcher()
    m.add(0, _bad_messages()[kind])

    assert m.matcher.lifetime.bad == 1 and m.out == []


def test_after_a_pause_of_the_whole_source_the_next_frame_waits_for_all_its_parts() -> None:
    """A sender that stalls between frames (both streams silent) makes no part late."""
    m = Matcher(timeout=0.5)
    m.add(0, image(1, 0), now=0.0)
    m.add(1, image(1, 1), now=0.0)
    m.add(0, image(2, 0), now=3.0)  # both streams were silent for 3 s
    m.add(1, image(2, 1), now=3.001)

    assert m.rows() == [[0, 1], [0, 1]]
    assert m.matcher.current.incomplete == 0 and m.matcher.current.streams[1].late == 0
