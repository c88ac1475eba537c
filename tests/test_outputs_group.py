"""The outputs of one run driven as one: run folders, counters, closing whatever fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters h5py needs to read back)
import numpy as np
import pytest

from monitor.outputs.group import OutputGroup, build_outputs, create_run_dir
from monitor.outputs.hit_files import HitFiles
from monitor.outputs.parameters import OutputParameters
from monitor.outputs.report import RunReport
from monitor.outputs.results_stream import ResultsStream
from monitor.outputs.synthetic import synthetic_event, synthetic_snapshot


def test_each_run_gets_its_own_new_folder(tmp_path: Path) -> None:
    first, second = create_run_dir(tmp_path / "output"), create_run_dir(tmp_path / "output")
    assert first != second and first.parent == second.parent == tmp_path / "output"
    assert first.name.startswith("run-") and first.is_dir() and not any(first.iterdir())


def test_default_parameters_build_hit_files_stream_and_report_in_closing_order() -> None:
    outputs = build_outputs(OutputParameters())
    assert [type(output) for output in outputs] == [HitFiles, ResultsStream, RunReport]
    assert build_outputs(OutputParameters.model_validate({"report": {"enabled": False}, "hit_files": {
        "enabled": False}, "results_stream": {"enabled": False}})) == []


def test_unknown_yaml_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="rate_hzz"):
        OutputParameters.model_validate({"results_stream": {"rate_hzz": 3}})
    with pytest.raises(ValueError, match="not a ZMQ endpoint"):
        OutputParameters.model_validate({"results_stream": {"url": "localhost:5610"}})


def test_a_run_leaves_hit_file_report_and_summary_with_the_hits_it_counted(tmp_path: Path) -> None:
    parameters = OutputParameters.model_validate({"output_dir": tmp_path, "results_stream": {
        "url": "tcp://127.0.0.1:*", "request_url": "tcp://127.0.0.1:*"}})
    run_dir = create_run_dir(parameters.output_dir)
    outputs = OutputGroup(build_outputs(parameters))
    outputs.open(run_dir=run_dir)
    events = [synthetic_event(i, is_hit=i % 4 == 1, shape=(256, 256)) for i in range(40)]
    try:
        for event in events:
            outputs.on_result(event)
        outputs.on_tick(status={"events_per_s": 100.0}, snapshot=synthetic_snapshot(shape=(256, 256)))
    finally:
        outputs.close(summary={"events": len(events), "hits": 10})

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["outputs"]["hits_written"] == summary["hits"] == 10
    assert summary["last_status"]["hits_dropped"] == 0  # counters reach the status every output sees
    assert (run_dir / "report.png").stat().st_size > 10_000
    with h5py.File(run_dir / f"{run_dir.name}-hits-0000.cxi", "r") as cxi:
        np.testing.assert_array_equal(cxi["entry_1/event_id"][()], range(1, 40, 4))


class _Recorder:
    def __init__(self, log: list[str], name: str, *, fail: str = "") -> None:
        self.log, self.name, self.fail = log, name, fail

    def open(self, *, run_dir: Path) -> None:
        self._step("open")

    def on_result(self, result: Any) -> None:
        self._step("result")

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        self._step("tick")

    def close(self, *, summary: dict[str, Any]) -> None:
        self._step("close")

    def _step(self, step: str) -> None:
        self.log.append(f"{self.name}.{step}")
        if step == self.fail:
            raise OSError(f"{self.name} {step} failed")


def test_every_output_is_closed_even_when_one_fails_to_close(tmp_path: Path) -> None:
    log: list[str] = []
    group = OutputGroup([_Recorder(log, "a", fail="close"), _Recorder(log, "b")])
    group.open(run_dir=tmp_path)
    with pytest.raises(OSError, match="a close failed"):
        group.close(summary={})
    assert log == ["a.open", "b.open", "a.close", "b.close"]


def test_outputs_already_open_are_closed_when_a_later_one_fails_to_open(tmp_path: Path) -> None:
    log: list[str] = []
    group = OutputGroup([_Recorder(log, "a"), _Recorder(log, "b", fail="open"), _Recorder(log, "c")])
    with pytest.raises(OSError, match="b open failed"):
        group.open(run_dir=tmp_path)
    assert log == ["a.open", "b.open", "a.close"]
