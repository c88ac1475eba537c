"""The monitor's own CXI hit files, read back: each stored hit a frame, with its event id and mask.

Layout: :mod:`monitor.outputs.cxi` (frames in photons under
``/entry_1/data_1/data``, :data:`~monitor.outputs.stored_pixels.INVALID_PIXEL`
where a hit had no valid reading, the file's mask, the event ids, distance
and photon energy per hit).  The pixel geometry is not in the file: it is the
run's ``detector.geom`` beside it, which ``processing_layer.geometry_file``
names as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters hit files may be compressed with)
import numpy as np

from monitor.errors import ConfigurationError, DataExtractionError
from monitor.outputs.stored_pixels import INVALID_PIXEL
from monitor.stream2.messages import SeriesStart
from sources.stream2 import SeriesFrames

__all__ = ["CxiHitFile"]


def _first(file: h5py.File, path: str) -> float | None:
    item = file.get(path)
    return float(item[0]) if isinstance(item, h5py.Dataset) and item.shape and item.shape[0] else None


class CxiHitFile:
    """One open hit file (a :class:`handlers.recorded_files.RecordedFile`)."""

    def __init__(self, path: Path, series_id: int) -> None:
        self.path = path
        try:
            self._file = h5py.File(path, "r")
            self._data = self._file["/entry_1/data_1/data"]
            self._event_ids = self._file["/entry_1/event_id"][()]
            mask = self._file["/entry_1/data_1/mask"][()]
        except (OSError, KeyError) as error:
            raise ConfigurationError(f"{path}: not a hit file of this monitor ({error})") from None
        energy = _first(self._file, "/entry_1/instrument_1/source_1/photon_energy_eV")
        self.start = SeriesStart(
            series_id=series_id, series_unique_id=path.name, shape=tuple(self._data.shape[1:]),
            dtype=self._data.dtype, channels=("default",), pixel_size_m=None, beam_center_px=None,
            distance_m=_first(self._file, "/entry_1/instrument_1/detector_1/distance"), photon_energy_ev=energy,
            saturation_value=None, number_of_images=self.frames, detector_description="hits of a monitor run",
            pixel_mask={"default": np.asarray(mask, dtype=np.uint32)}, no_data_value=INVALID_PIXEL,
        )
        self._series = SeriesFrames.of(self.start, None)

    @property
    def frames(self) -> int:
        return int(self._data.shape[0])

    def image(self, frame: int) -> np.ndarray:
        try:
            return self._data[frame]
        except (OSError, ValueError, IndexError) as error:
            raise DataExtractionError(f"{self.path}//{frame}: cannot read ({error})") from None

    def event_data(self, frame: int, index: int) -> dict[str, Any]:
        """The hit as a counting frame, with the id it had in its run (a replay keeps it)."""
        return self._series.event(int(self._event_ids[frame]), self.image(frame))

    def close(self) -> None:
        self._file.close()
