"""A pipeline that fails on purpose on one rank, for the error-propagation tests."""

from __future__ import annotations

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
