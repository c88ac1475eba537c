"""Keeping received frame buffers in the process instead of handing them back to the kernel.

ZMQ allocates a fresh buffer for every large message it receives (1 MiB per
JUNGFRAU module).  With glibc's defaults such a buffer is either its own
``mmap`` or, once the dynamic threshold has grown, heap memory that ``free``
trims back to the kernel.  Either way the next frame's buffer is new memory:
the kernel zeroes and maps it page by page, about 35 page faults per 2 MiB
frame.  Fixing the thresholds keeps that memory in the heap for reuse.  On
this project's 2-core benchmark machine it took a bare ZMQ receiver of 2 MiB
frames from 0.38 to 0.27 ms of CPU per frame (2,600 to 3,300 frames/s).

The cost is that memory freed after a burst stays with the process, up to
``TRIM_THRESHOLD_BYTES`` at the top of the heap; the monitor's queues are bounded, so
the peak it keeps is too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "keep_frame_buffers"]

MMAP_THRESHOLD_BYTES = 32 << 20
"""Allocations below this come from the heap (glibc's ceiling for the setting): every frame part does."""
TRIM_THRESHOLD_BYTES = 512 << 20
"""Free memory at the top of the heap kept for reuse rather than given back."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_frame_buffers() -> bool:
    """Set glibc's thresholds for this process; False where it is not glibc, or the user chose their own.

    Call it before the first frame arrives: it affects allocations made afterwards.
    """
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
