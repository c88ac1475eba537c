"""Replay captured receiver streams on 127.0.0.1, one PUB-like socket per stream, as slsReceiver sends them.

Each stream binds an XPUB socket on a free port: XPUB behaves like the
receiver's PUB for the subscriber, but tells us when the subscription has
arrived, so nothing is sent before the assembler listens (a PUB drops
messages sent before that, silently).  ``XPUB_NODROP`` makes a full queue
block the sender instead of dropping, so that a replay is lossless unless a
test asks for the receiver's dropping behaviour (``lossless=False``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import zmq

from captures import RECEIVER, read_capture
from monitor import wire
from monitor.assembler import Assembler, AssemblerParameters, AssemblerStats

__all__ = [
    "Message", "Replayer", "load_case", "repeat_with_shifted_frames", "is_end", "Output", "run_through_assembler",
]

Message = list[bytes]


def load_case(name: str) -> list[list[Message]]:
    """The captured messages of every stream of one case in ``tests/data/slsreceiver-9.2.0``."""
    files = sorted((RECEIVER / name).glob("stream*.zmqmsgs.xz"), key=lambda path: _stream_index(path))
    return [list(read_capture(path)) for path in files]


def _stream_index(path: Path) -> int:
    return int(path.name.split(".")[0].removeprefix("stream"))


def is_end(message: Message) -> bool:
    return len(message) == 1


def repeat_with_shifted_frames(stream: Sequence[Message], repeats: int) -> list[Message]:
    """One stream's data messages ``repeats`` times, frame numbers shifted to follow on, then its end."""
    data = [message for message in stream if not is_end(message)]
    ends = [message for message in stream if is_end(message)]
    count = len(data)
    total = count * repeats
    shifted = []
    for k in range(repeats):
        for message in data:
            header = json.loads(message[0])
            for key in ("frameNumber", "acqIndex"):
                header[key] += k * count
            header["frameIndex"] += k * count
            header["progress"] = round(100 * (header["frameIndex"] + 1) / total, 4)
            shifted.append([json.dumps(header).encode() + b"\n", message[1]])
    return shifted + ends


class Replayer:
    """One bound XPUB socket per stream; :meth:`send` plays the messages once subscribers listen."""

    def __init__(self, streams: Sequence[Sequence[Message]], *, lossless: bool = True, hwm: int = 1000) -> None:
        self.streams = [list(stream) for stream in streams]
        self._context = zmq.Context()
        self._sockets = []
        for _ in self.streams:
            socket = self._context.socket(zmq.XPUB)
            socket.setsockopt(zmq.SNDHWM, hwm)
            socket.setsockopt(zmq.XPUB_NODROP, int(lossless))
            socket.setsockopt(zmq.LINGER, 2000)
            socket.bind("tcp://127.0.0.1:*")
            self._sockets.append(socket)
        self.urls = [socket.getsockopt(zmq.LAST_ENDPOINT).decode() for socket in self._sockets]

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wait_for_subscribers(self, *, streams: Iterable[int] | None = None, timeout_s: float = 10.0) -> None:
        """Block until every stream (or those named) has a (new) subscriber: its subscription message arrived."""
        deadline = time.monotonic() + timeout_s
        for i in range(len(self._sockets)) if streams is None else streams:
            url, socket = self.urls[i], self._sockets[i]
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not socket.poll(remaining_ms, zmq.POLLIN):
                raise TimeoutError(f"nobody subscribed to {url} within {timeout_s} s")
            socket.recv()  # b"\x01" + topic

    def send(self, *, rate_hz: float | None = None, end_pause_s: float = 0.1) -> None:
        """Send frame by frame across streams (as the receivers do), each stream's trailing ends last.

        After end messages it pauses: real acquisitions are apart in time, and
        without a pause one stream's next acquisition could overtake another
        stream's end.
        """
        period = 1.0 / rate_hz if rate_hz else 0.0
        start = time.perf_counter()
        for i, step in enumerate(self._steps()):
            if period:
                delay = start + i * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            for socket, message in step:
                self._send(socket, message)
            if any(is_end(message) for _, message in step):
                time.sleep(end_pause_s)

    def send_to(self, stream: int, messages: Iterable[Message]) -> None:
        """Send ``messages`` on one stream only (for hand-made bad input)."""
        for message in messages:
            self._send(self._sockets[stream], message)

    @staticmethod
    def _send(socket: zmq.Socket, message: Message) -> None:
        socket.send_multipart(message, copy=False)  # blocks when full (lossless), else drops like PUB

    def _steps(self) -> Iterable[list[tuple[zmq.Socket, Message]]]:
        bodies, tails = [], []
        for stream in self.streams:
            cut = len(stream)
            while cut and is_end(stream[cut - 1]):
                cut -= 1
            bodies.append(stream[:cut])
            tails.append(stream[cut:])
        for parts in (bodies, tails):
            for step in zip_longest(*parts):
                yield [(socket, message) for socket, message in zip(self._sockets, step) if message is not None]

    def close(self) -> None:
        for socket in self._sockets:
            socket.close()
        self._context.term()


@dataclass
class Output:
    """What came out of the assembler's PUSH socket (parsed) and its stats socket."""

    messages: list[wire.SyncMessage] = field(default_factory=list)
    stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def frames(self) -> list[wire.SyncFrame]:
        return [m for m in self.messages if isinstance(m, wire.SyncFrame)]

    @property
    def starts(self) -> list[wire.SyncStart]:
        return [m for m in self.messages if isinstance(m, wire.SyncStart)]

    @property
    def ends(self) -> list[wire.SyncEnd]:
        return [m for m in self.messages if isinstance(m, wire.SyncEnd)]

    @property
    def final_stats(self) -> list[dict[str, Any]]:
        return [s for s in self.stats if s["final"]]


def run_through_assembler(
    streams: Sequence[Sequence[Message]], *, acquisitions: int = 1, timeout_s: float = 20.0,
    before_replay: Callable[[Replayer], None] | None = None, rate_hz: float | None = None,
    reader_delay_s: float = 0.0, reader_hwm: int = 1000, **parameters: Any,
) -> Output:
    """Replay ``streams`` into an assembler running in a thread; collect until ``acquisitions`` ends.

    The reader (a worker) starts ``reader_delay_s`` after the replay.  After
    the last ``series_end`` it listens a little longer, so that a test sees
    anything sent that should not have been.
    """
    output = Output()
    settings = {"bind": "tcp://127.0.0.1:*", "stats": "tcp://127.0.0.1:*", "status_interval_s": 0, **parameters}
    with Replayer(streams) as replayer, Assembler(AssemblerParameters(streams=replayer.urls, **settings)) as assembler:
        context = zmq.Context.instance()
        pull = context.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.setsockopt(zmq.RCVHWM, reader_hwm)
        pull.connect(assembler.url)
        stats = AssemblerStats(assembler.stats_url or "", context=context)
        stop = threading.Event()
        thread = threading.Thread(target=assembler.run, kwargs={"should_stop": stop.is_set}, daemon=True)
        thread.start()
        try:
            replayer.wait_for_subscribers()
            time.sleep(0.05)  # the stats subscription, which nothing confirms
            if before_replay is not None:
                before_replay(replayer)
            sender = threading.Thread(target=replayer.send, kwargs={"rate_hz": rate_hz}, daemon=True)
            sender.start()
            time.sleep(reader_delay_s)
            deadline = time.monotonic() + timeout_s
            settle = None
            while time.monotonic() < (settle or deadline):
                if pull.poll(50):
                    output.messages.append(wire.parse_sync_message(pull.recv_multipart()))
                    if len(output.ends) >= acquisitions and settle is None:
                        settle = time.monotonic() + 0.3
            sender.join(timeout=5)
        finally:
            stop.set()
            thread.join(timeout=5)
            while (message := stats.poll()) is not None:
                output.stats.append(message)
            stats.close()
            pull.close()
    return output
