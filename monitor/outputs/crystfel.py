"""What sits beside a run's hits so CrystFEL works on them with no edits: geometry, file list, notes.

In the run folder:

* ``detector.geom``: the geometry the run used (its panels, ``res``), with the
  run's photon energy and detector distance and the lines that match the CXI
  hit files (``data``, ``dim0``, ``mask``, ``peak_list``, ...), so that
  ``indexamajig -i RUN/files.lst -g RUN/detector.geom --peaks=cxi -o RUN.stream``
  reads every hit and exactly the file's peaks;
* ``files.lst``: the closed hit files, one absolute path a line, rewritten
  (atomically) each time a file closes;
* ``live-feed.geom`` (with the live feed on): the same detector for
  ``indexamajig --zmq-input ... --data-format=msgpack``;
* ``HIT-FILES.txt``: how to read the files (``HDF5_PLUGIN_PATH`` for the
  compression filter) and how to recover the file in flight after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from monitor.atomic_files import write_text_atomically
from monitor.outputs.cxi import MASK_INVALID
from monitor.outputs.stored_pixels import FLAG_LESSTHAN
from monitor.outputs.experiment import Experiment
from monitor.outputs.hdf5_filters import hdf5plugin
from sources.geometry import with_global_lines

__all__ = [
    "FILE_LIST",
    "GEOMETRY",
    "LIVE_FEED_GEOMETRY",
    "NOTES",
    "hit_file_geometry",
    "live_feed_geometry",
    "write_file_list",
    "write_notes",
]

GEOMETRY = "detector.geom"
LIVE_FEED_GEOMETRY = "live-feed.geom"
FILE_LIST = "files.lst"
NOTES = "HIT-FILES.txt"


def _experiment_lines(experiment: Experiment) -> dict[str, str]:
    return {
        "photon_energy": f"{experiment.photon_energy_ev:.6g}  ; eV",  # units as comments: cfelpyutils reads no units
        "clen": f"{experiment.detector_distance_m:.6g}  ; m",
        "adu_per_photon": "1",
    }


def hit_file_geometry(experiment: Experiment) -> str:
    """The run's geometry for its CXI hit files.

    The files' mask already holds the calibration's bad pixels, so a
    ``mask_file`` of the source geometry is dropped, not read on top; a pixel
    invalid in one frame only reads :data:`~monitor.outputs.stored_pixels.INVALID_PIXEL`,
    which ``flag_lessthan`` marks.
    """
    lines = {
        **_experiment_lines(experiment),
        "data": "/entry_1/data_1/data",
        "dim0": "%",
        "dim1": "ss",
        "dim2": "fs",
        "mask": "/entry_1/data_1/mask",
        "mask_good": "0x0",
        "mask_bad": f"0x{MASK_INVALID:x}",
        "flag_lessthan": f"{FLAG_LESSTHAN}",
        "peak_list": "/entry_1/result_1",
        "peak_list_type": "cxi",
    }
    return with_global_lines(experiment.geometry_path.read_text(), lines, drop=("mask_file",),
                             comment="written by the monitor for this run's CXI hit files")


_FILE_ONLY_KEYS = ("dim0", "dim1", "dim2", "mask", "mask_good", "mask_bad", "mask_file", "flag_lessthan",
                   "peak_list_type")
"""Lines a MsgPack geometry must not have: CrystFEL takes one 2-D array, bad pixels as NaN."""


def live_feed_geometry(experiment: Experiment) -> str:
    """The run's geometry for the live feed's MsgPack maps (one 2-D frame, no ``dim`` or mask lines)."""
    lines = {
        "photon_energy": "beam_energy eV",
        "clen": "detector_distance m",
        "adu_per_photon": "1",
        "data": "data",
        "peak_list": "peak_list",
    }
    return with_global_lines(experiment.geometry_path.read_text(), lines, drop=_FILE_ONLY_KEYS,
                             comment="written by the monitor for its live feed (MsgPack maps)")


def write_file_list(run_dir: Path, names: Iterable[str]) -> Path:
    """``files.lst`` with the named hit files of ``run_dir`` (absolute paths, sorted)."""
    path = run_dir / FILE_LIST
    write_text_atomically(path, "".join(f"{(run_dir / name).resolve()}\n" for name in sorted(set(names))))
    return path


def write_notes(run_dir: Path, *, compression: str) -> Path:
    """``HIT-FILES.txt``: the commands that read this run's hits."""
    plugin = (f"The frames are compressed with {compression} (an HDF5 filter plugin). Tools built on the\n"
              f"system's HDF5 (h5dump, h5ls, CrystFEL) find it with\n"
              f"    export HDF5_PLUGIN_PATH={hdf5plugin.PLUGIN_PATH}\n"
              if compression != "none" else "The frames are not compressed: no filter plugin is needed.\n")
    text = (
        f"Hit files of {run_dir.name}, CXI layout (HDF5 1.8/1.10 format: any HDF5 1.10+ reader opens them).\n\n"
        f"{plugin}\n"
        f"Index them with CrystFEL (0.10 or later), from any folder:\n"
        f"    indexamajig -i {run_dir.resolve() / FILE_LIST} -g {run_dir.resolve() / GEOMETRY} --peaks=cxi "
        f"-o {run_dir.name}.stream -j 4\n\n"
        f"{FILE_LIST} lists every closed file; each is a complete HDF5 file. A file that is not\n"
        f"listed is still being written, or was when the monitor was killed (SIGKILL, power). It is\n"
        f"flushed after each hit, so h5py and h5dump read it as it is, up to its last hit; only a\n"
        f"kill in the middle of writing a hit can leave it damaged: then try\n"
        f"    h5clear -s FILE        (Debian's hdf5-tools), or set that one file aside.\n"
    )
    path = run_dir / NOTES
    write_text_atomically(path, text)
    return path
