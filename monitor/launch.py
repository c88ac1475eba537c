"""Is this process one of the N ranks it was meant to be?  MPI started with that question answered.

A launcher and an MPI library that do not speak the same process-management
interface (PMI) do not fail loudly: each of srun's N tasks initializes MPI on
its own and believes it is "rank 0 of 1", or the library aborts with a stack of
internal errors on every task.  What the launcher meant is in the environment
(srun, PMI, PMIx and Open MPI's mpirun each export the task count or the task's
rank), and what the library speaks is in its version text, which MPI answers
before it is initialized.  :func:`start_mpi` compares the two, before and right
after ``MPI_Init``, and turns a mismatch into one :class:`LaunchError` naming
the fix; only the launcher's task 0 should print it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from monitor.errors import LaunchError

__all__ = ["Launch", "MpiLibrary", "check_before_init", "check_after_init", "start_mpi", "version_report"]

CLUSTER_HELP = 'README, "On a cluster"'


@dataclass(frozen=True)
class Launch:
    """How the environment says this process was started; ``tasks`` is None where it does not say."""

    launcher: str
    """"srun", "Open MPI's mpirun", "a PMI launcher" (MPICH's mpirun) or "" (none)."""
    tasks: int | None
    task: int
    """This process's place among the tasks as the launcher numbered them (0 where unknown)."""
    srun_mpi: str | None
    """srun's --mpi type, where srun says (it exports SLURM_MPI_TYPE unless the type is none)."""
    pmi: bool
    """The launcher offers PMI-1 or PMI-2 (PMI_RANK or PMI_FD is set)."""
    pmix: bool
    """The launcher offers PMIx (PMIX_RANK is set)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Launch:
        """Read the variables Open MPI's mpirun, srun and PMI-1/2 or PMIx servers export to each task.

        Open MPI's mpirun and MPICH's (a PMI launcher) start their daemons with srun inside an
        allocation, so their own variables count first; srun's PMI-2 sets PMI_SIZE too.
        """
        pmi = "PMI_RANK" in environ or "PMI_FD" in environ
        pmix = "PMIX_RANK" in environ
        srun_mpi = environ.get("SLURM_MPI_TYPE")
        by_srun = not pmi or srun_mpi == "pmi2"  # else MPICH's mpirun, its proxies started by srun
        candidates = [("Open MPI's mpirun", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
                      *([("srun", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID")] if by_srun else []),
                      ("a PMI launcher", "PMI_SIZE", "PMI_RANK")]
        for launcher, size_key, rank_key in candidates:
            tasks = _integer(environ.get(size_key))
            if tasks is not None:
                return cls(launcher=launcher, tasks=tasks, task=_integer(environ.get(rank_key)) or 0,
                           srun_mpi=srun_mpi if launcher == "srun" else None, pmi=pmi, pmix=pmix)
        return cls(launcher="", tasks=None, task=_integer(environ.get("PMIX_RANK")) or 0, srun_mpi=None,
                   pmi=pmi, pmix=pmix)

    @property
    def prints(self) -> bool:
        """One task reports a launch problem: every task has it, and N copies of one line help nobody."""
        return self.task == 0


@dataclass(frozen=True)
class MpiLibrary:
    """The MPI library mpi4py runs on, from ``MPI_Get_library_version`` (callable before MPI_Init)."""

    name: str
    """The version text's first line, e.g. "MPICH Version: 5.0.2" or "Open MPI v4.1.4, package: ..."."""
    family: str
    """"MPICH", "Open MPI" or "" (another library: no launch advice of ours)."""
    pmix: bool
    """The library can use a PMIx server (Open MPI always; MPICH when configured with PMIx)."""

    @classmethod
    def from_version_text(cls, text: str) -> MpiLibrary:
        text = text.replace("\0", "").strip()  # Open MPI's ends in the C string's NUL
        name = text.splitlines()[0].strip() if text else "unknown MPI"
        if name.startswith("MPICH"):
            configure = re.search(r"^MPICH configure:(.*)$", text, re.MULTILINE)
            return cls(name=f"MPICH {name.partition(':')[2].strip()}".strip(), family="MPICH",
                       pmix=bool(configure and "pmix" in configure.group(1).lower()))
        if name.startswith("Open MPI"):
            return cls(name=name.split(",")[0], family="Open MPI", pmix=True)
        return cls(name=name, family="", pmix=False)

    @property
    def srun_mpi(self) -> str | None:
        """The srun --mpi type this library starts under: PMIx for Open MPI, PMI-2 for MPICH without PMIx."""
        if self.family == "Open MPI" or (self.family == "MPICH" and self.pmix):
            return "pmix"
        return "pmi2" if self.family == "MPICH" else None


def check_before_init(launch: Launch, library: MpiLibrary) -> None:
    """Raise :class:`LaunchError` where ``MPI_Init`` is certain to abort with the library's own error stack."""
    if launch.pmix and not launch.pmi and library.family == "MPICH" and not library.pmix:
        raise LaunchError(f"{launch.launcher or 'the launcher'} offers only PMIx, which {library.name} was "
                          f"built without; {_fix(launch, library)}")
    if launch.launcher == "srun" and library.family == "Open MPI" and not (launch.pmi or launch.pmix):
        raise LaunchError(f"srun started {launch.tasks} tasks without a PMI (--mpi=none), which {library.name} "
                          f"cannot start under; {_fix(launch, library)}")


def check_after_init(launch: Launch, library: MpiLibrary, size: int) -> None:
    """Raise :class:`LaunchError` for a pool of one rank: N tasks that cannot see each other, or one process."""
    if size > 1:
        return
    if launch.tasks is not None and launch.tasks > 1:
        raise LaunchError(f"{launch.launcher} started {launch.tasks} tasks but MPI ({library.name}) sees each "
                          f"as a job of 1 rank: launcher and MPI do not match; {_fix(launch, library)}")
    raise LaunchError("the monitor needs at least 2 MPI ranks (one collector, one worker) and runs on 1; "
                      "start it as `mpirun -n 8 python -m monitor CONFIG`"
                      + (f" or `srun -n 8 --mpi={library.srun_mpi} python -m monitor CONFIG`"
                         if library.srun_mpi else ""))


def _fix(launch: Launch, library: MpiLibrary) -> str:
    """The likely fix for this launcher and library, in words a cluster user acts on."""
    if launch.launcher == "srun" and library.srun_mpi:
        return (f"run `srun --mpi={library.srun_mpi}` (the type for {library.family}; this srun used "
                f"--mpi={launch.srun_mpi or 'none'}), or use an mpi4py built for the site's MPI ({CLUSTER_HELP})")
    if launch.launcher == "srun":
        return f"run srun with the --mpi type {library.name} was built for (`srun --mpi=list`) ({CLUSTER_HELP})"
    return (f"start it with the mpirun of {library.name}, the MPI mpi4py runs on, or use an mpi4py built for "
            f"the MPI of this mpirun ({CLUSTER_HELP})")


def start_mpi(*, environ: Mapping[str, str]) -> ModuleType:
    """Initialize MPI after the launch checks and return ``mpi4py.MPI``; raises :class:`LaunchError`."""
    MPI = _uninitialized_mpi()
    launch, library = Launch.from_environment(environ), MpiLibrary.from_version_text(MPI.Get_library_version())
    check_before_init(launch, library)
    import mpi4py

    levels = {"single": MPI.THREAD_SINGLE, "funneled": MPI.THREAD_FUNNELED,
              "serialized": MPI.THREAD_SERIALIZED, "multiple": MPI.THREAD_MULTIPLE}
    with warnings.catch_warnings():  # mpi4py's own, less precise guess at the same mismatch, on every task
        warnings.filterwarnings("ignore", message="suspicious MPI execution environment")
        MPI.Init_thread(levels.get(str(mpi4py.rc.thread_level), MPI.THREAD_MULTIPLE))
    try:
        check_after_init(launch, library, MPI.COMM_WORLD.size)
    except LaunchError:
        MPI.Finalize()
        raise
    return MPI


def version_report() -> str:
    """What ``--version`` prints: this program, mpi4py, the MPI library and the file it was loaded from."""
    import mpi4py

    import monitor

    library = MpiLibrary.from_version_text(_uninitialized_mpi().Get_library_version())
    lines = [f"jungfrau-monitor {monitor.__version__}",
             f"mpi4py {mpi4py.__version__} on {library.name}"
             + (f" (under srun: --mpi={library.srun_mpi})" if library.srun_mpi else "")]
    loaded = _loaded_library("libmpi")
    if loaded:
        lines.append(f"MPI library: {loaded}")
    return "\n".join(lines)


def _uninitialized_mpi() -> ModuleType:
    """``mpi4py.MPI`` imported without ``MPI_Init``: the library is asked first, since Init aborts on some mismatches."""
    import mpi4py

    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = False  # the handler decides (skip_rank_finalization); see monitor.mpi.run
    from mpi4py import MPI

    return MPI


def _loaded_library(stem: str) -> str | None:
    """The path of the shared library named ``stem*`` this process mapped (Linux), or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if Path(path).name.startswith(stem + "."):
            return path
    return None


def _integer(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
