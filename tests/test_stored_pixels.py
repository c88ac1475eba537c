"""What a hit file stores of a frame: whole photons rounded halves up, clipped, invalid pixels flagged, the mask."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.outputs.stored_pixels import FLAG_LESSTHAN, INVALID_PIXEL, StoredPixels


def test_photons_round_to_the_nearest_whole_photon_halves_up() -> None:
    pixels = StoredPixels((1, 9), np.int16)
    photons = np.array([[-0.6, -0.5, -0.01, 0.0, 0.49, 0.5, 1.49, 2.5, 7.02]], dtype=np.float32)
    pixels.store(photons, None)
    assert pixels.pixels.dtype == np.int16
    assert pixels.pixels.tolist() == [[-1, 0, 0, 0, 0, 1, 1, 3, 7]]


def test_a_photon_shared_by_two_pixels_is_stored_once() -> None:
    pixels = StoredPixels((1, 10), np.int16)
    shares = np.linspace(0.05, 0.95, 10, dtype=np.float32)
    pixels.store(np.stack([shares]), None)
    left = pixels.pixels.copy()
    pixels.store(np.stack([1 - shares]), None)
    assert (left + pixels.pixels).tolist() == [[1] * 10]


def test_a_photon_shared_by_four_pixels_at_a_corner_is_stored_once_in_the_largest_share() -> None:
    pixels = StoredPixels((4, 4), np.int16)
    photons = np.zeros((4, 4), dtype=np.float32)
    photons[1:3, 1:3] = [[0.1, 0.2], [0.3, 0.4]]  # a photon near the corner the four pixels share
    pixels.store(photons, None)
    assert pixels.pixels.sum() == 1 and pixels.pixels[2, 2] == 1
    photons[1:3, 1:3] = [[0.05, 0.05], [0.05, 0.3]]  # a quarter of a photon, but the block holds less than half
    pixels.store(photons, None)
    assert not pixels.pixels.any()
    photons[1:3, 1:3] = [[0.1, 0.2], [0.3, 0.6]]  # its largest share rounds up on its own
    pixels.store(photons, None)
    assert pixels.pixels.sum() == 1 and pixels.pixels[2, 2] == 1
    valid = np.ones((4, 4), dtype=bool)
    valid[1, 1] = False  # a block with an invalid pixel says nothing
    photons[1:3, 1:3] = [[0.2, 0.1], [0.1, 0.3]]  # only the block with it holds half a photon
    pixels.store(photons, valid)
    assert pixels.pixels[2, 2] == 0


def test_values_past_the_dtype_are_clipped_and_never_read_as_invalid() -> None:
    pixels = StoredPixels((1, 4), np.int16)
    pixels.store(np.array([[40000.0, -40000.0, 32767.2, -32767.4]], dtype=np.float32), None)
    assert pixels.pixels.tolist() == [[32767, FLAG_LESSTHAN, 32767, FLAG_LESSTHAN]]
    wide = StoredPixels((1, 2), np.int32)
    wide.store(np.array([[40000.4, -40000.6]], dtype=np.float32), None)
    assert wide.pixels.tolist() == [[40000, FLAG_LESSTHAN]]  # the floor keeps the invalid value apart in every dtype


def test_float32_keeps_the_photons_as_they_are() -> None:
    pixels = StoredPixels((2, 3), np.float32)
    photons = np.array([[0.013, -0.2, 1.75], [3.5, 0.0, 12.25]], dtype=np.float32)
    pixels.store(photons, None)
    np.testing.assert_array_equal(pixels.pixels, photons)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
def test_pixels_without_a_valid_reading_store_the_invalid_value_and_nan_is_one(dtype: type) -> None:
    pixels = StoredPixels((2, 2), dtype)
    pixels.store(np.array([[1.0, np.nan], [2.0, 3.0]], dtype=np.float32), np.array([[True, True], [False, True]]))
    assert pixels.pixels.tolist() == [[1, INVALID_PIXEL], [INVALID_PIXEL, 3]]


def test_the_mask_holds_the_pixels_invalid_in_every_frame_and_says_when_it_shrinks() -> None:
    pixels = StoredPixels((1, 4), np.int16)
    photons = np.ones((1, 4), dtype=np.float32)
    assert pixels.masked.all()  # nothing stored yet
    assert pixels.store(photons, np.array([[False, False, True, True]]))  # the first frame sets it
    assert pixels.masked.tolist() == [[True, True, False, False]]
    assert not pixels.store(photons, np.array([[False, False, False, True]]))  # a lost packet: unchanged
    assert pixels.masked.tolist() == [[True, True, False, False]]
    assert pixels.store(photons, np.array([[False, True, True, True]]))  # pixel 1 read after all
    assert pixels.masked.tolist() == [[True, False, False, False]]


def test_a_frame_of_another_shape_or_an_unsupported_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="only as int16, int32 or float32"):
        StoredPixels((2, 2), np.uint16)
    with pytest.raises(ValueError, match=r"frame of shape \(3, 2\)"):
        StoredPixels((2, 2), np.int16).store(np.zeros((3, 2), dtype=np.float32), None)
