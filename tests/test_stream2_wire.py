"""Stream V2 without MPI: CBOR and its compressions, the messages, counting frames, the start's geometry."""

from __future__ import annotations

import cbor2
import numpy as np
import pytest

from monitor.errors import DataExtractionError, WireFormatError
from monitor.stream2.cbor import decode, encode_array, message_type
from monitor.stream2.messages import Image, OtherMessage, SeriesEnd, SeriesStart, parse_message
from monitor.stream2.simulator import SimulatedEiger2, Stream2SimulatorParameters, image_message, start_message
from sources.counting import CountingCalibration, CountingFrame
from sources.geometry import DetectorGeometry
from sources.stream2 import SeriesFrames, crystfel_geometry


@pytest.mark.parametrize("compression", ["none", "bslz4", "bszstd", "lz4"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32])
def test_images_decode_to_the_array_sent_in_every_compression_and_type(compression, dtype):
    counts = np.random.default_rng(1).poisson(3.0, (37, 53)).astype(dtype)  # not a whole block
    message = cbor2.dumps({"type": "image", "data": {"threshold_1": encode_array(counts, compression)}})
    decoded = decode(message)["data"]["threshold_1"]
    assert decoded.dtype == counts.dtype and np.array_equal(decoded, counts)
    assert message_type(message) == "image"


def test_the_type_is_read_from_the_first_bytes_only_when_it_is_the_first_key():
    assert message_type(cbor2.dumps({"type": "start", "series_id": 1})) == "start"
    assert message_type(cbor2.dumps({"series_id": 1, "type": "start"})) is None
    assert message_type(b"") is None and message_type(b"\x01\x02") is None


@pytest.mark.parametrize(("message", "expected"), [
    (b"\xff\x00", "not CBOR"),
    (cbor2.dumps([1, 2]), "not a Stream V2 message"),
    (cbor2.dumps({"type": "image", "data": cbor2.CBORTag(56500, ["zip", 1, b"x"])}), "unknown compression 'zip'"),
    (cbor2.dumps({"type": "image", "data": cbor2.CBORTag(56500, ["bslz4", 2, b"garbage"])}), "does not decompress"),
    (cbor2.dumps({"type": "image", "data": cbor2.CBORTag(69, b"\x00\x01\x02")}), "not a whole number"),
])
def test_a_message_that_does_not_decode_says_why(message, expected):
    with pytest.raises(WireFormatError, match=expected):
        decode(message)


def _start(**changes):
    detector = SimulatedEiger2(Stream2SimulatorParameters(detector="500K", dtype="uint16"))
    message = start_message(detector, "unique")
    message.update(changes)
    return detector, decode(cbor2.dumps(message))


def test_the_start_message_gives_geometry_type_channels_and_mask():
    detector, message = _start()
    start = parse_message(message)
    assert isinstance(start, SeriesStart)
    assert start.shape == (512, 1028) and start.dtype == np.uint16 and start.channels == ("threshold_1",)
    assert start.distance_m == pytest.approx(0.12) and start.photon_energy_ev == pytest.approx(12400)
    assert start.nodata == 0xFFFF and start.series_unique_id == "unique"
    assert np.array_equal(start.valid_pixels("threshold_1"), ~detector._invalid)


def test_mask_bits_make_pixels_invalid_but_a_virtual_pixel_holds_data():
    mask = np.array([[0, 1, 2, 1 << 4], [1 << 8, 1 << 31, (1 << 31) | 2, 0]], dtype=np.uint32)
    _, message = _start(image_size_x=4, image_size_y=2, pixel_mask={"threshold_1": encode_array(mask)})
    valid = parse_message(message).valid_pixels("threshold_1")
    assert valid.tolist() == [[True, False, False, False], [False, True, False, True]]


def test_jungfraujoch_gives_the_distance_itself_and_a_missing_field_is_named():
    _, message = _start(detector_distance=0.25)
    assert parse_message(message).distance_m == pytest.approx(0.25)
    del message["image_size_x"]
    with pytest.raises(WireFormatError, match="start message has no 'image_size_x'"):
        parse_message(message)
    assert parse_message({"type": "metadata"}) == OtherMessage("metadata")
    assert parse_message({"type": "end", "series_id": 3}) == SeriesEnd(3, "")


def test_an_image_is_checked_against_its_series():
    _, message = _start(image_size_x=4, image_size_y=2, pixel_mask={})
    series = SeriesFrames.of(parse_message(message), None)
    good = Image(1, 5, {"threshold_1": np.zeros((2, 4), np.uint16)}, None)
    assert series.frame(good).counts.shape == (2, 4)
    for data, expected in [({"threshold_1": np.zeros((2, 4), np.uint32)}, "pixels are uint32"),
                           ({"threshold_1": np.zeros((4, 2), np.uint16)}, "image is \\[4, 2\\]"),
                           ({"other": np.zeros((2, 4), np.uint16)}, "no channel 'threshold_1'")]:
        with pytest.raises(DataExtractionError, match=expected):
            series.frame(Image(1, 6, data, None))
    with pytest.raises(DataExtractionError, match="no channel 'threshold_9'"):
        SeriesFrames.of(parse_message(message), "threshold_9")


def test_counting_frames_are_photons_with_masked_and_nodata_pixels_invalid():
    counts = np.array([[0, 3, 0xFFFF], [7, 60000, 2]], dtype=np.uint16)
    valid = np.array([[True, True, True], [False, True, True]])
    photons, ok = CountingCalibration().calibrate(CountingFrame(counts, valid, 0xFFFF, 60000))
    assert photons.tolist() == [[0, 3, 0], [0, 60000, 2]] and ok.tolist() == [[True, True, False], [False, True, True]]
    calibration = CountingCalibration()
    calibration.calibrate(CountingFrame(counts, valid, 0xFFFF, 60000))
    assert (calibration.n_invalid, calibration.n_saturated, calibration.photon_sum) == (2, 1, 60005.0)


def test_the_geometry_written_from_the_start_puts_the_beam_at_its_centre(tmp_path):
    _, message = _start()
    start = parse_message(message)
    path = tmp_path / "detector.geom"
    path.write_text(crystfel_geometry(start))
    geometry = DetectorGeometry.from_crystfel(path)
    assert geometry.frame_shape == (512, 1028) and geometry.clen_m == pytest.approx(0.12)
    assert geometry.pixel_size_m == pytest.approx(75e-6) and geometry.photon_energy_kev == pytest.approx(12.4)
    beam_x, beam_y = start.beam_center_px  # the pixel whose centre is nearest the beam is near radius 0
    assert geometry.radius[int(beam_y), int(beam_x)] < 1.0


def test_the_channel_read_is_the_one_asked_for_else_the_first_listed():
    detector = SimulatedEiger2(Stream2SimulatorParameters(detector="500K", dtype="uint16", channels=2, hit_fraction=1))
    start = parse_message(decode(cbor2.dumps(start_message(detector, "u"))))
    image = detector.image(3)
    message = Image(1, 3, dict(image.counts), None)
    assert start.channels == ("threshold_1", "threshold_2")
    assert SeriesFrames.of(start, None).frame(message).counts is image.counts["threshold_1"]
    assert SeriesFrames.of(start, "threshold_2").frame(message).counts is image.counts["threshold_2"]
    valid = ~detector._invalid  # masked pixels read the no-data value in both
    assert image.counts["threshold_2"][valid].sum() < image.counts["threshold_1"][valid].sum()


def test_an_image_is_timed_by_the_series_date_and_its_start_time():
    detector = SimulatedEiger2(Stream2SimulatorParameters(detector="500K", rate_hz=100))
    message = image_message(detector, 250, detector.image(250), "u", series_date="2026-12-04T20:00:00Z")
    image = parse_message(decode(cbor2.dumps(message)))
    assert image.time_s == pytest.approx(1796414400.0 + 2.5)
