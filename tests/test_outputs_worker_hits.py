"""Workers write their own hits: what they write, what they still send, and what the collector counts and lists."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the filters h5py needs to read back)
import numpy as np

from monitor.outputs.experiment import Experiment
from monitor.outputs.hit_files import HitFiles
from monitor.outputs.parameters import HitFileParameters, OutputParameters
from monitor.outputs.stored_pixels import StoredPixels
from monitor.outputs.synthetic import synthetic_event
from monitor.outputs.worker_hits import HitWritingPipeline, WorkerHitWriter, writing_hits
from monitor.processing.protocol import ProcessedEvent
from sources.geometry import default_geometry_path

SHAPE = (64, 96)
EXPERIMENT = Experiment(photon_energy_ev=12400.0, detector_distance_m=0.12, geometry_path=default_geometry_path())


def event(event_id: int, *, is_hit: bool) -> ProcessedEvent:
    result = synthetic_event(event_id, is_hit=is_hit, shape=SHAPE)
    result.arrays["valid"] = np.ones(SHAPE, dtype=bool)
    return result


def test_a_written_hit_goes_on_without_frame_and_mask_but_with_its_file(tmp_path: Path) -> None:
    writer = WorkerHitWriter(tmp_path, rank=3, parameters=HitFileParameters(preview_interval_s=10.0),
                             experiment=EXPERIMENT)
    first, second, miss = event(0, is_hit=True), event(1, is_hit=True), event(2, is_hit=False)
    sent = [writer.take(first, now=100.0), writer.take(second, now=101.0), writer.take(miss, now=102.0)]
    assert writer.close() == {"hits_written": 2, "hits_failed": 0, "hits_without_frame": 0, "hit_files": 1}

    name = f"{tmp_path.name}-hits-r03-0000.cxi"
    assert [result.values.get("hit_file") for result in sent] == [name, name, None]
    assert "frame" in sent[0].arrays and "valid" in sent[0].arrays  # the first is the viewer's and feed's preview
    assert "frame" not in sent[1].arrays and "valid" not in sent[1].arrays  # within the preview interval
    assert "frame" in sent[2].arrays and "valid" not in sent[2].arrays  # a non-hit frame is the pipeline's own
    np.testing.assert_array_equal(sent[1].arrays["peak_x"], second.arrays["peak_x"])  # peaks still go on
    assert "frame" in second.arrays  # the pipeline's result itself is left as it was
    with h5py.File(tmp_path / name, "r") as cxi:
        np.testing.assert_array_equal(cxi["entry_1/event_id"][()], [0, 1])
        stored = StoredPixels(SHAPE, np.int16)
        stored.store(second.arrays["frame"], second.arrays["valid"])
        np.testing.assert_array_equal(cxi["entry_1/data_1/data"][1], stored.pixels)  # whole photons


def test_files_closed_by_age_are_announced_with_the_next_result(tmp_path: Path) -> None:
    writer = WorkerHitWriter(tmp_path, rank=1, parameters=HitFileParameters(max_file_age_s=5.0), experiment=EXPERIMENT)
    writer.take(event(0, is_hit=True))
    assert "hit_files_closed" not in writer.take(event(1, is_hit=False)).values
    late = writer.take(event(2, is_hit=False), now=1e12)  # long after: the file in flight is closed first
    assert late.values["hit_files_closed"] == [f"{tmp_path.name}-hits-r01-0000.cxi"]
    assert "hit_files_closed" not in writer.take(event(3, is_hit=False), now=1e12).values  # announced once
    writer.close()


def test_a_hit_that_cannot_be_written_is_marked_failed_and_keeps_its_frame(tmp_path: Path) -> None:
    writer = WorkerHitWriter(tmp_path / "missing", rank=1, parameters=HitFileParameters(), experiment=EXPERIMENT)
    sent = writer.take(event(0, is_hit=True))
    assert "hit_file" not in sent.values and "FileNotFoundError" in sent.values["hit_file_error"]
    assert writer.close()["hits_failed"] == 1


def test_the_collector_counts_and_lists_what_workers_wrote_and_writes_only_unmarked_hits(tmp_path: Path) -> None:
    workers = [WorkerHitWriter(tmp_path, rank=rank, parameters=HitFileParameters(max_hits_per_file=2),
                               experiment=EXPERIMENT) for rank in (1, 2)]
    collector = HitFiles(parameters=HitFileParameters(), experiment=EXPERIMENT)
    collector.open(run_dir=tmp_path)
    for n in range(10):  # worker 1: hits 0 2 | 6 8, worker 2: hits 1 3 | 5 7 | 9 (in flight)
        collector.on_result(workers[n % 2].take(event(n, is_hit=n != 4)))
    listed_during_run = {Path(line).name for line in (tmp_path / "files.lst").read_text().splitlines()}
    unmarked = event(20, is_hit=True)  # a hit no worker wrote (writer: collector) is written here
    collector.on_result(unmarked)
    collector.on_result(synthetic_event(21, is_hit=True, with_frame=False))
    for worker in workers:
        worker.close()
    collector.close(summary={})

    closed = [f"{tmp_path.name}-hits-r0{rank}-000{n}.cxi" for rank, n in ((1, 0), (1, 1), (2, 0), (2, 1))]
    assert listed_during_run == set(closed)
    names = [Path(line).name for line in (tmp_path / "files.lst").read_text().splitlines()]
    assert names == sorted([*closed, f"{tmp_path.name}-hits-r02-0002.cxi", f"{tmp_path.name}-hits-0000.cxi"])
    assert collector.counters() == {"hits_written": 10, "hits_dropped": 0, "hits_failed": 0,
                                    "hits_without_frame": 1, "hit_files": 6}
    event_ids = []
    for name in names:
        with h5py.File(tmp_path / name, "r") as cxi:
            event_ids += cxi["entry_1/event_id"][()].tolist()
    assert sorted(event_ids) == [0, 1, 2, 3, 5, 6, 7, 8, 9, 20]


class _Pipeline:
    def __init__(self) -> None:
        self.ended = False

    def process_data(self, *, node_rank: int, node_pool_size: int, data: dict) -> ProcessedEvent:
        return event(data["event_id"], is_hit=True)

    def end_processing_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        self.ended = True

    def status(self) -> dict:
        return {"hit_rate": 1.0}


def test_a_workers_pipeline_writes_its_hits_only_when_workers_are_the_writers(tmp_path: Path) -> None:
    inner = _Pipeline()
    outputs = OutputParameters()
    assert writing_hits(inner, outputs, None, run_dir=None, rank=1) is inner  # no run folder shared
    collector_writes = OutputParameters.model_validate({"hit_files": {"writer": "collector"}})
    assert writing_hits(inner, collector_writes, None, run_dir=tmp_path, rank=1) is inner
    pipeline = writing_hits(inner, outputs, None, run_dir=tmp_path, rank=1)
    assert isinstance(pipeline, HitWritingPipeline)
    result = pipeline.process_data(node_rank=1, node_pool_size=3, data={"event_id": 7})
    assert result.values["hit_file"] == f"{tmp_path.name}-hits-r01-0000.cxi"
    assert pipeline.status() == {"hit_rate": 1.0}  # everything else is the pipeline's
    pipeline.end_processing_on_processing_node(node_rank=1, node_pool_size=3)
    assert inner.ended
    with h5py.File(tmp_path / result.values["hit_file"], "r") as cxi:  # closed at the end: complete
        assert cxi["entry_1/event_id"][()].tolist() == [7]


def test_a_lost_workers_unfinished_file_is_left_out_of_the_list_and_named(tmp_path: Path, caplog) -> None:
    collector = HitFiles(parameters=HitFileParameters(), experiment=EXPERIMENT)
    collector.open(run_dir=tmp_path)
    in_flight = tmp_path / "run-hits-r04-0000.cxi"  # its worker was killed in the middle of a write
    in_flight.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    collector.on_result(ProcessedEvent(values={"is_hit": True, "hit_file": in_flight.name}))
    collector.close(summary={})
    assert (tmp_path / "files.lst").read_text() == ""
    assert collector.counters()["hits_written"] == 1
    assert f"{in_flight.name} is not a complete HDF5 file" in caplog.text and "h5clear" in caplog.text
