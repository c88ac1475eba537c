"""Throughput of the framework: ``make bench`` (or ``python benchmarks/bench_framework.py``).

Prints, on this machine:
1. the raw ZMQ receive rate of 2 MiB JUNGFRAU 1M frames (one PULL socket, nothing else);
2. events/s end to end through the monitor with the statistics pipeline, 1 and 2 workers,
   fed by the same sender, and the worker's time per frame in the handler, sources and pipeline;
3. small results/s the collector absorbs and aggregates, next to raw MPI's small-message rate;
4. the CPU an idle collector uses while it waits for data.

The sender sends pre-built frames as fast as PUSH lets it, so the figures are the
receiving side's limits, not the simulator's.  The statistics pipeline reads the
assembled frame (``detector_data``): its light kernel runs at 1.2 ms a frame on the
buffers ZMQ has just filled but at 0.36 ms on a cache-warm copy (plus 0.25 ms to copy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import MPIRUN, free_port  # noqa: E402
from monitor import wire  # noqa: E402
from monitor.memory import keep_frame_buffers  # noqa: E402

FRAMES = 3000


def send_frames(url: str, count: int) -> None:
    """PUSH ``count`` synchronizer-shaped 1M frames (two 1 MiB modules), then the end message."""
    keep_frame_buffers()
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.bind(url)
    modules = [np.random.default_rng(k).integers(1000, 3000, (512, 1024), dtype=np.uint16) for k in range(2)]
    socket.send_multipart(wire.build_sync_start([{"udpPorts": [50012 + k]} for k in range(2)]))
    for number in range(1, count + 1):
        parts = wire.build_sync_frame([
            (wire.module_header(port=50012 + k, row=k, column=0, frame_number=number, frame_index=number - 1,
                                shape=(512, 1024)), modules[k]) for k in range(2)])
        socket.send_multipart(parts, copy=False)
    socket.send_multipart(wire.build_sync_end([([50012 + k], [count]) for k in range(2)]))
    socket.close(linger=-1)
    context.term()


def start_sender(url: str, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--send", url, str(count)])


def raw_receive_rate(count: int) -> float:
    url = f"tcp://127.0.0.1:{free_port()}"
    sender = start_sender(url, count)
    keep_frame_buffers()  # as the monitor's ranks do, so that the comparison is fair
    context = zmq.Context()
    socket = context.socket(zmq.PULL)
    socket.connect(url)
    received, first = 0, None
    while True:
        parts = socket.recv_multipart(copy=False)
        if len(parts) == 4:
            first = first or time.perf_counter()
            received += 1
        elif b"series_end" in parts[0].bytes:
            break
    elapsed = time.perf_counter() - first
    sender.wait()
    socket.close()
    context.term()
    return (received - 1) / elapsed


def monitor_run(workers: int, config: dict, sender_frames: int | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path, summary = Path(folder) / "bench.yaml", Path(folder) / "summary.json"
        path.write_text(json.dumps(config))  # YAML is a superset of JSON
        monitor = subprocess.Popen([str(MPIRUN), "-n", str(workers + 1), sys.executable, "-m", "monitor", str(path),
                                    "-q", "--summary-json", str(summary)], stdout=subprocess.DEVNULL,
                                   env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "benchmarks")})
        sender = start_sender(config["data_retrieval_layer"]["source"], sender_frames) if sender_frames else None
        if monitor.wait(timeout=300) != 0:
            raise SystemExit(f"monitor run failed (exit {monitor.returncode})")
        if sender:
            sender.wait()
        return json.loads(summary.read_text())


def frames_config(url: str, pipeline: str = "FrameStatisticsPipeline", frame: str = "detector_modules") -> dict:
    return {
        "data_retrieval_layer": {"data_event_handler": "Jungfrau1MZmqDataEventHandler", "source": url,
                                 "stop_after_acquisition": True, "required_data": [frame, "timestamp", "event_id"]},
        "processing_layer": {"pipeline": pipeline},
        "monitor": {"no_data_warning_s": 60},
    }


def small_results_rate(steerable: bool, events: int = 100_000) -> float:
    """Results/s the collector absorbs from 2 workers sending tiny results; ``steerable``: with
    its control endpoint open (``monitor.control_url``) but no request ever sent."""
    summary = monitor_run(2, {
        "data_retrieval_layer": {"data_event_handler": "synthetic:SyntheticEventHandler", "events_per_worker": events},
        "processing_layer": {"pipeline": "synthetic:TinyResultPipeline"},
        "monitor": {"control_url": f"tcp://127.0.0.1:{free_port()}"} if steerable else {},
    }, None)
    assert summary["events_processed"] == 2 * events, summary
    return summary["events_per_s"]


def raw_mpi_message_rate() -> float:
    script = (
        "from mpi4py import MPI; import time\n"
        "c = MPI.COMM_WORLD; n = 100000; msg = bytearray(64)\n"
        "c.Barrier(); t = time.perf_counter()\n"
        "if c.rank: [c.Send(msg, 0, 1) for _ in range(n)]\n"
        "else:\n"
        "    s = MPI.Status()\n"
        "    for _ in range(n * (c.size - 1)): c.Recv(msg, MPI.ANY_SOURCE, 1, s)\n"
        "    print(n * (c.size - 1) / (time.perf_counter() - t))\n"
    )
    done = subprocess.run([str(MPIRUN), "-n", "3", sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main() -> None:
    print(f"JUNGFRAU 1M frames of 2 MiB, {FRAMES} per run, sender and receivers on this machine")
    raw = raw_receive_rate(FRAMES)
    print(f"raw ZMQ receive (one PULL socket):           {raw:8.0f} frames/s  ({raw * 2 / 1024:.2f} GiB/s)")
    runs = [("framework alone (module views, no-op pipeline)", "synthetic:TinyResultPipeline", "detector_modules", 1),
            ("framework alone (frame assembled by a copy)", "synthetic:TinyResultPipeline", "detector_data", 1),
            ("statistics pipeline", "FrameStatisticsPipeline", "detector_data", 1),
            ("statistics pipeline", "FrameStatisticsPipeline", "detector_data", 2)]
    for label, pipeline, frame, workers in runs:
        url = f"tcp://127.0.0.1:{free_port()}"
        summary = monitor_run(workers, frames_config(url, pipeline, frame), FRAMES)
        assert summary["events_processed"] == FRAMES, summary
        busy = [r["busy_s"] / max(r["events"], 1) * 1e3 for r in summary["per_rank"] if r["role"] == "worker"]
        rate = summary["events_per_s"]
        print(f"monitor, {label}, {workers} worker(s): {rate:6.0f} frames/s "
              f"({100 * rate / raw:.0f}% of raw; worker time in handler+sources+pipeline {np.mean(busy):.2f} ms/frame)")
    for steerable in (False, True):
        rate = small_results_rate(steerable)
        print(f"collector, small results absorbed:           {rate:8.0f} results/s (2 workers"
              f"{', control endpoint open, never asked' if steerable else ''})")
    print(f"raw MPI, 64-byte messages to one rank:       {raw_mpi_message_rate():8.0f} messages/s (2 senders)")
    url = f"tcp://127.0.0.1:{free_port()}"
    idle = frames_config(url)
    idle["monitor"] = {"idle_timeout_s": 5.0, "no_data_warning_s": 60}
    summary = monitor_run(1, idle, None)
    collector = next(r for r in summary["per_rank"] if r["role"] == "collector")
    print(f"idle collector CPU while waiting for data:   {100 * collector['cpu_s'] / collector['wall_s']:8.1f} % of a core")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--send", nargs=2, metavar=("URL", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        send_frames(args.send[0], int(args.send[1]))
    else:
        main()
