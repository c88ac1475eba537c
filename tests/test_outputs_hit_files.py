"""Hit files: frames as whole photons, the mask once a file, peaks and beam read back in CXI layout, rolling,
listing, surviving a kill."""

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

from monitor.outputs.cxi import INVALID_PIXEL, MASK_INVALID
from monitor.outputs.experiment import Experiment, experiment_from_document
from monitor.outputs.hit_files import HitFiles
from monitor.outputs.parameters import HitFileParameters
from monitor.outputs.rolling import RollingHitFiles
from monitor.outputs.stored_pixels import StoredPixels
from monitor.outputs.synthetic import synthetic_event
from sources.geometry import default_geometry_path

BLOSC_FILTER_ID = 32001
SMALL = (128, 192)
EXPERIMENT = Experiment(photon_energy_ev=9500.0, detector_distance_m=0.085, geometry_path=default_geometry_path())


def read_hits(paths: list[Path]) -> dict[str, np.ndarray]:
    """Every hit across ``paths``, concatenated in file order."""
    columns: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with h5py.File(path, "r") as cxi:
            for name in ("entry_1/data_1/data", "entry_1/result_1/nPeaks",
                         "entry_1/result_1/peakXPosRaw", "entry_1/result_1/peakYPosRaw",
                         "entry_1/result_1/peakTotalIntensity", "entry_1/event_id", "entry_1/timestamp",
                         "entry_1/instrument_1/source_1/photon_energy_eV",
                         "entry_1/instrument_1/detector_1/distance"):
                columns.setdefault(name.rsplit("/", 1)[1], []).append(cxi[name][()])
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def hit_with_mask(event_id: int, shape: tuple[int, int] = SMALL, **kwargs) -> tuple:
    hit = synthetic_event(event_id, is_hit=True, shape=shape, **kwargs)
    valid = np.ones(shape, dtype=bool)
    valid[event_id % shape[0], :7] = False  # a lost packet's row, somewhere else in every frame
    valid[3, 5] = valid[-1, -2] = False  # bad pixels, in every frame
    hit.arrays["valid"] = valid
    return hit


def whole_photons(hit) -> np.ndarray:
    """The frame as the default hit file stores it (whole photons: tests/test_stored_pixels.py checks the values)."""
    pixels = StoredPixels(hit.arrays["frame"].shape, np.int16)
    pixels.store(hit.arrays["frame"], hit.arrays.get("valid"))
    return pixels.pixels


def test_written_hits_read_back_exactly_with_mask_beam_and_units(tmp_path: Path) -> None:
    writer = HitFiles(parameters=HitFileParameters(max_peaks=16), experiment=EXPERIMENT)
    writer.open(run_dir=tmp_path)
    events = [hit_with_mask(i, n_peaks=5 + i % 4) if i % 3 == 0 else synthetic_event(i, is_hit=False, shape=SMALL)
              for i in range(30)]
    events.append(hit_with_mask(99, n_peaks=40))  # more peaks than columns
    for event in events:
        writer.on_result(event)
    writer.close(summary={})

    hits = [event for event in events if event.values["is_hit"]]
    assert writer.counters() == {"hits_written": len(hits), "hits_dropped": 0, "hits_failed": 0,
                                 "hits_without_frame": 0, "hit_files": 1}
    read = read_hits(writer.paths)
    assert read["data"].dtype == np.int16  # whole photons, by default
    np.testing.assert_array_equal(read["data"], np.stack([whole_photons(hit) for hit in hits]))
    with h5py.File(writer.paths[0], "r") as cxi:
        mask = cxi["entry_1/data_1/mask"][()]  # once a file: the pixels invalid in every hit
    assert mask.shape == SMALL and np.flatnonzero(mask).tolist() == [3 * SMALL[1] + 5, mask.size - 2]
    assert mask.max() == MASK_INVALID
    np.testing.assert_array_equal(read["event_id"], [hit.values["event_id"] for hit in hits])
    np.testing.assert_array_equal(read["timestamp"], [hit.values["timestamp"] for hit in hits])
    np.testing.assert_array_equal(read["photon_energy_eV"], np.full(len(hits), 9500.0))
    np.testing.assert_array_equal(read["distance"], np.full(len(hits), 0.085))
    np.testing.assert_array_equal(read["nPeaks"], [min(len(hit.arrays["peak_x"]), 16) for hit in hits])
    for row, hit in enumerate(hits):
        n = read["nPeaks"][row]
        np.testing.assert_array_equal(read["peakXPosRaw"][row, :n], hit.arrays["peak_x"][:n])
        np.testing.assert_array_equal(read["peakYPosRaw"][row, :n], hit.arrays["peak_y"][:n])
        np.testing.assert_array_equal(read["peakTotalIntensity"][row, :n], hit.arrays["peak_intensity"][:n])
        assert not read["peakXPosRaw"][row, n:].any()
    with h5py.File(writer.paths[0], "r") as cxi:
        frames = cxi["entry_1/data_1/data"]
        assert frames.chunks == (1, *SMALL)
        assert frames.id.get_create_plist().get_filter(0)[0] == BLOSC_FILTER_ID
        assert frames.attrs["units"] == "photon" and frames.attrs["invalid_pixel"] == INVALID_PIXEL
        assert cxi["entry_1/data_1/mask"].attrs["bad_bits"] == MASK_INVALID
        assert cxi["entry_1/instrument_1/source_1/energy"][0] == pytest.approx(9500.0 * 1.602176634e-19)
        assert cxi["entry_1/instrument_1/detector_1/distance"].attrs["units"] == "m"
        assert cxi.id.get_create_plist().get_version()[0] == 2  # superblock of the 1.8 format, not 2.0's


def test_files_close_after_max_hits_and_are_listed_as_they_close(tmp_path: Path) -> None:
    writer = HitFiles(parameters=HitFileParameters(max_hits_per_file=3, compression="none", max_peaks=8),
                      experiment=EXPERIMENT)
    writer.open(run_dir=tmp_path)
    time.sleep(1.2)  # the writer thread waits through idle spells (it checks the file's age) before hits come
    hits = [hit_with_mask(i, n_peaks=3) for i in range(10)]
    for hit in hits[:7]:
        writer.on_result(hit)
    deadline = time.monotonic() + 20
    while len((tmp_path / "files.lst").read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    listed = (tmp_path / "files.lst").read_text().splitlines()
    assert [Path(line).name for line in listed] == [f"{tmp_path.name}-hits-000{n}.cxi" for n in (0, 1)]
    assert read_hits([Path(line) for line in listed])["event_id"].tolist() == list(range(6))  # readable meanwhile
    for hit in hits[7:]:
        writer.on_result(hit)
    writer.close(summary={})

    assert [path.name for path in writer.paths] == [f"{tmp_path.name}-hits-000{n}.cxi" for n in range(4)]
    assert (tmp_path / "files.lst").read_text().splitlines() == [str(path.resolve()) for path in writer.paths]
    read = read_hits(writer.paths)
    np.testing.assert_array_equal(read["event_id"], range(10))
    np.testing.assert_array_equal(read["data"], np.stack([whole_photons(hit) for hit in hits]))


def test_a_file_closes_when_it_gets_old_even_without_new_hits(tmp_path: Path) -> None:
    files = RollingHitFiles(tmp_path, "run-hits", parameters=HitFileParameters(max_file_age_s=30),
                            experiment=EXPERIMENT)
    started = time.monotonic()
    first = files.write(hit_with_mask(0))
    assert files.roll_if_old(started + 29) is None and files.current == first
    assert files.roll_if_old(started + 31) == first
    assert files.closed == [first] and files.current is None
    second = files.write(hit_with_mask(1))
    files.close()
    assert second.name == "run-hits-0001.cxi" and files.closed == [first, second]


def test_files_close_at_max_size(tmp_path: Path) -> None:
    files = RollingHitFiles(tmp_path, "run-hits", parameters=HitFileParameters(
        max_file_size_mb=3.0, compression="none", frame_dtype="float32"), experiment=EXPERIMENT)
    for i in range(10):
        files.write(synthetic_event(i, is_hit=True, shape=(512, 600), n_peaks=3))  # 1.2 MB frames, 0.6 MB mask
    files.close()
    assert len(files.closed) == 5  # 2 hits (3.3 MB with peaks) a file
    assert read_hits(files.closed)["event_id"].tolist() == list(range(10))


def test_hits_past_a_full_queue_are_dropped_and_counted_not_waited_for(tmp_path: Path) -> None:
    writer = HitFiles(parameters=HitFileParameters(queue_size=2), experiment=EXPERIMENT)  # not opened: no writer
    for i in range(5):
        writer.on_result(synthetic_event(i, is_hit=True, shape=SMALL))
    writer.on_result(synthetic_event(9, is_hit=True, with_frame=False))
    writer.on_result(synthetic_event(10, is_hit=False, shape=SMALL))
    assert writer.counters()["hits_dropped"] == 3
    assert writer.counters()["hits_without_frame"] == 1


def test_frames_can_be_kept_as_calibrated_float32_lossless(tmp_path: Path) -> None:
    writer = HitFiles(parameters=HitFileParameters(max_peaks=4, frame_dtype="float32"), experiment=EXPERIMENT)
    writer.open(run_dir=tmp_path)
    hit = hit_with_mask(0)
    writer.on_result(hit)
    writer.close(summary={})
    with h5py.File(writer.paths[0], "r") as cxi:
        stored = cxi["entry_1/data_1/data"][0]
    assert stored.dtype == np.float32
    valid = hit.arrays["valid"]
    np.testing.assert_array_equal(stored[valid], hit.arrays["frame"][valid])
    assert (stored[~valid] == INVALID_PIXEL).all()


@pytest.mark.parametrize("compression", ["blosc-shuffle-lz4", "blosc-lz4", "bitshuffle-lz4", "bitshuffle-zstd",
                                         "zstd", "none"])
def test_every_compression_reads_back_the_same_whole_photons(tmp_path: Path, compression: str) -> None:
    files = RollingHitFiles(tmp_path, "run-hits", parameters=HitFileParameters(compression=compression),
                            experiment=EXPERIMENT)
    hits = [hit_with_mask(i) for i in range(3)]
    for hit in hits:
        files.write(hit)
    files.close()
    np.testing.assert_array_equal(read_hits(files.closed)["data"], np.stack([whole_photons(hit) for hit in hits]))


def test_a_lost_packet_is_flagged_in_its_hit_and_the_mask_is_rewritten_when_a_bad_pixel_reads(
        tmp_path: Path) -> None:
    files = RollingHitFiles(tmp_path, "run-hits", parameters=HitFileParameters(compression="none"),
                            experiment=EXPERIMENT)
    first, second = hit_with_mask(0), hit_with_mask(1)
    first.arrays["valid"][10:12] = False  # lost in the first hit only
    files.write(first)
    path = files.write(second)
    files.close()
    with h5py.File(path, "r") as cxi:
        frames, mask = cxi["entry_1/data_1/data"][()], cxi["entry_1/data_1/mask"][()]
    assert np.flatnonzero(mask).tolist() == [3 * SMALL[1] + 5, mask.size - 2]  # rows 10-11 read in the second
    assert (frames[0, 10:12] == INVALID_PIXEL).all() and (frames[1, 10:12] != INVALID_PIXEL).all()
    np.testing.assert_array_equal(frames, np.stack([whole_photons(first), whole_photons(second)]))


def test_the_run_geometry_has_the_runs_beam_and_the_files_layout(tmp_path: Path) -> None:
    from cfelpyutils.geometry import load_crystfel_geometry

    document = {"processing_layer": {"calibration": {"gain_files": [], "pedestal_files": [],
                                                     "photon_energy_kev": 8.05}}}
    writer = HitFiles(parameters=HitFileParameters(), experiment=experiment_from_document(document))
    writer.open(run_dir=tmp_path)
    writer.close(summary={})
    text = (tmp_path / "detector.geom").read_text()
    for line in ("photon_energy = 8050  ; eV", "clen = 0.12  ; m", "data = /entry_1/data_1/data", "dim0 = %",
                 "mask = /entry_1/data_1/mask", "mask_bad = 0x1", f"flag_lessthan = {INVALID_PIXEL + 1}",
                 "peak_list = /entry_1/result_1",
                 "peak_list_type = cxi"):
        assert text.count(f"\n{line}\n") == 1, line
    assert "/data/data" not in text
    parsed = load_crystfel_geometry(str(tmp_path / "detector.geom"))
    assert list(parsed.detector["panels"]) == ["m0", "m1"]
    assert parsed.detector["panels"]["m1"]["cny"] == -18.0 and parsed.detector["panels"]["m0"]["res"] == 13333.333333
    assert f"HDF5_PLUGIN_PATH={hdf5plugin.PLUGIN_PATH}" in (tmp_path / "HIT-FILES.txt").read_text()
    assert (tmp_path / "files.lst").read_text() == ""  # no hits, no files


_WRITE_UNTIL_KILLED = """
import signal, sys, time
from pathlib import Path
from monitor.outputs.experiment import experiment_from_document
from monitor.outputs.parameters import HitFileParameters
from monitor.outputs.worker_hits import WorkerHitWriter
from monitor.outputs.synthetic import synthetic_event

def stop(signum, frame):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, stop)  # as the monitor does: SIGTERM ends the loop, close() runs
writer = WorkerHitWriter(Path(sys.argv[1]), rank=1, parameters=HitFileParameters(max_hits_per_file=4),
                         experiment=experiment_from_document(None))
try:
    for i in range(10):
        writer.take(synthetic_event(i, is_hit=True, shape=(128, 192)))
    print("written", flush=True)
    time.sleep(60)
finally:
    writer.close()
"""


def h5dump_reads(path: Path) -> bool:
    env = {**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH}
    return subprocess.run(["h5dump", "-d", "/entry_1/event_id", str(path)], capture_output=True, env=env,
                          timeout=60).returncode == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_every_file_is_readable_after_the_writer_is_stopped(tmp_path: Path, stop_signal: int) -> None:
    process = subprocess.Popen([sys.executable, "-c", _WRITE_UNTIL_KILLED, str(tmp_path)], stdout=subprocess.PIPE,
                               text=True, cwd=Path(__file__).parents[1],  # in a shell set up for h5dump as README says:
                               env={**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH})
    try:
        assert process.stdout.readline().strip() == "written"
        os.kill(process.pid, stop_signal)
        process.wait(timeout=20)
    finally:
        process.kill()
    files = sorted(tmp_path.glob("*.cxi"))
    assert [path.name for path in files] == [f"{tmp_path.name}-hits-r01-000{n}.cxi" for n in range(3)]
    # two closed files and, flushed after its last hit, even the one in flight (2 hits) when killed
    np.testing.assert_array_equal(read_hits(files)["event_id"], range(10))
    if os.path.exists("/usr/bin/h5dump"):
        assert all(h5dump_reads(path) for path in files)
