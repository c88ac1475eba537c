"""The collector's results stream: a throttled PUB socket plus a never-blocking request socket.

Every ``1 / rate_hz`` seconds :meth:`ResultsStream.on_tick` publishes one
self-contained message (status figures, the pipeline's aggregates, the latest
hit and non-hit events with their images binned); a viewer that joins late
needs nothing older.  The PUB socket keeps at most one message per subscriber
(``SNDHWM`` 1) and sends with ``NOBLOCK``: a slow, stalled or absent viewer
loses messages, the collector never waits.  ``CONFLATE`` would do the same but
drops multipart messages, which the raw-buffer format needs.

The request socket is a ROUTER (clients use REQ): it is polled with a zero
timeout in :meth:`on_tick`, and a ROUTER never enters the "must reply first"
state a REP socket gets stuck in when a client vanishes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from monitor.errors import ConfigurationError, WireFormatError
from monitor.outputs.parameters import ResultsStreamParameters
from monitor.outputs.protocol import LATEST_HIT_PREFIX
from monitor.outputs.results_format import decode_request, encode_message
from monitor.processing.protocol import ProcessedEvent

__all__ = ["ResultsStream", "bin_image"]

log = logging.getLogger(__name__)

_MIN_IMAGE_SIDE = 256
"""2-D arrays at least this large on both sides are images, and are binned."""
_REQUESTS_PER_TICK = 8
"""Bounds the time one tick spends answering requests."""
_END_MESSAGE_LINGER_MS = 200
"""How long closing may wait for the "end" message to leave (a stalled viewer costs this once)."""


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Return a new float32 array averaging ``factor`` x ``factor`` pixel blocks.

    Trailing rows and columns that do not fill a block are dropped.  The result
    is always a fresh array, so it can be sent zero-copy while the pipeline
    goes on updating its own.

    >>> bin_image(np.arange(16, dtype=np.float32).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    if factor == 1:
        return image.astype(np.float32, copy=True)
    rows, columns = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: rows * factor, : columns * factor].reshape(rows, factor, columns, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _is_image(array: np.ndarray) -> bool:
    return array.ndim == 2 and min(array.shape) >= _MIN_IMAGE_SIDE


class _LatestEvent:
    """The newest event of one kind (hit or non-hit) that carries a frame, binned once."""

    def __init__(self, *, prefix: str) -> None:
        self.prefix = prefix
        self.event: ProcessedEvent | None = None
        self._binned: dict[str, np.ndarray] = {}
        self._binned_event: ProcessedEvent | None = None

    def arrays(self, *, bin_factor: int) -> dict[str, np.ndarray]:
        """The event's arrays under ``<prefix>/<name>``, images binned (cached per event)."""
        if self.event is None:
            return {}
        if self._binned_event is not self.event:
            self._binned = {
                f"{self.prefix}/{name}": bin_image(array, bin_factor) if _is_image(array) else array
                for name, array in self.event.arrays.items()
            }
            self._binned_event = self.event
        return self._binned

    def full_arrays(self) -> dict[str, np.ndarray]:
        """The event's arrays at full resolution, under ``<prefix>/<name>``."""
        if self.event is None:
            return {}
        return {f"{self.prefix}/{name}": array for name, array in self.event.arrays.items()}

    def values(self) -> dict[str, Any] | None:
        return None if self.event is None else self.event.values


class ResultsStream:
    """Publishes the run's results for viewers; answers their requests (a :class:`CollectorOutput`)."""

    def __init__(
        self,
        *,
        parameters: ResultsStreamParameters,
        monitor_parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self._parameters = parameters
        self._monitor_parameters = dict(monitor_parameters or {})
        self._context: zmq.Context | None = None
        self._publisher: zmq.Socket | None = None
        self._replier: zmq.Socket | None = None
        self._run = ""
        self._sequence = 0
        self._requests_answered = 0
        self._next_publish = 0.0
        self._status: dict[str, Any] = {}
        self._snapshot: dict[str, Any] = {}
        self._hit = _LatestEvent(prefix="hit")
        self._non_hit = _LatestEvent(prefix="nonhit")
        self.url = ""
        """The PUB endpoint actually bound (a ``*`` port resolved), set by :meth:`open`."""
        self.request_url = ""
        """The request endpoint actually bound, set by :meth:`open`."""

    def open(self, *, run_dir: Path) -> None:
        self._run = run_dir.name
        self._context = zmq.Context(io_threads=1)
        self._publisher = self._bind(zmq.PUB, self._parameters.url, "url")
        self._publisher.setsockopt(zmq.SNDHWM, 1)
        self._replier = self._bind(zmq.ROUTER, self._parameters.request_url, "request_url")
        self.url = self._publisher.getsockopt_string(zmq.LAST_ENDPOINT)
        self.request_url = self._replier.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info("results stream on %s, requests on %s", self.url, self.request_url)

    def on_result(self, result: ProcessedEvent) -> None:
        if "frame" not in result.arrays:
            return
        latest = self._hit if result.values.get("is_hit") else self._non_hit
        latest.event = result

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        self._status = status
        self._snapshot = {k: v for k, v in snapshot.items() if not k.startswith(LATEST_HIT_PREFIX)}
        self._answer_requests()
        now = time.monotonic()
        if now >= self._next_publish:
            self._next_publish = now + 1.0 / self._parameters.rate_hz
            self._publish("update")

    def close(self, *, summary: dict[str, Any]) -> None:
        if self._context is None:
            return
        assert self._publisher is not None and self._replier is not None
        self._send(self._publisher, encode_message(self._header("end", summary=summary), {}))
        self._publisher.close(linger=_END_MESSAGE_LINGER_MS)
        self._replier.close(linger=0)
        self._context.term()
        self._context = self._publisher = self._replier = None

    def counters(self) -> dict[str, int]:
        return {
            "stream_messages_published": self._sequence,
            "stream_requests_answered": self._requests_answered,
        }

    def _bind(self, socket_type: int, url: str, field: str) -> zmq.Socket:
        assert self._context is not None
        socket = self._context.socket(socket_type)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.bind(url)
        except zmq.ZMQError as error:
            socket.close()
            self._context.destroy(linger=0)
            self._context = self._publisher = self._replier = None  # close() has nothing left to do
            raise ConfigurationError(f"outputs.results_stream.{field}: cannot bind {url}: {error}") from error
        return socket

    def _header(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, "run": self._run, "seq": self._sequence, "time": time.time(), **fields}

    def _publish(self, kind: str) -> None:
        assert self._publisher is not None
        bin_factor = self._parameters.bin_factor
        arrays = {
            f"snapshot/{name}": bin_image(value, bin_factor) if _is_image(value) else value.copy()
            for name, value in self._snapshot.items()
            if isinstance(value, np.ndarray)
        }
        arrays |= self._hit.arrays(bin_factor=bin_factor) | self._non_hit.arrays(bin_factor=bin_factor)
        header = self._header(
            kind,
            bin=bin_factor,
            status=self._status,
            snapshot=self._snapshot_scalars(),
            hit=self._hit.values(),
            nonhit=self._non_hit.values(),
        )
        self._send(self._publisher, encode_message(header, arrays))
        self._sequence += 1

    def _answer_requests(self) -> None:
        assert self._replier is not None
        for _ in range(_REQUESTS_PER_TICK):
            try:
                identity, *envelope, payload = self._replier.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:  # a message without payload: nothing to answer
                continue
            self._send(self._replier, [identity, *envelope, *self._reply(payload)])
            self._requests_answered += 1

    def _reply(self, payload: bytes) -> list[Any]:
        try:
            request = decode_request(payload)
        except WireFormatError as error:
            return encode_message(self._header("error", error=str(error)), {})
        match request["request"]:
            case "latest_frame":
                latest = self._non_hit if request.get("which") == "nonhit" else self._hit
                header = self._header("frame", bin=1, event=latest.values())
                return encode_message(header, latest.full_arrays())
            case "parameters":
                parameters = {"outputs": {"results_stream": self._parameters.model_dump(mode="json")}}
                return encode_message(self._header("parameters", parameters=parameters | self._monitor_parameters), {})
            case _:  # "status"
                header = self._header("status", status=self._status, snapshot=self._snapshot_scalars())
                return encode_message(header, {})

    def _snapshot_scalars(self) -> dict[str, Any]:
        return {name: value for name, value in self._snapshot.items() if not isinstance(value, np.ndarray)}

    @staticmethod
    def _send(socket: zmq.Socket, parts: list[Any]) -> None:
        """Send without waiting; a message no peer can take now is dropped (latest-only)."""
        try:
            socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass
