"""The shipped batch script across two SLURM nodes (two namespaces of this machine, one shared disk).

As on a cluster: ``sbatch --nodes=2 --ntasks-per-node=4``, the frame source on
the collector's node bound to every interface (``tcp://*:PORT``) and reached by
the workers of both nodes through the collector's host name.  Runs with the MPI
this Python's mpi4py runs on, so ``make test-openmpi`` runs it under Open MPI
(srun --mpi=pmix) too.  Without SLURM, root or namespaces, skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import h5py
import pytest

from helpers import assert_balanced, free_port, process_pid, write_config
from slurm_cluster import TwoNodeCluster, why_slurm_cannot_run
from test_slurm import KILL_WAIT_S, SCRIPT, job_environment, srun_mpi, wait_for_frames  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

TASKS_PER_NODE = 4
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}


@pytest.fixture(scope="module")
def cluster():
    reason = why_slurm_cannot_run()
    if reason:
        pytest.skip(reason)
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("two nodes need unshare and ip (util-linux, iproute2)")
    folder = Path(tempfile.mkdtemp(prefix="monitor-slurm2-"))
    try:
        with TwoNodeCluster(folder, cpus=TASKS_PER_NODE, kill_wait_s=KILL_WAIT_S) as cluster:
            yield cluster
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def across_nodes(folder: Path, changes: dict) -> Path:
    """The shipped default with the frame sender bound to every interface of the collector's node."""
    layer = changes.setdefault("data_retrieval_layer", {})
    layer.setdefault("assembler", {})["bind"] = f"tcp://*:{free_port()}"
    return write_config(folder, changes)


def submit(cluster: TwoNodeCluster, folder: Path, config: Path, srun_mpi: str) -> int:
    env = job_environment(srun_mpi)
    done = cluster.command("sbatch", "--parsable", "--nodes=2", f"--ntasks-per-node={TASKS_PER_NODE}",
                           f"--chdir={folder}", f"--output={folder / 'job.log'}", str(SCRIPT), str(config), env=env)
    return int(done.stdout.strip().split(";")[0])


def test_the_shipped_script_on_two_nodes_processes_every_frame_on_both(cluster, tmp_path, srun_mpi):
    config = across_nodes(tmp_path, {"data_retrieval_layer": {"simulator": {"frames": 300, "rate_hz": 500}},
                                     "outputs": {"hit_files": {"max_hits_per_file": 5}}})
    job_id = submit(cluster, tmp_path, config, srun_mpi)
    fields = cluster.wait_until(job_id, ENDED, timeout=300)
    log = (tmp_path / "job.log").read_text()
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), log
    summary = json.loads((tmp_path / f"monitor-{job_id}.summary.json").read_text())
    assert assert_balanced(summary, sent=300)["processed"] == 300
    hosts = {row["rank"]: row["host"] for row in summary["per_rank"]}
    assert list(hosts.values()) == ["n1"] * TASKS_PER_NODE + ["n2"] * TASKS_PER_NODE
    events = {node: sum(row["events"] for row in summary["per_rank"] if row["role"] == "worker" and row["host"] == node)
              for node in ("n1", "n2")}
    print(f"two nodes: events per node {events}, hits {summary['hits']}")
    assert events["n1"] > 0 and events["n2"] > 0 and sum(events.values()) == 300
    run_dir = Path(summary["output_dir"])
    listed = (run_dir / "files.lst").read_text().split()
    writers = {hosts[int(Path(path).name.split("-hits-r")[1][:2])] for path in listed}
    assert writers == {"n1", "n2"}, listed
    hits = 0
    for path in listed:
        with h5py.File(path, "r") as cxi:
            hits += cxi["entry_1/data_1/data"].shape[0]
    assert hits == summary["outputs"]["hits_written"] == summary["hits"]
    assert " n2  " in log and " n1  " in log  # the per-rank table names each rank's host


def test_a_source_on_the_loopback_in_a_two_node_job_is_refused_in_one_line(cluster, tmp_path, srun_mpi):
    config = write_config(tmp_path, {"processing_layer": {"pipeline": "FrameStatisticsPipeline"}})  # binds 127.0.0.1
    job_id = submit(cluster, tmp_path, config, srun_mpi)
    fields = cluster.wait_until(job_id, ENDED, timeout=180)
    log = (tmp_path / "job.log").read_text()
    assert fields["ExitCode"] == "2:0", log
    errors = [line for line in log.splitlines() if line.startswith("monitor: error:")]
    assert len(errors) == 1 and "workers on n2 would connect to tcp://127.0.0.1:" in errors[0], log
    assert "started the simulated" not in log and "lost" not in log


def test_a_rank_killed_on_the_second_node_is_named_with_its_host(cluster, tmp_path, srun_mpi):
    config = across_nodes(tmp_path, {"data_retrieval_layer": {"simulator": {"frames": 10**7, "rate_hz": 200}},
                                     "processing_layer": {"pipeline": "FrameStatisticsPipeline"},
                                     "monitor": {"checkpoint_interval_s": 0.5}})
    job_id = submit(cluster, tmp_path, config, srun_mpi)
    log_file = tmp_path / "job.log"
    wait_for_frames(cluster, job_id, log_file)
    victim_rank = 2 * TASKS_PER_NODE - 2  # on n2, and not the rank that watches n2
    victim = _rank_pid(config, victim_rank)
    assert cluster.node_of(victim) == "n2"
    os.kill(victim, signal.SIGKILL)
    cluster.wait_until(job_id, ENDED, timeout=KILL_WAIT_S + 60)
    log = log_file.read_text()
    assert f"monitor: rank {victim_rank} (pid {victim}) on n2 died (killed or crashed)" in log, log
    summary = json.loads((tmp_path / f"monitor-{job_id}.summary.json").read_text())
    print(f"rank {victim_rank} killed on n2: summary {summary['state']}, lost ranks {summary['lost_ranks']}")
    if summary["state"] == "killed":  # the launcher ended the job: the checkpoint names the rank
        assert summary["killed"]["rank"] == victim_rank and "on n2" in summary["killed"]["how"]
    else:  # srun let the others live: the collector gave the rank up and ended the run in order
        assert summary["state"] == "complete" and summary["lost_ranks"] == [victim_rank], log
        assert_balanced(summary)


def _rank_pid(config: Path, rank: int) -> int:
    return process_pid(lambda command, environ: b"monitor" in command and str(config).encode() in command
                       and b"--summary-json" in command and f"SLURM_PROCID={rank}".encode() in environ,
                       f"rank {rank} of the monitor on {config}")
