"""The end-of-run report: every summary figure in summary.json, the plots in report.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from monitor.outputs.plot_data import binned_powder, polar_powder
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


def test_powder_is_binned_and_smoothed_so_that_a_faint_ring_shows() -> None:
    """A ring of 0.1 peaks a pixel over 0.03 elsewhere: 0.4 sigma a pixel, several sigma a smoothed bin."""
    rng = np.random.default_rng(0)
    rows, cols = np.indices((512, 512))
    on_ring = np.abs(np.hypot(rows - 255.5, cols - 255.5) - 150) < 2
    powder = (rng.random((512, 512)) < np.where(on_ring, 0.1, 0.03)).astype(np.uint32)
    binned = binned_powder({"powder": powder})
    assert binned.shape == (128, 128) and binned.sum() == pytest.approx(powder.sum(), rel=0.01)
    ring_bins = on_ring.reshape(128, 4, 128, 4).mean(axis=(1, 3)) > 0.4

    def contrast(image: np.ndarray, ring: np.ndarray) -> float:
        return float((image[ring].mean() - image[~ring].mean()) / image[~ring].std())

    print(f"\nring contrast: {contrast(powder, on_ring):.2f} sigma a pixel, {contrast(binned, ring_bins):.2f} a bin")
    assert contrast(binned, ring_bins) > 4 * contrast(powder, on_ring)


def test_report_shades_the_ice_ring_shells_on_the_radial_plots(tmp_path: Path) -> None:
    snapshot = synthetic_snapshot(shape=(256, 256))
    pictures = {}
    for name, shells in (("plain", np.empty((0, 2))), ("ice", np.array([[40.0, 48.0], [60.0, 66.0]]))):
        report = RunReport()
        (tmp_path / name).mkdir()
        report.open(run_dir=tmp_path / name)
        report.on_tick(status={}, snapshot={**snapshot, "ice_ring_shells_px": shells})
        report.close(summary={"events": 1})
        pictures[name] = imread(tmp_path / name / "report.png")[..., :3]
    shade = np.array([0.73, 0.92, 0.94])  # tab:cyan at alpha 0.3 on white

    def shaded(picture: np.ndarray) -> int:
        return int((np.abs(picture - shade).max(axis=2) < 0.03).sum())

    assert shaded(pictures["ice"]) > 2000 > shaded(pictures["plain"])


def test_polar_powder_draws_each_ring_and_sector_at_its_density() -> None:
    counts, pixels = np.zeros((300, 36), np.uint32), np.full((300, 36), 10, np.uint32)
    counts[100] = 5  # a ring of 0.5 peaks a pixel at 100 pixels
    pixels[:, 0] = 0  # a sector the detector does not cover
    image = polar_powder({"powder_polar": counts, "powder_polar_pixels": pixels}, reach_px=128)
    assert image.shape == (256, 256)
    y, x = np.mgrid[-128:128, -128:128] + 0.5
    ring = np.rint(np.hypot(x, y)) == 100
    covered = np.isfinite(image)
    assert (image[ring & covered] == 0.5).all() and (image[~ring & covered] == 0).all()
    assert 0 < (~covered).mean() < 1 / 30  # the uncovered sector, 10 degrees of 360
