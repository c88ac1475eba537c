"""The JUNGFRAU 1M data sources: frames placed by row, absent rows marked lost, ids and times."""

from __future__ import annotations

import numpy as np
import pytest

from captures import RECEIVER, read_capture
from monitor.errors import DataExtractionError
from monitor.wire import build_sync_frame, module_header, parse_receiver_message, parse_sync_message
from sources.jungfrau1m import FrameBands, FrameNumber, FrameTimestamp, Jungfrau1MFrame, Jungfrau1MModules


def frame_event_from_receiver_capture(case: str, order: list[int] | None = None, drop: int | None = None) -> dict:
    """The first frame of a receiver capture, re-sent the way a synchronizer would (real pixels)."""
    streams = sorted((RECEIVER / case).glob("stream*.zmqmsgs.xz"))
    images = [parse_receiver_message(next(read_capture(s))).image for s in streams]
    order = order or list(range(len(images)))
    modules = [
        (module_header(port=50012 + k, row=images[k].row, column=images[k].column, frame_number=images[k].frame_number,
                       frame_index=0, shape=images[k].shape), images[k].data)
        for k in order if k != drop
    ]
    return {"kind": "frame", "frame": parse_sync_message(build_sync_frame(modules))}


def expected_pattern() -> np.ndarray:
    """The detector simulator's ADC pattern: module-local row // 4 + 1, on both modules."""
    rows = (np.arange(1024) % 512) // 4 + 1
    return np.broadcast_to(rows[:, None], (1024, 1024))


def assembled(event: dict) -> np.ndarray:
    source = Jungfrau1MFrame()
    source.initialize_data_source()
    return source.get_data(event=event)


def test_two_modules_are_placed_by_their_row():
    frame = assembled(frame_event_from_receiver_capture("jf1m-20frames"))
    assert frame.shape == (1024, 1024) and frame.dtype == np.uint16
    assert np.array_equal(frame & 0x3FFF, expected_pattern())
    assert set(np.unique(frame[:, 600:] >> 14)) == {3}


def test_four_half_modules_in_port_order_0_2_1_3_land_in_row_order():
    frame = assembled(frame_event_from_receiver_capture("two-interfaces-4streams-3frames", order=[0, 2, 1, 3]))
    assert np.array_equal(frame & 0x3FFF, expected_pattern())


def test_an_absent_module_leaves_its_rows_marked_as_lost_pixels():
    frame = assembled(frame_event_from_receiver_capture("jf1m-20frames", drop=0))
    assert np.all(frame[:512] == 0xFFFF)
    assert np.array_equal(frame[512:] & 0x3FFF, expected_pattern()[512:])


def test_the_reused_buffer_forgets_a_module_absent_from_the_next_frame():
    source = Jungfrau1MFrame()
    source.initialize_data_source()
    source.get_data(event=frame_event_from_receiver_capture("jf1m-20frames"))
    frame = source.get_data(event=frame_event_from_receiver_capture("jf1m-20frames", drop=1))
    assert np.all(frame[512:] == 0xFFFF) and not np.any(frame[:512] == 0xFFFF)


def test_one_image_covering_the_whole_detector_is_a_zero_copy_view():
    pixels = np.arange(1024 * 1024, dtype="<u2").reshape(1024, 1024)
    header = module_header(port=1, row=0, column=0, frame_number=5, frame_index=0, shape=(1024, 1024))
    event = {"frame": parse_sync_message(build_sync_frame([(header, memoryview(pixels))]))}
    assert np.shares_memory(assembled(event), pixels)


def test_a_module_outside_the_detector_fails_the_event_not_the_worker():
    header = module_header(port=1, row=2, column=0, frame_number=5, frame_index=0, shape=(512, 1024))
    event = {"frame": parse_sync_message(build_sync_frame([(header, bytes(512 * 1024 * 2))]))}
    with pytest.raises(DataExtractionError, match="module at row 2, column 0 .* falls outside"):
        assembled(event)


def test_event_id_is_the_frame_number_and_timestamp_falls_back_to_arrival_time():
    event = frame_event_from_receiver_capture("jf1m-20frames")
    event["additional_info"] = {"received_at": 1234.5}
    assert FrameNumber().get_data(event=event) == 1
    assert FrameTimestamp().get_data(event=event) == 1234.5


def test_the_detector_clock_gives_seconds_when_it_runs():
    header = module_header(port=1, row=0, column=0, frame_number=5, frame_index=0, shape=(2, 2), timestamp=25_000_000)
    event = {"frame": parse_sync_message(build_sync_frame([(header, bytes(8))]))}
    assert FrameTimestamp().get_data(event=event) == 2.5


def module_bands(event: dict) -> FrameBands:
    source = Jungfrau1MModules()
    source.initialize_data_source()
    return source.get_data(event=event)


def stacked(frame: FrameBands) -> np.ndarray:
    return np.concatenate([band for _, band in frame.bands])


@pytest.mark.parametrize(("case", "order", "drop"), [
    ("jf1m-20frames", None, None),
    ("two-interfaces-4streams-3frames", [0, 2, 1, 3], None),
    ("jf1m-20frames", None, 0),
    ("two-interfaces-4streams-3frames", None, 2),
])
def test_module_bands_hold_the_same_pixels_as_the_assembled_frame(case, order, drop):
    event = frame_event_from_receiver_capture(case, order=order, drop=drop)
    frame = module_bands(event)
    assert [row for row, _ in frame.bands] == sorted(row for row, _ in frame.bands)
    assert np.array_equal(stacked(frame), assembled(event))


def test_module_bands_are_the_received_buffers_not_copies():
    event = frame_event_from_receiver_capture("jf1m-20frames")
    frame = module_bands(event)
    received = [module.pixels() for module in event["frame"].modules]
    assert all(any(np.shares_memory(band, pixels) for pixels in received) for _, band in frame.bands)


def test_module_bands_refuse_images_that_are_not_whole_rows():
    pixels = np.zeros((512, 512), dtype=np.uint16)
    header = module_header(port=50012, row=0, column=1, frame_number=5, frame_index=0, shape=(512, 512))
    event = {"kind": "frame", "frame": parse_sync_message(build_sync_frame([(header, pixels)]))}
    with pytest.raises(DataExtractionError, match="frame 5: images are not bands of whole rows; use detector_data"):
        module_bands(event)
