"""Which rank does what: the only module that turns the handler's answers into rank numbers."""

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

    @classmethod
    def from_handler(cls, *, rank: int, size: int, designated: Literal["first", "last"]) -> RankLayout:
        """Collector = 0 for "first", size-1 for "last"; every other rank works."""
        if size < 2:
            raise ValueError(f"the monitor needs at least 2 MPI ranks (one collector, one worker); got {size}")
        if designated not in ("first", "last"):
            raise ValueError(f"designated_collector_rank() must return 'first' or 'last', not {designated!r}")
        return cls(rank=rank, size=size, collector=0 if designated == "first" else size - 1)

    @property
    def is_collector(self) -> bool:
        return self.rank == self.collector

    @property
    def workers(self) -> list[int]:
        return [r for r in range(self.size) if r != self.collector]

    def role(self, rank: int) -> str:
        return "collector" if rank == self.collector else "worker"
