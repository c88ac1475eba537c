"""One CXI file of hits, in the HDF5 layout CrystFEL reads.

Layout (N hits, frames H x W, P = ``max_peaks`` columns)::

    /cxi_version                          150
    /entry_1/data_1/data                  (N, H, W)  frames as the pipeline sent them
    /entry_1/result_1/nPeaks              (N,)       int32, peaks stored per hit
    /entry_1/result_1/peakXPosRaw         (N, P)     float32, column of each peak
    /entry_1/result_1/peakYPosRaw         (N, P)     float32, row of each peak
    /entry_1/result_1/peakTotalIntensity  (N, P)     float32
    /entry_1/result_1/peakSNR             (N, P)     float32
    /entry_1/event_id                     (N,)       int64, the detector frame number
    /entry_1/timestamp                    (N,)       float64, seconds (Unix time)

Peak positions are raw-frame pixel indices, the centre of a pixel at an integer
(CrystFEL's default half-pixel shift for CXI peak lists expects exactly that).
A CrystFEL geometry file points at it with ``data = /entry_1/data_1/data``,
``dim0 = %``, ``peak_list = /entry_1/result_1`` and ``peak_list_type = cxi``.

The file is written in SWMR mode: between flushes it stays a valid HDF5 file, so
a run killed without closing loses at most the hits since the last flush.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from monitor.outputs.parameters import Compression
from monitor.processing.protocol import ProcessedEvent

__all__ = ["CXIFile", "PEAK_COLUMNS"]

PEAK_COLUMNS: dict[str, str] = {
    "peakXPosRaw": "peak_x",
    "peakYPosRaw": "peak_y",
    "peakTotalIntensity": "peak_intensity",
    "peakSNR": "peak_snr",
}
"""CXI peak-list dataset -> the pipeline's result array it holds."""

_PEAK_ROWS_PER_CHUNK = 16


def _filter(compression: Compression) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords for one of the standard filters hdf5plugin ships."""
    match compression:
        case "bitshuffle-lz4":
            return dict(hdf5plugin.Bitshuffle(cname="lz4"))
        case "blosc-lz4":
            return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
        case "zstd":
            return dict(hdf5plugin.Zstd())
        case "none":
            return {}
    raise ValueError(f"unknown compression {compression!r}")


class CXIFile:
    """An open CXI file that hits are appended to, one frame per chunk."""

    def __init__(
        self,
        path: Path,
        *,
        frame_shape: tuple[int, ...],
        frame_dtype: np.dtype,
        max_peaks: int,
        compression: Compression,
    ) -> None:
        self.path = path
        self.frame_shape = tuple(frame_shape)
        self.n_hits = 0
        self._max_peaks = max_peaks
        self._file = h5py.File(path, "w", libver="latest")
        self._file["cxi_version"] = 150
        filters = _filter(compression)
        self._frames = self._file.create_dataset(
            "entry_1/data_1/data",
            shape=(0, *self.frame_shape),
            maxshape=(None, *self.frame_shape),
            chunks=(1, *self.frame_shape),
            dtype=frame_dtype,
            **filters,
        )
        self._n_peaks = self._growing("entry_1/result_1/nPeaks", np.int32)
        self._peaks = {
            name: self._file.create_dataset(
                f"entry_1/result_1/{name}",
                shape=(0, max_peaks),
                maxshape=(None, max_peaks),
                chunks=(_PEAK_ROWS_PER_CHUNK, max_peaks),
                dtype=np.float32,
                **filters,
            )
            for name in PEAK_COLUMNS
        }
        self._event_ids = self._growing("entry_1/event_id", np.int64)
        self._timestamps = self._growing("entry_1/timestamp", np.float64)
        self._file.swmr_mode = True

    def _growing(self, name: str, dtype: type) -> h5py.Dataset:
        return self._file.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=dtype)

    def append(self, hit: ProcessedEvent) -> None:
        """Append one hit; raises :class:`ValueError` if its frame does not fit this file."""
        frame = hit.arrays["frame"]
        if frame.shape != self.frame_shape:
            raise ValueError(f"{self.path.name}: frame of shape {frame.shape}, file holds {self.frame_shape}")
        row = self.n_hits
        for dataset in (self._frames, self._n_peaks, *self._peaks.values(), self._event_ids, self._timestamps):
            dataset.resize(row + 1, axis=0)
        if self._frames.dtype.kind in "iu" and frame.dtype.kind == "f":
            frame = np.rint(frame).astype(self._frames.dtype)  # whole photons (HDF5 would truncate)
        self._frames[row] = frame
        n_peaks = min(len(hit.arrays.get("peak_x", ())), self._max_peaks)
        self._n_peaks[row] = n_peaks
        for name, key in PEAK_COLUMNS.items():
            padded = np.zeros(self._max_peaks, dtype=np.float32)
            if key in hit.arrays:
                padded[:n_peaks] = hit.arrays[key][:n_peaks]
            self._peaks[name][row] = padded
        self._event_ids[row] = int(hit.values.get("event_id", -1))
        self._timestamps[row] = float(hit.values.get("timestamp", np.nan))
        self.n_hits += 1

    def size_bytes(self) -> int:
        """Bytes of frames stored so far, compressed: nearly all of the file.

        HDF5's own file size lags behind the chunks it still caches; the
        frames' storage size counts every appended frame at once.
        """
        return self._frames.id.get_storage_size()

    def flush(self) -> None:
        """Make every appended hit durable and visible to readers."""
        self._file.flush()

    def close(self) -> None:
        self._file.close()
