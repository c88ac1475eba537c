"""The launch check: what srun, Hydra and Open MPI's mpirun export, against the MPI mpi4py runs on.

The environments are those srun 22.05, MPICH's Hydra and Open MPI 4.1's mpirun
gave their tasks on this machine (only the variables the check reads); the
version texts are what the mpich 5.0.2 wheel and Debian's Open MPI 4.1.4 return.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT
from monitor.errors import LaunchError
from monitor.launch import Launch, MpiLibrary, check_after_init, check_before_init

MPICH_WHEEL = MpiLibrary.from_version_text(
    "MPICH Version:      5.0.2\nMPICH Release date: Fri Sep 25 20:45:26 UTC 2026\nMPICH ABI:          18:2:6\n"
    "MPICH Device:       ch4:ucx ofi\nMPICH configure:    --with-device=ch4:ucx,ofi --with-pm=hydra:gforker\n"
    "MPICH CC:           cc\n")
MPICH_WITH_PMIX = MpiLibrary.from_version_text(
    "MPICH Version:      4.2.0\nMPICH configure:    --with-device=ch4:ofi --with-pmix=/usr\n")
OPEN_MPI = MpiLibrary.from_version_text(
    "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022\0")

SRUN = {"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}
SRUN_NONE = SRUN
SRUN_PMI2 = {**SRUN, "SLURM_MPI_TYPE": "pmi2", "PMI_FD": "11", "PMI_RANK": "0", "PMI_SIZE": "4"}
SRUN_PMIX = {**SRUN, "SLURM_MPI_TYPE": "pmix", "PMIX_RANK": "0", "PMIX_NAMESPACE": "slurm.pmix.3.0"}
HYDRA = {"PMI_RANK": "0", "PMI_SIZE": "4", "PMI_FD": "7"}
OPEN_MPI_MPIRUN = {"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "0", "PMIX_RANK": "0"}
BATCH_STEP = {"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_ID": "7"}


def problem(environ: dict[str, str], library: MpiLibrary, size: int) -> str | None:
    """The launch check's line for a task with ``environ`` whose MPI reports ``size`` ranks, or None."""
    launch = Launch.from_environment(environ)
    try:
        check_before_init(launch, library)
        check_after_init(launch, library, size)
    except LaunchError as error:
        return str(error)
    return None


@pytest.mark.parametrize(("environ", "library"), [(SRUN_PMI2, MPICH_WHEEL), (SRUN_PMIX, MPICH_WITH_PMIX),
                                                  (SRUN_PMIX, OPEN_MPI), (HYDRA, MPICH_WHEEL),
                                                  (OPEN_MPI_MPIRUN, OPEN_MPI)])
def test_a_launcher_that_matches_the_mpi_passes(environ, library):
    assert problem(environ, library, size=4) is None


def test_srun_without_a_pmi_names_pmi2_for_mpich_and_the_type_srun_used():
    line = problem(SRUN_NONE, MPICH_WHEEL, size=1)
    assert line == ("srun started 4 tasks but MPI (MPICH 5.0.2) sees each as a job of 1 rank: launcher and MPI do "
                    "not match; run `srun --mpi=pmi2` (the type for MPICH; this srun used --mpi=none), or use an "
                    'mpi4py built for the site\'s MPI (README, "On a cluster")')


def test_srun_with_pmix_stops_mpich_built_without_it_before_mpi_init_aborts():
    with pytest.raises(LaunchError, match=r"srun offers only PMIx, which MPICH 5.0.2 was built without; "
                                          r"run `srun --mpi=pmi2` .*this srun used --mpi=pmix"):
        check_before_init(Launch.from_environment(SRUN_PMIX), MPICH_WHEEL)


def test_srun_without_a_pmi_stops_open_mpi_before_mpi_init_and_names_pmix():
    with pytest.raises(LaunchError, match=r"srun started 4 tasks without a PMI .*run `srun --mpi=pmix`"):
        check_before_init(Launch.from_environment(SRUN_NONE), OPEN_MPI)


def test_open_mpis_mpirun_with_an_mpich_mpi4py_says_to_use_mpichs_mpirun():
    line = problem(OPEN_MPI_MPIRUN, MPICH_WHEEL, size=1)
    assert line is not None and line.startswith("Open MPI's mpirun offers only PMIx, which MPICH 5.0.2 was built")
    assert "start it with the mpirun of MPICH 5.0.2" in line


def test_mpichs_mpirun_with_an_open_mpi_mpi4py_is_found_after_init():
    line = problem(HYDRA, OPEN_MPI, size=1)
    assert line is not None and line.startswith("a PMI launcher started 4 tasks but MPI (Open MPI v4.1.4) sees each")


@pytest.mark.parametrize("environ", [{}, BATCH_STEP])
def test_one_process_with_nothing_saying_more_were_meant_asks_for_two_ranks(environ):
    line = problem(environ, MPICH_WHEEL, size=1)
    assert line == ("the monitor needs at least 2 MPI ranks (one collector, one worker) and runs on 1; start it as "
                    "`mpirun -n 8 python -m monitor CONFIG` or `srun -n 8 --mpi=pmi2 python -m monitor CONFIG`")


@pytest.mark.parametrize(("environ", "prints"), [
    (SRUN_NONE, True), ({**SRUN_NONE, "SLURM_PROCID": "3"}, False), ({**HYDRA, "PMI_RANK": "2"}, False),
    ({**OPEN_MPI_MPIRUN, "OMPI_COMM_WORLD_RANK": "1", "PMIX_RANK": "1"}, False), ({}, True)])
def test_only_the_launchers_task_0_prints(environ, prints):
    assert Launch.from_environment(environ).prints is prints


@pytest.mark.parametrize(("library", "family", "srun_mpi"), [
    (MPICH_WHEEL, "MPICH", "pmi2"), (MPICH_WITH_PMIX, "MPICH", "pmix"), (OPEN_MPI, "Open MPI", "pmix")])
def test_the_version_text_gives_the_family_and_sruns_type(library, family, srun_mpi):
    assert (library.family, library.srun_mpi) == (family, srun_mpi)
    assert OPEN_MPI.name == "Open MPI v4.1.4" and MPICH_WHEEL.name == "MPICH 5.0.2"


def test_version_names_the_mpi_library_and_its_file_without_starting_mpi():
    done = subprocess.run([sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "jungfrau-monitor 0.1.0"
    assert lines[1].startswith("mpi4py ") and (" on MPICH " in lines[1] or " on Open MPI " in lines[1])
    library_file = Path(lines[2].removeprefix("MPI library: "))
    assert library_file.name.startswith("libmpi.so") and library_file.exists()
