"""Data event handler for a JUNGFRAU run recorded by PSI's slsReceiver (raw HDF5, one file per module).

``source`` names the first module's files (a glob: ``/data/run_d0_f*_0.h5``); the
other modules' files are found beside them.  An event is one frame, its id the
detector's frame number; the frames go through the JUNGFRAU data sources and
the pipeline's calibration (``processing_layer.calibration``: PSI's gain and
pedestal files) exactly as on the stream.  How the replay goes:
:mod:`handlers.recorded_files`; how the files are read: :mod:`sources.slsreceiver`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from handlers.parameters import HandlerParameters
from handlers.recorded_files import RecordedFilesHandler
from sources.jungfrau1m import DATA_SOURCES
from sources.slsreceiver import SlsReceiverFrames

__all__ = ["SlsReceiverFileDataEventHandler", "SlsReceiverFileParameters"]


class SlsReceiverFileParameters(HandlerParameters):
    """The ``data_retrieval_layer`` section for this handler."""

    stop_after_acquisition: bool = True
    """Files end by themselves; kept for the MPI layer, which reads it of every handler."""
    required_data: list[Literal["detector_data", "detector_modules", "timestamp", "event_id"]] = Field(
        default_factory=lambda: ["detector_modules", "timestamp", "event_id"], min_length=1
    )


class SlsReceiverFileDataEventHandler(RecordedFilesHandler):
    """Data event handler for slsReceiver's raw HDF5 files of a JUNGFRAU 1M (interface: handlers.protocol)."""

    Parameters = SlsReceiverFileParameters
    reader = SlsReceiverFrames
    data_sources = DATA_SOURCES
