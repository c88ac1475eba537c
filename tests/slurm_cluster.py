"""A one-node SLURM cluster for tests: munged, slurmctld and slurmd as root, every file in one folder.

The daemons run in a network namespace of their own that has only the loopback
interface, where the kernel allows one: slurmctld and slurmd listen on every
address and have no setting to bind one, so the namespace is what keeps them
(and the jobs' sockets) off the machine's network.  Where no namespace can be
made they run on the host's loopback name with ports nobody uses, accepting only
requests signed with a munge key made for this cluster.  Commands (sbatch,
scancel, ...) run through :meth:`OneNodeCluster.command` in the same place.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from helpers import free_port

__all__ = ["OneNodeCluster", "why_slurm_cannot_run"]

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "squeue", "sinfo")


def why_slurm_cannot_run() -> str | None:
    """The reason a one-node cluster cannot start here, or None."""
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing; Debian: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a one-node SLURM cluster needs root (slurmd starts the jobs as their users)"
    return None


class OneNodeCluster:
    """One node of ``cpus`` CPUs (more than the machine has is fine: SLURM believes the configuration)."""

    def __init__(self, folder: Path, *, cpus: int = 8, kill_wait_s: int = 10) -> None:
        self.folder = folder
        self.cpus = cpus
        self.kill_wait_s = kill_wait_s
        self.config = folder / "slurm.conf"
        self._prefix: list[str] = []
        self._processes: list[subprocess.Popen] = []

    def __enter__(self) -> OneNodeCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def environment(self) -> dict[str, str]:
        """What a SLURM command needs to find this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.config)}

    def command(self, *arguments: str, env: dict[str, str] | None = None, timeout: float = 30,
                check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM command (sbatch, scancel, ...) against this cluster, in its network namespace."""
        return subprocess.run([*self._prefix, *arguments], env={**self.environment, **(env or {})}, text=True,
                              capture_output=True, timeout=timeout, check=check, stdin=subprocess.DEVNULL)

    def start(self) -> None:
        """Start munged, slurmctld and slurmd; returns once the node takes jobs (RuntimeError otherwise)."""
        for folder in ("munge", "state", "spool", "logs"):
            (self.folder / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prefix = self._network_namespace()
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = self.folder / "munge" / "munge.socket"
        self._spawn("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
                    f"--pid-file={self.folder / 'munge' / 'munged.pid'}", f"--seed-file={self.folder / 'munge' / 'seed'}",
                    f"--log-file={self.folder / 'logs' / 'munged.log'}")
        _wait_for(lambda: socket_path.exists(), 10, "munged did not create its socket")
        self.config.write_text(self._slurm_conf(socket_path))
        self._spawn("slurmctld", "-D", "-f", str(self.config))
        self._spawn("slurmd", "-D", "-N", "n1", "-f", str(self.config))
        _wait_for(self._node_idle, 60, f"the node never became idle; see {self.folder / 'logs'}")

    def stop(self) -> None:
        """Cancel every job and let it end, then end the daemons and any step daemon they left."""
        if any(process.poll() is None for process in self._processes):
            self.command("scancel", "--full", "--user=root", check=False)
            deadline = time.monotonic() + self.kill_wait_s + 15
            while self._jobs_left() and time.monotonic() < deadline:
                time.sleep(0.2)
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self._processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._processes.clear()
        for pid in self._step_daemons():  # a step whose slurmd is gone retries its last message for ever
            os.kill(pid, signal.SIGKILL)

    def _jobs_left(self) -> bool:
        done = self.command("squeue", "--noheader", "--format=%i", check=False)
        return done.returncode == 0 and bool(done.stdout.strip())

    def _step_daemons(self) -> list[int]:
        """The slurmstepd processes of this cluster (slurmd passes them its SLURM_CONF)."""
        mine = f"SLURM_CONF={self.config}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if (entry / "comm").read_text().strip() == "slurmstepd" and \
                        mine in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
        return found

    def job(self, job_id: int) -> dict[str, str]:
        """The job's fields as ``scontrol show job`` prints them (JobState, ExitCode, ...)."""
        text = self.command("scontrol", "show", "--oneliner", "job", str(job_id)).stdout
        return dict(field.split("=", 1) for field in text.split() if "=" in field)

    def wait_until(self, job_id: int, states: set[str], timeout: float) -> dict[str, str]:
        """The job's fields once its state is one of ``states``; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            fields = self.job(job_id)
            if fields.get("JobState") in states:
                return fields
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {fields.get('JobState')} after {timeout} s")
            time.sleep(0.1)

    def _network_namespace(self) -> list[str]:
        """The prefix that runs a command in a loopback-only namespace, or [] where none can be made."""
        if shutil.which("unshare") is None or shutil.which("nsenter") is None or shutil.which("ip") is None:
            return []
        # A second loopback address: glibc's AI_ADDRCONFIG, which SLURM resolves with, does not count
        # 127.0.0.1 as an IPv4 address and would find none in a namespace that has only lo.
        setup = "ip link set lo up && ip addr add 127.0.0.2/8 dev lo && echo up && exec sleep infinity"
        holder = subprocess.Popen(["unshare", "--net", "sh", "-c", setup],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if holder.stdout is None or holder.stdout.readline().strip() != "up":
            holder.kill()
            holder.wait(5)
            return []
        self._processes.append(holder)
        return ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]

    def _spawn(self, *arguments: str) -> None:
        log = (self.folder / "logs" / f"{arguments[0]}.out").open("w")
        self._processes.append(subprocess.Popen([*self._prefix, *arguments], env=self.environment, stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        log.close()

    def _node_idle(self) -> bool:
        for process in self._processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[len(self._prefix)]} exited with {process.returncode}; "
                                   f"see {self.folder / 'logs'}")
        done = self.command("sinfo", "--noheader", "--format=%T", check=False)
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def _slurm_conf(self, munge_socket: Path) -> str:
        # Job numbers of their own: MPICH names its shared memory after the job step ("1.0"), and a
        # segment a killed step of another cluster left behind would be taken for this step's.
        host = socket.gethostname().split(".")[0]
        logs, folder = self.folder / "logs", self.folder
        return f"""\
ClusterName=monitortest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={folder / 'state'}
SlurmdSpoolDir={folder / 'spool'}
SlurmctldPidFile={folder / 'slurmctld.pid'}
SlurmdPidFile={folder / 'slurmd.pid'}
SlurmctldLogFile={logs / 'slurmctld.log'}
SlurmdLogFile={logs / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
ReturnToService=2
FirstJobId={random.randrange(1000, 60_000_000)}
KillWait={self.kill_wait_s}
MinJobAge=600
NodeName=n1 NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=test Nodes=n1 Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.2)
