"""The results stream's wire format: one msgpack header, then one raw buffer per array.

The collector's publisher and every client (the viewer, scripts) go through
:func:`encode_message` and :func:`decode_message`, so the format lives here
and in ``docs/results-stream.md`` only.  Nothing is pickled: a message is
readable from any language with msgpack and a way to wrap a buffer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack
import numpy as np
import zmq

from monitor.errors import WireFormatError
from monitor.outputs.builtin import to_builtin

__all__ = [
    "FORMAT",
    "VERSION",
    "Request",
    "ResultsMessage",
    "decode_message",
    "decode_request",
    "encode_message",
    "encode_request",
]

FORMAT = "jungfrau-monitor-results"
VERSION = 1

Request = Literal["latest_frame", "parameters", "status"]
_REQUESTS: tuple[str, ...] = ("latest_frame", "parameters", "status")
_NUMERIC_KINDS = "biuf"


@dataclass
class ResultsMessage:
    """One decoded message: its header (plain Python) and its arrays by name."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def encode_message(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[Any]:
    """Return the parts of one multipart message: the packed header, then the array buffers.

    The arrays are sent as they are (C order); the header lists their names,
    dtypes and shapes in the order the buffers follow.
    """
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    for name, array in contiguous.items():
        if array.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"array {name!r} has non-numeric dtype {array.dtype}")
    descriptors = [
        {"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}
        for name, array in contiguous.items()
    ]
    packed = msgpack.packb(
        {**header, "format": FORMAT, "version": VERSION, "arrays": descriptors},
        default=to_builtin,
    )
    return [packed, *contiguous.values()]


def decode_message(parts: Sequence[bytes | zmq.Frame]) -> ResultsMessage:
    """Decode the parts of one message; arrays are read-only views of the received buffers.

    Raises :class:`~monitor.errors.WireFormatError` naming the part that does not fit.
    """
    if not parts:
        raise WireFormatError("results message: no parts")
    try:
        header = msgpack.unpackb(_buffer(parts[0]))
    except (ValueError, msgpack.UnpackException) as error:
        raise WireFormatError(f"results message part 0 (header): not msgpack: {error}") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WireFormatError(f"results message part 0 (header): not a {FORMAT!r} header")
    if header.get("version") != VERSION:
        raise WireFormatError(
            f"results message header: version {header.get('version')!r}, this client reads {VERSION}"
        )
    descriptors = header.pop("arrays", [])
    if len(descriptors) != len(parts) - 1:
        raise WireFormatError(
            f"results message: header lists {len(descriptors)} arrays, {len(parts) - 1} buffers follow"
        )
    arrays = {}
    for index, (descriptor, part) in enumerate(zip(descriptors, parts[1:]), start=1):
        arrays[descriptor["name"]] = _array(index, descriptor, _buffer(part))
    return ResultsMessage(header=header, arrays=arrays)


def encode_request(request: Request, **arguments: Any) -> bytes:
    """Pack one request for the request socket (a REQ client sends this one part)."""
    return msgpack.packb({"request": request, **arguments}, default=to_builtin)


def decode_request(payload: bytes) -> dict[str, Any]:
    """Unpack one request; raises :class:`WireFormatError` for anything not in :data:`Request`."""
    try:
        request = msgpack.unpackb(payload)
    except (ValueError, msgpack.UnpackException) as error:
        raise WireFormatError(f"request: not msgpack: {error}") from error
    if not isinstance(request, dict) or request.get("request") not in _REQUESTS:
        raise WireFormatError(f"request: expected a map with 'request' one of {_REQUESTS}")
    return request


def _buffer(part: bytes | zmq.Frame) -> memoryview:
    return part.buffer if isinstance(part, zmq.Frame) else memoryview(part)


def _array(index: int, descriptor: Mapping[str, Any], buffer: memoryview) -> np.ndarray:
    try:
        dtype = np.dtype(descriptor["dtype"])
        shape = tuple(int(n) for n in descriptor["shape"])
    except (KeyError, TypeError, ValueError) as error:
        raise WireFormatError(f"results message part {index}: bad array descriptor {descriptor!r}") from error
    if dtype.kind not in _NUMERIC_KINDS:
        raise WireFormatError(f"results message part {index}: non-numeric dtype {dtype}")
    expected = dtype.itemsize * int(np.prod(shape))
    if buffer.nbytes != expected:
        raise WireFormatError(
            f"results message part {index} ({descriptor['name']!r}): {buffer.nbytes} bytes,"
            f" dtype {dtype} and shape {shape} need {expected}"
        )
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)
