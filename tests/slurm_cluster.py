"""SLURM clusters for tests: munged, slurmctld and one slurmd per node as root, every file in one folder.

**One node** (:class:`OneNodeCluster`): the daemons run in a network namespace
of their own that has only the loopback interface, where the kernel allows one:
slurmctld and slurmd listen on every address and have no setting to bind one,
so the namespace is what keeps them (and the jobs' sockets) off the machine's
network.  Where no namespace can be made they run on the host's loopback name
with ports nobody uses, accepting only requests signed with a munge key made
for this cluster.

**Two nodes** (:class:`TwoNodeCluster`): each node is a network, UTS and mount
namespace of its own (its host name ``n1``, ``n2``; its own ``/etc/hosts``
naming both), joined by a veth pair on a private subnet that exists only
between the two namespaces.  The disk is shared, as a cluster's file system
is; munged's socket is a file, so one munged serves both.  slurmctld runs on
``n1``, where commands (sbatch, scancel, ...) run through ``command``.
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

__all__ = ["OneNodeCluster", "TwoNodeCluster", "why_slurm_cannot_run"]

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
        self._prefix = self._network_namespace()
        munge_socket = self._start_munge()
        self.config.write_text(self._slurm_conf(munge_socket))
        (self.folder / "spool" / "n1").mkdir(exist_ok=True)
        self._spawn(self._prefix, "slurmctld", "-D", "-f", str(self.config))
        self._spawn(self._prefix, "slurmd", "-D", "-N", "n1", "-f", str(self.config))
        _wait_for(self._nodes_idle, 60, f"the node never became idle; see {self.folder / 'logs'}")

    def _start_munge(self) -> Path:
        """munged with a key of this cluster's own; returns its socket."""
        for folder in ("munge", "state", "spool", "logs"):
            (self.folder / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = self.folder / "munge" / "munge.socket"
        self._spawn([], "munged", "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
                    f"--pid-file={self.folder / 'munge' / 'munged.pid'}", f"--seed-file={self.folder / 'munge' / 'seed'}",
                    f"--log-file={self.folder / 'logs' / 'munged.log'}")
        _wait_for(lambda: socket_path.exists(), 10, "munged did not create its socket")
        return socket_path

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

    def _spawn(self, prefix: list[str], *arguments: str) -> None:
        log = (self.folder / "logs" / f"{arguments[0]}-{len(self._processes)}.out").open("w")
        process = subprocess.Popen([*prefix, *arguments], env=self.environment, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        process.name = arguments[0]  # type: ignore[attr-defined]
        self._processes.append(process)
        log.close()

    def _nodes_idle(self) -> bool:
        for process in self._processes:
            if process.poll() is not None:
                raise RuntimeError(f"{getattr(process, 'name', process.args)} exited with {process.returncode}; "
                                   f"see {self.folder / 'logs'}")
        done = self.command("sinfo", "--noheader", "--format=%T", check=False)
        return done.returncode == 0 and set(done.stdout.split()) == {"idle"}

    def _slurm_conf(self, munge_socket: Path) -> str:
        host = socket.gethostname().split(".")[0]
        return self._common_conf(munge_socket, controller=f"{host}(127.0.0.1)") + f"""\
NodeName=n1 NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=test Nodes=n1 Default=YES MaxTime=INFINITE State=UP
"""

    def _common_conf(self, munge_socket: Path, *, controller: str) -> str:
        # Job numbers of their own: MPICH names its shared memory after the job step ("1.0"), and a
        # segment a killed step of another cluster left behind would be taken for this step's.
        # %n: each node's slurmd keeps its own spool, pid and log files.
        logs, folder = self.folder / "logs", self.folder
        return f"""\
ClusterName=monitortest
SlurmctldHost={controller}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={folder / 'state'}
SlurmdSpoolDir={folder / 'spool'}/%n
SlurmctldPidFile={folder / 'slurmctld.pid'}
SlurmdPidFile={folder / 'slurmd-%n.pid'}
SlurmctldLogFile={logs / 'slurmctld.log'}
SlurmdLogFile={logs / 'slurmd-%n.log'}
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
"""


class TwoNodeCluster(OneNodeCluster):
    """Nodes ``n1`` and ``n2`` of ``cpus`` CPUs each, in namespaces of their own joined by a veth pair."""

    NODES = {"n1": "10.77.0.1", "n2": "10.77.0.2"}
    """The nodes and their addresses on the subnet between the two namespaces (and nowhere else)."""

    def __init__(self, folder: Path, *, cpus: int = 4, kill_wait_s: int = 10) -> None:
        super().__init__(folder, cpus=cpus, kill_wait_s=kill_wait_s)
        self.prefixes: dict[str, list[str]] = {}
        """Per node, the prefix that runs a command there (its namespaces)."""
        self._uts: dict[str, str] = {}

    def node_of(self, pid: int) -> str | None:
        """The node a process runs on (by its UTS namespace), None for the host's own."""
        try:
            uts = os.readlink(f"/proc/{pid}/ns/uts")
        except OSError:
            return None
        return next((name for name, mine in self._uts.items() if mine == uts), None)

    def start(self) -> None:
        munge_socket = self._start_munge()
        self._make_nodes()
        self._prefix = self.prefixes["n1"]
        self.config.write_text(self._slurm_conf(munge_socket))
        self._spawn(self._prefix, "slurmctld", "-D", "-f", str(self.config))
        for name, prefix in self.prefixes.items():
            self._spawn(prefix, "slurmd", "-D", "-N", name, "-f", str(self.config))
        _wait_for(self._nodes_idle, 60, f"the nodes never became idle; see {self.folder / 'logs'}")

    def _make_nodes(self) -> None:
        """A network, UTS and mount namespace per node, its host name and /etc/hosts, and the cable."""
        hosts = self.folder / "hosts"
        hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{address} {name}\n" for name, address in self.NODES.items()))
        holders = {}
        for name in self.NODES:
            setup = (f"hostname {name} && mount --bind {hosts} /etc/hosts && ip link set lo up && echo up && "
                     "exec sleep infinity")
            holder = subprocess.Popen(["unshare", "--net", "--uts", "--mount", "--propagation", "private",
                                       "sh", "-c", setup], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._processes.append(holder)
            if holder.stdout is None or holder.stdout.readline().strip() != "up":
                raise RuntimeError(f"no namespaces for node {name}: {holder.stderr.read() if holder.stderr else ''}")
            holders[name] = holder.pid
            self._uts[name] = os.readlink(f"/proc/{holder.pid}/ns/uts")
            self.prefixes[name] = ["nsenter", f"--target={holder.pid}", "--net", "--uts", "--mount", "--"]
        ends = {name: f"mt{os.getpid() % 100000}{name}" for name in self.NODES}
        first, second = ends.values()
        subprocess.run(["ip", "link", "add", first, "type", "veth", "peer", "name", second], check=True)
        for name, address in self.NODES.items():
            subprocess.run(["ip", "link", "set", ends[name], "netns", str(holders[name])], check=True)
            for step in (["addr", "add", f"{address}/24", "dev", ends[name]], ["link", "set", ends[name], "up"]):
                subprocess.run([*self.prefixes[name], "ip", *step], check=True)

    def _slurm_conf(self, munge_socket: Path) -> str:
        # A node-local temporary folder each (one disk serves both): PMIx makes its step folder there,
        # under the same name on every node.
        for name in self.NODES:
            (self.folder / f"tmp-{name}").mkdir(exist_ok=True)
            (self.folder / "spool" / name).mkdir(exist_ok=True)
        nodes = "".join(f"NodeName={name} NodeAddr={address} CPUs={self.cpus} State=UNKNOWN\n"
                        for name, address in self.NODES.items())
        return self._common_conf(munge_socket, controller=f"n1({self.NODES['n1']})") + f"TmpFS={self.folder}/tmp-%n\n" + nodes + (
            f"PartitionName=test Nodes={','.join(self.NODES)} Default=YES MaxTime=INFINITE State=UP\n")


def _wait_for(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.2)
