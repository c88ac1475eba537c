"""Read the captured ZMQ message files in ``tests/data`` (copied from real PSI software).

File format: xz-compressed; per message a little-endian u32 part count, then per
part a little-endian u64 length and the bytes.
"""

from __future__ import annotations

import lzma
import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DATA", "SYNC", "RECEIVER", "read_capture"]

DATA = Path(__file__).parent / "data"
SYNC = DATA / "slsframesynchronizer-9.2.0"
RECEIVER = DATA / "slsreceiver-9.2.0"


def read_capture(path: Path) -> Iterator[list[bytes]]:
    """Yield each captured multipart message as a list of its parts."""
    with lzma.open(path, "rb") as stream:
        while count_bytes := stream.read(4):
            (count,) = struct.unpack("<I", count_bytes)
            parts = []
            for _ in range(count):
                (length,) = struct.unpack("<Q", stream.read(8))
                parts.append(stream.read(length))
            yield parts
