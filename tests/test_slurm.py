"""The shipped batch script under a real one-node SLURM: sbatch and srun as a cluster user runs them.

A cluster (munged, slurmctld, slurmd) starts once for this module; without
SLURM or root every test here is skipped with the reason.  The tests run with
the MPI this Python's mpi4py runs on, so ``make test-openmpi`` runs them under
Open MPI too: the batch script then takes srun's type for it through its switch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, assert_balanced, write_config
from slurm_cluster import OneNodeCluster, why_slurm_cannot_run

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "examples" / "slurm-monitor.sh"
STATISTICS = {"pipeline": "FrameStatisticsPipeline"}
KILL_WAIT_S = 30
"""SLURM's default: SIGKILL this long after scancel's SIGTERM; a run that has not ended by then loses its summary."""
TASKS = 4


def _mpi() -> tuple[str, str]:
    """The MPI family mpi4py runs on and srun's --mpi type for it, as ``--version`` reports them."""
    report = subprocess.run([sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True,
                            check=True, cwd=ROOT, timeout=60).stdout
    found = re.search(r" on (MPICH|Open MPI)\b.*--mpi=(\w+)", report)
    assert found, report
    return found.group(1), found.group(2)


@pytest.fixture(scope="module")
def cluster():
    """Its folder is not pytest's: pytest may prune its older folders while the daemons still use this one."""
    reason = why_slurm_cannot_run()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="monitor-slurm-"))
    try:
        with OneNodeCluster(folder, cpus=TASKS * 2, kill_wait_s=KILL_WAIT_S) as cluster:
            yield cluster
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def srun_mpi() -> str:
    return _mpi()[1]


def job_environment(srun_mpi: str) -> dict[str, str]:
    """What the user has: this virtual environment, this checkout's code, and the script's MPI switch."""
    return {"MONITOR_VENV": str(Path(sys.executable).parent.parent), "PYTHONPATH": str(ROOT),
            "MONITOR_SRUN_MPI": srun_mpi}


def submit(cluster: OneNodeCluster, folder: Path, config: Path, srun_mpi: str) -> int:
    """``sbatch`` the shipped script on one node of TASKS tasks (options on the command line win over #SBATCH)."""
    env = job_environment(srun_mpi)
    if srun_mpi == "pmi2":
        del env["MONITOR_SRUN_MPI"]  # the script as shipped
    done = cluster.command("sbatch", "--parsable", "--nodes=1", f"--ntasks-per-node={TASKS}", f"--chdir={folder}",
                           f"--output={folder / 'job.log'}", str(SCRIPT), str(config), env=env)
    return int(done.stdout.strip().split(";")[0])


def wait_for_frames(cluster: OneNodeCluster, job_id: int, log_file: Path, timeout: float = 120) -> None:
    """Until the job runs and its log shows the status line of frames flowing."""
    cluster.wait_until(job_id, {"RUNNING"}, timeout=60)
    deadline = time.monotonic() + timeout
    while not log_file.exists() or "frames sent" not in log_file.read_text():
        assert time.monotonic() < deadline, log_file.exists() and log_file.read_text()
        time.sleep(0.2)


def processes_running(text: str) -> list[str]:
    """Command lines of this machine's processes that mention ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command and entry.name != str(os.getpid()):
            found.append(command)
    return found


def test_the_shipped_batch_script_processes_every_frame_and_the_job_exits_0(cluster, tmp_path, srun_mpi):
    config = write_config(tmp_path, {"data_retrieval_layer": {"collector_rank": "last", "simulator": {
        "frames": 300, "rate_hz": 1000}}, "processing_layer": STATISTICS})
    job_id = submit(cluster, tmp_path, config, srun_mpi)
    fields = cluster.wait_until(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=180)
    log = (tmp_path / "job.log").read_text()
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), log
    summary = json.loads((tmp_path / f"monitor-{job_id}.summary.json").read_text())
    assert summary["state"] == "complete"
    assert_balanced(summary, sent=300)
    assert summary["events_processed"] == 300 and summary["events_failed"] == 0
    assert summary["ranks"] == TASKS and summary["collector_rank"] == TASKS - 1
    assert [row["role"] for row in summary["per_rank"]] == ["worker"] * (TASKS - 1) + ["collector"]
    assert sum(row["events"] for row in summary["per_rank"] if row["role"] == "worker") == 300
    assert summary["stop_reason"] == "end of acquisition"
    assert f"{config}: configuration OK" in log
    assert Path(summary["output_dir"]).parent == tmp_path / "output"


@dataclass(frozen=True)
class Cancelled:
    """A job cancelled while frames flow: its summary and its log."""

    summary: dict
    log: str


@pytest.fixture(scope="module")
def cancelled(cluster, tmp_path_factory, srun_mpi) -> Cancelled:
    """One ``scancel`` of the shipped script, looked at by the tests below."""
    folder = tmp_path_factory.mktemp("scancel")
    config = write_config(folder, {"data_retrieval_layer": {"simulator": {"frames": 10**7, "rate_hz": 200}},
                                   "processing_layer": STATISTICS})
    job_id = submit(cluster, folder, config, srun_mpi)
    log_file = folder / "job.log"
    wait_for_frames(cluster, job_id, log_file)
    time.sleep(1)
    started = time.monotonic()
    cluster.command("scancel", str(job_id))
    cluster.wait_until(job_id, {"CANCELLED"}, timeout=KILL_WAIT_S + 30)
    deadline = started + KILL_WAIT_S + 10  # SLURM's SIGKILL comes at KillWait: a process left after it is a leak
    while processes_running(str(config)):
        assert time.monotonic() < deadline, processes_running(str(config))
        time.sleep(0.1)
    ended_s = time.monotonic() - started
    summary = json.loads((folder / f"monitor-{job_id}.summary.json").read_text())
    print(f"scancel: every process gone after {ended_s:.2f} s; {summary['accounting']}; errors {summary['errors']}")
    return Cancelled(summary=summary, log=log_file.read_text())


def test_scancel_ends_every_task_in_order_with_a_summary_before_sigkill(cancelled):
    summary = cancelled.summary
    assert summary["state"] == "complete", cancelled.log  # the final summary, not a checkpoint: not SIGKILLed
    assert "SIGTERM on" in summary["stop_reason"] and summary["events_processed"] > 0
    assert sum(row["events"] for row in summary["per_rank"] if row["role"] == "worker") == (
        summary["events_processed"] + summary["events_failed"])


def test_scancel_accounts_for_every_frame_and_ends_without_an_error(cancelled):
    """Unlike mpirun, SLURM signals every process of the step: the assembler and simulator the monitor started too."""
    assert_balanced(cancelled.summary)
    assert cancelled.summary["errors"] == [], cancelled.log


@pytest.mark.parametrize("mismatched", ["none", "pmix", "pmi2"])
def test_srun_with_a_pmi_the_mpi_does_not_take_ends_in_one_line_and_exit_2(cluster, tmp_path, mismatched):
    family, right = _mpi()
    if mismatched == right:
        pytest.skip(f"--mpi={mismatched} is the type {family} takes")
    if family == "Open MPI" and mismatched == "pmi2":
        pytest.skip("Open MPI reports srun's PMI-2 itself (whether it was built with it shows only in MPI_Init)")
    reason = _why_srun_cannot_offer(cluster, mismatched)
    if reason:
        pytest.skip(reason)
    config = write_config(tmp_path, {"processing_layer": STATISTICS})
    done = cluster.command("srun", f"--ntasks={TASKS}", f"--mpi={mismatched}", sys.executable, "-m", "monitor",
                           str(config), env={"PYTHONPATH": str(ROOT)}, check=False, timeout=60)
    ours = [line for line in done.stderr.splitlines() if line.startswith("monitor:")]
    others = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("monitor:", "srun:"))]
    assert done.returncode == 2, done.stderr
    assert len(ours) == 1 and f"--mpi={right}" in ours[0], done.stderr
    assert others == [] and done.stdout == ""


def _why_srun_cannot_offer(cluster: OneNodeCluster, mpi: str) -> str | None:
    """srun's own failure to set up a PMI (its pmix plugin needs the PMIx library, which comes with
    Open MPI's packages) is not the monitor's to report: without it there is nothing to test."""
    done = cluster.command("srun", "--ntasks=1", f"--mpi={mpi}", "true", check=False, timeout=60)
    if done.returncode == 0:
        return None
    first = next((line for line in done.stderr.splitlines() if line.strip()), f"exit {done.returncode}")
    return f"this srun cannot start a step with --mpi={mpi}: {first}"
