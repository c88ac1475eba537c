"""A real monitor run's hit files, as Debian's HDF5 1.10 tools (h5ls, h5dump) and CrystFEL's inputs see them.

A SIGKILL of a worker or of the collector mid-run leaves every file
``files.lst`` lists readable by h5py and h5dump.

The monitor runs under mpirun as shipped (workers write their own hits), on
the simulator; its files are then read by the system's ``h5ls``/``h5dump``
(package hdf5-tools: HDF5 1.10 on Debian bookworm), frames, mask and peaks,
with the compression filter found through ``HDF5_PLUGIN_PATH``, so the format
cannot drift to one that HDF5 1.10 does not open again.  CI installs
hdf5-tools; elsewhere those checks are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import signal
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from helpers import MPIRUN, ROOT

FRAMES = 200
HITS_PER_FILE = 12
NEEDS_HDF5_TOOLS = pytest.mark.skipif(
    shutil.which("h5dump") is None or shutil.which("h5ls") is None,
    reason="h5dump/h5ls not installed (Debian: apt-get install hdf5-tools; CI installs it)",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from helpers import write_config

    folder = tmp_path_factory.mktemp("real-run")
    config = write_config(folder, {"data_retrieval_layer": {"simulator": {"frames": FRAMES, "rate_hz": 1000}},
                                   "outputs": {"hit_files": {"max_hits_per_file": HITS_PER_FILE}}})
    summary_file = folder / "summary.json"
    done = subprocess.run([str(MPIRUN), "-n", "3", sys.executable, "-m", "monitor", str(config), "-q",
                           "--summary-json", str(summary_file)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "tests")}, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    return Path(summary["output_dir"]), summary


def listed_files(run_dir: Path) -> list[Path]:
    return [Path(line) for line in (run_dir / "files.lst").read_text().splitlines()]


def tool(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH})
    assert done.returncode == 0, done.stderr
    return done.stdout


def h5dump_values(path: Path, dataset: str, dtype: str, *, start: str | None = None,
                  count: str | None = None) -> np.ndarray:
    """What ``h5dump`` decodes from a dataset (or a hyperslab of it), exported as little-endian binary."""
    out = path.parent / f"{path.stem}-h5dump.bin"
    selection = ["-s", start, "-c", count] if start else []
    tool("h5dump", "-d", dataset, *selection, "-b", "LE", "-o", str(out), str(path))
    try:
        return np.fromfile(out, dtype=dtype)
    finally:
        out.unlink()


def test_workers_write_every_hit_once_in_closed_files_that_files_lst_lists(run) -> None:
    run_dir, summary = run
    files = listed_files(run_dir)
    assert sorted(files) == sorted(path.resolve() for path in run_dir.glob("*.cxi"))
    assert all(re.search(r"-hits-r0[12]-\d{4}\.cxi$", path.name) for path in files)  # written by the two workers
    event_ids, n_peaks = [], 0
    for path in files:
        with h5py.File(path, "r") as cxi:
            assert cxi["entry_1/data_1/data"].shape[0] <= HITS_PER_FILE
            assert cxi["entry_1/data_1/data"].dtype == np.int16  # whole photons
            event_ids += cxi["entry_1/event_id"][()].tolist()
            n_peaks += int(cxi["entry_1/result_1/nPeaks"][()].sum())
            np.testing.assert_array_equal(cxi["entry_1/instrument_1/source_1/photon_energy_eV"][()], 12400.0)
    assert len(event_ids) == len(set(event_ids)) == summary["hits"] > HITS_PER_FILE * 2
    assert n_peaks == round(summary["mean_peaks_per_hit"] * summary["hits"])
    run_summary = json.loads((run_dir / "summary.json").read_text())
    assert run_summary["outputs"]["hits_written"] == summary["hits"]
    assert run_summary["outputs"]["hits_failed"] == run_summary["outputs"]["hits_dropped"] == 0
    assert run_summary["outputs"]["hit_files"] == len(files)
    assert "data = /entry_1/data_1/data" in (run_dir / "detector.geom").read_text()


@NEEDS_HDF5_TOOLS
def test_debians_hdf5_tools_list_every_dataset_of_every_file(run) -> None:
    run_dir, summary = run
    for path in listed_files(run_dir):
        listing = tool("h5ls", "-r", str(path))
        for dataset in ("/entry_1/data_1/data", "/entry_1/data_1/mask", "/entry_1/result_1/nPeaks",
                        "/entry_1/result_1/peakXPosRaw", "/entry_1/event_id",
                        "/entry_1/instrument_1/detector_1/distance"):
            assert re.search(rf"^{dataset}\s+Dataset", listing, re.MULTILINE), (path.name, dataset)


@NEEDS_HDF5_TOOLS
def test_h5dump_reads_the_same_frames_mask_and_peaks_as_h5py(run) -> None:
    run_dir, _ = run
    path = listed_files(run_dir)[0]
    with h5py.File(path, "r") as cxi:
        frame_row = cxi["entry_1/data_1/data"][1, 700, :64]
        mask = cxi["entry_1/data_1/mask"][()]  # once a file
        n_peaks = cxi["entry_1/result_1/nPeaks"][()]
        peak_x = cxi["entry_1/result_1/peakXPosRaw"][0, : n_peaks[0]]
        peak_intensity = cxi["entry_1/result_1/peakTotalIntensity"][0, : n_peaks[0]]
    np.testing.assert_array_equal(h5dump_values(path, "/entry_1/data_1/data", "<i2", start="1,700,0",
                                                count="1,1,64"), frame_row)
    assert 0 < np.count_nonzero(mask) < mask.size // 100  # the simulated detector's dead and noisy pixels
    np.testing.assert_array_equal(h5dump_values(path, "/entry_1/data_1/mask", "<u2"), mask.ravel())
    np.testing.assert_array_equal(h5dump_values(path, "/entry_1/result_1/nPeaks", "<i4"), n_peaks)
    np.testing.assert_array_equal(h5dump_values(path, "/entry_1/result_1/peakXPosRaw", "<f4", start="0,0",
                                                count=f"1,{n_peaks[0]}"), peak_x)
    np.testing.assert_array_equal(h5dump_values(path, "/entry_1/result_1/peakTotalIntensity", "<f4",
                                                start="0,0", count=f"1,{n_peaks[0]}"), peak_intensity)


def rank_pids(config: Path) -> dict[int, int]:
    """MPI rank -> pid of the monitor ranks started with ``config`` (their PMI_RANK)."""
    ranks = {}
    for process in Path("/proc").glob("[0-9]*"):
        try:
            command = (process / "cmdline").read_bytes().split(b"\0")
            environ = (process / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = [item[len(b"PMI_RANK="):] for item in environ if item.startswith(b"PMI_RANK=")]
        if str(config).encode() in command and b"monitor" in command and rank:
            ranks[int(rank[0])] = int(process.name)
    return ranks


@pytest.mark.parametrize("victim", ["worker", "collector"])
def test_a_sigkilled_rank_leaves_every_listed_hit_file_readable(tmp_path: Path, victim: str) -> None:
    from helpers import write_config

    config = write_config(tmp_path, {"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 200}},
                                     "outputs": {"hit_files": {"max_hits_per_file": 5}}})
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    monitor = subprocess.Popen([str(MPIRUN), "-n", "3", sys.executable, "-m", "monitor", str(config), "-q"],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        lists: list[Path] = []
        while time.monotonic() < deadline and not any(len(listed_files(path.parent)) >= 4 for path in lists):
            time.sleep(0.5)
            lists = list((tmp_path / "output").glob("run-*/files.lst"))
        assert lists, "no run folder"
        run_dir = lists[0].parent
        assert len(listed_files(run_dir)) >= 4, "fewer than 4 hit files closed in 120 s"
        ranks = rank_pids(config)
        assert set(ranks) == {0, 1, 2}  # rank 0 collects (collector_rank: first), 1 and 2 write hits
        os.kill(ranks[2 if victim == "worker" else 0], signal.SIGKILL)
        assert monitor.wait(timeout=120) != 0  # the run ends by itself, and says it lost a rank
    finally:
        monitor.kill()
        monitor.wait()
    files = listed_files(run_dir)
    assert len(files) >= 4
    for path in files:
        with h5py.File(path, "r") as cxi:
            assert cxi["entry_1/event_id"].shape[0] >= 1
        if shutil.which("h5dump"):
            tool("h5dump", "-d", "/entry_1/event_id", str(path))
