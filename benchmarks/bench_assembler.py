"""The frame assembler's sustained lossless rate and its CPU per frame: ``python benchmarks/bench_assembler.py``.

For a JUNGFRAU 1M as two 1 MiB module streams and as four half-module streams,
a sender process plays the receivers (PUB semantics: it drops when a
subscriber falls behind, as slsReceiver does) at a fixed rate, the assembler
runs as the monitor starts it (its own process), and a sink process reads the
frames as a worker would.  All three share this machine's cores.

For each rate, rising, it sends ``--seconds`` worth of frames and counts what
arrives: a rate is lossless when every frame arrives whole.  It prints, per
rate, frames received, the assembler's CPU per frame (user + system, all its
threads, from /proc) and that of its Python loop thread alone (ZMQ's I/O
threads do the socket copies).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from monitor import wire  # noqa: E402
from monitor.assembler import Assembler, AssemblerParameters, start_assembler  # noqa: E402
from monitor.memory import keep_frame_buffers  # noqa: E402
from helpers import free_tcp_url  # noqa: E402

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (all threads) or of one of its threads."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def receiver_messages(streams: int, frames: int) -> tuple[list[list[bytes]], list[zmq.Frame], bytes]:
    """Per frame the streams' encoded headers, per stream its image (one ZMQ frame, sent again and
    again without a copy), and the end message: built before sending so the sender stays cheap."""
    rows = 512 * 2 // streams
    y = np.arange(512)[:, None] // 4 + 1
    module = np.broadcast_to(y, (512, 1024)).astype("<u2")
    images = [zmq.Frame(module[(i * rows) % 512:][:rows].tobytes()) for i in range(streams)]
    headers = [
        [wire.encode_header(wire.receiver_header(
            frameNumber=n, acqIndex=n, frameIndex=n - 1, row=i, shape=[1024, rows], size=1024 * rows * 2,
            detshape=[1, streams], packetNumber=rows // 4, progress=round(100 * n / frames, 2),
        )) for i in range(streams)]
        for n in range(1, frames + 1)
    ]
    return headers, images, wire.encode_header(wire.receiver_end_header())


def play(sockets: list[zmq.Socket], frames: int, rate_hz: float | None, sending: mp.Event | None = None) -> float:
    """Once every stream has a subscriber, send ``frames`` images per stream (at ``rate_hz``), then the
    ends; the seconds the images took to send."""
    headers, images, end = receiver_messages(len(sockets), frames)
    for pub in sockets:
        pub.recv()  # the subscription
    time.sleep(0.2)
    if sending is not None:
        sending.set()
    start = time.perf_counter()
    for n, frame_headers in enumerate(headers):
        delay = start + n / rate_hz - time.perf_counter() if rate_hz else 0
        if delay > 0.001:
            time.sleep(delay)
        for pub, header, image in zip(sockets, frame_headers, images):
            pub.send(header, zmq.SNDMORE)
            pub.send(image, copy=False)
    elapsed = time.perf_counter() - start
    for pub in sockets:
        pub.send(end)
    return elapsed


def streams_on(context: zmq.Context, urls: list[str], *, lossless: bool) -> list[zmq.Socket]:
    """One receiver-like stream per URL: an XPUB (a PUB that says when someone subscribed)."""
    sockets = []
    for url in urls:
        pub = context.socket(zmq.XPUB)
        pub.setsockopt(zmq.SNDHWM, 1000)  # slsReceiver's default
        pub.setsockopt(zmq.XPUB_NODROP, int(lossless))
        pub.setsockopt(zmq.LINGER, 5000)
        pub.bind(url)
        sockets.append(pub)
    return sockets


def send_streams(urls: list[str], frames: int, rate_hz: float, sending: mp.Event, sent: mp.Queue) -> None:
    """The receivers, in a process of their own: PUB semantics, dropping when the assembler lags."""
    keep_frame_buffers()
    context = zmq.Context()
    sockets = streams_on(context, urls, lossless=False)
    sent.put(frames / play(sockets, frames, rate_hz, sending))
    for pub in sockets:
        pub.close()
    context.term()


def sink(url: str, streams: int, results: mp.Queue, ready: mp.Event, context: zmq.Context | None = None,
         start_reading: mp.Event | None = None) -> None:
    """Read frames as a worker does (from ``start_reading`` on, if given), until series_end (or
    3 s of silence: a receiver that lags drops the end message too); report what came."""
    keep_frame_buffers()
    context = context or zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 8)  # as a worker's (the handler's receive_hwm)
    pull.connect(url)
    ready.set()
    if start_reading is not None:
        start_reading.wait()
    frames = whole = 0
    first = last = 0.0
    while pull.poll(3000 if first else 60_000):
        parts = pull.recv_multipart(copy=False)
        header = json.loads(parts[0].bytes)
        if header["htype"] == "module":
            frames += 1
            whole += len(parts) == 2 * streams and all(
                json.loads(parts[i].bytes)["completeImage"] for i in range(0, len(parts), 2)
            )
            last = time.perf_counter()
            first = first or last
        elif header["htype"] == "series_end":
            break
    results.put({"frames": frames, "whole": whole, "seconds": last - first})
    pull.close()


def trial(streams: int, rate_hz: float, seconds: float) -> dict[str, float]:
    """One acquisition at ``rate_hz`` through a fresh assembler; what arrived and what it cost."""
    frames = int(rate_hz * seconds)
    urls = [free_tcp_url() for _ in range(streams)]
    parameters = AssemblerParameters(streams=urls, bind=free_tcp_url(), status_interval_s=0)
    results, sent = mp.Queue(), mp.Queue()
    ready, sending = mp.Event(), mp.Event()
    reader = mp.Process(target=sink, args=(parameters.bind, streams, results, ready))
    reader.start()
    ready.wait()
    with start_assembler(parameters) as assembler:
        sender = mp.Process(target=send_streams, args=(urls, frames, rate_hz, sending, sent))
        sender.start()
        sending.wait()
        cpu_before = cpu_s(assembler.pid), cpu_s(assembler.pid, assembler.pid)
        outcome = results.get(timeout=seconds * 5 + 30)
        cpu_after = cpu_s(assembler.pid), cpu_s(assembler.pid, assembler.pid)
        sender.join()
    reader.join()
    return {
        "sent": frames, "send_hz": sent.get(), **outcome,
        "cpu_ms_per_frame": 1000 * (cpu_after[0] - cpu_before[0]) / max(outcome["frames"], 1),
        "loop_cpu_ms_per_frame": 1000 * (cpu_after[1] - cpu_before[1]) / max(outcome["frames"], 1),
    }


def burst_trial(streams: int, rate_hz: float, frames: int) -> dict[str, float]:
    """A burst with no worker reading until it is over: every frame must wait in the assembler
    (``buffer_mb``, 2048 MiB by default) or in ZMQ's queues; what arrives afterwards, whole."""
    urls = [free_tcp_url() for _ in range(streams)]
    parameters = AssemblerParameters(streams=urls, bind=free_tcp_url(), status_interval_s=0)
    results, sent = mp.Queue(), mp.Queue()
    ready, sending, start_reading = mp.Event(), mp.Event(), mp.Event()
    reader = mp.Process(target=sink, args=(parameters.bind, streams, results, ready, None, start_reading))
    reader.start()
    ready.wait()
    with start_assembler(parameters):
        sender = mp.Process(target=send_streams, args=(urls, frames, rate_hz, sending, sent))
        sender.start()
        sender.join()
        time.sleep(1.0)  # the assembler reads what the streams still hold
        start_reading.set()
        outcome = results.get(timeout=frames / 100 + 60)
    reader.join()
    return {"sent": frames, "send_hz": sent.get(), **outcome}


def inproc_trial(streams: int, frames: int) -> dict[str, float]:
    """The assembler's own limit: sender, assembler and sink threads on ``inproc://`` (no copies, no
    kernel), the sender lossless and as fast as it can; the assembler's loop CPU is its thread's."""
    context = zmq.Context()
    urls = [f"inproc://stream{i}" for i in range(streams)]
    sockets = streams_on(context, urls, lossless=True)
    parameters = AssemblerParameters(
        streams=urls, bind="inproc://frames", status_interval_s=0, stop_after_acquisition=True
    )
    results: queue.Queue = queue.Queue()
    ready = threading.Event()
    with Assembler(parameters, context=context) as assembler:
        reader = threading.Thread(target=sink, args=("inproc://frames", streams, results, ready, context))
        reader.start()
        ready.wait()
        sender = threading.Thread(target=play, args=(sockets, frames, None))
        sender.start()
        loop_cpu = time.thread_time()
        assembler.run()
        loop_cpu = time.thread_time() - loop_cpu
        sender.join()
        reader.join()
    for pub in sockets:
        pub.close()
    context.term()
    outcome = results.get()
    return {"sent": frames, **outcome, "loop_cpu_ms_per_frame": 1000 * loop_cpu / max(outcome["frames"], 1)}


LAYOUTS = [(2, "2 x 1 MiB module streams"), (4, "4 x 512 KiB half-module streams")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="acquisition length per rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[250, 500, 750, 1000, 1250, 1500])
    parser.add_argument("--inproc-frames", type=int, default=5000)
    parser.add_argument("--bursts", type=int, nargs="+", default=[500, 1000, 1100, 1500],
                        help="burst lengths (frames, at the highest lossless rate) with no worker reading")
    arguments = parser.parse_args()
    logging.getLogger("monitor.assembler").setLevel(logging.WARNING)
    print(f"assembler benchmark, {os.cpu_count()} cores shared by sender, assembler and sink")
    print(f"\n1. over TCP on 127.0.0.1, the assembler in its own process, {arguments.seconds:g} s per rate")
    for streams, name in LAYOUTS:
        print(f"\nJUNGFRAU 1M, {name}")
        print(f"{'rate Hz':>8} {'send Hz':>8} {'sent':>6} {'arrived':>8} {'whole':>6} {'recv Hz':>8} {'CPU ms/frame':>13} "
              f"{'loop ms/frame':>14}")
        best = 0.0
        for rate in arguments.rates:
            r = trial(streams, rate, arguments.seconds)
            print(f"{rate:8.0f} {r['send_hz']:8.0f} {r['sent']:6d} {r['frames']:8d} {r['whole']:6d} "
                  f"{r['frames'] / max(r['seconds'], 1e-9):8.0f} {r['cpu_ms_per_frame']:13.3f} "
                  f"{r['loop_cpu_ms_per_frame']:14.3f}", flush=True)
            if r["whole"] != r["sent"] or r["frames"] / max(r["seconds"], 1e-9) < 0.95 * rate:
                break  # lost frames, or kept up only thanks to the receivers' 1000-message queues
            best = rate
        print(f"sustained without loss (every frame whole, received at >= 95% of the rate): {best:.0f} frames/s")
    print("\n2. bursts with no worker reading until they are over (2 x 1 MiB streams, default buffer)")
    print(f"{'frames':>7} {'send Hz':>8} {'arrived':>8} {'whole':>6}")
    for frames in arguments.bursts:
        r = burst_trial(2, 1000, frames)
        print(f"{frames:7d} {r['send_hz']:8.0f} {r['frames']:8d} {r['whole']:6d}", flush=True)
    print(f"\n3. the assembler's own limit: threads on inproc:// (no socket copies), {arguments.inproc_frames} frames")
    for streams, name in LAYOUTS:
        r = inproc_trial(streams, arguments.inproc_frames)
        print(f"JUNGFRAU 1M, {name}: {r['whole']}/{r['sent']} whole, "
              f"{r['frames'] / max(r['seconds'], 1e-9):.0f} frames/s (sender and sink in the same interpreter), "
              f"assembler loop {r['loop_cpu_ms_per_frame']:.3f} ms CPU per frame", flush=True)


if __name__ == "__main__":
    main()
