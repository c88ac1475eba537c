"""A simulated JUNGFRAU 1M on the wire: ``python -m monitor.simulate``.

It sends what :class:`monitor.simulation.SimulatedJungfrau1M` draws, in either
of the two shapes real software sends:

* ``--protocol sync``: whole frames on one PUSH socket, exactly as PSI's frame
  synchronizer does (start, one message per frame, end): what the monitor's
  workers read directly;
* ``--protocol receiver``: one PUB stream per module (or half-module) on
  consecutive ports, as slsReceiver does, for the frame assembler: high-water
  mark 1000 and no waiting for a slow subscriber (past the mark the image is
  dropped, as the real receiver drops it), but every drop is written down.

It sends a finite acquisition at a given rate and can record the ground truth
(which frames hold which peaks, which stream images it dropped) as JSON lines,
a line once a frame has been sent.  SIGTERM or SIGINT ends the acquisition
early, as a detector stop does: the end messages still go out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import zmq
from pydantic import BaseModel, ConfigDict, Field

from monitor import wire
from monitor.endpoints import Endpoint, endpoint_with_port_offset
from monitor.memory import keep_frame_buffers
from monitor.simulated_sending import STOP, exit_with_parent, paced
from monitor.simulation.crystal import CrystalChoice, crystal_from_text, crystal_to_text

if TYPE_CHECKING:
    from monitor.simulation import FrameTruth

__all__ = ["SimulatorParameters", "run_simulator", "main"]



class SimulatorParameters(BaseModel):
    """What to simulate and where to send it (the YAML ``simulator`` section)."""

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["sync", "receiver"] = "sync"
    url: Endpoint = "tcp://127.0.0.1:55555"
    """Where to bind: the PUSH socket (sync) or the first receiver stream (receiver)."""
    frames: int = Field(default=3000, ge=0)
    rate_hz: float = Field(default=500.0, gt=0)
    streams: Literal[2, 4] = 2
    """Two module streams, or four half-module streams (two UDP interfaces per module)."""
    first_frame: int = Field(default=1, ge=1)
    seed: int = 0
    hit_fraction: float = Field(default=0.25, ge=0, le=1)
    crystal: CrystalChoice = "medium"
    """The crystal: weak, medium or strong (median spot 3, 8, 50 photons), or its settings
    (unit cell, space group, median photons, ...: :class:`monitor.simulation.crystal.CrystalSettings`)."""
    truth_file: Path | None = None
    subscriber_wait_s: float = Field(default=30.0, gt=0)
    """Receiver protocol: how long to wait for a subscriber on every stream before sending."""
    send_hwm: int = Field(default=1000, ge=1)
    """Receiver protocol: messages a stream queues for a slow subscriber before it drops (slsReceiver: 1000)."""
    lose_end_messages: bool = False
    """Receiver protocol: send no end message, as when the network lost it (for tests of that case)."""
    pause: tuple[int, float] | None = None
    """(frames, seconds): after that many frames, send nothing for that long, as when an external
    trigger stops for a while within one acquisition."""

    def command_line(self) -> list[str]:
        """The arguments that make ``python -m monitor.simulate`` run these parameters."""
        args = [
            "--protocol", self.protocol, "--url", self.url, "--frames", str(self.frames),
            "--rate", str(self.rate_hz), "--streams", str(self.streams),
            "--first-frame", str(self.first_frame), "--seed", str(self.seed),
            "--hit-fraction", str(self.hit_fraction), "--crystal", crystal_to_text(self.crystal),
            "--subscriber-wait", str(self.subscriber_wait_s), "--send-hwm", str(self.send_hwm),
        ]
        if self.lose_end_messages:
            args.append("--lose-end-messages")
        if self.pause is not None:
            args += ["--pause", str(self.pause[0]), str(self.pause[1])]
        if self.truth_file is not None:
            args += ["--truth", str(self.truth_file)]
        return args


def _stream_slices(streams: int) -> list[tuple[int, slice]]:
    """(row index, frame rows) of each stream: a module, or half a module."""
    rows = 1024 // streams
    return [(k, slice(k * rows, (k + 1) * rows)) for k in range(streams)]


def _stream_port(stream: int) -> int:
    """Module m interface i gets a distinct port, sorted like PSI's (module first)."""
    return wire.FIRST_UDP_PORT + stream


class _Truth:
    """The truth file: one JSON line per frame sent, with the streams that dropped its image."""

    def __init__(self, path: Path | None) -> None:
        self._file = path.open("w") if path is not None else None

    def record(self, truth: FrameTruth, dropped_streams: list[int]) -> None:
        """Written through at once: if the simulator is killed, its truth still counts what it sent."""
        if self._file is not None:
            self._file.write(json.dumps({**truth.to_json(), "dropped_streams": dropped_streams}) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _frames(parameters: SimulatorParameters) -> Iterator[tuple[int, np.ndarray, FrameTruth]]:
    from monitor.simulation import SimulatedJungfrau1M

    model = SimulatedJungfrau1M(seed=parameters.seed, hit_fraction=parameters.hit_fraction, crystal=parameters.crystal)
    for number in paced(parameters.frames, parameters.rate_hz, parameters.first_frame, parameters.pause):
        raw, frame_truth = model.frame(number)
        yield number, raw, frame_truth


def _send_sync(context: zmq.Context, parameters: SimulatorParameters, truth: _Truth) -> int:
    """Start, frames and end on one PUSH socket; blocks (like PSI's) while no worker reads."""
    socket = context.socket(zmq.PUSH)
    socket.setsockopt(zmq.LINGER, -1)
    socket.bind(parameters.url)
    slices = _stream_slices(parameters.streams)
    nbytes = 1024 // parameters.streams * 1024 * 2
    receivers = _receivers(parameters.streams)
    socket.send_multipart(wire.build_sync_start([
        {"udpPorts": ports, "bitmode": 16, "filePath": "/", "fileName": "run", "fileIndex": 0,
         "detshape": [1, parameters.streams], "size": nbytes, "quad": 0}
        for ports in receivers
    ]))
    sent = 0
    for index, (number, raw, frame_truth) in enumerate(_frames(parameters)):
        modules = [
            (wire.module_header(port=_stream_port(k), row=k, column=0, frame_number=number,
                                frame_index=index, shape=raw[rows].shape,
                                packets=128 // (parameters.streams // 2),
                                progress=100.0 * (index + 1) / parameters.frames),
             memoryview(raw[rows]))
            for k, rows in slices
        ]
        socket.send_multipart(wire.build_sync_frame(modules), copy=False)
        truth.record(frame_truth, [])
        sent += 1
    socket.send_multipart(wire.build_sync_end([(ports, [sent] * len(ports)) for ports in receivers]))
    socket.close()
    return sent


def _receivers(streams: int) -> list[list[int]]:
    """The UDP ports each receiver (one per module) serves."""
    per_module = streams // 2
    return [[_stream_port(m * per_module + i) for i in range(per_module)] for m in range(2)]


def _send_receiver(context: zmq.Context, parameters: SimulatorParameters, truth: _Truth) -> int:
    """One PUB stream per module or half-module, like slsReceiver; end message on each."""
    sockets = []
    for k in range(parameters.streams):
        socket = context.socket(zmq.XPUB)  # XPUB: we see subscriptions, so we know when to start
        socket.setsockopt(zmq.SNDHWM, parameters.send_hwm)
        # A PUB socket drops past its high-water mark without a word; with NODROP and a
        # non-blocking send it says so (EAGAIN), so the drop can be written in the truth.
        socket.setsockopt(zmq.XPUB_NODROP, 1)
        socket.setsockopt(zmq.LINGER, 2000)
        socket.bind(endpoint_with_port_offset(parameters.url, k))
        sockets.append(socket)
    _wait_for_subscribers(sockets, parameters.subscriber_wait_s)
    sent = 0
    for index, (number, raw, frame_truth) in enumerate(_frames(parameters)):
        dropped = []
        for k, rows in _stream_slices(parameters.streams):
            image = raw[rows]
            header = wire.receiver_header(
                detshape=[1, parameters.streams], shape=[image.shape[1], image.shape[0]],
                size=image.nbytes, acqIndex=number, frameIndex=index, frameNumber=number,
                progress=100.0 * (index + 1) / parameters.frames, row=k,
                packetNumber=128 // (parameters.streams // 2), fname="/simulated/run",
                rx_roi=[0, image.shape[1] - 1, 0, image.shape[0] - 1],
            )
            try:
                sockets[k].send_multipart([wire.encode_header(header), memoryview(image)], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                dropped.append(k)
        truth.record(frame_truth, dropped)
        sent += 1
    for socket in sockets:
        if not parameters.lose_end_messages:
            socket.send(wire.encode_header(wire.receiver_end_header()))  # waits for room: the end must arrive
        socket.close()
    return sent


def _wait_for_subscribers(sockets: list[zmq.Socket], timeout_s: float) -> None:
    poller = zmq.Poller()
    for socket in sockets:
        poller.register(socket, zmq.POLLIN)
    waiting = set(sockets)
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        for socket, _ in poller.poll(100):
            if socket.recv()[:1] == b"\x01":  # a subscription, not an unsubscription
                waiting.discard(socket)
    if waiting:
        print(f"simulator: {len(waiting)} stream(s) have no subscriber after {timeout_s} s; sending anyway",
              file=sys.stderr)


def run_simulator(parameters: SimulatorParameters) -> int:
    """Send one acquisition; return the number of frames sent."""
    context = zmq.Context()
    truth = _Truth(parameters.truth_file)
    try:
        send = _send_sync if parameters.protocol == "sync" else _send_receiver
        return send(context, parameters, truth)
    finally:
        truth.close()
        context.term()


def _arguments(argv: list[str] | None) -> SimulatorParameters:
    defaults = SimulatorParameters()
    parser = argparse.ArgumentParser(prog="python -m monitor.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=["sync", "receiver"], default=defaults.protocol,
                        help="sync: whole frames on PUSH, as PSI's frame synchronizer; receiver: one PUB per stream")
    parser.add_argument("--url", default=defaults.url, help="where to bind (receiver: the first stream's port)")
    parser.add_argument("--frames", type=int, default=defaults.frames)
    parser.add_argument("--rate", type=float, default=defaults.rate_hz, help="frames per second")
    parser.add_argument("--streams", type=int, choices=[2, 4], default=defaults.streams)
    parser.add_argument("--first-frame", type=int, default=defaults.first_frame)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--hit-fraction", type=float, default=defaults.hit_fraction)
    parser.add_argument("--crystal", type=crystal_from_text, default=defaults.crystal,
                        help="weak, medium, strong, or the crystal's settings as JSON")
    parser.add_argument("--truth", type=Path, default=None, help="write each frame's ground truth here (JSON lines)")
    parser.add_argument("--subscriber-wait", type=float, default=defaults.subscriber_wait_s)
    parser.add_argument("--send-hwm", type=int, default=defaults.send_hwm,
                        help="receiver: messages queued per stream before it drops (slsReceiver: 1000)")
    parser.add_argument("--lose-end-messages", action="store_true",
                        help="receiver: send no end messages, as if the network lost them")
    parser.add_argument("--pause", nargs=2, type=float, metavar=("FRAMES", "SECONDS"), default=None,
                        help="after FRAMES frames, send nothing for SECONDS (a trigger that stops a while)")
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        exit_with_parent()
    return SimulatorParameters(
        protocol=args.protocol, url=args.url, frames=args.frames, rate_hz=args.rate,
        streams=args.streams, first_frame=args.first_frame, seed=args.seed,
        hit_fraction=args.hit_fraction, crystal=args.crystal, truth_file=args.truth,
        subscriber_wait_s=args.subscriber_wait, send_hwm=args.send_hwm, lose_end_messages=args.lose_end_messages,
        pause=None if args.pause is None else (int(args.pause[0]), args.pause[1]),
    )


def main(argv: list[str] | None = None) -> int:
    try:
        parameters = _arguments(argv)
    except ValueError as error:
        print(f"simulator: {error}", file=sys.stderr)
        return 2
    keep_frame_buffers()
    STOP.install()
    start = time.perf_counter()
    sent = run_simulator(parameters)
    elapsed = time.perf_counter() - start
    print(f"simulator: sent {sent} frames in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.0f}/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
