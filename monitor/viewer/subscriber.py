"""The viewer's end of the results stream: newest message only, skips counted, restarts survived."""

from __future__ import annotations

import zmq

from monitor.errors import WireFormatError
from monitor.outputs.results_format import ResultsMessage, decode_message

__all__ = ["ResultsSubscriber"]

_RECONNECT_MS = 200
_RECONNECT_MAX_MS = 2000


class ResultsSubscriber:
    """A SUB socket that, when asked, drains what arrived and keeps the last message.

    ZeroMQ reconnects the socket by itself when the monitor restarts; a new
    ``run`` name in the header tells the two runs apart.
    """

    def __init__(self, url: str, *, context: zmq.Context | None = None) -> None:
        self.url = url
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, 1)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_MS)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_MAX_MS)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(url)
        self.received = 0
        """Messages taken off the socket."""
        self.skipped = 0
        """Messages the monitor published that this viewer never showed (seq gaps, drained ones)."""
        self.malformed = 0
        self._last: tuple[str, int] | None = None

    def latest(self) -> ResultsMessage | None:
        """The newest message waiting, or None; never waits."""
        newest = None
        while True:
            try:
                parts = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                message = decode_message(parts)
            except WireFormatError:
                self.malformed += 1
                continue
            self._count(message)
            if newest is not None:
                self.skipped += 1  # superseded before it was shown
            newest = message
        return newest

    def _count(self, message: ResultsMessage) -> None:
        run, seq = message.header.get("run", ""), int(message.header.get("seq", 0))
        if self._last is not None and self._last[0] == run and seq > self._last[1]:
            self.skipped += seq - self._last[1] - 1
        self._last = (run, seq)
        self.received += 1

    def close(self) -> None:
        self._socket.close(linger=0)
