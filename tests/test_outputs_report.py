"""The end-of-run report: every summary figure in summary.json, the plots in report.png."""

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
    assert full.shape[:2] == (1000, 2400)
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


def test_report_draws_resolution_shells_and_recall_against_the_truth(tmp_path: Path) -> None:
    snapshot = synthetic_snapshot(shape=(256, 256))
    plain = RunReport()
    plain.open(run_dir=tmp_path / "plain")
    (tmp_path / "plain").mkdir()
    plain.on_tick(status={}, snapshot=snapshot)
    plain.close(summary={"events": 1})
    science = RunReport()
    science.open(run_dir=tmp_path / "science")
    (tmp_path / "science").mkdir()
    shells = np.array([np.inf, 10.0, 6.0, 4.0, 3.0, 0.0])
    science.on_tick(status={}, snapshot={**snapshot, "resolution_shells_a": shells,
                                         "peaks_per_resolution_shell": np.array([50, 120, 300, 200, 40])})
    science.close(summary={"events": 1, "d_min_median_a": 3.1, "truth": {"precision": 0.99, "hit_rate_error_pp": 0.0},
                           "truth_recall_by_photons": {"<5": 0.1, "5-10": 0.97, ">10": 1.0}})
    drawn = [(imread(tmp_path / name / "report.png")[..., :3].std(axis=2) > 0.1).sum() for name in ("plain", "science")]
    assert drawn[1] > drawn[0] + 20_000  # two bar charts where the plain report says "not available"
    assert json.loads((tmp_path / "science" / "summary.json").read_text())["truth"]["precision"] == 0.99
