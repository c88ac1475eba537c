"""Synthetic results shaped like the crystallography pipeline's, to exercise the outputs alone.

Tests, ``benchmarks/bench_viewer_stall.py`` and a viewer demo need per-event
results and collector snapshots without running the MPI monitor; these
follow the pipeline's contract (keys, dtypes, raw-frame pixel coordinates).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monitor.outputs.protocol import HIT_RATE_HISTORY, POWDER, RADIAL_BIN_PX
from monitor.processing.protocol import ProcessedEvent

__all__ = ["synthetic_event", "synthetic_snapshot"]


def synthetic_event(
    event_id: int,
    *,
    is_hit: bool,
    with_frame: bool = True,
    shape: tuple[int, int] = (1024, 1024),
    n_peaks: int = 12,
    seed: int | None = None,
) -> ProcessedEvent:
    """One result: hits carry ``n_peaks`` peaks, and a frame when ``with_frame``.

    The frame is noise plus a bright pixel at every peak, so a peak's position
    can be checked against the image; ``seed`` defaults to ``event_id``.
    """
    rng = np.random.default_rng(event_id if seed is None else seed)
    count = n_peaks if is_hit else 0
    peak_y = rng.integers(0, shape[0], count).astype(np.float32)
    peak_x = rng.integers(0, shape[1], count).astype(np.float32)
    arrays: dict[str, np.ndarray] = {
        "peak_x": peak_x,
        "peak_y": peak_y,
        "peak_intensity": rng.uniform(100, 1000, count).astype(np.float32),
        "peak_snr": rng.uniform(5, 50, count).astype(np.float32),
        "radial_profile": rng.uniform(0, 10, 300).astype(np.float32),
    }
    if with_frame:
        frame = rng.normal(0.0, 1.0, shape).astype(np.float32)
        frame[peak_y.astype(int), peak_x.astype(int)] = arrays["peak_intensity"]
        arrays["frame"] = frame
    values: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": 1.7e9 + event_id * 1e-3,
        "is_hit": is_hit,
        "n_peaks": count,
        "n_saturated": 0,
        "frame_mean": float(arrays["frame"].mean()) if with_frame else 0.0,
    }
    return ProcessedEvent(values=values, arrays=arrays)


def synthetic_snapshot(*, n_history: int = 120, shape: tuple[int, int] = (1024, 1024), seed: int = 0) -> dict[str, Any]:
    """A collector snapshot: hit-rate history rows, peak-count powder with rings, radial profiles."""
    rng = np.random.default_rng(seed)
    rows, columns = np.indices(shape)
    radius = np.hypot(rows - shape[0] / 2, columns - shape[1] / 2)
    rings = sum(np.exp(-((radius - r) ** 2) / 20.0) for r in (120, 250, 380))
    ring_index = (radius // 2).astype(int).ravel()
    profile = np.bincount(ring_index, weights=rings.ravel()) / np.bincount(ring_index)
    event_ids = np.arange(n_history) * 100.0
    history = np.column_stack([event_ids, 1.7e9 + event_ids * 1e-3,
                               np.clip(0.1 + 0.05 * rng.standard_normal(n_history), 0, 1)])
    return {
        HIT_RATE_HISTORY: history,
        POWDER: rng.poisson(20 * rings + 0.05).astype(np.uint32),
        RADIAL_BIN_PX: 2,
        "radial_profile_hits": (3 * profile).astype(np.float32),
        "radial_profile_non_hits": profile.astype(np.float32),
        "latest_hit_event_id": 0,
        "frames": 1000,
        "hit_rate": 0.1,
    }
