"""Whole runs under real ``mpirun``: every way a run can end, on 2 to 8 ranks.

Each test starts ``mpirun -n N python -m monitor CONFIG`` as a user would and
checks the exit code, what was printed, the ``--summary-json`` figures and the
time it took: a run that hangs fails here by its timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (the hit files' compression filter)
import numpy as np
import pytest
from ruamel.yaml import YAML

from helpers import MPIRUN, ROOT, assert_balanced, free_port
from replay import Replayer, load_case, repeat_with_shifted_frames

pytestmark = pytest.mark.slow

STATISTICS = {"pipeline": "FrameStatisticsPipeline"}
"""The light pipeline: these tests are about the MPI layer, not the science."""


def mpirun(ranks: int, config: Path, *extra: str, timeout: float = 90) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run([str(MPIRUN), "-n", str(ranks), sys.executable, "-m", "monitor", str(config), *extra],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return done, time.monotonic() - started


@pytest.mark.parametrize(("ranks", "collector", "protocol"),
                         [(2, "first", "sync"), (3, "last", "receiver"), (8, "first", "receiver"), (8, "last", "sync")])
def test_a_finite_acquisition_is_processed_whole_then_every_rank_exits(config_factory, tmp_path, ranks, collector,
                                                                       protocol):
    """``sync``: the simulator sends whole frames; ``receiver``: module streams, through the assembler."""
    config = config_factory({"data_retrieval_layer": {"collector_rank": collector, "simulator": {
        "frames": 400, "rate_hz": 1000, "protocol": protocol}}, "processing_layer": STATISTICS})
    summary_file = tmp_path / "summary.json"
    done, _ = mpirun(ranks, config, "--summary-json", str(summary_file))
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["frames_sent"] == 400
    assert summary["events_processed"] == 400 and summary["events_failed"] == 0
    assert assert_balanced(summary, sent=400)["dropped"] == {}
    assert summary["collector_rank"] == (0 if collector == "first" else ranks - 1)
    assert summary["stop_reason"] == "end of acquisition"
    workers = [row for row in summary["per_rank"] if row["role"] == "worker"]
    assert len(workers) == ranks - 1 and sum(row["events"] for row in workers) == 400
    assert "events_processed" in done.stdout


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("stop_after_acquisition:", "stop_after_acquisiton:", "unknown key (did you mean 'stop_after_acquisition'?)"),
        ("pipeline: CrystallographyPipeline", "pipeline: NoSuchPipeline", "unknown class 'NoSuchPipeline'"),
        ("source: simulator", "source: tcp://127.0.0.1:notaport", "is not a ZMQ endpoint"),
    ],
)
def test_a_bad_configuration_ends_all_eight_ranks_with_one_line(tmp_path, replace, by, expected):
    config = tmp_path / "bad.yaml"
    config.write_text((ROOT / "monitor.yaml").read_text().replace(replace, by))
    done, _ = mpirun(8, config, timeout=90)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and f"{config}:" in lines[0]


def test_the_default_finds_hits_at_the_simulators_true_rate(config_factory, tmp_path):
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 300, "rate_hz": 1000}}})
    summary_file = tmp_path / "summary.json"
    done, _ = mpirun(3, config, "--summary-json", str(summary_file), timeout=180)
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["events_processed"] == summary["simulated_frames"] == 300
    assert_balanced(summary, sent=300)
    print(f"hit rate {summary['hit_rate']:.4f}, true {summary['true_hit_rate']:.4f}")
    assert abs(summary["hit_rate"] - summary["true_hit_rate"]) < 0.01
    run_dir = Path(summary["output_dir"])
    assert (run_dir / "report.png").stat().st_size > 50_000
    assert json.loads((run_dir / "summary.json").read_text())["hits"] == summary["hits"]
    n_peaks, event_ids = [], []  # exactly the frames the collector counted as hits, with their peaks
    for hit_file in (run_dir / "files.lst").read_text().split():  # each worker's files
        with h5py.File(hit_file, "r") as cxi:
            assert cxi["entry_1/data_1/data"].shape[1:] == (1024, 1024)
            n_peaks += cxi["entry_1/result_1/nPeaks"][:].tolist()
            event_ids += cxi["entry_1/event_id"][:].tolist()
    assert np.all(np.array(n_peaks) >= 10) and sum(n_peaks) == round(summary["mean_peaks_per_hit"] * summary["hits"])
    assert len(event_ids) == len(set(event_ids)) == summary["hits"]


def test_the_viewer_draws_a_running_monitor(config_factory, tmp_path):
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 200}}})
    url = YAML().load(config.read_text())["outputs"]["results_stream"]["url"]
    monitor = subprocess.Popen([str(MPIRUN), "-n", "3", sys.executable, "-m", "monitor", str(config), "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    png = tmp_path / "viewer.png"
    try:
        viewer = subprocess.run([sys.executable, "-m", "monitor.viewer", url, "--screenshot", str(png),
                                 "--messages", "25", "--timeout", "90"], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(timeout=30)
    assert viewer.returncode == 0, viewer.stderr
    assert png.stat().st_size > 50_000
    assert monitor.returncode == 0


def test_help_needs_no_mpi_launcher():
    done = subprocess.run([sys.executable, "-m", "monitor", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--summary-json" in done.stdout and "--check" in done.stdout


def test_check_validates_without_starting_work():
    done = subprocess.run([sys.executable, "-m", "monitor", str(ROOT / "monitor.yaml"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "configuration OK" in done.stdout


def test_nothing_listening_warns_then_the_idle_timeout_ends_the_run(config_factory):
    source = f"tcp://127.0.0.1:{free_port()}"
    config = config_factory({"data_retrieval_layer": {"source": source},
                             "monitor": {"idle_timeout_s": 4.0, "no_data_warning_s": 2.0}})
    done, _ = mpirun(3, config)
    assert done.returncode == 0, done.stderr
    assert f"no frames from {source} after 2 s" in done.stderr
    assert "idle timeout" in done.stdout


def test_max_events_stops_a_long_acquisition_early(config_factory, tmp_path):
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 1000}},
                             "processing_layer": STATISTICS, "monitor": {"max_events": 150}})
    summary_file = tmp_path / "summary.json"
    done, _ = mpirun(3, config, "--summary-json", str(summary_file))
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["events_processed"] >= 150 and "max_events (150)" in summary["stop_reason"]
    assert_balanced(summary)


def test_an_exception_on_one_worker_ends_the_job_with_that_ranks_error(config_factory):
    config = config_factory({"processing_layer": {"pipeline": "pipelines:FailingPipeline", "fail_on_rank": 2},
                             "data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 1000}}})
    done, _ = mpirun(4, config)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("monitor: error:")]
    assert errors == ["monitor: error: rank 2: RuntimeError: deliberate failure in processing"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_cleanly(config_factory, signum):
    """How fast every rank is gone is a benchmark's figure (the time is printed here); what is
    asserted is that the run ends by itself, cleanly, well inside the deadline."""
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 500}},
                             "processing_layer": STATISTICS, "monitor": {"status_interval_s": 0.2}})
    process = subprocess.Popen([str(MPIRUN), "-n", "4", sys.executable, "-m", "monitor", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        for line in process.stderr:  # wait until frames flow
            if " 0 events" not in line and "events |" in line or time.monotonic() > deadline:
                break
        process.send_signal(signum)
        sent = time.monotonic()
        stdout, _ = process.communicate(timeout=60)
        print(f"{signum.name}: every rank gone after {time.monotonic() - sent:.2f} s")
    finally:
        process.kill()
    assert process.returncode == 0
    assert f"{signum.name} on" in stdout and "events_processed" in stdout


def test_a_thousand_captured_frames_pass_assembler_and_four_ranks_exactly_once(config_factory, tmp_path):
    """The real receiver capture (20 frames, shifted 50 times) -> our assembler -> 3 workers -> collector."""
    streams = [repeat_with_shifted_frames(stream, 50) for stream in load_case("jf1m-20frames")]
    with Replayer(streams) as replayer:
        config = config_factory({
            "data_retrieval_layer": {"source": "assembler", "stop_after_acquisition": True,
                                     "assembler": {"streams": replayer.urls}},
            "processing_layer": {"pipeline": "pipelines:EventIdPipeline"},
        })
        summary_file = tmp_path / "summary.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
        monitor = subprocess.Popen([str(MPIRUN), "-n", "4", sys.executable, "-m", "monitor", str(config), "-q",
                                    "--summary-json", str(summary_file)], env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            replayer.wait_for_subscribers(timeout_s=60)
            replayer.send()
            _, stderr = monitor.communicate(timeout=120)
        finally:
            monitor.kill()
    assert monitor.returncode == 0, stderr
    summary = json.loads(summary_file.read_text())
    assert summary["events_processed"] == summary["distinct_event_ids"] == 1000
    assert summary["repeated_event_ids"] == 0 and summary["events_failed"] == 0
    assert summary["frames_sent"] == 1000 and summary["assembler_assembled"] == 1000
    assert summary["assembler_gaps"] == 0 and summary["assembler_dropped"] == 0
    assert summary["accounting"]["sent"] is None  # real receivers do not say how many they sent
    assert summary["accounting"]["dropped"] == {} and summary["accounting"]["processed"] == 1000
