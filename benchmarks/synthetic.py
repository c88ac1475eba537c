"""A handler and a pipeline with no detector behind them: they measure the MPI layer alone.

``SyntheticEventHandler`` yields ``events_per_worker`` tiny events as fast as
a generator can, then ends; ``TinyResultPipeline`` turns each into a small
result.  The collector's events/s is then the rate it absorbs results at.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from monitor.processing.protocol import ProcessedEvent
from monitor.processing.statistics import FrameStatisticsPipeline


class SyntheticParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_event_handler: str
    source: str = "synthetic"
    collector_rank: Literal["first", "last"] = "first"
    stop_after_acquisition: bool = False
    skip_rank_finalization: bool = False
    events_per_worker: int = 100_000


class SyntheticEventHandler:
    Parameters = SyntheticParameters

    def __init__(self, *, source: str, parameters: SyntheticParameters) -> None:
        self._parameters = parameters

    def designated_collector_rank(self) -> Literal["first", "last"]:
        return self._parameters.collector_rank

    def skip_rank_finalization(self) -> bool:
        return self._parameters.skip_rank_finalization

    def initialize_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Nothing to start."""

    def initialize_event_handling_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Nothing to connect."""

    def collecting_node_status(self) -> dict[str, Any]:
        return {}

    def end_event_handling_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> dict[str, Any]:
        return {}

    def event_generator(self, *, node_rank: int, node_pool_size: int) -> Generator[dict[str, Any], None, None]:
        for number in range(self._parameters.events_per_worker):
            yield {"kind": "frame", "number": number}

    def open_event(self, *, event: dict[str, Any]) -> None:
        """Nothing to open."""

    def close_event(self, *, event: dict[str, Any]) -> None:
        """Nothing to close."""

    def extract_data(self, *, event: dict[str, Any]) -> dict[str, Any]:
        return {"event_id": event["number"], "timestamp": 0.0}

    def initialize_event_data_retrieval(self) -> None:
        raise NotImplementedError

    def retrieve_event_data(self, event_id: str) -> dict[str, Any]:
        raise NotImplementedError


class TinyResultPipeline(FrameStatisticsPipeline):
    """Results of a few scalars, like a hit finder's per-frame verdict."""

    def process_data(self, *, node_rank: int, node_pool_size: int, data: dict[str, Any]) -> ProcessedEvent:
        return ProcessedEvent(values={"event_id": data["event_id"], "timestamp": 0.0, "n_peaks": 3, "is_hit": False})
