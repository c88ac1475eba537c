"""Hits served live to CrystFEL: ``indexamajig --zmq-input=URL --zmq-request=next --data-format=msgpack``.

indexamajig's workers each connect a REQ socket, send their request string
(``next``) and wait for one MsgPack map per reply (CrystFEL's
``libcrystfel/src/image-msgpack.c``).  This output answers on a ROUTER socket
with the newest hits it holds, one per reply, each map holding::

    data               {"type": "<f4", "shape": [H, W], "data": <bytes>}  photons, NaN = no valid reading
    peak_list          {"fs": [...], "ss": [...], "intensity": [...]}    raw-frame pixels (centre at integers)
    beam_energy        photon energy, eV
    detector_distance  m
    event_id, timestamp

Map keys are chosen so that no key is the beginning of another: CrystFEL
matches a key by the length of the key it finds in the map.  Requests that
arrive while no hit is waiting are parked and answered when one comes, as
indexamajig waits on its socket.  Hits wait in a bounded queue of the latest
``queue_size``; when nobody asks, older ones are replaced (counted), so the
feed never slows the monitor.  ``live-feed.geom`` in the run folder is the
geometry for it (``peak_list = peak_list``, ``data = data``, header keys for
energy and distance; run indexamajig with ``--peaks=msgpack`` to use the
monitor's peaks).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

from monitor.errors import ConfigurationError
from monitor.outputs.crystfel import LIVE_FEED_GEOMETRY, live_feed_geometry
from monitor.outputs.experiment import Experiment
from monitor.outputs.parameters import LiveFeedParameters
from monitor.processing.protocol import ProcessedEvent

__all__ = ["LiveFeed", "feed_message"]

log = logging.getLogger(__name__)

_POLL_MS = 100


def feed_message(hit: ProcessedEvent, experiment: Experiment) -> bytes:
    """One hit as the MsgPack map CrystFEL's reader takes."""
    frame = np.ascontiguousarray(hit.arrays["frame"], dtype="<f4")
    valid = hit.arrays.get("valid")
    if valid is not None:
        frame = np.where(valid, frame, np.float32(np.nan)).astype("<f4")
    arrays = hit.arrays
    empty = np.zeros(0)
    return msgpack.packb({
        "data": {"type": "<f4", "shape": list(frame.shape), "data": frame.tobytes()},
        "peak_list": {
            "fs": arrays.get("peak_x", empty).astype(np.float64).tolist(),
            "ss": arrays.get("peak_y", empty).astype(np.float64).tolist(),
            "intensity": arrays.get("peak_intensity", empty).astype(np.float64).tolist(),
        },
        "beam_energy": float(experiment.photon_energy_ev),
        "detector_distance": float(experiment.detector_distance_m),
        "event_id": int(hit.values.get("event_id", -1)),
        "timestamp": float(hit.values.get("timestamp", np.nan)),
    }, use_bin_type=True)


class LiveFeed:
    """A ROUTER socket answering each request with one of the latest hits (a :class:`CollectorOutput`)."""

    def __init__(self, *, parameters: LiveFeedParameters, experiment: Experiment) -> None:
        self._parameters = parameters
        self._experiment = experiment
        self._hits: deque[ProcessedEvent] = deque(maxlen=parameters.queue_size)
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.url = parameters.url
        """The bound endpoint (its port filled in when the YAML asked for ``*``)."""
        self._offered = 0
        self._served = 0
        self._requests = 0
        self._bad_requests = 0

    def open(self, *, run_dir: Path) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.bind(self._parameters.url)
        except zmq.ZMQError as error:
            self._socket.close()
            self._context.term()
            raise ConfigurationError(f"outputs.live_feed.url: cannot bind {self._parameters.url}: {error}") from error
        self.url = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        (run_dir / LIVE_FEED_GEOMETRY).write_text(live_feed_geometry(self._experiment))
        self._thread = threading.Thread(target=self._serve, name="live-feed", daemon=True)
        self._thread.start()
        log.info("live feed for indexamajig on %s (geometry %s)", self.url, run_dir / LIVE_FEED_GEOMETRY)

    def on_result(self, result: ProcessedEvent) -> None:
        if result.values.get("is_hit") and "frame" in result.arrays:
            self._offered += 1
            self._hits.append(result)  # a full deque forgets its oldest hit

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        """Nothing to do: the serving thread answers requests as they come."""

    def close(self, *, summary: dict[str, Any]) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._context.term()
            self._socket = None

    def counters(self) -> dict[str, int]:
        return {
            "feed_hits_served": self._served,
            "feed_hits_replaced": self._offered - self._served - len(self._hits),
            "feed_requests": self._requests,
            "feed_bad_requests": self._bad_requests,
        }

    def _serve(self) -> None:
        socket = self._socket
        waiting: deque[bytes] = deque()
        while not self._stopping.is_set():
            if socket.poll(_POLL_MS, zmq.POLLIN):
                while socket.poll(0, zmq.POLLIN):
                    self._take_request(socket.recv_multipart(copy=True), waiting)
            while waiting and self._hits:
                hit = self._hits.popleft()
                self._served += 1  # before the send: whoever got the reply reads a count that includes it
                socket.send_multipart([waiting.popleft(), b"", feed_message(hit, self._experiment)], copy=False)

    def _take_request(self, parts: list[bytes], waiting: deque[bytes]) -> None:
        """A REQ socket's request is [identity, empty delimiter, request]; anything else is refused."""
        if len(parts) != 3 or parts[1] != b"":
            self._bad_requests += 1
            if self._bad_requests == 1:
                log.warning("live feed: a request of %d parts, not a REQ socket's 3, ignored (later ones counted)",
                            len(parts))
            return
        self._requests += 1
        waiting.append(parts[0])
