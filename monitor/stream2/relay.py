"""The one reader of a Stream V2 source, handing its messages on to the worker ranks.

A DECTRIS DCU (or Jungfraujoch) pushes each message to *one* connected
client, round robin: a start message would reach one worker of many, and the
others could not read their images (size, type, pixel mask).  So the
collecting node reads the stream alone, in this relay (a thread: it only
looks at the first bytes of a message and passes the buffer on, never
decodes images), and hands on:

* a start message to **every** worker, before any image of its series (and
  to a worker that connects later, first thing); one copy is marked
  ``announce``, so the run counts one acquisition;
* each image to one worker that has asked for work (a credit per image, so
  that a slow worker gets fewer and the source waits, never overflows a
  queue): the detector's back-pressure reaches through to the workers;
* an end message to one worker, with the number of images of its series
  handed on, so that the collector knows when all are in;
* nothing of other types (Jungfraujoch's ``calibration`` and ``metadata``,
  whatever comes next): they are counted by type and named once in the log.

Worker messages are multipart ``[kind, payload, ...]`` over ROUTER/DEALER:
``S`` start, ``A`` start to announce, ``I`` image, ``E`` end (with a JSON
count).  A worker sends ``R`` for each image it can take.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import cbor2
import zmq

from monitor.stream2.cbor import message_type

__all__ = ["DETECTOR_FIELDS", "Stream2Relay", "RelayedSeries", "START", "ANNOUNCE", "IMAGE", "END", "CREDIT"]

log = logging.getLogger(__name__)

START, ANNOUNCE, IMAGE, END, CREDIT = b"S", b"A", b"I", b"E", b"R"

_POLL_MS = 50
"""How often the relay thread looks at its stop flag while nothing arrives."""


@dataclass
class RelayedSeries:
    """One series as the relay saw it: its ids, what the start announced, what went on, how it ended."""

    series_id: int | None
    series_unique_id: str | None
    number_of_images: int | None = None
    images: int = 0
    ended: str | None = None
    """``end message``, ``stopped`` (the run stopped first), or None while open."""
    detector: dict[str, Any] = field(default_factory=dict)
    """What the start says of the detector's place and the beam (:data:`DETECTOR_FIELDS`)."""


@dataclass
class _Counts:
    messages: int = 0
    images: int = 0
    unreadable: int = 0
    """Messages whose type could not be read: handed to a worker as images, which counts each as failed."""
    other_types: dict[str, int] = field(default_factory=dict)


DETECTOR_FIELDS = ("image_size_x", "image_size_y", "pixel_size_x", "beam_center_x", "beam_center_y",
                   "detector_translation", "detector_distance", "incident_energy")
"""Start-message fields the run's geometry is made of: a series that changes one has moved the detector."""


def _decoded_type(buffer: bytes) -> str | None:
    """The ``type`` of a message whose first key is not ``type`` (decoded whole: rare), None if unreadable."""
    try:
        message = cbor2.loads(buffer)
    except Exception:  # not CBOR: a worker fails it, and says why
        return None
    kind = message.get("type") if isinstance(message, dict) else None
    return kind if isinstance(kind, str) else None


def _series(buffer: bytes) -> RelayedSeries:
    """A start message's series: ids, announced images, detector (decoded: a start is small; its
    tagged arrays stay undecoded)."""
    try:
        message = cbor2.loads(buffer)
    except Exception:  # the workers say what is wrong with it, once each
        message = {}
    message = message if isinstance(message, dict) else {}
    ids = [message.get(key) for key in ("series_id", "series_unique_id", "number_of_images")]
    return RelayedSeries(ids[0] if isinstance(ids[0], int) else None, ids[1] if isinstance(ids[1], str) else None,
                         ids[2] if isinstance(ids[2], int) else None,
                         detector={key: message[key] for key in DETECTOR_FIELDS if key in message})


class Stream2Relay:
    """Reads ``source`` (connects a PULL socket) and serves workers on ``bind`` (a ROUTER), in a thread."""

    def __init__(self, *, source: str, bind: str, receive_hwm: int) -> None:
        self._source_url = source
        self._bind = bind
        self._receive_hwm = receive_hwm
        self._context = zmq.Context()
        self._workers = self._context.socket(zmq.ROUTER)
        self._workers.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._workers.setsockopt(zmq.SNDHWM, 0)  # credits bound what a worker holds
        self._workers.setsockopt(zmq.LINGER, 0)
        self._workers.bind(bind)  # here, not in the thread: a taken port is the caller's error
        self._lock = threading.Lock()
        self._counts = _Counts()
        self._series: list[RelayedSeries] = []
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._stopped_reading = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="stream2-relay", daemon=True)
        self._known: list[bytes] = []
        self._ready: deque[bytes] = deque()
        self._start_message: zmq.Frame | None = None
        self._announced = True
        self._held: zmq.Frame | None = None
        """A message read but not yet handed on (an image waits for a worker's credit)."""
        self._first_start: bytes | None = None
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def wait_for_first_start(self, timeout_s: float) -> bytes | None:
        """The first start message read (it is handed on all the same), or None within ``timeout_s``.

        The relay reads the source before any worker has connected: a start
        needs no worker to be kept, and an image waits for the first credit.
        """
        return self._first_start if self._started.wait(timeout_s) else None

    def stop_reading(self) -> None:
        """Take no more from the source; end the open series behind what was handed on."""
        self._stop.set()

    def close(self) -> None:
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join()
        self._workers.close(linger=0)
        self._context.term()

    @property
    def error(self) -> str | None:
        """Why the relay thread ended early (a socket error), or None."""
        return self._error

    def figures(self) -> dict[str, Any]:
        """Counts so far: messages, images handed on, unreadable messages, other types, each series."""
        with self._lock:
            counts = self._counts
            return {"messages": counts.messages, "images": counts.images, "unreadable": counts.unreadable,
                    "other_types": dict(counts.other_types), "series": [asdict(s) for s in self._series]}

    # ---- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        source = self._context.socket(zmq.PULL)
        source.setsockopt(zmq.RCVHWM, self._receive_hwm)
        source.setsockopt(zmq.LINGER, 0)
        try:
            source.connect(self._source_url)
            poller = zmq.Poller()
            poller.register(self._workers, zmq.POLLIN)
            while not self._closing.is_set():
                reading = self._held is None and not self._stop.is_set()
                if reading:
                    poller.register(source, zmq.POLLIN)
                events = dict(poller.poll(_POLL_MS))
                if reading:
                    poller.unregister(source)
                if self._workers in events:
                    self._take_credits()
                if reading and source in events:
                    self._held = source.recv(copy=False)
                if self._held is not None and self._route(self._held):
                    self._held = None
                if self._stop.is_set() and not self._stopped_reading.is_set():
                    self._end_open_series("stopped")
                    self._stopped_reading.set()
        except zmq.ZMQError as error:
            self._error = f"Stream V2 relay: {error}"
            log.error("%s", self._error)
        finally:
            source.close(linger=0)

    def _take_credits(self) -> None:
        while True:
            try:
                identity, kind = self._workers.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if kind != CREDIT:
                continue
            if identity not in self._known:
                self._known.append(identity)
                if self._start_message is not None:  # a late worker learns the open series first
                    if self._send(identity, ANNOUNCE if not self._announced else START, self._start_message):
                        self._announced = True
            self._ready.append(identity)

    def _send(self, identity: bytes, kind: bytes, *payload: Any) -> bool:
        """Hand a message to one worker; False, and the worker forgotten, when it has gone (a lost rank:
        the run goes on without it, and so does the relay)."""
        try:
            self._workers.send_multipart([identity, kind, *payload], copy=False)
            return True
        except zmq.ZMQError as error:
            if error.errno != zmq.EHOSTUNREACH:
                raise
        if identity in self._known:
            self._known.remove(identity)
            log.warning("Stream V2 relay: a worker has gone; the others take its share")
        self._ready = deque(ready for ready in self._ready if ready != identity)
        return False

    def _route(self, frame: zmq.Frame) -> bool:
        """Hand ``frame`` on; False when it is an image and no worker can take one yet (it waits)."""
        kind = message_type(frame.buffer) or _decoded_type(frame.bytes)
        if kind == "image" or kind is None:
            return self._image(frame, readable=kind is not None)
        with self._lock:
            self._counts.messages += 1
        if kind == "start":
            self._start(frame)
        elif kind == "end":
            self._end(frame)
        else:
            with self._lock:
                seen = self._counts.other_types.get(kind, 0)
                self._counts.other_types[kind] = seen + 1
            if not seen:
                log.info("Stream V2: messages of type %r are not used here (counted, not read)", kind[:40])
        return True

    def _image(self, frame: zmq.Frame, *, readable: bool) -> bool:
        """Hand an image to the next worker with credit; False when none can take it yet."""
        while self._ready:
            if self._send(self._ready.popleft(), IMAGE, frame):
                break
        else:
            return False
        with self._lock:
            self._counts.messages += 1
            self._counts.images += 1
            self._counts.unreadable += not readable
            if self._series and self._series[-1].ended is None:
                self._series[-1].images += 1
            else:  # images with no start before them: the workers fail them, but they are counted here
                self._series.append(RelayedSeries(None, None, images=1))
        return True

    def _start(self, frame: zmq.Frame) -> None:
        self._end_open_series("a new start message")
        series = _series(frame.bytes)
        with self._lock:
            self._series.append(series)
        self._start_message = frame
        self._announced = False
        if self._first_start is None:
            self._first_start = frame.bytes
            self._started.set()
        for identity in list(self._known):
            if self._send(identity, START if self._announced else ANNOUNCE, frame):
                self._announced = True

    def _end(self, frame: zmq.Frame) -> None:
        with self._lock:
            series = self._series[-1] if self._series and self._series[-1].ended is None else None
        if series is None:
            log.info("Stream V2: an end message with no open series was ignored")
            return
        self._close_series(series, "end message", frame)

    def _end_open_series(self, why: str) -> None:
        with self._lock:
            series = self._series[-1] if self._series and self._series[-1].ended is None else None
        if series is not None:
            self._close_series(series, why, None)

    def _close_series(self, series: RelayedSeries, why: str, frame: zmq.Frame | None) -> None:
        """Hand the end on to one worker with the series' image count (the collector waits for them)."""
        with self._lock:
            series.ended = why
        self._start_message = None
        counts = json.dumps({"frames_sent": series.images, "series_id": series.series_id,
                             "series_unique_id": series.series_unique_id, "ended": why}).encode()
        for identity in list(self._known):
            if self._send(identity, END, frame if frame is not None else b"", counts):
                return
