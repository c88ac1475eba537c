"""The end-of-run report: every summary figure in summary.json, the three plots in report.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from monitor.outputs.report import RunReport, flatten_figures
from monitor.outputs.synthetic import synthetic_snapshot


def test_summary_json_holds_every_figure_of_the_summary(tmp_path: Path) -> None:
    report = RunReport()
    report.open(run_dir=tmp_path)
    report.on_tick(status={"events_per_s": np.float64(812.5)}, snapshot=synthetic_snapshot(shape=(256, 256)))
    summary = {"events": np.int64(5000), "hit_rate": 0.125, "outputs": {"hits_written": 625}, "ranks": [1, 2]}
    report.close(summary=summary)

    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == {"run": tmp_path.name, "events": 5000, "hit_rate": 0.125, "outputs": {"hits_written": 625},
                       "ranks": [1, 2], "last_status": {"events_per_s": 812.5}}


def test_report_png_draws_history_powder_and_profile(tmp_path: Path) -> None:
    report = RunReport()
    report.open(run_dir=tmp_path)
    report.on_tick(status={}, snapshot=synthetic_snapshot(shape=(256, 256)))
    report.close(summary={"events": 1})
    full = imread(tmp_path / "report.png")
    assert full.shape[:2] == (1000, 1400)
    empty = RunReport()
    empty.open(run_dir=tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    empty.close(summary={"events": 1})  # nothing to plot: panels say so, the report is still written
    blank = imread(tmp_path / "empty" / "report.png")
    # the drawn curves and the powder image colour many more pixels than the "not available" panels
    assert (full[..., :3].std(axis=2) > 0.1).sum() > 20 * (blank[..., :3].std(axis=2) > 0.1).sum()


def test_flatten_figures_keeps_scalars_under_dotted_names() -> None:
    assert flatten_figures({"a": 1, "b": {"c": 2.5, "d": {"e": None}}, "f": np.zeros(3)}) == {
        "a": 1, "b.c": 2.5, "b.d.e": None}
