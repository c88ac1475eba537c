"""One CXI file of hits, in the HDF5 layout CrystFEL reads, in a format HDF5 1.10 opens.

Layout (N hits, frames H x W, P = ``max_peaks`` columns)::

    /cxi_version                                      150
    /entry_1/data_1/data                 (N, H, W)    int16 whole photons (int32; float32: as calibrated),
                                                      INVALID_PIXEL where the hit has no valid reading
    /entry_1/data_1/mask                 (H, W)       uint16, 0 = good, bit 0 (MASK_INVALID) = no valid
                                                      reading in any hit of the file (the bad pixels)
    /entry_1/result_1/nPeaks             (N,)         int32, peaks stored per hit
    /entry_1/result_1/peakXPosRaw        (N, P)       float32, column of each peak (pixels)
    /entry_1/result_1/peakYPosRaw        (N, P)       float32, row of each peak (pixels)
    /entry_1/result_1/peakTotalIntensity (N, P)       float32, photons
    /entry_1/result_1/peakSNR            (N, P)       float32
    /entry_1/event_id                    (N,)         int64, the detector frame number
    /entry_1/timestamp                   (N,)         float64, seconds (Unix time)
    /entry_1/parameter_set               (N,)         int32, the live parameter set the hit was found with
    /entry_1/instrument_1/source_1/photon_energy_eV   (N,) float64, eV
    /entry_1/instrument_1/source_1/energy             (N,) float64, J (the CXI standard's unit)
    /entry_1/instrument_1/detector_1/distance         (N,) float64, m

Peak positions are raw-frame pixel indices, the centre of a pixel at an integer
(CrystFEL's default half-pixel shift for CXI peak lists expects exactly that).
How frames are stored (whole photons, invalid pixels, the mask) is
:mod:`monitor.outputs.stored_pixels`.  A geometry reads it with
``data = /entry_1/data_1/data``, ``dim0 = %``, ``mask = /entry_1/data_1/mask``
(CrystFEL 0.10+ takes a 2-D mask for every frame of a 3-D dataset),
``mask_good = 0x0``, ``mask_bad = 0x1``, ``flag_lessthan = -32767``,
``peak_list = /entry_1/result_1`` and ``peak_list_type = cxi``
(:mod:`monitor.outputs.crystfel` writes one per run).

Format: the file's format version is bounded to ``(v108, v110)``: h5py's own
HDF5 (2.0) would otherwise write chunked datasets with a layout message HDF5
1.10 and 1.14 cannot decode.  No SWMR: CrystFEL does not open SWMR files, so a
file is made readable by closing it (:class:`~monitor.outputs.rolling.RollingHitFiles`
closes one every N hits or T seconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from monitor.outputs.compression import chunk_compressor, compression_filter
from monitor.outputs.experiment import Experiment
from monitor.outputs.hdf5_filters import h5py
from monitor.outputs.parameters import Compression
from monitor.outputs.stored_pixels import INVALID_PIXEL, StoredPixels
from monitor.processing.protocol import ProcessedEvent

__all__ = ["CXIFile", "INVALID_PIXEL", "LIBVER", "MASK_INVALID", "PEAK_COLUMNS"]

LIBVER = ("v108", "v110")
"""HDF5 format bounds: every object readable by HDF5 1.8 or 1.10 and later."""

MASK_INVALID = 1
"""Mask bit: the pixel has no valid reading in any hit of the file (bad in the calibration)."""

ELECTRON_VOLT_J = 1.602176634e-19

PEAK_COLUMNS: dict[str, str] = {
    "peakXPosRaw": "peak_x",
    "peakYPosRaw": "peak_y",
    "peakTotalIntensity": "peak_intensity",
    "peakSNR": "peak_snr",
}
"""CXI peak-list dataset -> the pipeline's result array it holds."""

_PEAK_ROWS_PER_CHUNK = 16
_ROWS_PER_CHUNK = 1024


class CXIFile:
    """An open CXI file that hits are appended to, one frame per chunk, and its mask."""

    def __init__(
        self,
        path: Path,
        *,
        frame_shape: tuple[int, ...],
        frame_dtype: np.dtype,
        max_peaks: int,
        compression: Compression,
        experiment: Experiment,
    ) -> None:
        self.path = path
        self.frame_shape = tuple(frame_shape)
        self.n_hits = 0
        self._max_peaks = max_peaks
        self._experiment = experiment
        self._pixels = StoredPixels(self.frame_shape, frame_dtype)
        self._compress = chunk_compressor(compression)
        self._file = h5py.File(path, "w", libver=LIBVER)
        try:
            self._create(frame_dtype, compression_filter(compression))
        except BaseException:
            self._file.close()
            raise

    def _create(self, frame_dtype: np.dtype, filters: dict[str, Any]) -> None:
        self._file["cxi_version"] = 150
        frames = self._file.create_dataset(
            "entry_1/data_1/data", dtype=frame_dtype, shape=(0, *self.frame_shape), maxshape=(None, *self.frame_shape),
            chunks=(1, *self.frame_shape), **filters)
        frames.attrs["units"] = "photon"
        frames.attrs["invalid_pixel"] = INVALID_PIXEL
        self._mask = self._file.create_dataset("entry_1/data_1/mask", shape=self.frame_shape, dtype=np.uint16,
                                               chunks=self.frame_shape, **filters)
        self._mask.attrs["good_bits"] = np.uint16(0)
        self._mask.attrs["bad_bits"] = np.uint16(MASK_INVALID)
        self._mask.attrs["description"] = (f"0: good; bit 0: no valid reading in any frame of this file (bad pixel); "
                                           f"a pixel without a valid reading in some frames only (lost packet) "
                                           f"reads {INVALID_PIXEL} in those")
        peaks = {
            name: self._file.create_dataset(
                f"entry_1/result_1/{name}", shape=(0, self._max_peaks), maxshape=(None, self._max_peaks),
                chunks=(_PEAK_ROWS_PER_CHUNK, self._max_peaks), dtype=np.float32, **filters,
            )
            for name in PEAK_COLUMNS
        }
        for name in ("peakXPosRaw", "peakYPosRaw"):
            peaks[name].attrs["units"] = "pixel"
        peaks["peakTotalIntensity"].attrs["units"] = "photon"
        experiment = self._experiment
        self._frames = _Rows(frames)
        self._n_peaks = _Rows(self._growing("entry_1/result_1/nPeaks", np.int32))
        self._peaks = {name: _Rows(dataset) for name, dataset in peaks.items()}
        self._event_ids = _Rows(self._growing("entry_1/event_id", np.int64))
        self._timestamps = _Rows(self._growing("entry_1/timestamp", np.float64, units="s"))
        self._parameter_sets = _Rows(self._growing("entry_1/parameter_set", np.int32))
        self._constants = [  # the same in every row: HDF5's fill value writes them as the datasets grow
            _Rows(self._growing("entry_1/instrument_1/source_1/photon_energy_eV", np.float64, units="eV",
                                fill=experiment.photon_energy_ev)),
            _Rows(self._growing("entry_1/instrument_1/source_1/energy", np.float64, units="J",
                                fill=experiment.photon_energy_ev * ELECTRON_VOLT_J)),
            _Rows(self._growing("entry_1/instrument_1/detector_1/distance", np.float64, units="m",
                                fill=experiment.detector_distance_m)),
        ]
        self._peak_row = np.zeros((1, self._max_peaks), dtype=np.float32)

    def _growing(self, name: str, dtype: type, *, units: str | None = None, fill: float = 0) -> h5py.Dataset:
        dataset = self._file.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(_ROWS_PER_CHUNK,), dtype=dtype,
                                            fillvalue=fill)
        if units:
            dataset.attrs["units"] = units
        return dataset

    def append(self, hit: ProcessedEvent) -> None:
        """Append one hit; raises :class:`ValueError` if its frame does not fit this file.

        The hit's ``valid`` array (True = valid reading), when it carries
        one, says which pixels are stored as invalid; without it every pixel is valid.
        """
        frame, valid = hit.arrays["frame"], hit.arrays.get("valid")
        if frame.shape != self.frame_shape or (valid is not None and valid.shape != self.frame_shape):
            raise ValueError(f"{self.path.name}: frame of shape {frame.shape} (mask "
                             f"{None if valid is None else valid.shape}), file holds {self.frame_shape}")
        if self._pixels.store(frame, valid):
            self._mask[...] = self._pixels.masked * np.uint16(MASK_INVALID)
        row = self.n_hits
        for rows in (self._frames, self._n_peaks, *self._peaks.values(), self._event_ids, self._timestamps,
                     self._parameter_sets, *self._constants):
            rows.grow(row + 1)
        if self._compress is None:
            self._frames.write(row, self._pixels.pixels[np.newaxis])
        else:  # the filter's bytes made here: no copy into HDF5's chunk cache
            self._frames.write_chunk(row, self._compress(self._pixels.pixels))
        n_peaks = min(len(hit.arrays.get("peak_x", ())), self._max_peaks)
        self._n_peaks.write(row, np.array([n_peaks], dtype=np.int32))
        for name, key in PEAK_COLUMNS.items():
            self._peak_row[0, n_peaks:] = 0
            if key in hit.arrays:
                self._peak_row[0, :n_peaks] = hit.arrays[key][:n_peaks]
            self._peaks[name].write(row, self._peak_row)
        self._event_ids.write(row, np.array([hit.values.get("event_id", -1)], dtype=np.int64))
        self._timestamps.write(row, np.array([hit.values.get("timestamp", np.nan)], dtype=np.float64))
        self._parameter_sets.write(row, np.array([hit.values.get("parameter_set", 0)], dtype=np.int32))
        self.n_hits += 1

    def size_bytes(self) -> int:
        """The file's size with every hit so far: flushed (HDF5 places cached chunks in the file only then).

        A caller flushes after every hit anyway, which then has nothing left
        to do.  (The datasets' storage sizes would walk every chunk's index
        entry: a cost growing with the file, 13 ms a hit at 100 hits.)
        """
        self._file.flush()
        return self._file.id.get_filesize()

    def flush(self) -> None:
        """Write the file's metadata as it stands: after a crash the file holds the hits up to here."""
        self._file.flush()

    def close(self) -> None:
        """Close the file: from now on a complete, plain HDF5 file any reader opens."""
        self._file.close()


class _Rows:
    """A dataset that grows by one row a hit, written with h5py's low-level calls.

    ``dataset[row] = value`` costs about 0.1 ms of Python around HDF5 (selection
    objects, shape checks); a hit writes ten rows, so that alone was half the
    2 ms a hit may cost a worker.
    """

    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset
        self._row_shape = dataset.shape[1:]
        self._start = (0,) * len(self._row_shape)
        self._memory = h5py.h5s.create_simple((1, *self._row_shape))

    def grow(self, rows: int) -> None:
        """Extend the dataset to ``rows`` rows (new rows read the fill value until written)."""
        self.dataset.id.set_extent((rows, *self._row_shape))

    def write(self, row: int, value: np.ndarray) -> None:
        """Write ``value`` (C-contiguous, shape ``(1, *row shape)``) as row ``row``; HDF5 converts its dtype."""
        space = self.dataset.id.get_space()
        space.select_hyperslab((row, *self._start), (1, *self._row_shape))
        self.dataset.id.write(self._memory, space, value)

    def write_chunk(self, row: int, compressed: bytes) -> None:
        """Store row ``row``, one chunk, as bytes already compressed the way the dataset's filter would."""
        self.dataset.id.write_direct_chunk((row, *self._start), compressed)
