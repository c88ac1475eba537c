"""The first pipeline: per-frame statistics of the raw frame, running totals on the collector.

Workers compute, per frame, the mean and maximum ADC value (bits 0-13, gain
bits stripped) and the number of pixels above a threshold, over the pixels
that arrived (``0xFFFF``, the lost-packet mark, is left out).  One compiled
pass reads the 2 MiB frame once: this pipeline is meant to cost little next to
receiving the frame, so that the benchmark shows the framework's own overhead.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from monitor.processing.protocol import ProcessedEvent, Scalar, warm_up_frames
from sources.jungfrau1m import FrameBands, raw_frame

__all__ = ["FrameStatisticsPipeline", "FrameStatisticsParameters", "frame_statistics"]

_ADC_BITS = 0x3FFF
_LOST = 0xFFFF


@numba.njit(cache=True, nogil=True)
def frame_statistics(frame: np.ndarray, threshold: int) -> tuple[float, int, int, int]:
    """(sum of ADC, valid pixels, maximum ADC, pixels above ``threshold``) in one pass."""
    total = 0
    valid = 0
    peak = 0
    over = 0
    flat = frame.ravel()
    for i in range(flat.size):
        value = flat[i]
        if value == _LOST:
            continue
        adc = value & _ADC_BITS
        total += adc
        valid += 1
        if adc > peak:
            peak = adc
        if adc > threshold:
            over += 1
    return float(total), valid, peak, over


class FrameStatisticsParameters(BaseModel):
    """The ``processing_layer`` section for this pipeline."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = "FrameStatisticsPipeline"
    threshold_adu: int = Field(default=4000, ge=0, le=_ADC_BITS)
    """A pixel counts as bright above this ADC value."""


class FrameStatisticsPipeline:
    """Per-frame mean, maximum and bright-pixel count; running totals on the collector."""

    Parameters = FrameStatisticsParameters

    def __init__(self, *, parameters: FrameStatisticsParameters) -> None:
        self.parameters = parameters
        self._threshold = parameters.threshold_adu
        self._events = 0
        self._sum_of_means = 0.0
        self._max = 0
        self._bright_pixels = 0
        self._last_event_id: int | None = None

    def initialize_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Compile the kernel before the first frame arrives, not during it (received views are read-only)."""
        for frame in warm_up_frames((2, 2)):
            frame_statistics(frame, self._threshold)

    def initialize_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Nothing to prepare: the totals start at zero."""

    def process_data(self, *, node_rank: int, node_pool_size: int, data: dict[str, Any]) -> ProcessedEvent:
        values: dict[str, Any] = {
            "event_id": data.get("event_id"),
            "timestamp": data.get("timestamp"),
        }
        frame = raw_frame(data)
        if frame is not None:
            bands = frame.bands if isinstance(frame, FrameBands) else ((0, frame),)
            totals, valids, peaks, overs = zip(*(frame_statistics(band, self._threshold) for _, band in bands))
            total, valid, peak, over = sum(totals), sum(valids), max(peaks), sum(overs)
            values.update(mean_adc=total / valid if valid else math.nan, max_adc=peak,
                          bright_pixels=over, valid_pixels=valid)
        return ProcessedEvent(values=values)

    def collect_data(
        self, *, node_rank: int, node_pool_size: int, processed_data: ProcessedEvent
    ) -> dict[str, Any] | None:
        values = processed_data.values
        self._events += 1
        self._last_event_id = values.get("event_id", self._last_event_id)
        if "mean_adc" in values:
            self._sum_of_means += values["mean_adc"]
            self._max = max(self._max, values["max_adc"])
            self._bright_pixels += values["bright_pixels"]
        return None

    def update_parameters(self, *, parameters: FrameStatisticsParameters, number: int) -> None:
        """It has no live keys (see ``monitor.live_parameters``); a change of the threshold still applies."""
        self.parameters = parameters
        self._threshold = parameters.threshold_adu

    def receive_feedback(self, *, feedback: dict[str, Any]) -> None:
        """This pipeline sends no feedback."""

    def status(self) -> dict[str, Scalar]:
        return {"mean_adc": round(self._sum_of_means / self._events, 1) if self._events else None}

    def snapshot(self) -> dict[str, Any]:
        """Only figures: this pipeline draws no pictures."""
        return dict(self.status())

    def summary(self) -> dict[str, Any]:
        return {
            "mean_adc": self._sum_of_means / self._events if self._events else None,
            "max_adc": self._max,
            "bright_pixels_per_frame": self._bright_pixels / self._events if self._events else None,
            "threshold_adu": self._threshold,
            "last_event_id": self._last_event_id,
        }

    def end_processing_on_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Nothing to release."""

    def end_processing_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        """Nothing to release."""
