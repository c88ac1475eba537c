"""Steering a running monitor: thresholds changed with ``python -m monitor.control`` take effect
within a second, are numbered, and the summary gives each set its events and hit rate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (the hit files' compression filter)
import numpy as np
import pytest
from ruamel.yaml import YAML

from helpers import free_port
from monitor.live_parameters import apply_changes
from monitor.processing.crystallography import CrystallographyParameters, CrystallographyPipeline
from test_run_endings import assert_balanced, finish, start, wait_for_frames


def scrape(port: int) -> dict[str, float]:
    """The monitor's Prometheus endpoint, as a dashboard reads it: sample name (with labels) -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines()
                                                     if line and not line.startswith("#"))}


def control(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.control", url, *args], capture_output=True, text=True,
                          timeout=30)


def test_a_change_is_validated_like_the_yaml():
    current = CrystallographyParameters()
    updated = apply_changes(current, {"peakfinder8.min_pixel_count": 3, "min_num_peaks_for_hit": 8},
                            CrystallographyPipeline)
    assert updated.peakfinder8.min_pixel_count == 3 and updated.min_num_peaks_for_hit == 8
    assert current.min_num_peaks_for_hit == 4  # the old set is untouched
    for changes, reason in [({"peakfinder8.nonsense": 1}, "peakfinder8.nonsense: Extra inputs are not permitted"),
                            ({"min_num_peaks_for_hit": "many"}, "min_num_peaks_for_hit: Input should be a valid"),
                            ({"max_num_peaks_for_hit": 2}, "must not exceed"),
                            ({"calibration": None}, "calibration: not a parameter that can change during a run")]:
        with pytest.raises(ValueError, match=reason):
            apply_changes(current, changes, CrystallographyPipeline)


@pytest.mark.slow
def test_a_threshold_set_during_a_run_changes_the_hit_rate_without_a_restart(config_factory, tmp_path):
    metrics_port = free_port()
    config = config_factory({"data_retrieval_layer": {"simulator": {"frames": 100000, "rate_hz": 100}},
                             "monitor": {"status_interval_s": 0.5},
                             "outputs": {"metrics": {"enabled": True, "port": metrics_port}}})
    url = YAML(typ="safe").load(config.read_text())["monitor"]["control_url"]
    summary_file = tmp_path / "summary.json"
    monitor = start(3, config, summary_file)
    try:
        wait_for_frames(monitor)
        time.sleep(3)
        before = scrape(metrics_port)
        got = control(url, "get")
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["parameters"]["min_num_peaks_for_hit"] == 4
        refused = control(url, "set", "min_num_peaks_for_hit=many")
        assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
        assert "min_num_peaks_for_hit" in refused.stderr
        done = control(url, "set", "min_num_peaks_for_hit=0")  # every frame is a hit now
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["parameter_set"] == 1
        time.sleep(2)
        after = scrape(metrics_port)
        monitor.send_signal(signal.SIGTERM)
        out, err = finish(monitor, timeout=60)
    finally:
        monitor.kill()
    assert monitor.returncode == 0, err
    summary = json.loads(summary_file.read_text())
    accounting = assert_balanced(summary)
    first, second = summary["parameter_sets"]
    print(f"set 0: {first['events']} events, hit rate {first['hit_rate']:.3f}; "
          f"set 1: {second['events']} events, hit rate {second['hit_rate']}")
    assert first["events"] + second["events"] == accounting["processed"]
    assert 0.1 < first["hit_rate"] < 0.5 and second["events"] > 50 and second["hit_rate"] == 1.0
    assert first["last_event_id"] < second["last_event_id"]
    assert second["changes"] == {"min_num_peaks_for_hit": 0} and second["requested_by"] == "127.0.0.1"
    assert "parameter set 1 from 127.0.0.1: min_num_peaks_for_hit=0" in err
    assert "1 (min_num_peaks_for_hit=0, by 127.0.0.1): " in out  # the summary table lists each set
    run_dir = Path(summary["output_dir"])
    files = [Path(line) for line in (run_dir / "files.lst").read_text().split()]
    sets = np.concatenate([h5py.File(path, "r")["entry_1/parameter_set"][:] for path in files])
    written = json.loads((run_dir / "summary.json").read_text())["outputs"]["hits_written"]
    assert len(sets) == written and set(sets.tolist()) == {0, 1}  # each hit says which set found it
    # the dashboard saw the same run: counters that only grow, up to the summary's, and the new set
    assert 0 < before["monitor_events_total"] < after["monitor_events_total"] <= accounting["processed"]
    assert before["monitor_hits_total"] <= after["monitor_hits_total"] <= summary["hits"]
    assert before["monitor_parameter_set"] == 0 and after["monitor_parameter_set"] == 1
    assert after['monitor_worker_last_seen_seconds{rank="1"}'] >= 0
    assert 0 < after['monitor_worker_busy_fraction{rank="1"}'] <= 1
