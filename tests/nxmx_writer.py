"""Test helper: NXmx master and data files of simulated EIGER2 images, laid out as the real writers do.

``links``: DECTRIS' layout (``/entry/data/data_000001`` ... external links to
the data files); ``vds``: one virtual ``/entry/data/data`` over the data
files (Jungfraujoch's).  Images are bitshuffle/LZ4 compressed, like a DCU's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import h5py
import hdf5plugin
import numpy as np

from monitor.stream2.simulator import PIXEL_SIZE_M, SimulatedEiger2, Stream2SimulatorParameters

__all__ = ["write_nxmx"]


def write_nxmx(folder: Path, *, name: str, files: int, images_per_file: int, layout: Literal["links", "vds"],
               detector: str = "500K", seed: int = 0, hit_fraction: float = 0.3) -> tuple[Path, SimulatedEiger2]:
    """Write ``files`` data files and their master; return the master's path and the simulated detector
    (``detector.image(k)`` is image ``k`` of the series: its counts and truth)."""
    eiger = SimulatedEiger2(Stream2SimulatorParameters(detector=detector, dtype="uint16", seed=seed,
                                                       hit_fraction=hit_fraction))
    folder.mkdir(parents=True, exist_ok=True)
    data_files = []
    for k in range(files):
        path = folder / f"{name}_data_{k + 1:06d}.h5"
        stack = np.stack([eiger.image(k * images_per_file + i).counts["threshold_1"] for i in range(images_per_file)])
        with h5py.File(path, "w") as f:
            f.create_dataset("/entry/data/data", data=stack, chunks=(1, *eiger.shape),
                             **hdf5plugin.Bitshuffle(cname="lz4"))
        data_files.append(path)
    master = folder / f"{name}_master.h5"
    with h5py.File(master, "w") as f:
        if layout == "links":
            for k, path in enumerate(data_files):
                f[f"/entry/data/data_{k + 1:06d}"] = h5py.ExternalLink(path.name, "/entry/data/data")
        else:
            virtual = h5py.VirtualLayout(shape=(files * images_per_file, *eiger.shape), dtype=np.uint16)
            for k, path in enumerate(data_files):
                source = h5py.VirtualSource(path.name, "/entry/data/data", shape=(images_per_file, *eiger.shape))
                virtual[k * images_per_file : (k + 1) * images_per_file] = source
            f.create_virtual_dataset("/entry/data/data", virtual)
        detector_group = f.create_group("/entry/instrument/detector")
        detector_group["beam_center_x"], detector_group["beam_center_y"] = eiger.beam_center_px
        detector_group["x_pixel_size"] = detector_group["y_pixel_size"] = PIXEL_SIZE_M
        detector_group["detector_distance"] = eiger.parameters.distance_m
        detector_group["saturation_value"] = eiger.saturation
        detector_group["description"] = f"Dectris EIGER2 Si {detector} (simulated)"
        detector_group.create_dataset("pixel_mask", data=eiger.mask, **hdf5plugin.Bitshuffle(cname="lz4"))
        f["/entry/instrument/beam/incident_wavelength"] = 12398.419843320026 / eiger.parameters.photon_energy_ev
    return master, eiger
