"""The curves the viewer and the report draw, taken from a pipeline snapshot.

One place knows the shapes of the snapshot entries (see
:mod:`monitor.outputs.protocol`); pipelines that send fewer keys get fewer
curves, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.outputs.protocol import HIT_RATE_HISTORY, RADIAL_BIN_PX, RADIAL_PROFILES

__all__ = ["Curve", "hit_rate_curve", "radial_curves"]


@dataclass(frozen=True)
class Curve:
    """One line to draw: ``name`` is the snapshot key it comes from, ``label`` its legend."""

    name: str
    label: str
    x: np.ndarray
    y: np.ndarray
    x_label: str


def hit_rate_curve(snapshot: Mapping[str, Any]) -> Curve | None:
    """Hit rate against seconds before the newest entry, or against entry number for 1-D history.

    >>> hit_rate_curve({"hit_rate_history": np.array([[1, 10.0, 0.5], [2, 12.5, 0.25]])}).x
    array([-2.5,  0. ])
    """
    history = snapshot.get(HIT_RATE_HISTORY)
    if not isinstance(history, np.ndarray) or history.size == 0:
        return None
    if history.ndim == 1:
        return Curve(HIT_RATE_HISTORY, "hit rate", np.arange(history.size, dtype=np.float64), history, "entry")
    if history.ndim == 2 and history.shape[1] >= 3:
        # rows come in collector arrival order; workers finish frames slightly out of time order
        rows = history[np.argsort(history[:, 1], kind="stable")]
        return Curve(HIT_RATE_HISTORY, "hit rate", rows[:, 1] - rows[-1, 1], rows[:, 2], "time (s, 0 = latest)")
    return None


def radial_curves(snapshot: Mapping[str, Any]) -> list[Curve]:
    """One curve per radial profile present, against radius in pixels (bins if no bin width)."""
    bin_px = snapshot.get(RADIAL_BIN_PX)
    curves = []
    for key, label in RADIAL_PROFILES.items():
        profile = snapshot.get(key)
        if not isinstance(profile, np.ndarray) or profile.ndim != 1 or profile.size == 0:
            continue
        if isinstance(bin_px, (int, float)) and bin_px > 0:
            curves.append(Curve(key, label, (np.arange(profile.size) + 0.5) * bin_px, profile, "radius (pixels)"))
        else:
            curves.append(Curve(key, label, np.arange(profile.size, dtype=np.float64), profile, "radial bin"))
    return curves
