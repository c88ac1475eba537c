"""Data event handler for the monitor's own CXI hit files: a run's hits, searched again.

``source`` names hit files (a glob: ``output/run-*/run-*-hits-*.cxi``); an event
is one stored hit, with the event id it had in its run.  Name the run's
``detector.geom`` as ``processing_layer.geometry_file`` and use
``calibration: photon_counting``: stored frames are photons already, and the
file's mask and its invalid-pixel value mark what is not data.  How the replay
goes: :mod:`handlers.recorded_files`.
"""

from __future__ import annotations

from handlers.recorded_files import RecordedFilesHandler
from sources.cxi_hits import CxiHitFile

__all__ = ["CxiHitFileDataEventHandler"]


class CxiHitFileDataEventHandler(RecordedFilesHandler):
    """Data event handler for CXI hit files (interface: handlers.protocol)."""

    reader = CxiHitFile
