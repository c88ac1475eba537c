"""What hit files cost: ``python benchmarks/bench_hit_files.py`` (also part of ``make bench``).

Prints, on this machine:
1. the collector's CPU per hit for its outputs, in one process: hits as they
   reach the collector (marked and without frame when workers wrote them, with
   frame and mask otherwise) through the hit-file output, against the same
   with hit files off (CPU of every thread, the writer's included);
2. the same from whole runs (mpirun, the crystallography pipeline): the
   collector rank's CPU seconds and wall time.  Its idle polling costs CPU in
   proportion to the wall time, so on a loaded machine the figure per hit
   mixes in how long the run took;
3. how many hits per second one writer puts in files (1024 x 1024 float32
   frames with mask and peaks, bitshuffle-lz4), in one process;
4. hits per second the whole monitor writes when every frame is a hit.
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
from monitor.outputs.group import OutputGroup, build_outputs  # noqa: E402
from monitor.outputs.parameters import HitFileParameters, OutputParameters  # noqa: E402
from monitor.outputs.synthetic import synthetic_event  # noqa: E402
from monitor.outputs.worker_hits import WorkerHitWriter  # noqa: E402
from monitor.processing.protocol import ProcessedEvent  # noqa: E402

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


def framed_hits(count: int) -> list[ProcessedEvent]:
    hits = [synthetic_event(n, is_hit=True) for n in range(count)]
    for hit in hits:
        hit.arrays["valid"] = hit.arrays["frame"] > -3
    return hits


def collector_output_cpu_ms(writer: str | None, count: int = 60) -> float:
    """CPU (ms, all threads) per hit of the collector's outputs, hit files as ``writer`` says (None: off)."""
    hits = framed_hits(count)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        if writer == "workers":
            worker = WorkerHitWriter(run_dir, rank=1, parameters=HitFileParameters(preview_interval_s=1e9),
                                     experiment=experiment_from_document(None))
            hits = [worker.take(hit, now=0.0 if n == 0 else 1.0) for n, hit in enumerate(hits)]
            worker.close()
        parameters = OutputParameters.model_validate({
            "results_stream": {"enabled": False}, "report": {"enabled": False},
            "hit_files": {"enabled": writer is not None, "writer": writer or "workers", "queue_size": count}})
        outputs = OutputGroup(build_outputs(parameters))
        outputs.open(run_dir=run_dir)
        started = time.process_time()
        for hit in hits:
            outputs.on_result(hit)
        outputs.close(summary={})
        return (time.process_time() - started) / count * 1e3


def writer_rate(count: int = 100) -> float:
    hits = framed_hits(8)
    with tempfile.TemporaryDirectory() as folder:
        writer = WorkerHitWriter(Path(folder), rank=1, parameters=HitFileParameters(),
                                 experiment=experiment_from_document(None))
        started = time.perf_counter()
        for n in range(count):
            writer.take(hits[n % len(hits)])
        writer.close()
        return count / (time.perf_counter() - started)


def main() -> None:
    print("collector CPU per hit for its outputs, in-process (1024x1024 float32 hits with mask):")
    base = collector_output_cpu_ms(None)
    for writer in ("workers", "collector"):
        print(f"  {writer:9s} write: {collector_output_cpu_ms(writer) - base:6.2f} ms/hit over hit files off "
              f"({base:.3f} ms/hit)")
    simulator = {"frames": FRAMES, "rate_hz": 500}
    runs = {
        "no hit files": monitor_run({"enabled": False}, simulator),
        "workers write": monitor_run({"writer": "workers"}, simulator),
        "collector writes": monitor_run({"writer": "collector"}, simulator),
    }
    base = collector(runs["no hit files"])["cpu_s"]
    print(f"collector rank, whole runs: {FRAMES} frames, {RANKS} ranks (per hit over the run without files):")
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
