"""The statistics pipeline: one compiled pass agrees with numpy; the collector keeps totals."""

from __future__ import annotations

import numpy as np

from monitor.processing.statistics import FrameStatisticsParameters, FrameStatisticsPipeline, frame_statistics
from sources.jungfrau1m import FrameBands


def test_the_kernel_strips_gain_bits_and_skips_lost_pixels():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 0xFFFF, size=(64, 64), dtype=np.uint16)
    frame[::7, ::5] = 0xFFFF
    valid = frame != 0xFFFF
    adc = (frame & 0x3FFF)[valid].astype(np.int64)
    total, count, peak, over = frame_statistics(frame, 9000)
    assert (total, count, peak, over) == (adc.sum(), valid.sum(), adc.max(), (adc > 9000).sum())


def test_the_collector_averages_frame_means_and_counts_events():
    pipeline = FrameStatisticsPipeline(parameters=FrameStatisticsParameters(threshold_adu=100))
    pipeline.initialize_processing_node(node_rank=1, node_pool_size=2)
    ranks = {"node_rank": 0, "node_pool_size": 2}
    for value in (10, 30):
        frame = np.full((4, 4), value, dtype=np.uint16)
        frame[0, 0] = 200
        result = pipeline.process_data(data={"detector_data": frame, "event_id": value, "timestamp": 0.0}, **ranks)
        assert result.values["bright_pixels"] == 1 and result.values["max_adc"] == 200
        pipeline.collect_data(processed_data=result, **ranks)
    summary = pipeline.summary()
    assert summary["mean_adc"] == ((10 * 15 + 200) / 16 + (30 * 15 + 200) / 16) / 2
    assert summary["bright_pixels_per_frame"] == 1 and summary["last_event_id"] == 30


def test_module_bands_give_the_figures_of_the_whole_frame():
    pipeline = FrameStatisticsPipeline(parameters=FrameStatisticsParameters(threshold_adu=1000))
    pipeline.initialize_processing_node(node_rank=1, node_pool_size=2)
    frame = np.random.default_rng(2).integers(0, 0x4000, size=(8, 16), dtype=np.uint16)
    frame[5, 3] = 0xFFFF
    bands = FrameBands(frame.shape, ((0, frame[:3]), (3, frame[3:])))

    def figures(data: dict) -> dict:
        return pipeline.process_data(data={**data, "event_id": 1, "timestamp": 0.0}, node_rank=1,
                                     node_pool_size=2).values

    assert figures({"detector_modules": bands}) == figures({"detector_data": frame})
