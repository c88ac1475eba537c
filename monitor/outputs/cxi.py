"""One CXI file of hits, in the HDF5 layout CrystFEL reads, in a format HDF5 1.10 opens.

Layout (N hits, frames H x W, P = ``max_peaks`` columns)::

    /cxi_version                                      150
    /entry_1/data_1/data                 (N, H, W)    float32 photons (int32: rounded), units "photon"
    /entry_1/data_1/mask                 (N, H, W)    uint16, 0 = good, bit 0 (MASK_INVALID) = no valid reading
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
A geometry reads it with ``data = /entry_1/data_1/data``, ``dim0 = %``,
``mask = /entry_1/data_1/mask``, ``mask_good = 0x0``, ``mask_bad = 0x1``,
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

from monitor.outputs.experiment import Experiment
from monitor.outputs.hdf5_filters import h5py, hdf5plugin
from monitor.outputs.parameters import Compression
from monitor.processing.protocol import ProcessedEvent

__all__ = ["CXIFile", "LIBVER", "MASK_INVALID", "PEAK_COLUMNS", "compression_filter"]

LIBVER = ("v108", "v110")
"""HDF5 format bounds: every object readable by HDF5 1.8 or 1.10 and later."""

MASK_INVALID = 1
"""Mask bit: the pixel has no valid reading in this frame (bad in the calibration, lost packet)."""

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


def compression_filter(compression: Compression) -> dict[str, Any]:
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
        experiment: Experiment,
    ) -> None:
        self.path = path
        self.frame_shape = tuple(frame_shape)
        self.n_hits = 0
        self._max_peaks = max_peaks
        self._experiment = experiment
        self._file = h5py.File(path, "w", libver=LIBVER)
        try:
            self._create(frame_dtype, compression_filter(compression))
        except BaseException:
            self._file.close()
            raise

    def _create(self, frame_dtype: np.dtype, filters: dict[str, Any]) -> None:
        self._file["cxi_version"] = 150
        frames = dict(shape=(0, *self.frame_shape), maxshape=(None, *self.frame_shape),
                      chunks=(1, *self.frame_shape), **filters)
        self._frames = self._file.create_dataset("entry_1/data_1/data", dtype=frame_dtype, **frames)
        self._frames.attrs["units"] = "photon"
        self._mask = self._file.create_dataset("entry_1/data_1/mask", dtype=np.uint16, **frames)
        self._mask.attrs["good_bits"] = np.uint16(0)
        self._mask.attrs["bad_bits"] = np.uint16(MASK_INVALID)
        self._mask.attrs["description"] = "0: good; bit 0: no valid reading in this frame (bad pixel, lost packet)"
        self._n_peaks = self._growing("entry_1/result_1/nPeaks", np.int32)
        self._peaks = {
            name: self._file.create_dataset(
                f"entry_1/result_1/{name}", shape=(0, self._max_peaks), maxshape=(None, self._max_peaks),
                chunks=(_PEAK_ROWS_PER_CHUNK, self._max_peaks), dtype=np.float32, **filters,
            )
            for name in PEAK_COLUMNS
        }
        for name in ("peakXPosRaw", "peakYPosRaw"):
            self._peaks[name].attrs["units"] = "pixel"
        self._peaks["peakTotalIntensity"].attrs["units"] = "photon"
        self._event_ids = self._growing("entry_1/event_id", np.int64)
        self._timestamps = self._growing("entry_1/timestamp", np.float64, units="s")
        self._parameter_sets = self._growing("entry_1/parameter_set", np.int32)
        self._photon_energy = self._growing("entry_1/instrument_1/source_1/photon_energy_eV", np.float64, units="eV")
        self._energy = self._growing("entry_1/instrument_1/source_1/energy", np.float64, units="J")
        self._distance = self._growing("entry_1/instrument_1/detector_1/distance", np.float64, units="m")

    def _growing(self, name: str, dtype: type, *, units: str | None = None) -> h5py.Dataset:
        dataset = self._file.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(_ROWS_PER_CHUNK,), dtype=dtype)
        if units:
            dataset.attrs["units"] = units
        return dataset

    def append(self, hit: ProcessedEvent) -> None:
        """Append one hit; raises :class:`ValueError` if its frame does not fit this file.

        The mask is the hit's ``valid`` array (True = valid reading) when it
        carries one; without it every pixel is marked good.
        """
        frame = hit.arrays["frame"]
        if frame.shape != self.frame_shape:
            raise ValueError(f"{self.path.name}: frame of shape {frame.shape}, file holds {self.frame_shape}")
        valid = hit.arrays.get("valid")
        if valid is not None and valid.shape != self.frame_shape:
            raise ValueError(f"{self.path.name}: mask of shape {valid.shape}, file holds {self.frame_shape}")
        row = self.n_hits
        datasets = (self._frames, self._mask, self._n_peaks, *self._peaks.values(), self._event_ids,
                    self._timestamps, self._parameter_sets, self._photon_energy, self._energy, self._distance)
        for dataset in datasets:
            dataset.resize(row + 1, axis=0)
        if self._frames.dtype.kind in "iu" and frame.dtype.kind == "f":
            frame = np.rint(frame).astype(self._frames.dtype)  # whole photons (HDF5 would truncate)
        self._frames[row] = frame
        self._mask[row] = 0 if valid is None else np.where(valid, 0, MASK_INVALID).astype(np.uint16)
        n_peaks = min(len(hit.arrays.get("peak_x", ())), self._max_peaks)
        self._n_peaks[row] = n_peaks
        for name, key in PEAK_COLUMNS.items():
            padded = np.zeros(self._max_peaks, dtype=np.float32)
            if key in hit.arrays:
                padded[:n_peaks] = hit.arrays[key][:n_peaks]
            self._peaks[name][row] = padded
        self._event_ids[row] = int(hit.values.get("event_id", -1))
        self._timestamps[row] = float(hit.values.get("timestamp", np.nan))
        self._parameter_sets[row] = int(hit.values.get("parameter_set", 0))
        self._photon_energy[row] = self._experiment.photon_energy_ev
        self._energy[row] = self._experiment.photon_energy_ev * ELECTRON_VOLT_J
        self._distance[row] = self._experiment.detector_distance_m
        self.n_hits += 1

    def size_bytes(self) -> int:
        """Bytes of frames and masks stored so far, compressed: nearly all of the file.

        HDF5's own file size lags behind the chunks it still caches; the
        datasets' storage sizes count every appended frame at once.
        """
        return self._frames.id.get_storage_size() + self._mask.id.get_storage_size()

    def flush(self) -> None:
        """Write the file's metadata as it stands: after a crash the file holds the hits up to here."""
        self._file.flush()

    def close(self) -> None:
        """Close the file: from now on a complete, plain HDF5 file any reader opens."""
        self._file.close()
