"""h5py with hdf5plugin's compression filters, whatever ``HDF5_PLUGIN_PATH`` says.

Tools built on the system's HDF5 (h5dump, CrystFEL) find the hit files' filter
through ``HDF5_PLUGIN_PATH`` pointing at hdf5plugin's plugin folder, and the
README says to export it.  Inside Python that same setting is harmful: h5py's
own HDF5 would load those plugin libraries from disk, where they bind to the
system's HDF5 1.10, and every compressed write fails ("error during user
callback").  So before hdf5plugin registers its filters in-process, h5py's
plugin search path is emptied: in this process filters come only from
hdf5plugin.  Import h5py and hdf5plugin for the hit files from here.
"""

from __future__ import annotations

import h5py


def _forget_plugin_search_path() -> None:
    while h5py.h5pl.size():
        h5py.h5pl.remove(0)


_forget_plugin_search_path()

import hdf5plugin  # noqa: E402  (after the search path is emptied: it must register its own filters)

__all__ = ["h5py", "hdf5plugin"]
