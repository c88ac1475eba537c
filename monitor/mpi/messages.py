"""What travels between ranks, and how: msgpack headers plus raw array buffers.

Worker -> collector: every message is a msgpack header on ``TAG_MESSAGE``
(its ``t`` says what it is), followed, for results, by one ``TAG_ARRAY``
message per numpy array, sent from the array's own buffer.  MPI keeps
messages between one pair of ranks in order, so a result's arrays arrive
right after its header and a worker's last word (``bye``) after its results.
Collector -> worker: msgpack control messages on ``TAG_CONTROL``.
Nothing is pickled, and no call here waits without a deadline: a peer that
froze or died must not take the rank that talks to it down with it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from mpi4py import MPI

from monitor.processing.protocol import ProcessedEvent

__all__ = [
    "TAG_MESSAGE",
    "TAG_ARRAY",
    "TAG_CONTROL",
    "Outbox",
    "Inbox",
    "Received",
    "PeerSilent",
    "ControlSender",
    "poll_control",
]

TAG_MESSAGE = 11
TAG_ARRAY = 12
TAG_CONTROL = 13

MAX_IN_FLIGHT = 64
"""Sends a worker keeps pending before it waits: bounds the memory held for the collector."""

WAIT_SLEEP_S = 0.0005
"""While waiting for a send to complete, sleep this long between tests: MPICH's own Wait
spins, which on an oversubscribed node takes the core the collector needs to receive it."""


def _plain(value: Any) -> Any:
    """msgpack's fallback for numpy scalars and small arrays inside ``values``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot send a {type(value).__name__} in result values; put arrays in `arrays`")


def pack(header: dict[str, Any]) -> bytes:
    return msgpack.packb(header, default=_plain, use_bin_type=True)


def unpack(payload: bytes | bytearray) -> dict[str, Any]:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)


class PeerSilent(Exception):
    """A rank stopped answering in the middle of a message (frozen or dead)."""

    def __init__(self, rank: int, waited_s: float) -> None:
        super().__init__(f"rank {rank} stopped in the middle of a message ({waited_s:g} s without progress)")
        self.rank = rank


class Outbox:
    """A worker's non-blocking sends to the collector, with a bound on those in flight."""

    def __init__(self, comm: MPI.Comm, collector: int) -> None:
        self._comm = comm
        self._collector = collector
        self._pending: deque[tuple[MPI.Request, Any]] = deque()
        self.last_sent = time.monotonic()
        """When the last message was sent: a worker that sends nothing for a while says it is alive."""

    def send(self, kind: str, values: dict[str, Any] | None = None,
             arrays: dict[str, np.ndarray] | None = None) -> None:
        arrays = {name: np.ascontiguousarray(array) for name, array in (arrays or {}).items()}
        header = {"t": kind, "v": values or {},
                  "a": [[name, array.dtype.str, list(array.shape)] for name, array in arrays.items()]}
        payload = pack(header)
        self.last_sent = time.monotonic()
        self._track(self._comm.Isend([payload, MPI.BYTE], self._collector, TAG_MESSAGE), payload)
        for array in arrays.values():
            self._track(self._comm.Isend(array, self._collector, TAG_ARRAY), array)

    def send_result(self, result: ProcessedEvent) -> None:
        self.send("result", result.values, result.arrays)

    def _track(self, request: MPI.Request, keep_alive: Any) -> None:
        """Hold each buffer until its send completes; wait only past the bound."""
        self._pending.append((request, keep_alive))
        self._wait_until(MAX_IN_FLIGHT)

    def _wait_until(self, pending: int, deadline: float = float("inf")) -> bool:
        """Drop completed sends (oldest first); sleep-wait while more than ``pending`` remain.
        False if ``deadline`` passed first."""
        while self._pending:
            if self._pending[0][0].Test():
                self._pending.popleft()
            elif len(self._pending) > pending:
                if time.monotonic() > deadline:
                    return False
                time.sleep(WAIT_SLEEP_S)
            else:
                return True
        return True

    def flush(self, timeout_s: float) -> bool:
        """Wait until every send has completed; False if the collector took none for ``timeout_s``."""
        return self._wait_until(0, time.monotonic() + timeout_s)


@dataclass(frozen=True)
class Received:
    """One message a worker sent: its kind, values and arrays."""

    source: int
    kind: str
    values: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def as_processed_event(self) -> ProcessedEvent:
        return ProcessedEvent(values=self.values, arrays=self.arrays)


class Inbox:
    """The collector's receiving end: never blocks when nothing is there.

    A message's arrays follow its header; a large one needs its sender to take
    part in the transfer, so each is awaited with a deadline (``patience_s``):
    a worker frozen mid-message raises :class:`PeerSilent` instead of a hang.
    """

    def __init__(self, comm: MPI.Comm, *, patience_s: float) -> None:
        self._comm = comm
        self._status = MPI.Status()
        self._patience_s = patience_s

    def poll(self) -> Received | None:
        comm, status = self._comm, self._status
        if not comm.Iprobe(MPI.ANY_SOURCE, TAG_MESSAGE, status):
            return None
        source = status.Get_source()
        payload = bytearray(status.Get_count(MPI.BYTE))
        comm.Recv([payload, MPI.BYTE], source, TAG_MESSAGE)  # a small header, probed: already here
        header = unpack(payload)
        arrays = {}
        for name, dtype, shape in header["a"]:
            array = np.empty(shape, dtype=np.dtype(dtype))
            self._wait(comm.Irecv(array, source, TAG_ARRAY), source)
            arrays[name] = array
        return Received(source=source, kind=header["t"], values=header["v"], arrays=arrays)

    def _wait(self, request: MPI.Request, source: int) -> None:
        if request.Test():
            return
        deadline = time.monotonic() + self._patience_s
        while not request.Test():
            if time.monotonic() > deadline:
                request.Cancel()
                raise PeerSilent(source, self._patience_s)
            time.sleep(WAIT_SLEEP_S)


class ControlSender:
    """The collector's control messages to workers (drain, stop, exit, feedback): sent without
    waiting, their buffers kept until MPI is done with them, so a frozen worker holds up nobody."""

    def __init__(self, comm: MPI.Comm) -> None:
        self._comm = comm
        self._pending: list[tuple[MPI.Request, bytes]] = []

    def send(self, ranks: list[int], kind: str, values: dict[str, Any] | None = None) -> None:
        payload = pack({"t": kind, "v": values or {}})
        self._pending = [(request, kept) for request, kept in self._pending if not request.Test()]
        self._pending += [(self._comm.Isend([payload, MPI.BYTE], rank, TAG_CONTROL), payload) for rank in ranks]

    def flush(self, timeout_s: float) -> None:
        """Give the last messages ``timeout_s`` to leave (a message to a lost rank never does)."""
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            self._pending = [(request, kept) for request, kept in self._pending if not request.Test()]
            time.sleep(WAIT_SLEEP_S)


def poll_control(comm: MPI.Comm, collector: int) -> list[tuple[str, dict[str, Any]]]:
    """Every control message waiting for this worker, oldest first."""
    messages = []
    status = MPI.Status()
    while comm.Iprobe(collector, TAG_CONTROL, status):
        payload = bytearray(status.Get_count(MPI.BYTE))
        comm.Recv([payload, MPI.BYTE], collector, TAG_CONTROL)
        header = unpack(payload)
        messages.append((header["t"], header["v"]))
    return messages
