"""Workers write their own hits under real MPI: the run folder reaches every rank, each rank gets its files.

Run with ``mpirun -n N python -m pytest --with-mpi tests/mpi`` (skipped without ``--with-mpi``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

from monitor.outputs.experiment import experiment_from_document
from monitor.outputs.hdf5_filters import h5py
from monitor.outputs.parameters import HitFileParameters
from monitor.outputs.synthetic import synthetic_event
from monitor.outputs.worker_hits import WorkerHitWriter, share_run_dir

comm = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=2)
def test_the_collectors_run_folder_reaches_every_rank_and_each_worker_writes_there(tmp_path_factory):
    collector = comm.size - 1
    mine = tmp_path_factory.mktemp("run") if comm.rank == collector else None
    run_dir = share_run_dir(comm, collector, mine)
    assert run_dir is not None and run_dir == Path(comm.bcast(str(mine), root=collector))
    if comm.rank != collector:
        writer = WorkerHitWriter(run_dir, rank=comm.rank, parameters=HitFileParameters(),
                                 experiment=experiment_from_document(None))
        sent = writer.take(synthetic_event(100 + comm.rank, is_hit=True, shape=(32, 48)))
        assert writer.close()["hits_written"] == 1
        assert sent.values["hit_file"] == f"{run_dir.name}-hits-r{comm.rank:02d}-0000.cxi"
    comm.Barrier()
    if comm.rank == collector:
        for rank in range(comm.size - 1):
            with h5py.File(run_dir / f"{run_dir.name}-hits-r{rank:02d}-0000.cxi", "r") as cxi:
                assert cxi["entry_1/event_id"][()].tolist() == [100 + rank]
                assert cxi["entry_1/data_1/data"].dtype == np.int16  # whole photons
                assert cxi["entry_1/data_1/mask"].shape == (32, 48)  # once a file


@pytest.mark.mpi(min_size=2)
def test_no_run_folder_from_the_collector_means_none_on_every_rank():
    assert share_run_dir(comm, 0, None) is None
