"""One whole run under Open MPI's mpirun, where this Python's mpi4py is built against Open MPI.

``make test-openmpi`` builds such an mpi4py (Debian's openmpi-bin and
libopenmpi-dev) in a virtual environment of its own and runs this, the MPI
layer's tests and the SLURM tests there.  In the default environment mpi4py runs
on the mpich wheel and test_monitor_runs.py covers the same under MPICH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT, assert_balanced, write_config

pytestmark = pytest.mark.slow


def open_mpi_mpirun() -> list[str]:
    """Open MPI's mpirun as root on a small machine would need it: more ranks than cores, root allowed."""
    report = subprocess.run([sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True,
                            check=True, cwd=ROOT, timeout=60).stdout
    if " on Open MPI " not in report:
        pytest.skip("mpi4py runs on MPICH here; `make test-openmpi` runs this with an mpi4py built for Open MPI")
    mpirun = shutil.which("mpirun.openmpi") or shutil.which("mpirun")
    assert mpirun, "Open MPI's mpirun is not on PATH"
    return [mpirun, "--oversubscribe", *(["--allow-run-as-root"] if os.geteuid() == 0 else [])]


def test_a_finite_acquisition_under_open_mpis_mpirun_is_processed_whole(tmp_path):
    mpirun = open_mpi_mpirun()
    config = write_config(tmp_path, {"data_retrieval_layer": {"collector_rank": "last", "simulator": {
        "frames": 400, "rate_hz": 1000}}, "processing_layer": {"pipeline": "FrameStatisticsPipeline"}})
    summary_file = tmp_path / "summary.json"
    done = subprocess.run([*mpirun, "-n", "4", sys.executable, "-m", "monitor", str(config), "--summary-json",
                           str(summary_file)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert_balanced(summary, sent=400)
    assert summary["events_processed"] == 400 and summary["events_failed"] == 0
    assert summary["ranks"] == 4 and summary["collector_rank"] == 3
    assert sum(row["events"] for row in summary["per_rank"] if row["role"] == "worker") == 400
    assert summary["stop_reason"] == "end of acquisition"
