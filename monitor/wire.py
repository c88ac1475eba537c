"""The JUNGFRAU ZMQ message shapes, parsed and built in one place.

Two families (see ``docs/jungfrau-zmq-protocol.md`` in the shared docs, and the
captures in ``tests/data``):

* the **receiver** stream (slsReceiver, PUB): ``[json, data]`` per module image,
  and a single-part ``{"data": 0}`` message at the end of an acquisition;
* the **frame synchronizer** stream (slsFrameSynchronizer, PUSH): one multipart
  message per acquisition start (``htype: header`` parts), per whole frame
  (``[json, data]`` pairs with ``htype: module``) and per acquisition end
  (``htype: series_end`` parts).

Parsing never copies pixel data: data parts stay the buffers ZMQ received
(``zmq.Frame`` objects or ``bytes``), wrapped as numpy views on demand.  Only
JSON is decoded; nothing on the wire is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import orjson

from monitor.errors import WireFormatError

__all__ = [
    "BufferLike",
    "ModuleImage",
    "SyncStart",
    "SyncFrame",
    "SyncEnd",
    "SyncMessage",
    "ReceiverImage",
    "ReceiverEnd",
    "parse_sync_message",
    "parse_receiver_message",
    "build_sync_start",
    "build_sync_frame",
    "build_sync_end",
    "module_header",
    "sync_module_header",
    "sync_start_fields",
    "FIRST_UDP_PORT",
    "receiver_header",
    "receiver_end_header",
    "encode_header",
    "part_nbytes",
    "JUNGFRAU",
    "PIXEL_DTYPE",
]

PIXEL_DTYPE = np.dtype("<u2")
"""JUNGFRAU pixels on the wire: little-endian uint16 (bitmode 16)."""

FIRST_UDP_PORT = 50012
"""Our senders have no UDP ports; stream ``i`` is named ``FIRST_UDP_PORT + i`` (PSI's first port)."""

JUNGFRAU = 3
"""``detType`` of a JUNGFRAU module in every header (slsDetectorPackage's detector type enum)."""

BufferLike = Any
"""Anything exposing the buffer protocol: ``bytes``, ``memoryview``, ``zmq.Frame``."""


def _buffer(part: BufferLike) -> memoryview:
    """A zero-copy view of one message part, whatever ZMQ handed us."""
    buffer = getattr(part, "buffer", None)  # zmq.Frame when received with copy=False
    return memoryview(buffer if buffer is not None else part)


def part_nbytes(part: BufferLike) -> int:
    """Bytes in one message part (a ZMQ frame, bytes or any buffer)."""
    return _buffer(part).nbytes


def _json_part(part: BufferLike, where: str) -> dict[str, Any]:
    try:
        header = orjson.loads(_buffer(part))
    except orjson.JSONDecodeError as error:
        raise WireFormatError(f"{where}: not a JSON header ({error})") from None
    if not isinstance(header, dict):
        raise WireFormatError(f"{where}: JSON header is a {type(header).__name__}, not an object")
    return header


def _int_key(header: dict[str, Any], key: str, where: str) -> int:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireFormatError(f"{where}: key {key!r} missing or not an integer (got {value!r})")
    return value


def _shape_key(header: dict[str, Any], where: str) -> tuple[int, int]:
    """The header's ``shape`` ([nx, ny] on the wire) as a numpy shape (ny, nx)."""
    shape = header.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(n, int) and n >= 0 for n in shape)
    ):
        raise WireFormatError(f"{where}: key 'shape' must be [nx, ny], got {shape!r}")
    return shape[1], shape[0]


@dataclass(frozen=True)
class ModuleImage:
    """One module's (or half-module's) image: its header and a view of its pixels."""

    header: dict[str, Any]
    data: BufferLike
    shape: tuple[int, int]
    row: int
    column: int
    frame_number: int

    @property
    def complete(self) -> bool:
        return bool(self.header.get("completeImage", 1))

    @property
    def timestamp(self) -> int:
        return int(self.header.get("timestamp", 0))

    def pixels(self) -> np.ndarray:
        """The pixels as a read-only (ny, nx) uint16 view of the received buffer."""
        return np.frombuffer(_buffer(self.data), dtype=PIXEL_DTYPE).reshape(self.shape)


def _module_image(header: dict[str, Any], data: BufferLike, size_key: str, where: str) -> ModuleImage:
    if header.get("detType", JUNGFRAU) != JUNGFRAU:
        raise WireFormatError(f"{where}: detType {header.get('detType')!r} is not JUNGFRAU ({JUNGFRAU})")
    shape = _shape_key(header, where)
    declared = _int_key(header, size_key, where)
    nbytes = _buffer(data).nbytes
    expected = shape[0] * shape[1] * PIXEL_DTYPE.itemsize
    if nbytes != expected or declared != expected:
        raise WireFormatError(
            f"{where}: data part holds {nbytes} bytes, {size_key} says {declared}, "
            f"shape {list(reversed(shape))} needs {expected}"
        )
    return ModuleImage(
        header=header,
        data=data,
        shape=shape,
        row=_int_key(header, "row", where),
        column=_int_key(header, "column", where),
        frame_number=_int_key(header, "frameNumber", where),
    )


# --- frame synchronizer messages ------------------------------------------------


@dataclass(frozen=True)
class SyncStart:
    """Start of an acquisition: one header per receiver (module)."""

    headers: list[dict[str, Any]]


@dataclass(frozen=True)
class SyncFrame:
    """One whole frame: the module images the sender had, placed by row/column."""

    frame_number: int
    modules: list[ModuleImage]

    @property
    def complete(self) -> bool:
        return all(module.complete for module in self.modules)


@dataclass(frozen=True)
class SyncEnd:
    """End of an acquisition, with the frame counts each receiver announced."""

    headers: list[dict[str, Any]]
    frames_per_port: dict[int, int] = field(default_factory=dict)

    @property
    def frames_sent(self) -> int | None:
        """Frames the sender sent: our assembler says so (``sentFrames``, frames with a part missing
        included); PSI's synchronizer only by ports that agree; else unknown."""
        stated = {header.get("sentFrames") for header in self.headers}
        if len(stated) == 1 and isinstance(next(iter(stated)), int):
            return stated.pop()
        counts = set(self.frames_per_port.values())
        return counts.pop() if len(counts) == 1 else None


SyncMessage = Union[SyncStart, SyncFrame, SyncEnd]


def parse_sync_message(parts: Sequence[BufferLike]) -> SyncMessage:
    """Parse one multipart message from a frame synchronizer (PSI's or ours)."""
    if not parts:
        raise WireFormatError("empty message")
    first = _json_part(parts[0], "part 0")
    htype = first.get("htype")
    if htype == "module":
        return _parse_sync_frame(parts, first)
    if htype not in ("header", "series_end"):
        raise WireFormatError(f"part 0: unknown htype {htype!r} (expected header, module or series_end)")
    headers = [first] + [_json_part(part, f"part {i}") for i, part in enumerate(parts[1:], 1)]
    for i, header in enumerate(headers):
        if header.get("htype") != htype:
            raise WireFormatError(f"part {i}: htype {header.get('htype')!r} in a {htype!r} message")
    if htype == "header":
        return SyncStart(headers=headers)
    return SyncEnd(headers=headers, frames_per_port=_frames_per_port(headers))


def _frames_per_port(headers: list[dict[str, Any]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for i, header in enumerate(headers):
        ports = header.get("udpPorts", [])
        frames = header.get("comleteFrames", header.get("completeFrames", []))  # PSI's spelling first
        if not isinstance(ports, list) or not isinstance(frames, list) or len(ports) != len(frames):
            raise WireFormatError(f"part {i}: series_end needs udpPorts and comleteFrames of equal length")
        counts.update(zip(ports, frames))
    return counts


def _parse_sync_frame(parts: Sequence[BufferLike], first: dict[str, Any]) -> SyncFrame:
    if len(parts) % 2:
        raise WireFormatError(f"frame message has {len(parts)} parts; expected [json, data] pairs")
    modules = []
    for i in range(0, len(parts), 2):
        where = f"part {i}"
        header = first if i == 0 else _json_part(parts[i], where)
        if header.get("htype") != "module":
            raise WireFormatError(f"{where}: htype {header.get('htype')!r} in a frame message")
        modules.append(_module_image(header, parts[i + 1], "imageSize", where))
    frame_number = modules[0].frame_number
    for i, module in enumerate(modules):
        if module.frame_number != frame_number:
            raise WireFormatError(
                f"part {2 * i}: frameNumber {module.frame_number} in frame {frame_number}"
            )
    return SyncFrame(frame_number=frame_number, modules=modules)


def module_header(
    *, port: int, row: int, column: int, frame_number: int, frame_index: int, shape: tuple[int, int],
    complete: bool = True, packets: int = 128, timestamp: int = 0, progress: float = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A synchronizer frame header (``htype: module``) for one module image of numpy ``shape``."""
    ny, nx = shape
    header = {
        "htype": "module", "port": port, "shape": [nx, ny], "acqIndex": frame_number,
        "frameIndex": frame_index, "flipRows": 0, "progress": progress,
        "completeImage": int(complete), "imageSize": nx * ny * PIXEL_DTYPE.itemsize,
        "frameNumber": frame_number, "expLength": 0, "packetNumber": packets, "detSpec1": 0,
        "timestamp": timestamp, "modId": 0, "row": row, "column": column, "detSpec2": 0,
        "detSpec3": 0, "detSpec4": 0, "detType": 3, "version": 2,
    }
    if extra:
        header["addJsonHeader"] = extra
    return header


_SYNC_MODULE_KEYS = (
    "shape", "acqIndex", "frameIndex", "flipRows", "progress", "completeImage", "imageSize",
    "frameNumber", "expLength", "packetNumber", "detSpec1", "timestamp", "modId", "row", "column",
    "detSpec2", "detSpec3", "detSpec4", "detType", "version",
)


def sync_module_header(receiver: dict[str, Any], *, port: int) -> dict[str, Any]:
    """The synchronizer's frame header for one receiver image: its values, PSI's keys and order.

    Raises WireFormatError when the receiver header lacks a key the synchronizer sends.
    """
    header: dict[str, Any] = {"htype": "module", "port": port}
    try:
        for key in _SYNC_MODULE_KEYS:
            header[key] = receiver["size" if key == "imageSize" else key]
    except KeyError as error:
        raise WireFormatError(f"part 0: key {error.args[0]!r} missing") from None
    if "addJsonHeader" in receiver:
        header["addJsonHeader"] = receiver["addJsonHeader"]
    return header


def sync_start_fields(receiver: dict[str, Any], *, ports: list[int]) -> dict[str, Any]:
    """One receiver's part of the synchronizer start message, from one of its data headers."""
    path, _, name = str(receiver.get("fname", "")).rpartition("/")
    fields = {
        "udpPorts": ports, "bitmode": receiver.get("bitmode", 16), "filePath": path or "/",
        "fileName": name, "fileIndex": receiver.get("fileIndex", 0), "detshape": receiver.get("detshape"),
        "size": receiver.get("size"), "quad": receiver.get("quad", 0),
    }
    if "addJsonHeader" in receiver:
        fields["addJsonHeader"] = receiver["addJsonHeader"]
    return fields


def encode_header(header: dict[str, Any]) -> bytes:
    """A JSON header part as the senders write it: text ending in a newline.

    orjson rather than the standard library: headers are parsed and written
    twice per frame on the assembler's one thread, where ``json`` took a third
    of its time."""
    return orjson.dumps(header, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


def build_sync_start(headers: Sequence[dict[str, Any]]) -> list[bytes]:
    return [encode_header({"htype": "header", **header}) for header in headers]


def build_sync_frame(modules: Sequence[tuple[dict[str, Any], BufferLike]]) -> list[BufferLike]:
    """Message parts for one frame; pixel buffers are passed through, not copied."""
    parts: list[BufferLike] = []
    for header, data in modules:
        parts += [encode_header(header), data]
    return parts


def build_sync_end(
    frames_per_receiver: Sequence[tuple[list[int], list[int]]],
    *, last_frame_numbers: Sequence[list[int]] | None = None, frames_sent: int | None = None,
) -> list[bytes]:
    """One series_end part per receiver, from its (ports, frame counts).

    PSI's ``lastFrameIndex`` is each port's last frame number; without
    ``last_frame_numbers`` the counts stand in for it.  ``frames_sent`` adds
    ``sentFrames`` (a key of ours: PSI's readers ignore it), the number of
    frame messages sent, which the per-port counts cannot give once a frame
    went out with a part missing.
    """
    lasts = last_frame_numbers or [frames for _, frames in frames_per_receiver]
    extra = {} if frames_sent is None else {"sentFrames": frames_sent}
    return [
        encode_header({"htype": "series_end", "udpPorts": ports, "comleteFrames": frames, "lastFrameIndex": last,
                       **extra})
        for (ports, frames), last in zip(frames_per_receiver, lasts, strict=True)
    ]


# --- receiver stream messages ---------------------------------------------------


@dataclass(frozen=True)
class ReceiverImage:
    """One receiver data message: a module (or half-module) image."""

    image: ModuleImage
    detshape: tuple[int, int]


@dataclass(frozen=True)
class ReceiverEnd:
    """The receiver's single-part end-of-acquisition message."""

    header: dict[str, Any]


def parse_receiver_message(parts: Sequence[BufferLike]) -> ReceiverImage | ReceiverEnd:
    """Parse one message from a receiver's PUB stream (jsonversion 5, bitmode 16)."""
    if len(parts) not in (1, 2):
        raise WireFormatError(f"receiver message has {len(parts)} parts; expected 1 (end) or 2 (data)")
    header = _json_part(parts[0], "part 0")
    data_flag = _int_key(header, "data", "part 0")
    if data_flag == 0:
        if len(parts) != 1:
            raise WireFormatError("end message (data 0) has a data part")
        return ReceiverEnd(header=header)
    if len(parts) != 2:
        raise WireFormatError("data message (data 1) has no data part")
    if header.get("bitmode") != 16:
        raise WireFormatError(f"part 0: bitmode {header.get('bitmode')!r} unsupported (JUNGFRAU sends 16)")
    detshape = header.get("detshape")
    if not isinstance(detshape, list) or len(detshape) != 2:
        raise WireFormatError(f"part 0: key 'detshape' must be [x, y], got {detshape!r}")
    return ReceiverImage(
        image=_module_image(header, parts[1], "size", "part 0"),
        detshape=(int(detshape[0]), int(detshape[1])),
    )


def receiver_header(**fields: Any) -> dict[str, Any]:
    """A receiver data header (jsonversion 5); ``fields`` override the defaults."""
    header: dict[str, Any] = {
        "jsonversion": 5, "bitmode": 16, "fileIndex": 0, "detshape": [1, 2], "shape": [1024, 512],
        "size": 1048576, "acqIndex": 0, "frameIndex": 0, "progress": 0, "fname": "", "data": 1,
        "completeImage": 1, "frameNumber": 0, "expLength": 0, "packetNumber": 128, "detSpec1": 0,
        "timestamp": 0, "modId": 0, "row": 0, "column": 0, "detSpec2": 0, "detSpec3": 0,
        "detSpec4": 0, "detType": 3, "version": 2, "flipRows": 0, "quad": 0,
        "rx_roi": [0, 1023, 0, 511],
    }
    header.update(fields)
    return header


def receiver_end_header() -> dict[str, Any]:
    """The single-part end-of-acquisition header: every field 0 or empty."""
    return {
        "jsonversion": 5, "bitmode": 0, "fileIndex": 0, "detshape": [0, 0], "shape": [0, 0],
        "size": 0, "acqIndex": 0, "frameIndex": 0, "progress": 0, "fname": "", "data": 0,
        "completeImage": 0, "frameNumber": 0, "expLength": 0, "packetNumber": 0, "detSpec1": 0,
        "timestamp": 0, "modId": 0, "row": 0, "column": 0, "detSpec2": 0, "detSpec3": 0,
        "detSpec4": 0, "detType": 0, "version": 0, "flipRows": 0, "quad": 0, "rx_roi": [0, 0, 0, 0],
    }
