"""Data event handler for recorded NXmx files: last night's EIGER2 or Jungfraujoch data, replayed.

``source`` names master files (a path or a glob, e.g. ``/data/lyso/*_master.h5``:
one series each, in name order); an event is one image, its id its index over
all the files.  How the replay goes: :mod:`handlers.recorded_files`; how a
master file is read (links, virtual datasets, filters): :mod:`sources.nxmx`.
"""

from __future__ import annotations

from handlers.recorded_files import RecordedFilesHandler
from sources.nxmx import NxmxMaster

__all__ = ["NxmxFileDataEventHandler"]


class NxmxFileDataEventHandler(RecordedFilesHandler):
    """Data event handler for NXmx master files (interface: handlers.protocol)."""

    reader = NxmxMaster
