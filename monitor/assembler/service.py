"""The running assembler: receiver SUB sockets in, one PUSH socket out, stats beside.

One thread, one poll loop.  It reads the streams, feeds
:class:`~monitor.assembler.matching.FrameMatcher`, queues its output by the
queue policy and hands it to the workers without ever blocking, so that
timeouts, end messages, status and stop requests are served whatever the
workers do.

The streams are read all the time, whatever the workers do: a receiver's PUB
socket cannot be held back (past its high-water mark it drops silently, and a
lost tail leaves no gap to count).  With ``queue: lossless`` whole frames wait
for the workers in a buffer of ``buffer_mb``; past it the assembler drops the
newest frame itself, counted as ``workers_behind`` and said in the log as it
happens.  ``latest_only`` keeps ``queue_size`` frames, a newer one replacing
the oldest.

Memory is bounded at any input rate: ``receive_hwm`` messages of at most
``max_message_bytes`` per stream inside ZMQ, ``max_pending_frames`` frames
waiting for parts, ``buffer_mb`` of frames waiting for a worker here and
``queue_size`` frames per connected worker inside ZMQ.

On SIGTERM (``should_stop``) the open acquisition is closed, waiting frames
still go out for up to ``stop_timeout_s`` (the workers keep taking them), the
rest are counted as ``stop``, and ``series_end`` always goes out last, with the
counts of what was really sent.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from monitor.assembler.accounting import AcquisitionCounts, DropReason
from monitor.assembler.matching import FrameMatcher, Outgoing, OutgoingEnd, OutgoingFrame
from monitor.assembler.parameters import AssemblerParameters
from monitor.errors import MonitorError
from monitor.logs import RateLimitedLog

__all__ = ["Assembler"]

log = logging.getLogger("monitor.assembler")

_READ_BATCH = 8
"""Messages read from one stream before looking at the others (keeps the streams in step)."""
_IDLE_WAKE_S = 0.1
"""Longest sleep in the poll loop: the bound on how late a stop request is seen."""
_END_SEND_S = 1.0
"""On stop, how long ``series_end`` may wait for room in the workers' queues (and the linger
of the sockets): the message that lets the workers finish must not be the one dropped."""
_MIB = 1 << 20


class Assembler:
    """Whole JUNGFRAU frames from the receiver streams, sent as PSI's frame synchronizer sends them.

    Use as a context manager (sockets are bound and connected on entry) and
    call :meth:`run` in the thread that owns it.
    """

    def __init__(self, parameters: AssemblerParameters, *, context: zmq.Context | None = None) -> None:
        """``context``: a ZMQ context to share (``inproc://`` streams need their sender's); else its own."""
        self._parameters = parameters
        self._shared_context = context
        self._queue: deque[Outgoing] = deque()
        self._queued_frames = 0
        self._queued_bytes = 0
        self._buffer_bytes = int(parameters.buffer_mb * _MIB)
        self._matcher = FrameMatcher(
            urls=parameters.streams, part_timeout_s=parameters.part_timeout_s,
            max_pending_frames=parameters.max_pending_frames, incomplete=parameters.incomplete,
            emit=self._enqueue, acquisition_timeout_s=parameters.acquisition_timeout_s,
        )
        self._behind = RateLimitedLog(log, interval_s=2.0)
        self.acquisitions: list[AcquisitionCounts] = []
        """Every acquisition closed so far (and the open one once stopped); kept as counts, not
        as dicts, because a later acquisition can still show that one only paused."""
        self._finished = False
        self._context: zmq.Context | None = None
        self._streams: list[zmq.Socket] = []
        self._push: zmq.Socket | None = None
        self._stats: zmq.Socket | None = None
        self._last_report = (time.monotonic(), 0)
        self._next_report = float("inf")

    def __enter__(self) -> Assembler:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect to the streams and bind the output sockets."""
        p = self._parameters
        self._context = self._shared_context or zmq.Context(io_threads=p.io_threads)
        readers, writer = _io_thread_masks(self._context.get(zmq.IO_THREADS))
        try:
            for url in p.streams:
                socket = self._context.socket(zmq.SUB)
                socket.setsockopt(zmq.AFFINITY, readers)
                socket.setsockopt(zmq.RCVHWM, p.receive_hwm)
                socket.setsockopt(zmq.MAXMSGSIZE, p.max_message_bytes)
                socket.setsockopt(zmq.LINGER, 0)
                socket.setsockopt(zmq.SUBSCRIBE, b"")
                socket.connect(url)
                self._streams.append(socket)
            self._push = self._bound(zmq.PUSH, p.bind, hwm=1 if p.queue == "latest_only" else p.queue_size,
                                     affinity=writer)
            if p.stats is not None:
                self._stats = self._bound(zmq.PUB, p.stats, hwm=100)
        except BaseException:
            self.close()
            raise

    def _bound(self, kind: int, url: str, *, hwm: int, affinity: int = 0) -> zmq.Socket:
        assert self._context is not None
        socket = self._context.socket(kind)
        socket.setsockopt(zmq.SNDHWM, hwm)
        socket.setsockopt(zmq.AFFINITY, affinity)
        socket.setsockopt(zmq.LINGER, int(_END_SEND_S * 1000))
        try:
            socket.bind(url)
        except zmq.ZMQError as error:
            socket.close(linger=0)
            raise MonitorError(f"assembler: cannot bind {url}: {error}") from None
        return socket

    @property
    def url(self) -> str:
        """Where workers connect: ``bind`` with a ``*`` port resolved (tests bind port ``*``)."""
        return self._endpoint(self._push)

    @property
    def stats_url(self) -> str | None:
        return None if self._stats is None else self._endpoint(self._stats)

    @staticmethod
    def _endpoint(socket: zmq.Socket | None) -> str:
        if socket is None:
            raise RuntimeError("the assembler is not open")
        return socket.getsockopt(zmq.LAST_ENDPOINT).decode().replace("0.0.0.0", "127.0.0.1")

    def close(self) -> None:
        """Close every socket (what ZMQ still holds gets ``_END_SEND_S`` to leave)."""
        for socket in [*self._streams, self._push, self._stats]:
            if socket is not None:
                socket.close()
        self._streams, self._push, self._stats = [], None, None
        if self._context is not None and self._shared_context is None:
            self._context.term()
        self._context = None

    def run(self, *, should_stop: Callable[[], bool] = lambda: False,
            orphaned: Callable[[], bool] = lambda: False) -> None:
        """Assemble until ``should_stop()`` (asked at least every 0.1 s) or, with
        ``stop_after_acquisition``, until the first acquisition's end has been sent.

        ``orphaned()``: the monitor that started it is gone (killed), so no frame will ever be
        taken: it stops at once, without the waits of an orderly end (the launcher waits for the
        job's output, which this process shares, to close)."""
        if self._push is None:
            raise RuntimeError("Assembler.run before open() (use it as a context manager)")
        poller = zmq.Poller()
        interval = self._parameters.status_interval_s
        self._next_report = time.monotonic() + interval if interval else float("inf")
        while not (self._finished or should_stop() or orphaned()):
            self._step(poller)
        if orphaned():
            log.warning("assembler: the monitor that started it is gone; exiting with %d frames not handed on",
                        self._queued_frames)
            for socket in [*self._streams, self._push, self._stats]:
                if socket is not None:
                    socket.setsockopt(zmq.LINGER, 0)
            return
        if not self._finished:
            self._read_what_is_left(poller)
        self._shut_down()

    def _step(self, poller: zmq.Poller) -> None:
        """One turn of the loop: read what is ready, resolve what is due, hand frames on, report."""
        self._watch(poller)
        ready = dict(poller.poll(self._wait_ms(self._next_report)))
        now = time.monotonic()
        for stream, socket in enumerate(self._streams):
            if socket in ready:
                self._read(socket, stream, now)
        self._matcher.expire(now)
        self._flush()
        if now >= self._next_report:
            self._report(now)
            self._next_report = now + self._parameters.status_interval_s

    def _read_what_is_left(self, poller: zmq.Poller) -> None:
        """Stopped during an acquisition: the streams get ``part_timeout_s`` more to end it, so that
        a sender stopped just before (the simulator, a detector stop) has its last frames and its
        end messages read, and counted, rather than left in the sockets."""
        deadline = time.monotonic() + self._parameters.part_timeout_s
        while self._matcher.current is not None and time.monotonic() < deadline:
            self._step(poller)

    def _watch(self, poller: zmq.Poller) -> None:
        """Poll the streams worth reading now, and the workers' socket while frames wait."""
        for socket, wanted in zip(self._streams, self._matcher.readable()):
            poller.register(socket, zmq.POLLIN if wanted else 0)
        poller.register(self._push, zmq.POLLOUT if self._queue else 0)

    def _wait_ms(self, next_report: float) -> int:
        """Until the next report, stop check or matcher deadline."""
        now = time.monotonic()
        matcher_deadline = self._matcher.next_deadline() or float("inf")
        deadline = min(next_report, now + _IDLE_WAKE_S, matcher_deadline)
        return max(0, int((deadline - now) * 1000) + 1)

    def _read(self, socket: zmq.Socket, stream: int, now: float) -> None:
        for _ in range(_READ_BATCH):
            try:
                parts = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._matcher.add(stream, parts, now)

    # --- the queue to the workers ---------------------------------------------------

    def _enqueue(self, item: Outgoing) -> None:
        """Queue one message by the queue policy; start and end messages are never dropped."""
        if isinstance(item, OutgoingFrame):
            if self._parameters.queue == "latest_only" and self._queued_frames >= self._parameters.queue_size:
                self._flush()
                if self._queued_frames >= self._parameters.queue_size:
                    self._drop_oldest_frame("superseded")
            elif self._parameters.queue == "lossless" and self._queued_bytes + item.nbytes > self._buffer_bytes:
                self._flush()
                if self._queued_bytes + item.nbytes > self._buffer_bytes:
                    item.acquisition.add_dropped("workers_behind")
                    self._behind.warning(
                        f"assembler: workers behind: buffer full ({self._queued_frames} frames, "
                        f"{self._parameters.buffer_mb:g} MiB), frame {item.number} dropped "
                        f"({item.acquisition.dropped['workers_behind']} in this acquisition)")
                    return
            self._queued_frames += 1
            self._queued_bytes += item.nbytes
        self._queue.append(item)

    def _drop_oldest_frame(self, reason: DropReason) -> None:
        for i, queued in enumerate(self._queue):
            if isinstance(queued, OutgoingFrame):
                del self._queue[i]
                self._queued_frames -= 1
                self._queued_bytes -= queued.nbytes
                queued.acquisition.add_dropped(reason)
                return

    def _flush(self) -> None:
        """Hand queued messages to ZMQ until it would block."""
        assert self._push is not None
        while self._queue:
            item = self._queue[0]
            try:
                self._push.send_multipart(item.parts(), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._queue.popleft()
            item.sent()
            if isinstance(item, OutgoingFrame):
                self._queued_frames -= 1
                self._queued_bytes -= item.nbytes
                self._matcher.lifetime.frames_sent += 1
            elif isinstance(item, OutgoingEnd):
                self._acquisition_sent(item.acquisition)

    # --- reporting --------------------------------------------------------------------

    def _acquisition_sent(self, counts: AcquisitionCounts) -> None:
        log.info("assembler: %s", counts.summary())
        self.acquisitions.append(counts)
        self._publish(counts, final=True)
        if self._parameters.stop_after_acquisition:
            self._finished = True

    def _report(self, now: float) -> None:
        counts = self._matcher.current
        if counts is not None:
            log.info("assembler: %.0f frames/s, pending %d, queued %d | %s",
                     self._rate(now, counts), self._matcher.pending, self._queued_frames, counts.summary())
        self._publish(counts, final=False)

    def _rate(self, now: float, counts: AcquisitionCounts) -> float:
        then, sent_then = self._last_report
        sent = self._matcher.lifetime.frames_sent
        self._last_report = (now, sent)
        return (sent - sent_then) / max(now - then, 1e-9)

    def _publish(self, counts: AcquisitionCounts | None, *, final: bool) -> None:
        if self._stats is None:
            return
        message: dict[str, Any] = {
            "time": time.time(), "final": final,
            "state": "ended" if final else ("acquiring" if counts is not None else "idle"),
            "acquisition": None if counts is None else counts.as_dict(),
            "pending": self._matcher.pending, "queued": self._queued_frames,
            "lifetime": self._matcher.lifetime.as_dict(),
        }
        try:
            self._stats.send(json.dumps(message).encode(), zmq.NOBLOCK)
        except zmq.Again:
            pass  # PUB drops rather than blocks; nothing is waiting on this send

    def _shut_down(self) -> None:
        """Close the open acquisition, give waiting frames ``stop_timeout_s`` to go out, count the
        rest as ``stop``, and send the remaining start and end messages whatever happened."""
        if not self._finished:
            self._matcher.close_current()
        deadline = time.monotonic() + self._parameters.stop_timeout_s
        while self._queued_frames and time.monotonic() < deadline:
            self._flush()
            if self._queued_frames:
                time.sleep(0.002)
        while self._queued_frames:
            self._drop_oldest_frame("stop")
        deadline = time.monotonic() + _END_SEND_S
        while self._queue and time.monotonic() < deadline:
            self._flush()
            if self._queue:
                time.sleep(0.01)
        unsent_ends = [item.acquisition for item in self._queue if isinstance(item, OutgoingEnd)]
        if unsent_ends:
            log.warning("assembler: the workers took no end message within %g s", _END_SEND_S)
        self.acquisitions += unsent_ends

    def final_report(self) -> dict[str, Any]:
        """Every acquisition's final counts and the lifetime counts: the assembler's last word."""
        return {"acquisitions": [counts.as_dict() for counts in self.acquisitions],
                "lifetime": self._matcher.lifetime.as_dict()}


def _io_thread_masks(io_threads: int) -> tuple[int, int]:
    """ZMQ affinity bitmasks (readers, writer): the writer gets the last I/O thread to itself."""
    if io_threads < 2:
        return 0, 0
    return (1 << (io_threads - 1)) - 1, 1 << (io_threads - 1)
