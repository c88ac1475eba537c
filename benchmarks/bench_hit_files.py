"""What hit files cost: ``python benchmarks/bench_hit_files.py`` (also part of ``make bench``).

Prints, on this machine:
1. the collector's CPU per hit: the same simulated acquisition (mpirun, the
   crystallography pipeline) without hit files, with workers writing them (the
   default) and with the collector writing them; the collector rank's CPU
   seconds from the run summary, its difference to the run without files
   divided by the hits;
2. how many hits per second one writer puts in files (1024 x 1024 float32
   frames with mask and peaks, bitshuffle-lz4), in one process;
3. hits per second the whole monitor writes when every frame is a hit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import MPIRUN, write_config  # noqa: E402
from monitor.outputs.experiment import experiment_from_document  # noqa: E402
from monitor.outputs.parameters import HitFileParameters  # noqa: E402
from monitor.outputs.synthetic import synthetic_event  # noqa: E402
from monitor.outputs.worker_hits import WorkerHitWriter  # noqa: E402

RANKS = 3
FRAMES = 1500


def monitor_run(hit_files: dict, simulator: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config = write_config(Path(folder), {"data_retrieval_layer": {"simulator": simulator},
                                             "outputs": {"hit_files": hit_files}})
        summary = Path(folder) / "summary.json"
        subprocess.run([str(MPIRUN), "-n", str(RANKS), sys.executable, "-m", "monitor", str(config), "-q",
                        "--summary-json", str(summary)], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "tests")}, stdin=subprocess.DEVNULL)
        result = json.loads(summary.read_text())
        result["outputs"] = json.loads((Path(result["output_dir"]) / "summary.json").read_text()).get("outputs", {})
        return result


def collector(summary: dict) -> dict:
    return next(rank for rank in summary["per_rank"] if rank["role"] == "collector")


def writer_rate(count: int = 100) -> float:
    hits = [synthetic_event(n, is_hit=True) for n in range(8)]
    for hit in hits:
        hit.arrays["valid"] = hit.arrays["frame"] > -3
    with tempfile.TemporaryDirectory() as folder:
        writer = WorkerHitWriter(Path(folder), rank=1, parameters=HitFileParameters(),
                                 experiment=experiment_from_document(None))
        started = time.perf_counter()
        for n in range(count):
            writer.take(hits[n % len(hits)])
        writer.close()
        return count / (time.perf_counter() - started)


def main() -> None:
    simulator = {"frames": FRAMES, "rate_hz": 500}
    runs = {
        "no hit files": monitor_run({"enabled": False}, simulator),
        "workers write": monitor_run({"writer": "workers"}, simulator),
        "collector writes": monitor_run({"writer": "collector"}, simulator),
    }
    base = collector(runs["no hit files"])["cpu_s"]
    print(f"collector CPU, {FRAMES} frames, {RANKS} ranks (CPU-s; per hit over the run without files):")
    for name, summary in runs.items():
        rank, hits = collector(summary), summary["hits"]
        extra = f"{(rank['cpu_s'] - base) / hits * 1e3:+6.2f} ms/hit" if name != "no hit files" else ""
        print(f"  {name:18s} {rank['cpu_s']:6.2f} CPU-s in {rank['wall_s']:5.1f} s, {hits} hits, written "
              f"{summary['outputs'].get('hits_written', 0):4d} {extra}")
    print(f"one writer, 1024x1024 float32 hits with mask, bitshuffle-lz4: {writer_rate():6.0f} hits/s")
    every_frame = monitor_run({"writer": "workers"}, {"frames": 1000, "rate_hz": 2000, "hit_fraction": 1.0})
    rate = every_frame["outputs"]["hits_written"] / every_frame["wall_time_s"]
    print(f"monitor, every frame a hit ({RANKS - 1} workers): {every_frame['outputs']['hits_written']} hits written "
          f"in {every_frame['wall_time_s']:.1f} s wall ({rate:.0f} hits/s, events/s {every_frame['events_per_s']})")


if __name__ == "__main__":
    main()
