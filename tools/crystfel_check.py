"""Check a monitor run against CrystFEL's indexamajig: the hit files, and the live feed during the run.

    python tools/crystfel_check.py [--frames 600] [--ranks 3] [--indexamajig PATH]

Runs the monitor under mpirun on the simulator (the shipped ``monitor.yaml`` on
free ports, live feed on) while ``indexamajig --zmq-input ... --zmq-request=next
--data-format=msgpack --peaks=msgpack`` takes hits from the feed; then runs
``indexamajig -i RUN/files.lst -g RUN/detector.geom --peaks=cxi`` on the files,
with no edits to either, and checks:

* files: every hit of the files is a chunk of the stream, with exactly the
  file's peaks (``--no-revalidate``; positions equal to the file's plus
  CrystFEL's half-pixel shift), and how many peaks revalidation drops;
* feed: every hit the feed served is a chunk of the feed's stream.

Exits 0 with a line saying so when ``indexamajig`` is not installed (CrystFEL
is on neither PyPI nor Debian).  Without ``--cell`` it runs ``--indexing=none``
(reading and peak handling are what is checked); with ``--cell FILE`` (a CrystFEL
unit-cell file of the simulator's crystal, lysozyme by default) both streams are
indexed with TakeTwo and the crystals found are counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import MPIRUN, free_port, write_config  # noqa: E402
from monitor.outputs.crystfel import LIVE_FEED_GEOMETRY  # noqa: E402

_CHUNK = re.compile(r"----- Begin chunk -----\n(.*?)----- End chunk -----", re.S)
_PEAKS = re.compile(r"Peaks from peak search\n.*?\n(.*?)End of peak list", re.S)


def read_stream(path: Path) -> list[dict]:
    """Each chunk of a CrystFEL stream: file, event, and its peak list (fs, ss in pixels)."""
    chunks = []
    for body in _CHUNK.findall(path.read_text() if path.exists() else ""):
        filename = re.search(r"^Image filename: (.*)$", body, re.M)
        event = re.search(r"^Event: (.*)$", body, re.M)
        peaks = _PEAKS.search(body)
        rows = [line.split() for line in (peaks.group(1).splitlines() if peaks else []) if line.strip()]
        chunks.append({
            "file": filename.group(1).strip() if filename else "",
            "event": event.group(1).strip() if event else "",
            "peaks": np.array([[float(row[0]), float(row[1])] for row in rows]).reshape(-1, 2),
        })
    return chunks


def file_peaks(files: list[Path]) -> dict[tuple[str, int], np.ndarray]:
    """(file, frame) -> (fs, ss) of every stored peak."""
    peaks = {}
    for path in files:
        with h5py.File(path, "r") as cxi:
            counts = cxi["entry_1/result_1/nPeaks"][()]
            xs, ys = cxi["entry_1/result_1/peakXPosRaw"][()], cxi["entry_1/result_1/peakYPosRaw"][()]
        for frame, n in enumerate(counts):
            peaks[(str(path), frame)] = np.column_stack([xs[frame, :n], ys[frame, :n]])
    return peaks


def indexing(cell: Path | None) -> list[str]:
    """indexamajig's indexing options: none, or TakeTwo (built into CrystFEL) with the cell."""
    return ["--indexing=none"] if cell is None else ["--indexing=taketwo", "-p", str(cell)]


def crystals(stream: Path) -> int:
    """Crystals indexamajig indexed in a stream."""
    return stream.read_text().count("--- Begin crystal") if stream.exists() else 0


def check_files(indexamajig: str, run_dir: Path, work: Path, env: dict[str, str], cell: Path | None) -> bool:
    files = [Path(line) for line in (run_dir / "files.lst").read_text().split()]
    stored = file_peaks(files)
    counts = {}
    for revalidate in (False, True):
        stream = work / f"files-{'revalidated' if revalidate else 'all'}.stream"
        command = [indexamajig, "-i", str(run_dir / "files.lst"), "-g", str(run_dir / "detector.geom"),
                   "--peaks=cxi", *indexing(cell), "-j", "2", "-o", str(stream)]
        done = subprocess.run(command + ([] if revalidate else ["--no-revalidate"]), env=env, cwd=work,
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            print(f"indexamajig on the files failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            return False
        counts[revalidate] = read_stream(stream)
    chunks = counts[False]
    matched = exact = 0
    worst = 0.0
    for chunk in chunks:
        frame = int(chunk["event"].strip("/").split("/")[-1]) if chunk["event"] else 0
        expected = stored.get((chunk["file"], frame))
        if expected is None:
            continue
        matched += 1
        if len(expected) == len(chunk["peaks"]):
            exact += 1
            if len(expected):  # each stored peak's nearest in the stream (which prints 2 decimals)
                distance = np.hypot(*(chunk["peaks"][None, :, :] - (expected[:, None, :] + 0.5)).transpose(2, 0, 1))
                worst = max(worst, float(distance.min(axis=1).max()))
    n_file_peaks = sum(len(p) for p in stored.values())
    n_revalidated = sum(len(chunk["peaks"]) for chunk in counts[True])
    ok = matched == len(stored) == len(chunks) and exact == matched and worst < 0.01
    print(f"files: {len(files)} files, {len(stored)} hits, {n_file_peaks} peaks; stream: {len(chunks)} chunks, "
          f"{exact} with exactly the file's peaks, largest position difference {worst:.4f} px (after +0.5); "
          f"revalidation keeps {n_revalidated} of {n_file_peaks} peaks; crystals indexed "
          f"{crystals(work / 'files-all.stream')} -> {'OK' if ok else 'MISMATCH'}")
    return ok


def stop_group(process: subprocess.Popen) -> None:
    """End indexamajig and the worker processes it forked (its own session), if any are left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def wait_for_run_dir(output: Path, monitor: subprocess.Popen, timeout_s: float = 120) -> Path | None:
    """The run folder, once the collector has opened its outputs (its live-feed.geom is there)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and monitor.poll() is None:
        geometries = sorted(output.glob(f"run-*/{LIVE_FEED_GEOMETRY}"))
        if geometries:
            return geometries[-1].parent
        time.sleep(0.2)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--rate", type=float, default=200.0, help="simulated frames per second")
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--indexamajig", default=shutil.which("indexamajig"))
    parser.add_argument("--keep", type=Path, help="run and streams go to this (new) folder, kept afterwards")
    parser.add_argument("--cell", type=Path, help="index with TakeTwo and this CrystFEL unit-cell file")
    args = parser.parse_args()
    if not args.indexamajig:
        print("indexamajig not installed (CrystFEL is on neither PyPI nor Debian): nothing checked")
        return 0
    env = {**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH, "PYTHONPATH": str(ROOT / "tests")}
    with tempfile.TemporaryDirectory(prefix="crystfel-check-") as folder:
        work = Path(folder) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        feed_url = f"tcp://127.0.0.1:{free_port()}"
        config = write_config(work, {
            "data_retrieval_layer": {"simulator": {"frames": args.frames, "rate_hz": args.rate}},
            "outputs": {"live_feed": {"enabled": True, "url": feed_url},
                        "hit_files": {"max_hits_per_file": 50, "preview_interval_s": 0}},
        })
        summary_file = work / "summary.json"
        monitor = subprocess.Popen([str(MPIRUN), "-n", str(args.ranks), sys.executable, "-m", "monitor", str(config),
                                    "-q", "--summary-json", str(summary_file)], env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL)
        run_dir = wait_for_run_dir(work / "output", monitor)
        if run_dir is None:
            print(f"monitor run made no run folder (exit {monitor.wait()})")
            return 1
        feed_stream = work / "feed.stream"
        feed = subprocess.Popen([args.indexamajig, f"--zmq-input={feed_url}", "--zmq-request=next",
                                 "--data-format=msgpack", "-g", str(run_dir / "live-feed.geom"), "--peaks=msgpack",
                                 "--no-revalidate", *indexing(args.cell), "-j", "2", "-o", str(feed_stream)],
                                env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # its worker processes go with it, below
        if monitor.wait(timeout=1800) != 0:
            stop_group(feed)
            print(f"monitor run failed (exit {monitor.returncode})")
            return 1
        served = json.loads((run_dir / "summary.json").read_text())["outputs"]["feed_hits_served"]
        deadline = time.monotonic() + 60
        while len(read_stream(feed_stream)) < served and time.monotonic() < deadline:
            time.sleep(1)
        os.killpg(feed.pid, signal.SIGINT)
        try:
            feed.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(feed.pid, signal.SIGKILL)
        stop_group(feed)
        feed_chunks = read_stream(feed_stream)
        summary = json.loads(summary_file.read_text())
        feed_ok = len(feed_chunks) == served
        print(f"run: {summary['events_processed']} frames, {summary['hits']} hits; feed: {served} hits served, "
              f"{len(feed_chunks)} chunks in indexamajig's stream, "
              f"{sum(len(c['peaks']) for c in feed_chunks)} peaks, {crystals(feed_stream)} crystals indexed "
              f"-> {'OK' if feed_ok else 'MISMATCH'}")
        files_ok = check_files(args.indexamajig, run_dir, work, env, args.cell)
    return 0 if feed_ok and files_ok else 1


if __name__ == "__main__":
    sys.exit(main())
