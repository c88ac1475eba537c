"""Whole runs on a Stream V2 source under real ``mpirun``: the shipped EIGER2 example, Jungfraujoch's
variant, and a sender of bad messages.

Every run must end by itself after its series, with every image processed
(or counted failed), the accounting balanced, and, on the simulated EIGER2,
the hit rate within one point of the simulator's truth.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest
import zmq

from eiger2_configs import example_config, run_monitor
from helpers import MPIRUN, assert_balanced, free_tcp_url
from monitor.stream2.cbor import encode_array

pytestmark = pytest.mark.slow

@pytest.mark.parametrize(("ranks", "simulator"), [
    (2, {"detector": "1M", "dtype": "uint16", "compression": "bslz4", "channels": 1}),
    (8, {"detector": "1M", "dtype": "uint32", "compression": "lz4", "channels": 2}),
])
def test_the_eiger2_example_processes_its_series_at_the_true_hit_rate(tmp_path, ranks, simulator):
    frames = 200
    config = example_config(tmp_path, simulator={**simulator, "frames": frames, "rate_hz": 200})
    summary_file = tmp_path / "summary.json"
    done = run_monitor(ranks, config, summary_file)
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["stop_reason"] == "end of acquisition"
    assert summary["events_processed"] == frames and summary["events_failed"] == 0
    assert assert_balanced(summary, sent=frames)["dropped"] == {}
    assert abs(summary["hit_rate"] - summary["true_hit_rate"]) <= 0.01, (summary["hit_rate"], summary["true_hit_rate"])
    [series] = summary["stream2_series"]
    assert series["images"] == series["number_of_images"] == frames and series["ended"] == "end message"
    assert len(series["series_unique_id"]) == 36
    geometry = Path(summary["output_dir"], "detector.geom").read_text()
    assert "p0/max_fs = 1027" in geometry and "p0/max_ss = 1061" in geometry and "clen = 0.12" in geometry


@pytest.mark.parametrize("ranks", [2, 8])
def test_a_jungfraujoch_stream_counts_its_extra_messages_and_reads_bitshuffle_zstd(tmp_path, ranks):
    frames = 200
    config = example_config(tmp_path, simulator={"detector": "500K", "dtype": "uint16", "compression": "bszstd",
                                                 "flavour": "jungfraujoch", "frames": frames, "rate_hz": 200})
    summary_file = tmp_path / "summary.json"
    done = run_monitor(ranks, config, summary_file)
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["events_processed"] == frames and summary["events_failed"] == 0
    assert_balanced(summary, sent=frames)
    assert summary["stream2_other_messages"] == {"calibration": 1, "metadata": 2}
    assert abs(summary["hit_rate"] - summary["true_hit_rate"]) <= 0.01


def _start(shape: tuple[int, int]) -> dict[str, Any]:
    mask = np.zeros(shape, dtype=np.uint32)
    mask[:, 100:110] = 1  # a gap
    return {"type": "start", "series_id": 7, "series_unique_id": "series-seven", "image_dtype": "uint16",
            "image_size_x": shape[1], "image_size_y": shape[0], "channels": ["threshold_1"],
            "pixel_size_x": 75e-6, "pixel_size_y": 75e-6, "beam_center_x": shape[1] / 2,
            "beam_center_y": shape[0] / 2, "detector_translation": [0.0, 0.0, 0.1], "incident_energy": 12400.0,
            "saturation_value": 60000, "number_of_images": 40, "pixel_mask": {"threshold_1": encode_array(mask)}}


def _image(image_id: int, shape: tuple[int, int], dtype: type = np.uint16, series: int = 7) -> bytes:
    counts = np.random.default_rng(image_id).poisson(0.01, shape).astype(dtype)
    return cbor2.dumps({"type": "image", "series_id": series, "image_id": image_id,
                        "data": {"threshold_1": encode_array(counts, "bslz4")}})


def _run_against(messages: list[bytes], url: str, config: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """A sender of our own pushing ``messages`` on ``url`` to the monitor run on ``config`` (3 ranks);
    the run must end in order.  Each send waits for the monitor's relay to connect: no sleep needed."""
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.bind(url)
    sender = threading.Thread(target=lambda: [push.send(m) for m in messages], daemon=True)
    sender.start()
    summary_file = config.parent / "summary.json"
    try:
        done = run_monitor(3, config, summary_file)
        sender.join(timeout=10)
    finally:
        push.close(linger=0)
        context.term()
    assert done.returncode == 0, done.stderr
    return done, json.loads(summary_file.read_text())


def test_bad_messages_are_counted_and_every_good_image_is_processed(tmp_path):
    """A sender of our own: 40 good images, one message that is not CBOR, one of an unknown type,
    one image of the wrong dtype, one whose compressed data is cut short."""
    shape = (256, 256)
    url = free_tcp_url()
    messages = [cbor2.dumps(_start(shape))]
    for image_id in range(40):
        messages.append(_image(image_id, shape))
        if image_id == 10:
            messages.append(b"\xa1\x64type\x65image" + b"\x9f" * 20)  # "image", then no valid CBOR
        elif image_id == 20:
            messages.append(cbor2.dumps({"type": "mystery", "series_id": 7}))
        elif image_id == 30:
            messages.append(_image(1000, shape, np.uint32))
        elif image_id == 35:
            messages.append(_image(1001, shape)[:-100])
    messages.append(cbor2.dumps({"type": "end", "series_id": 7, "series_unique_id": "series-seven"}))
    done, summary = _run_against(messages, url, example_config(tmp_path, source=url))
    assert summary["events_processed"] == 40 and summary["events_failed"] == 3
    assert assert_balanced(summary, sent=43)["dropped"] == {}
    assert summary["stream2_other_messages"] == {"mystery": 1}
    assert summary["stream2_series"][0]["series_unique_id"] == "series-seven"
    assert "pixels are uint32, the start message said uint16" in done.stderr


def test_a_signal_ends_the_series_behind_the_images_handed_on(tmp_path):
    """The relay takes no more images and ends the series; what the simulator had sent past it is
    ``dropped: stop``, and every image handed on is processed."""
    config = example_config(tmp_path, simulator={"detector": "500K", "dtype": "uint16", "frames": 100_000,
                                                 "rate_hz": 100})
    summary_file = tmp_path / "summary.json"
    monitor = subprocess.Popen([str(MPIRUN), "-n", "3", sys.executable, "-m", "monitor", str(config),
                                "--summary-json", str(summary_file)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and monitor.poll() is None:
            try:
                if json.loads(summary_file.read_text()).get("events_processed", 0) >= 20:
                    break
            except (OSError, ValueError):  # no checkpoint yet
                pass
            time.sleep(0.1)
        monitor.send_signal(signal.SIGINT)
        _, stderr = monitor.communicate(timeout=120)
    finally:
        if monitor.poll() is None:
            monitor.kill()
    assert monitor.returncode == 0, stderr
    summary = json.loads(summary_file.read_text())
    [series] = summary["stream2_series"]
    assert series["ended"] == "stopped" and summary["events_processed"] == series["images"] >= 20
    accounting = assert_balanced(summary, sent=summary["simulated_frames"])
    assert set(accounting["dropped"]) <= {"stop"} and summary["events_failed"] == 0


def test_no_start_message_within_the_timeout_ends_the_run_with_one_line(tmp_path):
    silent = free_tcp_url()  # nobody sends there
    config = example_config(tmp_path, source=silent, start_timeout_s=1)
    done = run_monitor(3, config, tmp_path / "summary.json")
    assert done.returncode == 2, done.stderr
    assert f"no start message from {silent} within start_timeout_s (1 s)" in done.stderr
    assert "Traceback" not in done.stderr


def test_each_series_is_an_acquisition_and_a_moved_detector_is_named(tmp_path):
    """Live use: two series on one run, the second with the beam elsewhere; the run keeps going
    after each end and stops when the detector has been quiet for ``idle_timeout_s``."""
    shape = (256, 256)
    url = free_tcp_url()
    messages = []
    for series, beam_x in ((7, 128.0), (8, 140.0)):
        start = _start(shape)
        start.update(series_id=series, series_unique_id=f"series-{series}", beam_center_x=beam_x, number_of_images=10)
        messages.append(cbor2.dumps(start))
        messages += [_image(k, shape, series=series) for k in range(10)]
        messages.append(cbor2.dumps({"type": "end", "series_id": series, "series_unique_id": f"series-{series}"}))
    config = example_config(tmp_path, source=url, stop_after_acquisition=False)
    config.write_text(config.read_text().replace("monitor:\n", "monitor:\n  idle_timeout_s: 3\n", 1))
    done, summary = _run_against(messages, url, config)
    assert summary["acquisitions"] == 2 and summary["events_processed"] == 20
    assert_balanced(summary, sent=20)
    assert [(s["series_unique_id"], s["images"], s["ended"]) for s in summary["stream2_series"]] == [
        ("series-7", 10, "end message"), ("series-8", 10, "end message")]
    assert "series 8 (series-8) changes beam_center_x" in done.stderr
