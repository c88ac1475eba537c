"""Pipelines for whole-run tests: one that fails on purpose, one that counts event ids, slow ones."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from monitor.processing.protocol import ProcessedEvent
from monitor.processing.statistics import FrameStatisticsParameters, FrameStatisticsPipeline


class FailingParameters(FrameStatisticsParameters):
    fail_on_rank: int = 1
    fail_after_events: int = 20


class FailingPipeline(FrameStatisticsPipeline):
    """Raises RuntimeError on ``fail_on_rank`` after ``fail_after_events`` events."""

    Parameters = FailingParameters

    def __init__(self, *, parameters: FailingParameters) -> None:
        super().__init__(parameters=parameters)
        self._fail = parameters
        self._seen = 0

    def process_data(self, *, node_rank: int, node_pool_size: int, data: dict[str, Any]) -> ProcessedEvent:
        self._seen += 1
        if node_rank == self._fail.fail_on_rank and self._seen > self._fail.fail_after_events:
            raise RuntimeError("deliberate failure in processing")
        return super().process_data(node_rank=node_rank, node_pool_size=node_pool_size, data=data)


class EventIdPipeline(FrameStatisticsPipeline):
    """Counts each event id on the collector, to prove every frame arrived exactly once."""

    def __init__(self, *, parameters: FrameStatisticsParameters) -> None:
        super().__init__(parameters=parameters)
        self._ids: Counter[int] = Counter()

    def collect_data(self, *, node_rank: int, node_pool_size: int, processed_data: ProcessedEvent) -> None:
        self._ids[processed_data.values["event_id"]] += 1
        return super().collect_data(node_rank=node_rank, node_pool_size=node_pool_size,
                                    processed_data=processed_data)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "distinct_event_ids": len(self._ids),
                "repeated_event_ids": sum(1 for n in self._ids.values() if n > 1),
                "first_event_id": min(self._ids, default=None), "last_event_id": max(self._ids, default=None)}


class SlowParameters(FrameStatisticsParameters):
    seconds_per_event: float = 0.02


class SlowPipeline(FrameStatisticsPipeline):
    """Takes ``seconds_per_event`` per frame (sleeping, so the cores stay free): a known rate per worker."""

    Parameters = SlowParameters

    def __init__(self, *, parameters: SlowParameters) -> None:
        super().__init__(parameters=parameters)
        self._seconds = parameters.seconds_per_event

    def process_data(self, *, node_rank: int, node_pool_size: int, data: dict[str, Any]) -> ProcessedEvent:
        time.sleep(self._seconds)
        return super().process_data(node_rank=node_rank, node_pool_size=node_pool_size, data=data)


class SlowStartParameters(FrameStatisticsParameters):
    seconds_to_prepare: float = 4.0


class SlowStartPipeline(FrameStatisticsPipeline):
    """Takes ``seconds_to_prepare`` to initialise each worker, as a fresh install compiling its kernels."""

    Parameters = SlowStartParameters

    def __init__(self, *, parameters: SlowStartParameters) -> None:
        super().__init__(parameters=parameters)
        self._prepare_s = parameters.seconds_to_prepare

    def initialize_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        time.sleep(self._prepare_s)
        super().initialize_processing_node(node_rank=node_rank, node_pool_size=node_pool_size)
