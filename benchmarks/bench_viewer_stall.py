"""Does a stalled viewer slow the monitor down?  ``python benchmarks/bench_viewer_stall.py``

Drives the collector side of the results stream (``on_result`` for every
event, ``on_tick`` at 10 Hz, publishing at 5 Hz with 2x2 binning) as fast as it
goes, with nothing else to do, so any cost a subscriber causes shows at its
largest.  Three cases, interleaved over several rounds, median of each:

* ``none``: no subscriber;
* ``frozen``: a subscriber that took one message, then was stopped with SIGSTOP
  (a hung viewer: its socket buffers fill, ZeroMQ's high-water mark drops);
* ``not-reading``: a live subscriber process that never calls ``recv``.

Events are synthetic JUNGFRAU 1M results: 10% hits with a 1024 x 1024 float32
frame and peaks, one non-hit in 20 with a frame; the snapshot carries a
1024 x 1024 powder.  Prints, for each case, events per wall-clock second and
events per second of the collector thread's own CPU time, and their change
against ``none`` (the target is under 5%).  On a shared machine the wall-clock
figure moves with other load; the CPU-time figure is the collector's own cost,
and a collector that waited on a socket would show wall time well above CPU time
(the "busy" column).
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.outputs.parameters import ResultsStreamParameters  # noqa: E402
from monitor.outputs.results_stream import ResultsStream  # noqa: E402
from monitor.outputs.synthetic import synthetic_event, synthetic_snapshot  # noqa: E402

TICK_S = 0.1
CASES = ("none", "frozen", "not-reading")

_SUBSCRIBER = """
import sys, time, zmq
socket = zmq.Context().socket(zmq.SUB)
socket.setsockopt(zmq.RCVHWM, 1)
socket.setsockopt(zmq.SUBSCRIBE, b"")
socket.connect(sys.argv[1])
socket.recv_multipart()
print("subscribed", flush=True)
time.sleep(3600)  # never reads again
"""


def make_events(count: int = 200) -> list:
    return [
        synthetic_event(i, is_hit=i % 10 == 0, with_frame=i % 10 == 0 or i % 20 == 5) for i in range(count)
    ]


@dataclass
class Measurement:
    events: int
    wall_s: float
    cpu_s: float


def drive(stream: ResultsStream, events: list, snapshot: dict, seconds: float) -> Measurement:
    """Feed events as fast as possible for ``seconds``, ticking every TICK_S."""
    status = {"events_per_s": 0.0, "hit_rate": 0.1}
    done = 0
    start = next_tick = time.perf_counter()
    start_cpu = time.thread_time()
    while True:
        for event in events:
            stream.on_result(event)
        done += len(events)
        now = time.perf_counter()
        if now >= next_tick:
            stream.on_tick(status=status, snapshot=snapshot)
            next_tick = now + TICK_S
        if now - start >= seconds:
            return Measurement(done, now - start, time.thread_time() - start_cpu)


def measure(case: str, events: list, snapshot: dict, seconds: float, run_dir: Path) -> Measurement:
    stream = ResultsStream(parameters=ResultsStreamParameters(
        url="tcp://127.0.0.1:*", request_url="tcp://127.0.0.1:*", rate_hz=5.0, bin_factor=2))
    stream.open(run_dir=run_dir)
    subscriber = None
    try:
        if case != "none":
            subscriber = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, stream.url],
                                          stdout=subprocess.PIPE, text=True)
            while not _ready(subscriber):
                stream.on_tick(status={}, snapshot=snapshot)
            if case == "frozen":
                os.kill(subscriber.pid, signal.SIGSTOP)
        return drive(stream, events, snapshot, seconds)
    finally:
        if subscriber is not None:
            subscriber.kill()  # SIGKILL also ends a stopped process
            subscriber.wait()
        stream.close(summary={})


def _ready(subscriber: subprocess.Popen) -> bool:
    """True once the subscriber printed that it holds a message (waits at most 50 ms)."""
    readable, _, _ = select.select([subscriber.stdout], [], [], 0.05)
    return bool(readable) and subscriber.stdout.readline().strip() == "subscribed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    events, snapshot = make_events(), synthetic_snapshot()
    runs: dict[str, list[Measurement]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(arguments.rounds):
            for case in CASES:
                runs[case].append(measure(case, events, snapshot, arguments.seconds, Path(folder)))
    wall = {case: statistics.median(m.events / m.wall_s for m in runs[case]) for case in CASES}
    cpu = {case: statistics.median(m.events / m.cpu_s for m in runs[case]) for case in CASES}
    busy = {case: statistics.median(m.cpu_s / m.wall_s for m in runs[case]) for case in CASES}
    print(f"on_result + on_tick throughput, median of {arguments.rounds} rounds of {arguments.seconds:g} s"
          f" ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}):")
    print(f"  {'case':12s} {'M events/s (wall)':>18s} {'change':>8s} {'M events/CPU-s':>16s} {'change':>8s} {'busy':>6s}")
    for case in CASES:
        print(f"  {case:12s} {wall[case] / 1e6:18.3f} {wall[case] / wall['none'] - 1:+8.1%}"
              f" {cpu[case] / 1e6:16.3f} {cpu[case] / cpu['none'] - 1:+8.1%} {busy[case]:6.0%}")


if __name__ == "__main__":
    main()
