"""Data event handler for the JUNGFRAU 1M's ZMQ stream of whole frames.

An event is one detector frame: one multipart message shaped as PSI's frame
synchronizer sends it (our assembler and simulator send the same shapes).  The
sender binds a PUSH socket; every worker rank connects a PULL socket to it, so
the sender, not this program, spreads frames across workers.
"""

from __future__ import annotations

import atexit
import json
import logging
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from subprocess import Popen
from typing import Any, Literal

import zmq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from handlers.protocol import Event
from monitor.assembler import AssemblerParameters, AssemblerProcess, AssemblerStats, start_assembler
from monitor.child_watch import ChildWatch
from monitor.children import start_module, stop_process
from monitor.bind_check import Listener, tcp_listener
from monitor.endpoints import check_endpoint, endpoint_for_peers, endpoint_with_port_offset
from monitor.errors import WireFormatError
from monitor.simulate import SimulatorParameters
from monitor.wire import SyncEnd, SyncFrame, SyncStart, parse_sync_message
from sources.jungfrau1m import DATA_SOURCES
from sources.protocol import extract_all

__all__ = ["Jungfrau1MZmqDataEventHandler", "DataRetrievalLayerParameters"]

log = logging.getLogger(__name__)

SIMULATOR = "simulator"
"""The ``source`` value that makes the monitor start its own simulated detector."""

ZMQ_SIZE_LIMIT_FACTOR = 16
"""ZMQ's hard message-size limit on a worker's socket, in units of ``max_message_bytes``."""

ASSEMBLER = "assembler"
"""The ``source`` value that makes the monitor start its frame assembler on the receivers' streams."""


class DataRetrievalLayerParameters(BaseModel):
    """The ``data_retrieval_layer`` section for this handler."""

    model_config = ConfigDict(extra="forbid")

    data_event_handler: str
    source: str
    """The frame sender's URL (PSI's synchronizer, a running assembler), ``assembler`` (start ours on
    the receivers' streams), or ``simulator`` (start a simulated detector)."""
    collector_rank: Literal["first", "last"] = "first"
    skip_rank_finalization: bool = False
    stop_after_acquisition: bool = False
    """End the run after the first acquisition's end message (live use keeps running)."""
    required_data: list[Literal["detector_data", "detector_modules", "timestamp", "event_id"]] = Field(
        default_factory=lambda: ["detector_data", "timestamp", "event_id"], min_length=1
    )
    poll_interval_s: float = Field(default=0.1, gt=0, le=5)
    """Longest wait for a message before the generator yields an idle event."""
    receive_hwm: int = Field(default=8, ge=1)
    """Frames queued per worker; the sender blocks (or hands frames to other workers) past it."""
    max_message_bytes: int = Field(default=64 << 20, ge=1 << 20)
    """A larger message is counted as failed, unread.  ZMQ's own limit (MAXMSGSIZE, which drops
    the whole connection and the good frames queued behind the large one) is set only at 16
    times this, as the last bound on memory: ``receive_hwm`` messages of at most that size."""
    simulator: SimulatorParameters = SimulatorParameters()
    """Used when ``source`` is ``simulator``: the collector rank starts it."""
    assembler: AssemblerParameters | None = None
    """Used when ``source`` is ``assembler``, or ``simulator`` with the receiver protocol:
    the collector rank starts the frame assembler, and workers connect to its ``bind``."""

    @field_validator("source")
    @classmethod
    def _source_is_an_endpoint(cls, source: str) -> str:
        return source if source in (SIMULATOR, ASSEMBLER) else check_endpoint(source)

    @model_validator(mode="after")
    def _assembler_when_needed(self) -> DataRetrievalLayerParameters:
        if self.starts_assembler:
            if self.assembler is None:
                raise ValueError(f"source {self.source!r} needs an `assembler` section (its streams and bind)")
        return self

    @property
    def starts_assembler(self) -> bool:
        return self.source == ASSEMBLER or (self.source == SIMULATOR and self.simulator.protocol == "receiver")

    @property
    def url(self) -> str:
        """The frame sender's socket: what the assembler or simulator binds, or the external sender's."""
        if self.starts_assembler:
            return self.assembler.bind
        return self.simulator.url if self.source == SIMULATOR else self.source


class Jungfrau1MZmqDataEventHandler:
    """Data event handler for Jungfrau 1M's ZMQ stream (interface: handlers.protocol)."""

    Parameters = DataRetrievalLayerParameters

    def __init__(self, *, source: str, parameters: DataRetrievalLayerParameters) -> None:
        self._source = source
        self._parameters = parameters
        self._sources = {name: DATA_SOURCES[name]() for name in parameters.required_data}
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._simulator: Popen[bytes] | None = None
        self._truth_file: Path | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._assembler: AssemblerProcess | None = None
        self._assembler_stats: AssemblerStats | None = None
        self._assembly: dict[str, Any] = {}
        self._acquisitions: list[dict[str, Any]] = []
        self._final_assembly: dict[str, Any] | None = None
        self._simulated: dict[str, Any] = {}
        self._children = ChildWatch()
        self._workers_url = parameters.url

    def connect_workers_to(self, collector_host: str) -> str:
        """The URL workers connect to: the frame sender's, where a sender this node starts binding
        every interface (``tcp://*:5555``) is reached by the collector's host name."""
        started_here = self._parameters.starts_assembler or self._source == SIMULATOR
        self._workers_url = (endpoint_for_peers(self._parameters.url, collector_host) if started_here
                             else self._parameters.url)
        return self._workers_url

    def designated_collector_rank(self) -> Literal["first", "last"]:
        return self._parameters.collector_rank

    def skip_rank_finalization(self) -> bool:
        return self._parameters.skip_rank_finalization

    def initialize_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Start what ``source`` names: the frame assembler, the simulated detector, or nothing."""
        if self._parameters.starts_assembler:
            self._start_assembler()
        if self._source == SIMULATOR:
            self._start_simulator()

    def listening_addresses(self) -> list[Listener]:
        """What the children this node will start listen on: tried before they start."""
        listeners = []
        if self._parameters.starts_assembler:
            assembler = self._parameters.assembler
            listeners += tcp_listener("data_retrieval_layer.assembler.bind", assembler.bind)
            listeners += tcp_listener("data_retrieval_layer.assembler.stats", assembler.stats)
        if self._source == SIMULATOR:
            simulator = self._parameters.simulator
            streams = simulator.streams if simulator.protocol == "receiver" else 1
            for offset in range(streams):
                listeners += tcp_listener("data_retrieval_layer.simulator.url",
                                          endpoint_with_port_offset(simulator.url, offset))
        return listeners

    def _scratch_dir(self) -> Path:
        """A folder of this run's own for what the children it starts leave behind."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="monitor-source-")
        return Path(self._scratch.name)

    def _start_assembler(self) -> None:
        parameters = self._parameters.assembler
        self._assembler = start_assembler(parameters, final_report=self._scratch_dir() / "assembler.json")
        atexit.register(self._assembler.stop)
        self._children.watch("assembler", "the frame assembler", self._assembler.process, finishes_alone=False)
        if parameters.stats is not None:
            self._assembler_stats = AssemblerStats(parameters.stats)
        log.info("started the frame assembler on %s -> %s (pid %d)",
                 ", ".join(parameters.streams), parameters.bind, self._assembler.pid)

    def _start_simulator(self) -> None:
        simulator = self._parameters.simulator
        if simulator.truth_file is None:  # keep the truth anyway: the summary compares against it
            simulator = simulator.model_copy(update={"truth_file": self._scratch_dir() / "truth.jsonl"})
        self._truth_file = simulator.truth_file
        self._simulator = start_module("monitor.simulate", ["--exit-with-parent", *simulator.command_line()])
        atexit.register(self._stop_simulator)
        self._children.watch("simulator", "the simulated detector", self._simulator, finishes_alone=True)
        log.info("started the simulated JUNGFRAU 1M on %s (pid %d)", self._parameters.url, self._simulator.pid)

    def collecting_node_status(self) -> dict[str, Any]:
        """Frames the simulator will send (for a progress bar); the assembler's losses so far.
        Raises :class:`ChildDied` once when a process this node started died under the run."""
        self._children.check()
        status: dict[str, Any] = {}
        if self._simulator is not None:
            status["frames_expected"] = self._parameters.simulator.frames
        if self._assembler is not None:
            self._read_assembler_stats()
            counts = self._assembly.get("acquisition") or {}
            dropped = counts.get("dropped", {})
            status.update(assembler_incomplete=counts.get("incomplete"), assembler_gaps=counts.get("gaps"),
                          assembler_dropped=", ".join(f"{reason} {n}" for reason, n in sorted(dropped.items()))
                          or (0 if counts else None), dropped_by_reason=dropped,
                          assembler_queued=self._assembly.get("queued"))
        return status

    def _read_assembler_stats(self) -> None:
        while self._assembler_stats is not None and (message := self._assembler_stats.poll()) is not None:
            self._assembly = message
            if message.get("final") and message.get("acquisition"):
                self._acquisitions.append(message["acquisition"])

    def _assembled_acquisitions(self) -> list[dict[str, Any]]:
        """Every acquisition's counts: the assembler's final report once it has exited (its last
        word), else what its stats socket said last (the open acquisition too)."""
        if self._final_assembly is not None:
            return self._final_assembly["acquisitions"]
        acquisitions = list(self._acquisitions)
        if not self._assembly.get("final") and self._assembly.get("acquisition"):
            acquisitions.append(self._assembly["acquisition"])
        return acquisitions

    def _assembly_summary(self) -> dict[str, Any]:
        """The assembler's accounting: totals over its acquisitions (the open one too), each in full."""
        acquisitions = self._assembled_acquisitions()
        totals = {key: sum(a[key] for a in acquisitions) for key in ("assembled", "incomplete", "sent", "gaps")}
        dropped = sum(sum(a["dropped"].values()) for a in acquisitions)
        return {**{f"assembler_{key}": value for key, value in totals.items()}, "assembler_dropped": dropped,
                "assembler_acquisitions": acquisitions}

    def stop_event_source(self) -> bool:
        """The simulator stops (its end messages follow its last frame); our assembler reads the
        streams' last messages, closes its acquisition, gives the frames it holds its
        ``stop_timeout_s`` to go out (the rest counted as ``stop``) and sends the end message."""
        self._children.stopping()
        stopping = False
        for process in (self._simulator, self._assembler and self._assembler.process):
            if process is not None and process.poll() is None:
                process.terminate()
                stopping = True
        return stopping

    def end_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> dict[str, Any]:
        """Stop what this node started; report the simulator's truth and the assembler's accounting."""
        self._stop_simulator()
        summary: dict[str, Any] = {}
        if self._assembler is not None:
            self._read_assembler_stats()
            self._assembler.stop()
            self._final_assembly = self._assembler.final_report()
            if self._final_assembly is None:
                log.warning("the frame assembler left no final report: its figures are its last published ones")
            if self._assembler_stats is not None:
                self._assembler_stats.close()
            summary.update(self._assembly_summary())
        if self._truth_file is not None and self._truth_file.exists():
            summary.update(self._simulator_summary(self._truth_file))
        if self._scratch is not None:
            self._scratch.cleanup()
        return summary

    def _simulator_summary(self, truth_file: Path) -> dict[str, Any]:
        """What the simulator sent, by its truth: the true hit rate, and the images it dropped."""
        with truth_file.open() as lines:  # a killed simulator may have left half of its last line
            frames = [json.loads(line) for line in lines if line.endswith("\n")]
        streams = self._parameters.simulator.streams if self._parameters.simulator.protocol == "receiver" else 1
        self._simulated = {
            "simulated_frames": len(frames),
            "simulator_dropped_images": sum(len(frame.get("dropped_streams", [])) for frame in frames),
            "simulator_dropped_frames": sum(len(frame.get("dropped_streams", [])) == streams for frame in frames),
        }
        hits = [frame["is_hit"] for frame in frames]
        return {"true_hit_rate": sum(hits) / len(hits) if hits else None, **self._simulated}

    def source_accounting(self) -> dict[str, Any]:
        """The simulator's count of frames sent; the assembler's drops, gaps and frames handed on."""
        accounting: dict[str, Any] = {"sent": self._simulated.get("simulated_frames"), "delivered": None,
                                      "dropped": {}, "estimates": {}, "died": self._children.died}
        if self._assembler is None:
            return accounting
        acquisitions = self._assembled_acquisitions()
        dropped: dict[str, int] = {}
        for acquisition in acquisitions:
            for reason, count in acquisition["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + count
            if acquisition["gaps"]:
                dropped["source_gap"] = dropped.get("source_gap", 0) + acquisition["gaps"]
        estimated = [a["estimated_not_received"] for a in acquisitions if a.get("estimated_not_received")]
        if estimated:
            accounting["estimates"]["frames_never_received_after_a_lost_end"] = sum(estimated)
        accounting.update(delivered=sum(a["sent"] for a in acquisitions), dropped=dropped)
        return accounting

    def _stop_simulator(self) -> None:
        if self._simulator is not None:
            stop_process(self._simulator)

    def initialize_event_handling_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Connect this worker's PULL socket; the sender spreads frames across workers."""
        for source in self._sources.values():
            source.initialize_data_source()
        self._context = zmq.Context()
        socket = self._context.socket(zmq.PULL)
        socket.setsockopt(zmq.RCVHWM, self._parameters.receive_hwm)
        socket.setsockopt(zmq.MAXMSGSIZE, ZMQ_SIZE_LIMIT_FACTOR * self._parameters.max_message_bytes)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self._workers_url)
        self._socket = socket

    def event_generator(self, *, node_rank: int, node_pool_size: int) -> Generator[Event, None, None]:
        """Yield one event per message, and an ``idle`` event after each quiet poll interval.

        A malformed message is still an event: it carries its parse error, which
        ``open_event`` raises, so the worker loop counts and skips it like any
        other event that cannot be extracted.
        """
        if self._socket is None:
            raise RuntimeError("event_generator before initialize_event_handling_on_processing_node")
        socket = self._socket
        timeout_ms = int(self._parameters.poll_interval_s * 1000)
        try:
            while True:
                if not socket.poll(timeout_ms, zmq.POLLIN):
                    yield {"kind": "idle"}
                    continue
                parts = socket.recv_multipart(copy=False)
                info = {"received_at": time.time(), "bytes": sum(len(part) for part in parts)}
                try:
                    self._check_size(info["bytes"])
                    message = parse_sync_message(parts)
                except WireFormatError as error:
                    yield {"kind": "frame", "error": error, "additional_info": info}
                    continue
                yield self._event(message, info)
        finally:
            socket.close(linger=0)
            if self._context is not None:
                self._context.term()

    def _check_size(self, nbytes: int) -> None:
        if nbytes > self._parameters.max_message_bytes:
            raise WireFormatError(f"message of {nbytes / (1 << 20):.1f} MiB is over max_message_bytes "
                                  f"({self._parameters.max_message_bytes / (1 << 20):g} MiB)")

    @staticmethod
    def _event(message: SyncStart | SyncFrame | SyncEnd, info: dict[str, Any]) -> Event:
        if isinstance(message, SyncFrame):
            return {"kind": "frame", "frame": message, "additional_info": info}  # type: ignore[typeddict-unknown-key]
        if isinstance(message, SyncEnd):
            info.update(frames_sent=message.frames_sent, frames_per_port=message.frames_per_port)
            return {"kind": "end", "additional_info": info}
        info.update(headers=message.headers)
        return {"kind": "start", "additional_info": info}

    def open_event(self, *, event: Event) -> None:
        """Raise the parse error of a malformed message (see ``event_generator``)."""
        error = event.get("error")
        if error is not None:
            raise error

    def close_event(self, *, event: Event) -> None:
        """Release the received buffers now rather than at the next event."""
        event.pop("frame", None)  # type: ignore[misc]

    def extract_data(self, *, event: Event) -> dict[str, Any]:
        return extract_all(self._sources, event)

    def initialize_event_data_retrieval(self) -> None:
        """A ZMQ stream cannot replay one chosen event."""
        raise NotImplementedError("the JUNGFRAU 1M ZMQ stream cannot retrieve single events")

    def retrieve_event_data(self, event_id: str) -> dict[str, Any]:
        """A ZMQ stream cannot replay one chosen event."""
        raise NotImplementedError("the JUNGFRAU 1M ZMQ stream cannot retrieve single events")
