"""Recorded files (NXmx, the monitor's own CXI hits): single events by id, the split across workers, whole
replays under ``mpirun``."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from ruamel.yaml import YAML

from eiger2_configs import example_config, run_monitor
from handlers.file_replay import FileReplay, worker_share
from handlers.cxi_files import CxiHitFileDataEventHandler
from handlers.nxmx_files import NxmxFileDataEventHandler
from handlers.slsreceiver_files import SlsReceiverFileDataEventHandler
from helpers import assert_balanced
from monitor.errors import ConfigurationError, DataExtractionError
from monitor.simulation import SimulatedJungfrau1M
from nxmx_writer import write_nxmx
from sources.counting import CountingFrame


def handler(source: str, kind: type = NxmxFileDataEventHandler) -> NxmxFileDataEventHandler:
    parameters = kind.Parameters(data_event_handler=kind.__name__, source=source)
    return kind(source=source, parameters=parameters)


@pytest.mark.parametrize("layout", ["links", "vds"])
def test_one_event_is_retrieved_by_index_or_file_and_frame(tmp_path, layout):
    master, eiger = write_nxmx(tmp_path, name="lyso", files=2, images_per_file=3, layout=layout)
    files = handler(str(master))
    files.initialize_event_data_retrieval()
    for event_id in ("4", f"{master}//4"):
        data = files.retrieve_event_data(event_id)
        frame = data["detector_data"]
        assert isinstance(frame, CountingFrame) and data["event_id"] == 4
        assert np.array_equal(frame.counts, eiger.image(4).counts["threshold_1"])
        assert np.array_equal(frame.valid, eiger.mask == 0) and frame.nodata == 0xFFFF
    with pytest.raises(DataExtractionError, match="no event '6' in these files"):
        files.retrieve_event_data("6")


def test_a_missing_file_or_a_file_without_images_is_one_line(tmp_path):
    with pytest.raises(ConfigurationError, match="no file"):
        handler(str(tmp_path / "none_master.h5")).initialize_event_data_retrieval()
    (tmp_path / "empty_master.h5").write_bytes(b"not hdf5")
    with pytest.raises(ConfigurationError, match="not an NXmx master file"):
        handler(str(tmp_path / "empty_master.h5")).initialize_event_data_retrieval()


@pytest.mark.parametrize(("ranks", "collector"), [(2, "first"), (5, "first"), (5, "last")])
def test_workers_share_the_events_each_exactly_once(ranks, collector):
    replay = FileReplay([Path("a"), Path("b")], [7, 6])
    seen = []
    for rank in range(ranks):
        if rank == (0 if collector == "first" else ranks - 1):
            continue
        events = list(replay.generator(share=worker_share(node_rank=rank, node_pool_size=ranks, collector=collector)))
        seen += [event["file_event"].index for event in events if event["kind"] == "frame"]
    assert sorted(seen) == list(range(13))


@pytest.mark.slow
@pytest.mark.parametrize(("ranks", "layout"), [(2, "links"), (5, "vds")])
def test_a_replay_processes_every_image_once_and_ends_by_itself(tmp_path, ranks, layout):
    first, eiger = write_nxmx(tmp_path / "data", name="a", files=2, images_per_file=20, layout=layout)
    write_nxmx(tmp_path / "data", name="b", files=1, images_per_file=20, layout=layout, seed=0)
    truth = [eiger.image(k).is_hit for k in range(40)] + [eiger.image(k).is_hit for k in range(20)]
    summary_file = tmp_path / "summary.json"
    config = example_config(tmp_path, retrieval={"data_event_handler": "NxmxFileDataEventHandler",
                                                 "source": str(first.parent / "*_master.h5")})
    done = run_monitor(ranks, config, summary_file)
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["events_processed"] == 60 and summary["events_failed"] == 0
    assert assert_balanced(summary, sent=60)["dropped"] == {}
    assert [f["images"] for f in summary["replayed_files"]] == [40, 20]
    assert abs(summary["hits"] - sum(truth)) <= 1, (summary["hits"], sum(truth))
    workers = [row["events"] for row in summary["per_rank"] if row["role"] == "worker"]
    assert len(workers) == ranks - 1 and sum(workers) == 60 and max(workers) - min(workers) <= 1


@pytest.mark.slow
def test_a_runs_hit_files_replayed_are_its_hits_again_with_their_event_ids(tmp_path):
    live = example_config(tmp_path / "live", simulator={"detector": "500K", "dtype": "uint16", "frames": 100,
                                                        "rate_hz": 200, "hit_fraction": 0.3})
    done = run_monitor(2, live, tmp_path / "live.json")
    assert done.returncode == 0, done.stderr
    run = json.loads((tmp_path / "live.json").read_text())
    run_dir = Path(run["output_dir"])
    hit_files = str(run_dir / "*.cxi")
    replay = example_config(tmp_path / "replay", geometry=run_dir / "detector.geom",
                            retrieval={"data_event_handler": "CxiHitFileDataEventHandler", "source": hit_files})
    done = run_monitor(3, replay, tmp_path / "replay.json")
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "replay.json").read_text())
    hits = run["hits"]
    assert hits and again["events_processed"] == hits and again["events_failed"] == 0
    assert_balanced(again, sent=hits)
    assert again["hits"] == hits
    files = handler(hit_files, CxiHitFileDataEventHandler)
    files.initialize_event_data_retrieval()
    first = files.retrieve_event_data("0")
    assert 1_000_000_000 <= first["event_id"] < 1_000_000_100  # series 1's: the id it had in its run
    assert first["detector_data"].valid.sum() < first["detector_data"].counts.size  # the file's mask


def write_slsreceiver_run(folder: Path, *, files: int, frames_per_file: int) -> list[int]:
    """slsReceiver's layout of a simulated JUNGFRAU 1M run (``run_dM_fN_0.h5``, one per module); the
    frame numbers of its hits by the simulator's truth."""
    detector = SimulatedJungfrau1M(seed=0, crystal="medium", hit_fraction=0.25)
    folder.mkdir(parents=True, exist_ok=True)
    hits = []
    for file in range(files):
        numbers = np.arange(1 + file * frames_per_file, 1 + (file + 1) * frames_per_file)
        frames = []
        for number in numbers:
            raw, truth = detector.frame(int(number))
            frames.append(raw)
            hits += [int(number)] if truth.is_hit else []
        stack = np.stack(frames)
        for module in range(2):
            with h5py.File(folder / f"run_d{module}_f{file}_0.h5", "w") as f:
                f["data"] = stack[:, module * 512 : (module + 1) * 512]
                f["frame number"] = numbers.astype(np.uint64)
    return hits


def test_an_slsreceiver_frame_is_the_frame_the_stream_brings(tmp_path):
    write_slsreceiver_run(tmp_path, files=1, frames_per_file=3)
    files = handler(str(tmp_path / "run_d0_f*_0.h5"), SlsReceiverFileDataEventHandler)
    files.initialize_event_data_retrieval()
    data = files.retrieve_event_data(f"{tmp_path / 'run_d0_f0_0.h5'}//2")
    raw, _ = SimulatedJungfrau1M(seed=0, crystal="medium", hit_fraction=0.25).frame(3)
    assert data["event_id"] == 3
    assert [row for row, _ in data["detector_modules"].bands] == [0, 512]
    assert np.array_equal(np.concatenate([band for _, band in data["detector_modules"].bands]), raw)


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [2, 5])
def test_a_recorded_jungfrau_run_is_calibrated_and_replayed_once_at_the_true_hits(tmp_path, config_factory, ranks):
    hits = write_slsreceiver_run(tmp_path / "data", files=2, frames_per_file=30)
    config = config_factory()  # the shipped monitor.yaml: the simulated detector's calibration and truth
    yaml = YAML()
    document = yaml.load(config.read_text())
    document["data_retrieval_layer"] = {"data_event_handler": "SlsReceiverFileDataEventHandler",
                                        "source": str(tmp_path / "data" / "run_d0_f*_0.h5")}
    with config.open("w") as stream:
        yaml.dump(document, stream)
    summary_file = tmp_path / "summary.json"
    done = run_monitor(ranks, config, summary_file)
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["events_processed"] == 60 and summary["events_failed"] == 0
    assert_balanced(summary, sent=60)
    assert abs(summary["hits"] - len(hits)) <= 1, (summary["hits"], len(hits))


def test_a_glob_that_names_no_file_ends_the_run_with_one_line(tmp_path):
    config = example_config(tmp_path, retrieval={"data_event_handler": "NxmxFileDataEventHandler",
                                                 "source": str(tmp_path / "none_*_master.h5")})
    done = run_monitor(3, config, tmp_path / "summary.json")
    assert done.returncode == 2 and "data_retrieval_layer.source: no file" in done.stderr
    assert "Traceback" not in done.stderr
