"""The MPI layer under real MPI: run with ``mpirun -n N python -m pytest --with-mpi tests/mpi``.

Without ``--with-mpi`` (a plain ``pytest``) these tests are skipped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mpi4py import MPI

from helpers import assert_balanced, write_config
from monitor.config import load_config
from monitor.mpi import run
from monitor.mpi.messages import Inbox, Outbox
from monitor.processing.protocol import ProcessedEvent
from monitor.processing.statistics import FrameStatisticsPipeline

comm = MPI.COMM_WORLD


def shared_tmp(tmp_path_factory) -> Any:
    """One folder all ranks agree on (rank 0 makes it)."""
    folder = str(tmp_path_factory.mktemp("mpi")) if comm.rank == 0 else None
    return comm.bcast(folder, root=0)


@pytest.mark.mpi(min_size=2)
def test_results_with_arrays_reach_the_collector_in_order_from_every_worker():
    collector, count = comm.size - 1, 50
    if comm.rank != collector:
        outbox = Outbox(comm, collector)
        for i in range(count):
            outbox.send_result(ProcessedEvent(
                values={"i": i, "rank": comm.rank, "ratio": np.float32(0.5)},
                arrays={"peaks": np.full((i % 5, 3), i, dtype=np.float32), "frame": np.arange(i, dtype=np.uint16)}))
        outbox.send("bye")
        outbox.flush(timeout_s=30)
        return
    inbox = Inbox(comm, patience_s=30)
    seen: dict[int, list[int]] = {rank: [] for rank in range(comm.size - 1)}
    byes = 0
    deadline = time.monotonic() + 30
    while byes < comm.size - 1 and time.monotonic() < deadline:
        message = inbox.poll()
        if message is None:
            continue
        if message.kind == "bye":
            byes += 1
            continue
        i = message.values["i"]
        seen[message.source].append(i)
        assert message.values["ratio"] == 0.5
        assert message.arrays["peaks"].shape == (i % 5, 3) and np.all(message.arrays["peaks"] == i)
        assert np.array_equal(message.arrays["frame"], np.arange(i, dtype=np.uint16))
    assert all(order == list(range(count)) for order in seen.values())


class FeedbackPipeline(FrameStatisticsPipeline):
    """Sends the collected count back to the workers every 25 events; workers remember it."""

    received: list[int] = []

    def collect_data(self, *, node_rank, node_pool_size, processed_data):
        super().collect_data(node_rank=node_rank, node_pool_size=node_pool_size, processed_data=processed_data)
        return {"collected": self._events} if self._events % 25 == 0 else None

    def receive_feedback(self, *, feedback):
        FeedbackPipeline.received.append(feedback["collected"])


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("collector", ["first", "last"])
def test_a_run_collects_every_frame_of_an_acquisition_and_feeds_back(tmp_path_factory, collector):
    folder = shared_tmp(tmp_path_factory)
    problem = None
    if comm.rank == 0:  # one configuration, on free ports, that every rank reads
        try:
            write_config(Path(folder), {
                "data_retrieval_layer": {"collector_rank": collector, "skip_rank_finalization": True,
                                         "simulator": {"frames": 200, "rate_hz": 1000}},
                "processing_layer": {"pipeline": "test_mpi_layer:FeedbackPipeline"},
            })
        except Exception as error:  # every rank must learn of it, or the others wait for ever
            problem = repr(error)
    assert comm.bcast(problem, root=0) is None
    config = load_config(f"{folder}/monitor.yaml")
    FeedbackPipeline.received.clear()
    outcome = run(config, print_status=lambda figures: None)
    assert outcome.exit_code == 0
    expected_collector = 0 if collector == "first" else comm.size - 1
    if comm.rank == expected_collector:
        assert outcome.summary["events_processed"] == 200 == outcome.summary["frames_sent"]
        assert assert_balanced(outcome.summary, sent=200)["dropped"] == {}
        assert outcome.summary["collector_rank"] == expected_collector
        assert [row["role"] for row in outcome.summary["per_rank"]].count("collector") == 1
    else:
        assert outcome.summary is None
        assert FeedbackPipeline.received == sorted(FeedbackPipeline.received) and len(FeedbackPipeline.received) >= 1
