"""The end-of-run report: ``report.png`` and ``summary.json``.

``report.png`` draws the hit-rate history, the mean radial profiles, the
virtual powder (as an image around the beam of peaks per pixel in each 1-pixel
ring and 10-degree sector, so that the lattice's rings show as circles, or the
raw frame's in smoothed 4 x 4-pixel bins; and by radius: peaks per pixel of each
ring, where Debye-Scherrer rings stand out; the hexagonal-ice shells shaded on
both radial plots), the peaks of hits per resolution shell
(with the median d_min per hit), the recall per photon bin against the
simulator's truth (when the summary has it) and a table of the scalar figures.

The report draws the last snapshot it was given in :meth:`RunReport.on_tick`,
so the collector ticks once more with the final aggregates before closing.
It uses matplotlib's object API on an Agg canvas: no pyplot state, no display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monitor.outputs.builtin import to_builtin
from monitor.outputs.plot_data import (
    POWDER_BIN_PX, Curve, binned_powder, hit_rate_curve, ice_ring_shells, polar_powder, radial_curves,
)
from monitor.processing.protocol import ProcessedEvent
from monitor.processing.science import resolution_shell_labels

__all__ = ["RunReport", "flatten_figures"]

_TABLE_ROWS = 32
_RINGS_SHOWN_PX = 250


def flatten_figures(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested summary -> ``{"a.b": value}`` for the scalar figures (lists and arrays left out).

    >>> flatten_figures({"events": 3, "outputs": {"hits_written": 1}, "peaks": [1, 2]})
    {'events': 3, 'outputs.hits_written': 1}
    """
    flat: dict[str, Any] = {}
    for name, value in summary.items():
        if isinstance(value, dict):
            flat |= flatten_figures(value, f"{prefix}{name}.")
        elif not isinstance(value, (list, tuple, np.ndarray)):
            flat[f"{prefix}{name}"] = value
    return flat


class RunReport:
    """Writes the run's summary figures and plots when the run closes (a :class:`CollectorOutput`)."""

    def __init__(self) -> None:
        self._run_dir: Path | None = None
        self._status: dict[str, Any] = {}
        self._snapshot: dict[str, Any] = {}

    def open(self, *, run_dir: Path) -> None:
        self._run_dir = run_dir

    def on_result(self, result: ProcessedEvent) -> None:
        """Nothing per event: the report draws aggregates."""

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        self._status, self._snapshot = status, snapshot

    def close(self, *, summary: dict[str, Any]) -> None:
        if self._run_dir is None:
            return
        figures = {"run": self._run_dir.name, **summary, "last_status": self._status}
        (self._run_dir / "summary.json").write_text(json.dumps(figures, indent=2, default=to_builtin) + "\n")
        self._plot(figures).savefig(self._run_dir / "report.png", dpi=100)
        self._run_dir = None

    def _plot(self, figures: dict[str, Any]) -> Figure:
        figure = Figure(figsize=(24, 10))  # a fixed layout: "constrained" doubled the drawing (1.1 s, at every stop)
        figure.subplots_adjust(left=0.04, right=0.99, bottom=0.08, top=0.92, wspace=0.25, hspace=0.35)
        FigureCanvasAgg(figure)
        axes = figure.subplot_mosaic([["history", "profile", "powder", "rings"], ["shells", "recall", "table", "table"]])
        history_axes, profile_axes, table_axes = axes["history"], axes["profile"], axes["table"]
        figure.suptitle(f"Run {figures['run']}")
        history = hit_rate_curve(self._snapshot)
        _lines(history_axes, "Hit-rate history", "hit rate", [history] if history else [])
        _lines(profile_axes, "Mean radial profile", "intensity", radial_curves(self._snapshot))
        _mark_ice(profile_axes, ice_ring_shells(self._snapshot))
        self._powder(axes["powder"])
        self._rings(axes["rings"])
        self._shells(axes["shells"], figures.get("d_min_median_a"))
        _recall(axes["recall"], figures)
        table_axes.axis("off")
        rows = [f"{name}: {_format(value)}" for name, value in flatten_figures(figures).items()]
        if len(rows) > _TABLE_ROWS:
            rows = [*rows[: _TABLE_ROWS - 1], f"... {len(rows) - _TABLE_ROWS + 1} more in summary.json"]
        half = (len(rows) + 1) // 2  # two columns: the figure has a fixed layout, which a long column would overrun
        for x, column in ((0.0, rows[:half]), (0.5, rows[half:])):
            table_axes.text(x, 1.0, "\n".join(column), va="top", family="monospace", fontsize=9)
        return figure

    def _rings(self, axes: Axes) -> None:
        """The virtual powder around the beam: peaks per pixel of each ring, where Debye-Scherrer rings stand out."""
        axes.set(title="Virtual powder by radius (inner rings)", xlabel="radius (pixels)", ylabel="peaks per pixel")
        density = self._snapshot.get("powder_radial")
        if not (isinstance(density, np.ndarray) and density.ndim == 1 and density.any()):
            _not_available(axes)
            return
        inner = density[:_RINGS_SHOWN_PX]  # further out, a large cell's rings crowd into one band
        axes.plot(np.arange(inner.size), inner, linewidth=0.8)
        _mark_ice(axes, [shell for shell in ice_ring_shells(self._snapshot) if shell[0] < inner.size])

    def _shells(self, axes: Axes, d_min: Any) -> None:
        title = "Peaks of hits per resolution shell"
        axes.set(title=f"{title} (median d_min {d_min:.2f} A)" if isinstance(d_min, float) else title,
                 ylabel="peaks")
        counts, edges = self._snapshot.get("peaks_per_resolution_shell"), self._snapshot.get("resolution_shells_a")
        if not (isinstance(counts, np.ndarray) and isinstance(edges, np.ndarray) and counts.size == edges.size - 1):
            _not_available(axes)
            return
        axes.bar(resolution_shell_labels(edges.tolist()), counts)
        axes.set_xlabel("resolution (A)")
        axes.tick_params(axis="x", labelrotation=30)

    def _powder(self, axes: Axes) -> None:
        """The polar powder around the beam where the pipeline gives one (rings as circles across the
        module gap), else the raw frame's in smoothed bins: either way rings show over counting noise."""
        polar = polar_powder(self._snapshot)
        if polar is not None:
            binned, reach = polar, polar.shape[0] / 2
            axes.set(title="Virtual powder around the beam (1-pixel rings x 10-degree sectors)",
                     xlabel="x (pixels from the beam)", ylabel="y (pixels from the beam)")
            extent = (-reach, reach, -reach, reach)
        else:
            binned = binned_powder(self._snapshot)
            if binned is None:
                _not_available(axes)
                return
            axes.set(title=f"Virtual powder ({POWDER_BIN_PX} x {POWDER_BIN_PX} pixel bins, smoothed)",
                     xlabel="column", ylabel="row")
            extent = (0, binned.shape[1] * POWDER_BIN_PX, binned.shape[0] * POWDER_BIN_PX, 0)  # raw-frame pixels
        low, high = np.nanpercentile(binned, [1.0, 99.7])
        image = axes.imshow(binned, cmap="viridis", vmin=low, vmax=max(high, low + 1e-6), extent=extent,
                            origin="lower" if polar is not None else "upper")
        axes.figure.colorbar(image, ax=axes, label="peaks per pixel" if polar is not None else "peaks per bin")


def _recall(axes: Axes, figures: dict[str, Any]) -> None:
    """Recall per photon bin against the simulator's truth, with the precision and hit-rate error."""
    axes.set(title="Against the simulator's truth", ylabel="recall", ylim=(0, 1.05))
    bins, truth = figures.get("truth_recall_by_photons"), figures.get("truth")
    if not (isinstance(bins, dict) and bins and isinstance(truth, dict)):
        _not_available(axes)
        return
    axes.bar(list(bins), [value or 0.0 for value in bins.values()])
    axes.set_xlabel("photons per spot")
    axes.text(0.02, 0.02, f"precision {_format(truth.get('precision'))}, "
              f"hit-rate error {_format(truth.get('hit_rate_error_pp'))} pp", transform=axes.transAxes)


def _lines(axes: Axes, title: str, y_label: str, curves: list[Curve]) -> None:
    axes.set(title=title, ylabel=y_label)
    if not curves:
        _not_available(axes)
        return
    for curve in curves:
        axes.plot(curve.x, curve.y, label=curve.label)
    axes.set_xlabel(curves[0].x_label)
    if len(curves) > 1:
        axes.legend()


def _mark_ice(axes: Axes, shells: list[tuple[float, float]]) -> None:
    """Shade the hexagonal-ice shells (radius, pixels) on a radial plot, labelled once."""
    for k, (inner, outer) in enumerate(shells):
        axes.axvspan(inner, outer, color="tab:cyan", alpha=0.3, linewidth=0, label="ice rings" if k == 0 else None)
    if shells:
        axes.legend()


def _not_available(axes: Axes) -> None:
    axes.text(0.5, 0.5, "not available", transform=axes.transAxes, ha="center", va="center", color="grey")


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
