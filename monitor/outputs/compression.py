"""How hit files are compressed: the HDF5 filter of each choice, and for Blosc the frame chunk compressed here.

Every choice is a standard HDF5 filter from hdf5plugin, so any reader with
``HDF5_PLUGIN_PATH`` set decodes the files.  Writing a frame through HDF5's
filter pipeline costs a copy into its chunk cache and the filter's own work
at the next flush: 0.9 ms for a JUNGFRAU 1M frame of whole photons.  For the
Blosc choices the same bytes the filter would write are made here with
python-blosc (the same C library and settings) and written with
``write_direct_chunk``: 0.4 ms.  The Blosc library then runs one thread,
since a worker has one core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import blosc
import numpy as np

from monitor.outputs.hdf5_filters import hdf5plugin
from monitor.outputs.parameters import Compression

__all__ = ["ChunkCompressor", "chunk_compressor", "compression_filter"]

ChunkCompressor = Callable[[np.ndarray], bytes]
"""A C-contiguous array (one chunk) in, the bytes the dataset's filter would have stored out."""

_BLOSC_LEVEL = 5
_BLOSC_SHUFFLES = {"blosc-lz4": (blosc.BITSHUFFLE, hdf5plugin.Blosc.BITSHUFFLE),
                   "blosc-shuffle-lz4": (blosc.SHUFFLE, hdf5plugin.Blosc.SHUFFLE)}
"""The Blosc choices: shuffle as python-blosc and as the HDF5 filter name it."""


def compression_filter(compression: Compression) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords for one of the standard filters hdf5plugin ships."""
    if compression in _BLOSC_SHUFFLES:
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=_BLOSC_LEVEL, shuffle=_BLOSC_SHUFFLES[compression][1]))
    match compression:
        case "bitshuffle-lz4":
            return dict(hdf5plugin.Bitshuffle(cname="lz4"))
        case "bitshuffle-zstd":
            return dict(hdf5plugin.Bitshuffle(cname="zstd"))
        case "zstd":
            return dict(hdf5plugin.Zstd())
        case "none":
            return {}
    raise ValueError(f"unknown compression {compression!r}")


def chunk_compressor(compression: Compression) -> ChunkCompressor | None:
    """The chunk compressor of ``compression`` for direct chunk writes; None: let HDF5's filter do it."""
    if compression not in _BLOSC_SHUFFLES:
        return None
    shuffle = _BLOSC_SHUFFLES[compression][0]
    blosc.set_nthreads(1)

    def compress(chunk: np.ndarray) -> bytes:
        if not chunk.flags.c_contiguous:
            raise ValueError("a chunk to compress must be C-contiguous")
        return blosc.compress_ptr(chunk.ctypes.data, chunk.size, typesize=chunk.itemsize, clevel=_BLOSC_LEVEL,
                                  shuffle=shuffle, cname="lz4")

    return compress
