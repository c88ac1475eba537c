"""Stream V2 messages as typed objects: a series' start, its images, its end; anything else is named.

Field names and units are DECTRIS' (``stream_v2`` in their public
documentation): lengths in metres, energies in eV, the beam centre in pixels.
Jungfraujoch's variant (same messages, more of them) adds
``detector_distance`` and signed pixel types; its ``calibration`` and
``metadata`` messages, like any type this monitor does not use, stay
:class:`OtherMessage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from monitor.errors import WireFormatError
from monitor.stream2.cbor import nodata_of

__all__ = ["MASK_INVALID_BITS", "SeriesStart", "Image", "SeriesEnd", "OtherMessage", "parse_message"]

MASK_INVALID_BITS = 0x7FFFFFFF
"""Pixel-mask bits that make a pixel invalid: gap (0), dead (1), under- (2) and over-responding (3),
noisy (4), and every other defined or user bit up to 30.  Bit 31 marks a virtual pixel (an
interpolated value between chips), which holds data and stays valid."""

_PIXEL_TYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32")


def _number(message: dict[str, Any], key: str, kind: type = float, *, required: bool = True) -> Any:
    value = message.get(key)
    if value is None:
        if required:
            raise WireFormatError(f"{message.get('type')} message has no {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireFormatError(f"{message.get('type')} message: {key!r} must be a number, got {type(value).__name__}")
    return kind(value)


@dataclass(frozen=True)
class SeriesStart:
    """What a series' images need: their size and type, channels, masks, and the experiment's geometry."""

    series_id: int
    series_unique_id: str
    shape: tuple[int, int]
    """Rows (``image_size_y``) and columns (``image_size_x``)."""
    dtype: np.dtype
    channels: tuple[str, ...]
    pixel_size_m: float | None
    beam_center_px: tuple[float, float] | None
    """x (column), y (row) where the direct beam hits the detector, in pixels (None: not recorded)."""
    distance_m: float | None
    photon_energy_ev: float | None
    saturation_value: int | None
    number_of_images: int | None
    detector_description: str
    pixel_mask: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """Channel -> uint32 mask (absent when the detector sends none: ``header_detail: basic``)."""
    no_data_value: int | None = None
    """What a pixel without data holds, where it is not the type's own (a hit file's float32 frames)."""

    @property
    def nodata(self) -> int:
        return nodata_of(self.dtype) if self.no_data_value is None else self.no_data_value

    def valid_pixels(self, channel: str) -> np.ndarray:
        """True where a pixel of ``channel`` holds data by its mask (all, without a mask)."""
        mask = self.pixel_mask.get(channel)
        if mask is None:
            return np.ones(self.shape, dtype=bool)
        return (np.asarray(mask, dtype=np.uint32) & MASK_INVALID_BITS) == 0


@dataclass(frozen=True)
class Image:
    """One exposure: every channel's pixels, views of the decompressed buffers."""

    series_id: int
    image_id: int
    data: dict[str, np.ndarray]
    time_s: float | None
    """When the exposure started, Unix seconds: ``series_date`` plus ``start_time`` (None without them)."""


@dataclass(frozen=True)
class SeriesEnd:
    series_id: int
    series_unique_id: str


@dataclass(frozen=True)
class OtherMessage:
    """A message of a type this monitor does not use (Jungfraujoch's ``calibration``, ``metadata``, ...)."""

    type: str


def _rational_s(value: Any) -> float | None:
    """A Stream V2 Rational ``[numerator, denominator]`` in seconds, None if absent or odd."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value) and value[1]:
        return value[0] / value[1]
    return None


def _image_time_s(message: dict[str, Any]) -> float | None:
    """``series_date`` (a DateTime, tag 0) plus ``start_time`` (a Rational, seconds), in Unix seconds."""
    series_date, start = message.get("series_date"), _rational_s(message.get("start_time"))
    if not isinstance(series_date, datetime) or start is None:
        return None
    return series_date.timestamp() + start


def _start(message: dict[str, Any]) -> SeriesStart:
    dtype_name = message.get("image_dtype")
    if dtype_name not in _PIXEL_TYPES:
        raise WireFormatError(f"start message: image_dtype {dtype_name!r} is not one of {', '.join(_PIXEL_TYPES)}")
    channels = message.get("channels") or ["default"]
    if not isinstance(channels, (list, tuple)) or not all(isinstance(c, str) for c in channels):
        raise WireFormatError("start message: channels must be a list of names")
    pixel_size = _number(message, "pixel_size_x")
    translation = message.get("detector_translation")
    distance = _number(message, "detector_distance", required=False)  # Jungfraujoch's
    if distance is None and isinstance(translation, (list, tuple)) and len(translation) == 3:
        distance = float(translation[2])
    masks = message.get("pixel_mask") or {}
    if not isinstance(masks, dict) or not all(isinstance(m, np.ndarray) for m in masks.values()):
        raise WireFormatError("start message: pixel_mask must map channel names to arrays")
    shape = (_number(message, "image_size_y", int), _number(message, "image_size_x", int))
    for channel, mask in masks.items():
        if mask.shape != shape:
            raise WireFormatError(f"start message: pixel_mask {channel!r} is {list(mask.shape)}, images {list(shape)}")
    return SeriesStart(
        series_id=_number(message, "series_id", int), series_unique_id=str(message.get("series_unique_id", "")),
        shape=shape, dtype=np.dtype(dtype_name), channels=tuple(channels), pixel_size_m=pixel_size,
        beam_center_px=(_number(message, "beam_center_x"), _number(message, "beam_center_y")),
        distance_m=distance, photon_energy_ev=_number(message, "incident_energy", required=False),
        saturation_value=_number(message, "saturation_value", int, required=False),
        number_of_images=_number(message, "number_of_images", int, required=False),
        detector_description=str(message.get("detector_description", "")), pixel_mask=dict(masks),
    )


def _image(message: dict[str, Any]) -> Image:
    data = message.get("data")
    if not isinstance(data, dict) or not data or not all(isinstance(a, np.ndarray) for a in data.values()):
        raise WireFormatError("image message: data must map channel names to arrays")
    return Image(series_id=_number(message, "series_id", int), image_id=_number(message, "image_id", int),
                 data=data, time_s=_image_time_s(message))


def parse_message(message: dict[str, Any]) -> SeriesStart | Image | SeriesEnd | OtherMessage:
    """The typed form of a decoded message; WireFormatError names the field that is wrong."""
    kind = message["type"]
    if kind == "start":
        return _start(message)
    if kind == "image":
        return _image(message)
    if kind == "end":
        return SeriesEnd(series_id=_number(message, "series_id", int),
                         series_unique_id=str(message.get("series_unique_id", "")))
    return OtherMessage(kind)
