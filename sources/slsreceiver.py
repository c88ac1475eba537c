"""PSI slsReceiver's raw HDF5 files of a JUNGFRAU: one file per module (or half-module), read as whole frames.

slsReceiver writes, for run ``RUN`` and file number ``N``, one file per
receiver: ``PREFIX_d0_fN_RUN.h5``, ``PREFIX_d1_fN_RUN.h5``, ... (``d``: the
module, or half-module, from the top), each with the raw ``data`` (frames x
rows x 1024, uint16: gain bits and ADC) and one dataset per header field
(``frame number``, ``timestamp``, ...).  A frame of the files becomes the same
:class:`~monitor.wire.SyncFrame` the stream brings, its module images views
of what HDF5 read, so the JUNGFRAU data sources and calibration apply as they
are: a recorded run is calibrated exactly as a live one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from monitor.errors import ConfigurationError, DataExtractionError
from monitor.wire import JUNGFRAU, ModuleImage, SyncFrame

__all__ = ["SlsReceiverFrames"]

_FIRST_MODULE = re.compile(r"^(?P<prefix>.+)_d0_f(?P<file>\d+)_(?P<run>\d+)\.h5$")


class SlsReceiverFrames:
    """One file number of a run: its module files side by side (a :class:`handlers.recorded_files.RecordedFile`)."""

    def __init__(self, path: Path, series_id: int) -> None:
        match = _FIRST_MODULE.match(path.name)
        if match is None:
            raise ConfigurationError(f"{path}: name the first module's files, PREFIX_d0_fN_RUN.h5 (slsReceiver's)")
        self.path = path
        self._files: list[h5py.File] = []
        module = 0
        while (sibling := path.with_name(f"{match['prefix']}_d{module}_f{match['file']}_{match['run']}.h5")).is_file():
            try:
                self._files.append(h5py.File(sibling, "r"))
                data = self._files[-1]["data"]
            except (OSError, KeyError) as error:
                raise ConfigurationError(f"{sibling}: not an slsReceiver data file ({error})") from None
            if data.ndim != 3 or data.dtype != np.uint16 or data.shape[1:] != self._files[0]["data"].shape[1:]:
                raise ConfigurationError(f"{sibling}: data is {data.dtype} {list(data.shape)}, not the first "
                                         "module's frames x rows x 1024 uint16")
            module += 1
        counts = {f["data"].shape[0] for f in self._files}
        if len(counts) != 1:
            raise ConfigurationError(f"{path}: its module files hold different numbers of frames {sorted(counts)}")
        first = self._files[0]
        self._numbers = first["frame number"][()] if "frame number" in first else np.arange(1, counts.pop() + 1)
        self._timestamps = first["timestamp"][()] if "timestamp" in first else np.zeros(len(self._numbers))

    @property
    def frames(self) -> int:
        return int(self._files[0]["data"].shape[0])

    def event_data(self, frame: int, index: int) -> dict[str, Any]:
        """The frame as the stream brings it: one module image per file, placed by its ``d`` number."""
        number = int(self._numbers[frame])
        header = {"detType": JUNGFRAU, "timestamp": int(self._timestamps[frame]), "frameNumber": number}
        images = []
        for module, file in enumerate(self._files):
            try:
                pixels = file["data"][frame]
            except (OSError, ValueError) as error:
                raise DataExtractionError(f"{file.filename}//{frame}: cannot read ({error})") from None
            images.append(ModuleImage(header=header, data=pixels, shape=pixels.shape, row=module, column=0,
                                      frame_number=number))
        return {"frame": SyncFrame(number, images)}

    def close(self) -> None:
        for file in self._files:
            file.close()
