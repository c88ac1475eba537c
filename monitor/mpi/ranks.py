"""Which rank does what, and where: the only module that turns the handler's answers and the ranks'
host names into rank numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RankLayout"]


@dataclass(frozen=True)
class RankLayout:
    """The roles of a pool of ``size`` ranks, as seen from ``rank``."""

    rank: int
    size: int
    collector: int
    hosts: tuple[str, ...] = ()
    """Each rank's host name, by rank (empty where nobody asked)."""
    pids: tuple[int, ...] = ()
    """Each rank's process id, by rank (empty where nobody asked)."""

    @classmethod
    def from_handler(cls, *, rank: int, size: int, designated: Literal["first", "last"],
                     hosts: tuple[str, ...] = (), pids: tuple[int, ...] = ()) -> RankLayout:
        """Collector = 0 for "first", size-1 for "last"; every other rank works."""
        if size < 2:
            raise ValueError(f"the monitor needs at least 2 MPI ranks (one collector, one worker); got {size}")
        if designated not in ("first", "last"):
            raise ValueError(f"designated_collector_rank() must return 'first' or 'last', not {designated!r}")
        return cls(rank=rank, size=size, collector=0 if designated == "first" else size - 1, hosts=hosts,
                   pids=pids)

    def host(self, rank: int) -> str | None:
        return self.hosts[rank] if rank < len(self.hosts) else None

    @property
    def remote_workers(self) -> list[int]:
        """Workers on another host than the collector's."""
        return [r for r in self.workers if self.host(r) != self.host(self.collector)]

    def ranks_on(self, host: str | None) -> list[int]:
        return [r for r in range(len(self.hosts)) if self.hosts[r] == host]

    def node_watcher(self, rank: int) -> int | None:
        """The rank that watches the processes of ``rank``'s host: the collector on its own host,
        elsewhere the lowest rank there (None where the hosts are unknown)."""
        host = self.host(rank)
        if host is None:
            return None
        if host == self.host(self.collector):
            return self.collector
        return min(r for r in range(self.size) if self.hosts[r] == host)

    @property
    def is_collector(self) -> bool:
        return self.rank == self.collector

    @property
    def workers(self) -> list[int]:
        return [r for r in range(self.size) if r != self.collector]

    def role(self, rank: int) -> str:
        return "collector" if rank == self.collector else "worker"
