"""Hit files: exact frames and peaks read back in CXI layout, rolling, dropping, surviving a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the filters h5py needs to read back)
import numpy as np
import pytest

from monitor.outputs.hit_files import HitFiles
from monitor.outputs.parameters import HitFileParameters
from monitor.outputs.synthetic import synthetic_event

BITSHUFFLE_FILTER_ID = 32008
SMALL = (128, 192)


def read_hits(paths: list[Path], *, swmr: bool = False) -> dict[str, np.ndarray]:
    """Every hit across ``paths``, concatenated in file order."""
    columns: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with h5py.File(path, "r", swmr=swmr) as cxi:
            for name in ("entry_1/data_1/data", "entry_1/result_1/nPeaks", "entry_1/result_1/peakXPosRaw",
                         "entry_1/result_1/peakYPosRaw", "entry_1/result_1/peakTotalIntensity",
                         "entry_1/event_id", "entry_1/timestamp"):
                columns.setdefault(name.rsplit("/", 1)[1], []).append(cxi[name][()])
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def test_written_hits_read_back_exactly_in_cxi_layout(tmp_path: Path) -> None:
    writer = HitFiles(parameters=HitFileParameters(max_peaks=16, frame_dtype="float32"))
    writer.open(run_dir=tmp_path)
    events = [synthetic_event(i, is_hit=i % 3 == 0, n_peaks=5 + i % 4) for i in range(30)]
    events.append(synthetic_event(99, is_hit=True, n_peaks=40))  # more peaks than columns
    for event in events:
        writer.on_result(event)
    writer.close(summary={})

    hits = [event for event in events if event.values["is_hit"]]
    assert writer.counters() == {"hits_written": len(hits), "hits_dropped": 0, "hits_failed": 0,
                                 "hits_without_frame": 0, "hit_files": 1}
    read = read_hits(writer.paths)
    np.testing.assert_array_equal(read["data"], np.stack([hit.arrays["frame"] for hit in hits]))
    np.testing.assert_array_equal(read["event_id"], [hit.values["event_id"] for hit in hits])
    np.testing.assert_array_equal(read["timestamp"], [hit.values["timestamp"] for hit in hits])
    np.testing.assert_array_equal(read["nPeaks"], [min(len(hit.arrays["peak_x"]), 16) for hit in hits])
    for row, hit in enumerate(hits):
        n = read["nPeaks"][row]
        np.testing.assert_array_equal(read["peakXPosRaw"][row, :n], hit.arrays["peak_x"][:n])
        np.testing.assert_array_equal(read["peakYPosRaw"][row, :n], hit.arrays["peak_y"][:n])
        np.testing.assert_array_equal(read["peakTotalIntensity"][row, :n], hit.arrays["peak_intensity"][:n])
        assert not read["peakXPosRaw"][row, n:].any()
    with h5py.File(writer.paths[0], "r") as cxi:
        frames = cxi["entry_1/data_1/data"]
        assert frames.chunks == (1, 1024, 1024)
        assert frames.id.get_create_plist().get_filter(0)[0] == BITSHUFFLE_FILTER_ID


def test_files_roll_at_max_size_and_keep_every_hit_in_order(tmp_path: Path) -> None:
    writer = HitFiles(parameters=HitFileParameters(max_file_size_mb=3.0, compression="none", max_peaks=8, frame_dtype="float32"))
    writer.open(run_dir=tmp_path)
    hits = [synthetic_event(i, is_hit=True, shape=(512, 600), n_peaks=3) for i in range(10)]  # 1.2 MB frames
    for hit in hits:
        writer.on_result(hit)
    writer.close(summary={})

    assert len(writer.paths) == 4  # 3 + 3 + 3 + 1 frames
    assert all(path.stat().st_size < 3e6 + 1.3e6 for path in writer.paths)
    assert writer.paths[0].name == f"{tmp_path.name}-hits-0000.cxi"
    read = read_hits(writer.paths)
    np.testing.assert_array_equal(read["event_id"], range(10))
    np.testing.assert_array_equal(read["data"], np.stack([hit.arrays["frame"] for hit in hits]))


def test_hits_past_a_full_queue_are_dropped_and_counted_not_waited_for(tmp_path: Path) -> None:
    writer = HitFiles(parameters=HitFileParameters(queue_size=2))  # not opened: nobody drains the queue
    for i in range(5):
        writer.on_result(synthetic_event(i, is_hit=True, shape=SMALL))
    writer.on_result(synthetic_event(9, is_hit=True, with_frame=False))
    writer.on_result(synthetic_event(10, is_hit=False, shape=SMALL))
    assert writer.counters()["hits_dropped"] == 3
    assert writer.counters()["hits_without_frame"] == 1


_WRITE_UNTIL_KILLED = """
import signal, sys, time
from pathlib import Path
from monitor.outputs.hit_files import HitFiles
from monitor.outputs.parameters import HitFileParameters
from monitor.outputs.synthetic import synthetic_event

def stop(signum, frame):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, stop)  # as the monitor does: SIGTERM ends the loop, close() runs
writer = HitFiles(parameters=HitFileParameters(flush_interval_s=0.05, frame_dtype="float32"))
writer.open(run_dir=Path(sys.argv[1]))
try:
    for i in range(10):
        writer.on_result(synthetic_event(i, is_hit=True, shape=(128, 192)))
    print("written", flush=True)
    time.sleep(60)
finally:
    writer.close(summary={})
"""


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_hit_file_is_readable_after_the_writer_is_stopped(tmp_path: Path, stop_signal: int) -> None:
    process = subprocess.Popen([sys.executable, "-c", _WRITE_UNTIL_KILLED, str(tmp_path)],
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert process.stdout.readline().strip() == "written"
        time.sleep(0.5)  # several flush intervals
        os.kill(process.pid, stop_signal)
        process.wait(timeout=20)
    finally:
        process.kill()
    # after SIGKILL the file is still marked open for writing: SWMR readers open it (CrystFEL after h5clear -s)
    read = read_hits(sorted(tmp_path.glob("*.cxi")), swmr=stop_signal == signal.SIGKILL)
    np.testing.assert_array_equal(read["event_id"], range(10))
    np.testing.assert_array_equal(read["data"][9], synthetic_event(9, is_hit=True, shape=SMALL).arrays["frame"])


def test_frames_are_kept_as_whole_photons_by_default(tmp_path):
    writer = HitFiles(parameters=HitFileParameters(max_peaks=4))
    writer.open(run_dir=tmp_path)
    hit = synthetic_event(0, is_hit=True, shape=SMALL)
    hit.arrays["frame"][:] = np.linspace(-0.6, 3.6, hit.arrays["frame"].size).reshape(SMALL)
    writer.on_result(hit)
    writer.close(summary={})
    with h5py.File(writer.paths[0], "r") as cxi:
        stored = cxi["entry_1/data_1/data"][0]
    assert stored.dtype == np.int32
    np.testing.assert_array_equal(stored, np.rint(hit.arrays["frame"]))
