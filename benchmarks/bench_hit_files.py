"""What hit files cost and keep: ``python benchmarks/bench_hit_files.py`` (also part of ``make bench``).

Prints, on this machine:
1. a worker's CPU per hit written (target <= 2 ms) and the bytes per hit on
   disk (target <= 0.8 MB), for JUNGFRAU 1M hits of the crystal simulator
   (calibrated, with their mask and peaks): the default (whole photons,
   int16, blosc-shuffle-lz4), other filters, and lossless float32;
2. the photons each spot loses in the files, against the simulator's truth:
   every isolated, whole spot of 5 photons or more, its stored photons summed
   over the box its charge can reach, on frames without background (so every
   photon in the box is the spot's), whole photons against lossless float32;
3. the collector's CPU per hit for its outputs, in one process: hits as they
   reach the collector (marked and without frame when workers wrote them, with
   frame and mask otherwise) through the hit-file output, against the same
   with hit files off (CPU of every thread, the writer's included);
4. the same from whole runs (mpirun, the crystallography pipeline): the
   collector rank's CPU seconds and wall time.  Its idle polling costs CPU in
   proportion to the wall time, so on a loaded machine the figure per hit
   mixes in how long the run took;
5. hits per second the whole monitor writes when every frame is a hit.
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

import numpy as np  # noqa: E402

from helpers import MPIRUN, write_config  # noqa: E402
from monitor.outputs.experiment import experiment_from_document  # noqa: E402
from monitor.outputs.group import OutputGroup, build_outputs  # noqa: E402
from monitor.outputs.parameters import HitFileParameters, OutputParameters  # noqa: E402
from monitor.outputs.stored_pixels import StoredPixels  # noqa: E402
from monitor.outputs.synthetic import synthetic_event  # noqa: E402
from monitor.outputs.worker_hits import WorkerHitWriter  # noqa: E402
from monitor.processing.protocol import ProcessedEvent  # noqa: E402
from monitor.simulation import FrameTruth, SimulatedJungfrau1M  # noqa: E402
from sources.calibration import CalibrationParameters, JungfrauCalibration  # noqa: E402

RANKS = 3
FRAMES = 1500
TARGET_CPU_MS = 2.0
TARGET_MB = 0.8
SPOT_REACH_PX = 10
"""Half side of the box a spot's photons are summed over: the simulator draws a spot within 10 pixels."""
HEAVY_BACKGROUND = (0.05, 0.1)
"""Photons a pixel of flat background and of the water ring's peak: ten times the simulator's default."""
NO_BACKGROUND = 1e-7
"""Photons a pixel of background for the spot count: none, in effect (the simulator needs a positive level)."""


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


def simulated_hits(count: int, **simulator: float) -> list[tuple[ProcessedEvent, FrameTruth]]:
    """``count`` calibrated hits of the crystal simulator, as the pipeline hands them on, with their truth."""
    detector = SimulatedJungfrau1M(seed=11, hit_fraction=1.0, **simulator)
    with tempfile.TemporaryDirectory() as folder:
        calibration = JungfrauCalibration(CalibrationParameters(**detector.write_calibration(Path(folder))))
    hits = []
    for n in range(count):
        raw, truth = detector.frame(n)
        photons, valid = calibration.calibrate(raw)
        peaks = np.array([[peak.x, peak.y, peak.photons, peak.snr] for peak in truth.peaks], np.float32).reshape(-1, 4)
        arrays = {"frame": photons.copy(), "valid": valid.copy(), "peak_x": peaks[:, 0], "peak_y": peaks[:, 1],
                  "peak_intensity": peaks[:, 2], "peak_snr": peaks[:, 3]}
        hits.append((ProcessedEvent(values={"is_hit": True, "event_id": n, "timestamp": time.time()}, arrays=arrays),
                     truth))
    return hits


def worker_cost(hits: list[ProcessedEvent], parameters: HitFileParameters, count: int = 200) -> tuple[float, float]:
    """A worker's CPU (ms) per hit written, and MB per hit on disk, writing ``count`` hits (``hits`` cycled)."""
    with tempfile.TemporaryDirectory() as folder:
        writer = WorkerHitWriter(Path(folder), rank=1, parameters=parameters, experiment=experiment_from_document(None))
        writer.take(hits[0])  # opens the file, compiles the kernel
        started = time.process_time()
        for n in range(count):
            writer.take(hits[n % len(hits)], now=0.0)
        cpu_ms = (time.process_time() - started) / count * 1e3
        writer.close()
        size = sum(path.stat().st_size for path in Path(folder).glob("*.cxi"))
        return cpu_ms, size / (count + 1) / 1e6


def spot_photons(hits: list[tuple[ProcessedEvent, FrameTruth]], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Truth and stored photons of every isolated, whole spot of 5 photons or more whose box is all valid."""
    reach = SPOT_REACH_PX
    truth, stored = [], []
    for hit, frame_truth in hits:
        pixels = StoredPixels(hit.arrays["frame"].shape, np.dtype(dtype))
        pixels.store(hit.arrays["frame"], hit.arrays["valid"])
        centres = np.array([[peak.y, peak.x] for peak in frame_truth.peaks]).reshape(-1, 2)
        for peak in frame_truth.peaks:
            crowded = (np.abs(centres - [peak.y, peak.x]) <= 2 * reach + 1).all(axis=1).sum() > 1
            if peak.photons < 5 or not peak.whole or crowded:
                continue
            row, col = round(peak.y), round(peak.x)
            box = (slice(max(row - reach, 0), row + reach + 1), slice(max(col - reach, 0), col + reach + 1))
            if hit.arrays["valid"][box].all():
                truth.append(peak.photons)
                stored.append(float(pixels.pixels[box].sum(dtype=np.float64)))
    return np.array(truth), np.array(stored)


def print_photons_lost(frames: int = 30) -> None:
    hits = simulated_hits(frames, background_photons=NO_BACKGROUND, ring_photons=0.0)
    print(f"photons lost per spot against the simulator's truth ({frames} hits without background, medium crystal, "
          f"spots summed over {2 * SPOT_REACH_PX + 1}x{2 * SPOT_REACH_PX + 1} px; target <= 2 %):")
    for dtype in ("int16", "float32"):
        truth, stored = spot_photons(hits, dtype)
        bins = ", ".join(
            f"{low}-{high if high < 1e9 else ''} photons: {np.mean(truth[k] - stored[k]):+.3f} "
            f"({np.sum(truth[k] - stored[k]) / np.sum(truth[k]) * 100:+.2f} %, {k.sum()} spots)"
            for low, high in ((5, 10), (10, 20), (20, 1e12)) for k in [(truth >= low) & (truth < high)])
        print(f"  {dtype:7s} {bins}")


def print_worker_costs() -> None:
    hits = [hit for hit, _ in simulated_hits(8)]
    print(f"worker CPU per hit written and size on disk (JUNGFRAU 1M hits of the simulator, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; targets <= {TARGET_CPU_MS} ms, <= {TARGET_MB} MB):")
    choices = [("int16", "blosc-shuffle-lz4", "the default"), ("int16", "bitshuffle-lz4", ""),
               ("int16", "blosc-lz4", ""), ("int16", "zstd", ""), ("float32", "blosc-shuffle-lz4", "lossless")]
    for dtype, compression, note in choices:
        cpu_ms, mb = worker_cost(hits, HitFileParameters(frame_dtype=dtype, compression=compression))
        verdict = "ok" if cpu_ms <= TARGET_CPU_MS and mb <= TARGET_MB else "OVER TARGET"
        print(f"  {dtype:7s} {compression:17s} {cpu_ms:5.2f} ms/hit {mb:6.3f} MB/hit  {verdict:11s} {note}")
    pixels = StoredPixels(hits[0].arrays["frame"].shape, np.int16)
    started = time.process_time()
    for n in range(200):
        pixels.store(hits[n % len(hits)].arrays["frame"], hits[n % len(hits)].arrays["valid"])
    print(f"  of which whole photons and mask, one compiled pass: {(time.process_time() - started) / 200 * 1e3:.2f} ms")
    heavy = [hit for hit, _ in simulated_hits(8, background_photons=HEAVY_BACKGROUND[0], ring_photons=HEAVY_BACKGROUND[1])]
    print(f"  with ten times the background ({HEAVY_BACKGROUND[0]} photons a pixel, a water ring of "
          f"{HEAVY_BACKGROUND[1]}):")
    for compression in ("blosc-shuffle-lz4", "bitshuffle-lz4"):
        cpu_ms, mb = worker_cost(heavy, HitFileParameters(compression=compression))
        print(f"  int16   {compression:17s} {cpu_ms:5.2f} ms/hit {mb:6.3f} MB/hit")


def main() -> None:
    print_worker_costs()
    print_photons_lost()
    print("collector CPU per hit for its outputs, in-process (1024x1024 hits with mask):")
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
    every_frame = monitor_run({"writer": "workers"}, {"frames": 1000, "rate_hz": 2000, "hit_fraction": 1.0})
    rate = every_frame["outputs"]["hits_written"] / every_frame["wall_time_s"]
    print(f"monitor, every frame a hit ({RANKS - 1} workers): {every_frame['outputs']['hits_written']} hits written "
          f"in {every_frame['wall_time_s']:.1f} s wall ({rate:.0f} hits/s, events/s {every_frame['events_per_s']})")


if __name__ == "__main__":
    main()
