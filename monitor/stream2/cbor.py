"""CBOR as DECTRIS Stream V2 uses it: typed arrays (RFC 8746), multi-dimensional arrays, compression.

Decoding turns tag 40 (row-major) and 1040 (column-major) multi-dimensional
arrays into numpy arrays, the typed-array tags 64-87 into arrays viewing their
byte strings, and DECTRIS' compression tag 56500 (``bslz4``, ``bszstd``,
``lz4``) into the decompressed bytes.  A decompressed image is therefore
written once, by the decompressor, and viewed in place by numpy (read-only).

Encoding is the inverse, for the simulated detector: an array becomes tag 40
around a little-endian typed array, optionally compressed in the same framing
the HDF5 filters use (which is what tag 56500 carries).
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import bitshuffle
import cbor2
import lz4.block
import numpy as np
from dectris.compression import decompress

from monitor.errors import WireFormatError

__all__ = ["Compression", "decode", "encode_array", "message_type", "nodata_of"]

Compression = Literal["none", "bslz4", "bszstd", "lz4"]

COMPRESSION_TAG = 56500
MULTI_DIM_ROW_MAJOR = 40
MULTI_DIM_COLUMN_MAJOR = 1040

_TYPED_ARRAYS: dict[int, str] = {
    64: "u1", 65: ">u2", 66: ">u4", 67: ">u8", 68: "u1", 69: "<u2", 70: "<u4", 71: "<u8",
    72: "i1", 73: ">i2", 74: ">i4", 75: ">i8", 77: "<i2", 78: "<i4", 79: "<i8",
    80: ">f2", 81: ">f4", 82: ">f8", 84: "<f2", 85: "<f4", 86: "<f8",
}
"""RFC 8746 section 2.1: tag -> numpy dtype (76, clamped uint8, and the 128-bit floats are not used)."""
_TAG_OF_DTYPE = {"u1": 64, "<u2": 69, "<u4": 70, "<u8": 71, "i1": 72, "<i2": 77, "<i4": 78, "<i8": 79,
                 "<f4": 85, "<f8": 86}

_BLOCK_BYTES = 8192
"""Bytes per compressed block: the bitshuffle filter's default, which DECTRIS' detectors use too."""


def nodata_of(dtype: np.dtype) -> int:
    """The value a pixel holds where the detector has no data: the dtype's largest (signed: its smallest)."""
    info = np.iinfo(dtype)
    return info.min if info.min < 0 else info.max


def _decompressed(value: Any) -> bytes:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[2], bytes)):
        raise WireFormatError("tag 56500 must hold [algorithm, element size, bytes]")
    algorithm, element_size, encoded = value
    name = str(algorithm).split(":", 1)[0]  # Jungfraujoch may append a level: "bszstd:3"
    if name not in ("bslz4", "bszstd", "lz4"):
        raise WireFormatError(f"unknown compression {algorithm!r} (known: bslz4, bszstd, lz4)")
    try:
        return decompress(encoded, name, elem_size=int(element_size or 1))
    except Exception as error:  # the decompressor's own error types
        raise WireFormatError(f"{name} data does not decompress ({error})") from None


def _typed_array(tag: int, value: Any) -> np.ndarray:
    if not isinstance(value, bytes):
        raise WireFormatError(f"typed array (tag {tag}) must hold a byte string")
    dtype = np.dtype(_TYPED_ARRAYS[tag])
    if len(value) % dtype.itemsize:
        raise WireFormatError(f"typed array of {len(value)} bytes is not a whole number of {dtype} values")
    return np.frombuffer(value, dtype=dtype)


def _multi_dim(value: Any, order: Literal["C", "F"]) -> np.ndarray:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], (list, tuple))):
        raise WireFormatError("multi-dimensional array must hold [dimensions, values]")
    dimensions, values = value
    array = values if isinstance(values, np.ndarray) else np.asarray(values)
    if int(np.prod(dimensions)) != array.size:
        raise WireFormatError(f"array of {array.size} values cannot have dimensions {dimensions}")
    return array.reshape(dimensions, order=order)


def _tag_hook(tag: cbor2.CBORTag, immutable: bool) -> Any:
    if tag.tag == COMPRESSION_TAG:
        return _decompressed(tag.value)
    if tag.tag in _TYPED_ARRAYS:
        return _typed_array(tag.tag, tag.value)
    if tag.tag == MULTI_DIM_ROW_MAJOR:
        return _multi_dim(tag.value, "C")
    if tag.tag == MULTI_DIM_COLUMN_MAJOR:
        return _multi_dim(tag.value, "F")
    return tag


def decode(buffer: bytes | memoryview) -> dict[str, Any]:
    """One message: a CBOR map with text keys; raise WireFormatError saying what is wrong."""
    try:
        message = cbor2.loads(buffer, tag_hook=_tag_hook)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, MemoryError) as error:
        if isinstance(error.__cause__, WireFormatError):  # raised by a tag, wrapped by cbor2
            raise error.__cause__ from None
        raise WireFormatError(f"not CBOR ({error})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise WireFormatError("not a Stream V2 message (a CBOR map with a text 'type')")
    return message


def _text_at(buffer: bytes | memoryview, at: int) -> tuple[str, int] | None:
    """A definite-length CBOR text string starting at ``at`` and the offset behind it, or None."""
    if at >= len(buffer):
        return None
    head = buffer[at]
    if 0x60 <= head <= 0x77:
        length, at = head - 0x60, at + 1
    elif head == 0x78 and at + 1 < len(buffer):
        length, at = buffer[at + 1], at + 2
    else:
        return None
    if at + length > len(buffer):
        return None
    try:
        return bytes(buffer[at : at + length]).decode(), at + length
    except UnicodeDecodeError:
        return None


def message_type(buffer: bytes | memoryview) -> str | None:
    """The ``type`` of a message without decoding it, or None when it is not the first key of a map.

    The spec puts ``type`` first in every message, so relaying a message costs a
    few bytes' look, not a decode of its (compressed) images.
    """
    if not len(buffer):
        return None
    head = buffer[0]
    at = {0xB8: 2, 0xB9: 3, 0xBA: 5, 0xBB: 9, 0xBF: 1}.get(head, 1 if 0xA1 <= head <= 0xB7 else 0)
    if not at:
        return None
    key = _text_at(buffer, at)
    if key is None or key[0] != "type":
        return None
    value = _text_at(buffer, key[1])
    return None if value is None else value[0]


def _framed(raw: bytes, blocks: list[bytes]) -> bytes:
    """The HDF5 filters' framing: total size and block size (big-endian), then each block."""
    return struct.pack(">QI", len(raw), _BLOCK_BYTES) + b"".join(blocks)


def _lz4_blocks(raw: bytes) -> list[bytes]:
    blocks = []
    for start in range(0, len(raw), _BLOCK_BYTES):
        block = raw[start : start + _BLOCK_BYTES]
        packed = lz4.block.compress(block, store_size=False)
        if len(packed) >= len(block):  # the LZ4 HDF5 filter stores an incompressible block as it is
            packed = block
        blocks.append(struct.pack(">I", len(packed)) + packed)
    return blocks


def _compressed(array: np.ndarray, compression: Compression) -> Any:
    """The array's bytes, or tag 56500 around them compressed."""
    raw = array.tobytes()
    if compression == "none":
        return raw
    if compression == "lz4":
        return cbor2.CBORTag(COMPRESSION_TAG, ["lz4", 0, _framed(raw, _lz4_blocks(raw))])
    block = _BLOCK_BYTES // array.itemsize
    packed = (bitshuffle.compress_lz4 if compression == "bslz4" else bitshuffle.compress_zstd)(array.ravel(), block)
    return cbor2.CBORTag(COMPRESSION_TAG, [compression, array.itemsize, _framed(raw, [packed.tobytes()])])


def encode_array(array: np.ndarray, compression: Compression = "none") -> cbor2.CBORTag:
    """Tag 40 around a little-endian typed array of ``array`` (C order), compressed as asked."""
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    tag = _TAG_OF_DTYPE[array.dtype.str.replace("|", "").replace("=", "<")]
    return cbor2.CBORTag(MULTI_DIM_ROW_MAJOR, [list(array.shape), cbor2.CBORTag(tag, _compressed(array, compression))])
