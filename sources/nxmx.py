"""NXmx master files as DECTRIS' and Jungfraujoch's writers leave them: images and the experiment.

A master file holds the experiment under ``/entry/instrument`` (beam centre,
pixel size, distance, wavelength, pixel mask, saturation value) and its
images under ``/entry/data``: ``data_000001``, ``data_000002``, ... external
links to the data files (DECTRIS), or one ``data`` dataset, possibly virtual
(Jungfraujoch).  HDF5 follows links and virtual datasets itself; the
bitshuffle/LZ4 (and Zstd) filters come from ``hdf5plugin``.  The experiment
becomes a :class:`~monitor.stream2.messages.SeriesStart`, so recorded images
go through the same data sources and checks as streamed ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle, LZ4 and Zstd filters with HDF5)
import numpy as np

from monitor.errors import ConfigurationError, DataExtractionError
from monitor.stream2.messages import SeriesStart
from sources.stream2 import SeriesFrames

__all__ = ["NxmxMaster"]

_DETECTOR = "/entry/instrument/detector"
_CHANNEL = "default"


def _value(group: h5py.File, path: str) -> float | None:
    """A scalar of the file, or None where it has none."""
    item = group.get(path)
    if not isinstance(item, h5py.Dataset):
        return None
    value = item[()]
    return float(value[0] if np.ndim(value) else value)


class NxmxMaster:
    """One open master file: its image datasets in order and its experiment."""

    def __init__(self, path: Path, series_id: int) -> None:
        self.path = path
        try:
            self._file = h5py.File(path, "r")
            data = self._file["/entry/data"]
            names = sorted(name for name in data if name.startswith("data"))
            self.datasets = [data[name] for name in names if isinstance(data.get(name), h5py.Dataset)]
        except (OSError, KeyError) as error:
            raise ConfigurationError(f"{path}: not an NXmx master file with /entry/data ({error})") from None
        if not self.datasets or any(d.ndim != 3 for d in self.datasets):
            raise ConfigurationError(f"{path}: /entry/data holds no stack of images (or a link to a missing file)")
        self.start = self._experiment(series_id)
        self._series = SeriesFrames.of(self.start, None)

    @property
    def frames(self) -> int:
        return sum(dataset.shape[0] for dataset in self.datasets)

    def event_data(self, frame: int, index: int) -> dict[str, Any]:
        """The image as a counting frame of this master's series; its id is the replay's index (a
        master's images carry no id of their own)."""
        return self._series.event(index, self.image(frame))

    def _experiment(self, series_id: int) -> SeriesStart:
        f = self._file
        first = self.datasets[0]
        wavelength = _value(f, "/entry/instrument/beam/incident_wavelength")
        pixel_size = _value(f, f"{_DETECTOR}/x_pixel_size")
        beam = (_value(f, f"{_DETECTOR}/beam_center_x"), _value(f, f"{_DETECTOR}/beam_center_y"))
        if pixel_size is None or None in beam:
            raise ConfigurationError(f"{self.path}: {_DETECTOR} has no x_pixel_size or beam centre")
        mask = f.get(f"{_DETECTOR}/pixel_mask", f.get(f"{_DETECTOR}/detectorSpecific/pixel_mask"))
        saturation = _value(f, f"{_DETECTOR}/saturation_value")
        description = f.get(f"{_DETECTOR}/description")
        return SeriesStart(
            series_id=series_id, series_unique_id=self.path.name, shape=tuple(first.shape[1:]), dtype=first.dtype,
            channels=(_CHANNEL,), pixel_size_m=pixel_size, beam_center_px=beam,
            distance_m=_value(f, f"{_DETECTOR}/detector_distance"),
            photon_energy_ev=12398.419843320026 / wavelength if wavelength else None,
            saturation_value=None if saturation is None else int(saturation), number_of_images=self.frames,
            detector_description=description.asstr()[()] if isinstance(description, h5py.Dataset) else "",
            pixel_mask={} if mask is None else {_CHANNEL: np.asarray(mask[()], dtype=np.uint32)},
        )

    def image(self, frame: int) -> np.ndarray:
        """Frame ``frame`` of the master's images, across its datasets (decompressed by HDF5)."""
        local = frame
        for dataset in self.datasets:
            if local < dataset.shape[0]:
                try:
                    return dataset[local]
                except (OSError, ValueError) as error:
                    raise DataExtractionError(f"{self.path}//{frame}: cannot read ({error})") from None
            local -= dataset.shape[0]
        raise DataExtractionError(f"{self.path}: no frame {frame}")

    def close(self) -> None:
        self._file.close()
