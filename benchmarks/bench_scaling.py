"""The whole monitor against a sender faster than it: ``python benchmarks/bench_scaling.py`` (``make bench-scaling``).

For each pool of N ranks (``--ranks``, default 2, 4, 8, ... up to this
machine's cores) and each path (``--paths``):

* ``direct``: a frame sender plays PSI's frame synchronizer (whole frames on
  one PUSH socket, start and end messages) and the workers pull from it;
* ``assembler``: the sender plays the detector's two receivers (one PUB
  stream per module) and the monitor starts its frame assembler between them
  and the workers, which it serves over TCP as shipped;
* ``assembler-ipc``: the same with the assembler serving the workers over
  ``ipc://`` (Unix domain sockets: one node only), less than half the CPU per
  2 MiB frame of TCP on the loopback interface;

the monitor runs as shipped (``monitor.yaml``: calibration, peak finding, hit
files written by the workers), under ``mpirun -n N``, while the sender sends
for ``--seconds`` as fast as it is let, then ends the acquisition.  Its frames
are real JUNGFRAU 1M frames of the crystal simulator (the shipped YAML's
seed, crystal and calibration), built before it starts, a quarter of them
hits, sent again and again under new frame numbers, without copies.

Per N it prints the frames the monitor processed per second (first to last
result), each worker rank's busy fraction over that span (its seconds on
frames from the run's summary), the fraction of its time the sender was
blocked (waiting for room in a full queue: the monitor is the bottleneck; near
0: the sender is), the frames dropped, and the run's accounting line.  Every
process shares this machine's cores (the sender and, on its path, the
assembler with the ranks): the figures are this machine's, under its load.
Only the loopback interface is used.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import zmq
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import DEFAULT_CONFIG, MPIRUN, free_port, free_ports, write_config  # noqa: E402
from monitor import wire  # noqa: E402
from monitor.console import format_accounting  # noqa: E402
from monitor.simulation import SimulatedJungfrau1M  # noqa: E402

Route = Literal["direct", "assembler", "assembler-ipc"]
DISTINCT_FRAMES = 16
HIT_FRACTION = 0.25
SENDER_HWM = 16
"""Frames a sender socket queues for one peer before a send waits (PSI's synchronizer queues few)."""
STREAM_PORTS = (wire.FIRST_UDP_PORT, wire.FIRST_UDP_PORT + 1)
"""The UDP port of each module's receiver, as frame headers carry it."""


class RunFailed(Exception):
    """One run did not complete (the monitor's exit code and last line, or a timeout): the table goes on."""


@dataclass(frozen=True)
class SenderFigures:
    """What the sender did: frames sent, over how long, and how much of that it waited in a send."""

    frames: int
    seconds: float
    blocked_s: float


def realistic_frames() -> list[np.ndarray]:
    """Raw frames of the simulator the shipped YAML calibrates for, exactly a quarter of them hits."""
    calibration = YAML(typ="safe").load(DEFAULT_CONFIG.read_text())["processing_layer"]["calibration"]
    detector = SimulatedJungfrau1M(seed=calibration["simulator_seed"], crystal=calibration["crystal"],
                                   hit_fraction=calibration["hit_fraction"])
    wanted = {True: round(DISTINCT_FRAMES * HIT_FRACTION), False: DISTINCT_FRAMES - round(DISTINCT_FRAMES * HIT_FRACTION)}
    chosen: dict[bool, list[int]] = {True: [], False: []}
    number = 1
    while any(len(chosen[kind]) < wanted[kind] for kind in chosen):
        kind = detector.truth(number).is_hit
        if len(chosen[kind]) < wanted[kind]:
            chosen[kind].append(number)
        number += 1
    return [detector.frame(n)[0] for n in sorted(chosen[True] + chosen[False])]


def _module_parts(raw: np.ndarray) -> list[tuple[int, memoryview]]:
    """(row, pixels) of each module of a raw frame: views, no copies."""
    return [(row, memoryview(raw[row * 512:(row + 1) * 512])) for row in range(2)]


def _send_direct(context: zmq.Context, urls: list[str], frames: list[np.ndarray], seconds: float) -> SenderFigures:
    """PSI's frame synchronizer: start, whole frames on PUSH, end; a send waits while every worker's queue is full."""
    socket = context.socket(zmq.PUSH)
    socket.setsockopt(zmq.SNDHWM, SENDER_HWM)
    socket.bind(urls[0])
    size = 512 * 1024 * 2
    socket.send_multipart(wire.build_sync_start([
        {"udpPorts": [port], "bitmode": 16, "filePath": "/", "fileName": "scaling", "fileIndex": 0,
         "detshape": [1, 2], "size": size, "quad": 0} for port in STREAM_PORTS]))
    blocked, sent, started = 0.0, 0, 0.0
    while sent == 0 or time.perf_counter() - started < seconds:
        number = sent + 1
        parts = wire.build_sync_frame([
            (wire.module_header(port=STREAM_PORTS[row], row=row, column=0, frame_number=number, frame_index=sent,
                                shape=(512, 1024)), pixels)
            for row, pixels in _module_parts(frames[sent % len(frames)])])
        before = time.perf_counter()
        socket.send_multipart(parts, copy=False)
        if sent == 0:  # the window opens once a worker took the first frame
            started = time.perf_counter()
        else:
            blocked += time.perf_counter() - before
        sent += 1
    elapsed = time.perf_counter() - started
    socket.send_multipart(wire.build_sync_end([([port], [sent]) for port in STREAM_PORTS], frames_sent=sent))
    socket.close(linger=-1)
    return SenderFigures(sent, elapsed, blocked)


def _send_receivers(context: zmq.Context, urls: list[str], frames: list[np.ndarray],
                    seconds: float) -> SenderFigures:
    """Two receivers' PUB streams (XPUB, so subscriptions are seen); past the high-water mark a send
    waits instead of dropping, so the sender measures how fast the assembler takes frames."""
    sockets = []
    for url in urls:
        socket = context.socket(zmq.XPUB)
        socket.setsockopt(zmq.SNDHWM, SENDER_HWM)
        socket.setsockopt(zmq.XPUB_NODROP, 1)
        socket.bind(url)
        sockets.append(socket)
    for socket in sockets:
        socket.recv()  # the assembler's subscription
    blocked, sent, started = 0.0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        number = sent + 1
        for (row, pixels), socket in zip(_module_parts(frames[sent % len(frames)]), sockets):
            header = wire.encode_header(wire.receiver_header(
                detshape=[1, 2], shape=[1024, 512], size=pixels.nbytes, acqIndex=number, frameIndex=sent,
                frameNumber=number, row=row, packetNumber=128, progress=0.0))
            before = time.perf_counter()
            socket.send_multipart([header, pixels], copy=False)
            blocked += time.perf_counter() - before
        sent += 1
    elapsed = time.perf_counter() - started
    for socket in sockets:
        socket.send(wire.encode_header(wire.receiver_end_header()))
        socket.close(linger=-1)
    return SenderFigures(sent, elapsed, blocked)


def sender(path: Route, urls: list[str], frames: list[np.ndarray], seconds: float, results: mp.Queue) -> None:
    """The sender process: one acquisition of ``seconds``; its figures go to ``results``."""
    context = zmq.Context()
    send = _send_direct if path == "direct" else _send_receivers
    results.put(send(context, urls, frames, seconds))
    context.term()


def run_monitor(path: Route, ranks: int, frames: list[np.ndarray], seconds: float,
                folder: Path) -> tuple[dict, SenderFigures]:
    """One run of the monitor at ``ranks`` ranks on one path; its summary and the sender's figures.

    Raises :class:`RunFailed` when the monitor exits non-zero, or is still running (then killed)
    three minutes after the sender's time.
    """
    if path == "direct":
        urls = [f"tcp://127.0.0.1:{free_port()}"]
        layer = {"source": urls[0]}
    else:
        first = free_ports(2)
        urls = [f"tcp://127.0.0.1:{first}", f"tcp://127.0.0.1:{first + 1}"]
        layer = {"source": "assembler", "assembler": {"streams": urls}}
        if path == "assembler-ipc":
            layer["assembler"]["bind"] = f"ipc://{folder}/assembler"
    config = write_config(folder, {"data_retrieval_layer": {**layer, "stop_after_acquisition": True}})
    summary_file = folder / "summary.json"
    results: mp.Queue = mp.get_context("fork").Queue()
    process = mp.get_context("fork").Process(target=sender, args=(path, urls, frames, seconds, results),
                                             daemon=True)
    process.start()
    try:
        done = subprocess.run([str(MPIRUN), "-n", str(ranks), sys.executable, "-m", "monitor", str(config), "-q",
                               "--summary-json", str(summary_file)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=seconds + 180)
        if done.returncode != 0:
            raise RunFailed(f"exit code {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}")
        figures = results.get(timeout=30)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"still running {seconds + 180:.0f} s after it started: killed") from None
    except queue.Empty:
        raise RunFailed("the monitor ended, but the sender never reported (it died)") from None
    finally:
        process.kill()
        process.join()
    return json.loads(summary_file.read_text()), figures


def print_run(ranks: int, summary: dict, sender_figures: SenderFigures) -> None:
    handled = summary["events_processed"] + summary["events_failed"]
    rate = summary["events_per_s"] or 0.0
    span = handled / rate if rate else 0.0
    dropped = sum(summary["accounting"]["dropped"].values())
    blocked = sender_figures.blocked_s / sender_figures.seconds if sender_figures.seconds else 0.0
    busy = "  ".join(f"r{row['rank']} {row.get('busy_s', 0.0) / span:.2f}" for row in summary["per_rank"]
                     if row["role"] != "collector" and span)
    print(f"  {ranks:5d} {rate:9.0f} {sender_figures.frames / sender_figures.seconds:8.0f} {100 * blocked:10.0f} % "
          f"{dropped:9d}   {format_accounting(summary['accounting'])} ({sender_figures.frames:,})")
    print(f"        busy fraction per worker rank: {busy}")


def default_ranks() -> list[int]:
    """2, 4, 8, ... up to this machine's cores, and the cores themselves."""
    cores = os.cpu_count() or 2
    ranks = [n for n in (2 ** k for k in range(1, 12)) if n <= cores]
    return ranks + ([cores] if cores not in ranks else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=lambda text: [int(n) for n in text.split(",")], default=default_ranks(),
                        help="comma-separated pool sizes (default: 2, 4, ... up to the cores)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the sender sends, per run")
    parser.add_argument("--paths", type=lambda text: text.split(","), default=["direct", "assembler", "assembler-ipc"],
                        help="direct (frame synchronizer), assembler (receiver streams; assembler-ipc: "
                             "served to the workers over ipc://), comma-separated")
    args = parser.parse_args()

    started = time.perf_counter()
    frames = realistic_frames()
    print(f"{DISTINCT_FRAMES} JUNGFRAU 1M frames of the simulator ({HIT_FRACTION:.0%} hits) built in "
          f"{time.perf_counter() - started:.1f} s; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; the sender sends {args.seconds:g} s per run")
    titles = {"direct": "direct path: frame sender (PUSH, as PSI's frame synchronizer) -> workers",
              "assembler": "receiver path: two receiver streams (PUB) -> frame assembler -> workers (TCP)",
              "assembler-ipc": "receiver path: two receiver streams (PUB) -> frame assembler -> workers (ipc://)"}
    for path in args.paths:
        print(f"{titles[path]}")
        print("  ranks  frames/s   sent/s  sender blocked  dropped   accounting (the sender's count)")
        for ranks in args.ranks:
            with tempfile.TemporaryDirectory() as folder:
                try:
                    summary, figures = run_monitor(path, ranks, frames, args.seconds, Path(folder))
                except RunFailed as failure:
                    print(f"  {ranks:5d}   failed: {failure}")
                    continue
            print_run(ranks, summary, figures)
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
