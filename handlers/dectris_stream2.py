"""Data event handler for DECTRIS Stream V2, and for PSI Jungfraujoch's stream built on it.

An event is one image message (one exposure, every channel of it); a
series (start ... end) is an acquisition.  The detector's PUSH socket gives
each message to one client only, so the collecting node reads the stream
alone (:class:`monitor.stream2.relay.Stream2Relay`) and hands every worker the
start message, each image to one of them, and the end to one: see there.

Workers decode what they get: CBOR, DECTRIS' compression (``bslz4``,
``lz4``; Jungfraujoch's ``bszstd``), one channel (``channel``, default the
first the detector lists).  Pixels the start message's mask marks, and those
at the no-data value, are invalid.  Counts are photons: the pipeline takes
``processing_layer.calibration: photon_counting``.  A message that does not
decode, or whose image does not match its series (type, size, channel), is
one failed event; a message of a type not used here (Jungfraujoch's
``calibration``, ``metadata``) is counted by type and skipped.

The geometry (beam centre, pixel size, distance, energy) comes from the
start message: with ``geometry_file`` set, the collecting node waits for the
first start message and writes the detector it describes there, as a
CrystFEL geometry, before the pipeline reads ``processing_layer.geometry_file``
(name the same file there) and the hit files copy it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator
from typing import Any, Literal

import zmq
from pydantic import Field, field_validator

from handlers.parameters import CountingSourceParameters
from handlers.protocol import Event
from monitor.bind_check import Listener, tcp_listener
from monitor.endpoints import Endpoint, check_endpoint, endpoint_for_peers
from monitor.errors import ConfigurationError, DataExtractionError, WireFormatError
from monitor.stream2.cbor import decode
from monitor.stream2.messages import Image, SeriesStart, parse_message
from monitor.stream2.relay import ANNOUNCE, CREDIT, END, IMAGE, START, Stream2Relay
from monitor.stream2.simulator import Stream2SimulatorParameters
from monitor.stream2.simulated_source import SimulatedStream2
from sources.protocol import extract_all
from sources.stream2 import DATA_SOURCES, SeriesFrames, write_geometry

__all__ = ["DectrisStream2ZmqDataEventHandler", "Stream2Parameters"]

log = logging.getLogger(__name__)

SIMULATOR = "simulator"
"""The ``source`` value that makes the monitor start its own simulated EIGER2."""

_START_WAIT_LOG_S = 10.0


class Stream2Parameters(CountingSourceParameters):
    """The ``data_retrieval_layer`` section for this handler: ``source`` is the detector's Stream V2 URL
    (a DCU: ``tcp://DCU:31001``), or ``simulator``."""

    stop_after_acquisition: bool = False
    """End the run after the first series' end message (live use keeps running)."""
    channel: str | None = None
    """The channel (threshold) to read, e.g. ``threshold_1``; None: the first the start message lists."""
    relay_bind: Endpoint = "tcp://127.0.0.1:5620"
    """Where the collecting node hands messages to the workers; on a cluster its host name, or
    ``tcp://*:PORT`` (workers then connect to the collector's host)."""
    start_timeout_s: float = Field(default=300.0, gt=0)
    """With ``geometry_file``: how long the start waits for the first start message (the detector's arm)."""
    poll_interval_s: float = Field(default=0.1, gt=0, le=5)
    receive_hwm: int = Field(default=8, ge=1)
    """Images handed to a worker ahead of its work (its credits)."""
    max_message_bytes: int = Field(default=256 << 20, ge=1 << 20)
    """A larger message is dropped by ZMQ on a worker's socket (a 16M start message with masks is ~80 MiB)."""
    simulator: Stream2SimulatorParameters = Stream2SimulatorParameters()
    """Used when ``source`` is ``simulator``: the collecting node starts it."""

    @field_validator("source")
    @classmethod
    def _source_is_an_endpoint(cls, source: str) -> str:
        return source if source == SIMULATOR else check_endpoint(source)

    @property
    def url(self) -> str:
        """Where the relay reads."""
        return self.simulator.url if self.source == SIMULATOR else self.source


class DectrisStream2ZmqDataEventHandler:
    """Data event handler for DECTRIS Stream V2 and Jungfraujoch (interface: handlers.protocol)."""

    Parameters = Stream2Parameters

    def __init__(self, *, source: str, parameters: Stream2Parameters) -> None:
        self._source = source
        self._parameters = parameters
        self._sources = {name: DATA_SOURCES[name]() for name in parameters.required_data}
        self._relay: Stream2Relay | None = None
        self._simulated: SimulatedStream2 | None = None
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._series: dict[int, SeriesFrames] = {}
        self._unusable_start: str | None = None
        """Why the last start message could not be used (its images fail with this reason)."""
        self._workers_url = parameters.relay_bind
        self._series_checked = 0

    def connect_workers_to(self, collector_host: str) -> str:
        """The URL workers connect to: the relay's, a wildcard bind reached by the collector's host name."""
        self._workers_url = endpoint_for_peers(self._parameters.relay_bind, collector_host)
        return self._workers_url

    def designated_collector_rank(self) -> Literal["first", "last"]:
        return self._parameters.collector_rank

    def skip_rank_finalization(self) -> bool:
        return self._parameters.skip_rank_finalization

    # ---- collecting node ------------------------------------------------------------------------

    def listening_addresses(self) -> list[Listener]:
        """What the collecting node binds: the relay, and the simulator's PUSH socket when it runs one."""
        p = self._parameters
        listeners = tcp_listener("data_retrieval_layer.relay_bind", p.relay_bind)
        if self._source == SIMULATOR:
            listeners += tcp_listener("data_retrieval_layer.simulator.url", p.simulator.url)
        return listeners

    def initialize_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Start the simulator (``source: simulator``) and the relay; write the geometry if asked."""
        p = self._parameters
        if self._source == SIMULATOR:
            self._simulated = SimulatedStream2(p.simulator)
            self._simulated.start()
        try:
            self._relay = Stream2Relay(source=p.url, bind=p.relay_bind, receive_hwm=p.receive_hwm)
        except zmq.ZMQError as error:
            raise ConfigurationError(f"data_retrieval_layer.relay_bind: cannot bind {p.relay_bind} ({error})") from None
        self._relay.start()
        if p.geometry_file is not None:
            write_geometry(p.geometry_file, self._first_start(p.url, p.start_timeout_s))
        log.info("reading Stream V2 from %s; workers connect to %s", p.url, p.relay_bind)

    def _first_start(self, url: str, timeout_s: float) -> SeriesStart:
        """The first start message the relay reads, decoded here (the relay hands it on as well)."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self._simulated is not None:
                self._simulated.check()
            buffer = self._relay.wait_for_first_start(min(left, _START_WAIT_LOG_S))
            if buffer is not None:
                try:
                    return parse_message(decode(buffer))  # the relay keeps messages of type "start" only
                except WireFormatError as error:
                    raise ConfigurationError(f"the first start message from {url} is unreadable: {error}") from None
            log.info("waiting for the detector's start message on %s (arm it)", url)
        raise ConfigurationError(f"no start message from {url} within start_timeout_s ({timeout_s:g} s): "
                                 "arm the detector, or raise data_retrieval_layer.start_timeout_s")

    def collecting_node_status(self) -> dict[str, Any]:
        """Images handed on so far, and the simulator's total (a progress bar)."""
        status: dict[str, Any] = {}
        if self._simulated is not None:
            status["frames_expected"] = self._parameters.simulator.frames
            self._simulated.check()
        if self._relay is not None:
            if self._relay.error is not None:
                raise RuntimeError(self._relay.error)
            figures = self._relay.figures()
            status.update(stream2_images=figures["images"], stream2_other=sum(figures["other_types"].values()))
            self._note_moves(figures["series"])
        return status

    def _note_moves(self, series: list[dict[str, Any]]) -> None:
        """Say once per series that its detector is not the first series' (the run's geometry is)."""
        first = next((s["detector"] for s in series if s["detector"]), None)
        for number, later in enumerate(series[self._series_checked:], start=self._series_checked):
            changed = sorted(key for key in later["detector"] if later["detector"][key] != (first or {}).get(key))
            if changed and number:
                log.warning("series %s (%s) changes %s: peaks and d_min follow the first series' geometry; "
                            "restart the monitor to follow the detector", later["series_id"],
                            later["series_unique_id"], ", ".join(changed))
        self._series_checked = len(series)

    def stop_event_source(self) -> bool:
        """The relay takes no more images and ends the open series behind those handed on."""
        if self._simulated is not None:
            self._simulated.stop()
        if self._relay is None:
            return False
        self._relay.stop_reading()
        return True

    def end_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> dict[str, Any]:
        """Stop the relay and the simulator; report the series, the other messages and the truth."""
        summary: dict[str, Any] = {}
        if self._relay is not None:
            self._relay.close()
            figures = self._relay.figures()
            summary.update(stream2_series=figures["series"], stream2_messages=figures["messages"],
                           stream2_images=figures["images"], stream2_unreadable=figures["unreadable"],
                           stream2_other_messages=figures["other_types"])
        if self._simulated is not None:
            summary.update(self._simulated.finish())
        return summary

    def source_accounting(self) -> dict[str, Any]:
        """Sent: the simulator's count, else what the relay read (PUSH to one reader loses nothing);
        images the simulator sent that were never read (a stop) are dropped as ``stop``."""
        relayed = self._relay.figures()["images"] if self._relay is not None else 0
        sent = self._simulated.sent if self._simulated is not None else relayed
        dropped = {"stop": sent - relayed} if sent is not None and sent > relayed else {}
        died = self._simulated.died if self._simulated is not None else []
        return {"sent": sent, "delivered": relayed, "dropped": dropped, "estimates": {}, "died": died}

    # ---- workers --------------------------------------------------------------------------------

    def initialize_event_handling_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Connect to the relay and ask for ``receive_hwm`` images."""
        for source in self._sources.values():
            source.initialize_data_source()
        self._context = zmq.Context()
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.MAXMSGSIZE, self._parameters.max_message_bytes)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self._workers_url)
        self._socket = socket

    def event_generator(self, *, node_rank: int, node_pool_size: int) -> Generator[Event, None, None]:
        """One event per image (undecoded: ``open_event`` decodes it), start and end events, idles."""
        if self._socket is None:
            raise RuntimeError("event_generator before initialize_event_handling_on_processing_node")
        socket = self._socket
        timeout_ms = int(self._parameters.poll_interval_s * 1000)
        try:
            for _ in range(self._parameters.receive_hwm):
                socket.send(CREDIT)
            while True:
                if not socket.poll(timeout_ms, zmq.POLLIN):
                    yield {"kind": "idle"}
                    continue
                parts = socket.recv_multipart(copy=False)
                kind, info = parts[0].bytes, {"received_at": time.time()}
                if kind == IMAGE:
                    info["bytes"] = len(parts[1])
                    event = {"kind": "frame", "message": parts[1], "additional_info": info}
                    yield event  # type: ignore[misc]
                    socket.send(CREDIT)  # after the frame's work: this worker's share follows its pace
                elif kind in (START, ANNOUNCE):
                    series = self._take_start(parts[1])
                    if kind == ANNOUNCE:
                        info.update(series_id=series and series.start.series_id,
                                    series_unique_id=series and series.start.series_unique_id)
                        yield {"kind": "start", "additional_info": info}
                elif kind == END:
                    counts = json.loads(parts[2].bytes)
                    info.update(frames_sent=counts["frames_sent"], series_id=counts.get("series_id"),
                                series_unique_id=counts.get("series_unique_id"))
                    yield {"kind": "end", "additional_info": info}
        finally:
            socket.close(linger=0)
            if self._context is not None:
                self._context.term()

    def _take_start(self, frame: zmq.Frame) -> SeriesFrames | None:
        """Keep the series' start for its images; a start that does not decode fails its images, said once."""
        try:
            start = parse_message(decode(frame.buffer))
            if not isinstance(start, SeriesStart):
                raise WireFormatError(f"relayed as a start message but of type {type(start).__name__}")
            series = SeriesFrames.of(start, self._parameters.channel)
        except DataExtractionError as error:
            log.error("Stream V2 start message unusable: %s; its images will fail", error)
            self._unusable_start, self._series = str(error), {}
            return None
        # One series at a time: the relay hands a worker its messages in order, so the previous
        # series' images are all done when the next start arrives.
        self._unusable_start, self._series = None, {start.series_id: series}
        return series

    def open_event(self, *, event: Event) -> None:
        """Decode the image: decompress, check it against its series; any fault is this event's failure."""
        message = event.pop("message", None)  # type: ignore[misc]
        if message is None:
            raise DataExtractionError("event holds no Stream V2 message")
        image = parse_message(decode(message.buffer))
        if not isinstance(image, Image):
            raise WireFormatError(f"relayed as an image but of type {type(image).__name__}")
        series = self._series.get(image.series_id)
        if series is None:
            why = self._unusable_start or "no start message for it arrived"
            raise DataExtractionError(f"image {image.image_id} of series {image.series_id}: {why}")
        event.update(image=image, series=series)  # type: ignore[typeddict-unknown-key]

    def close_event(self, *, event: Event) -> None:
        """Release the decompressed buffers now rather than at the next event."""
        event.pop("image", None)  # type: ignore[misc]
        event.pop("message", None)  # type: ignore[misc]

    def extract_data(self, *, event: Event) -> dict[str, Any]:
        return extract_all(self._sources, event)

    def initialize_event_data_retrieval(self) -> None:
        """A stream cannot replay one chosen event."""
        raise NotImplementedError("a Stream V2 stream cannot retrieve single events")

    def retrieve_event_data(self, event_id: str) -> dict[str, Any]:
        """A stream cannot replay one chosen event."""
        raise NotImplementedError("a Stream V2 stream cannot retrieve single events")
