"""The radial passes' two kernels: the quiet-pixel one (spot finder) sums exactly what asking every pixel sums."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.processing.radial_search import RadialPasses, bin_moments, box_photons


def _frame(shape: tuple[int, int], background: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photons with noise, Bragg-like bright pixels, invalid pixels (some holding junk), NaN, and each
    pixel's ring around an off-centre beam."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    data = (rng.poisson(background, shape) + rng.normal(0.0, 0.08, shape)).astype(np.float32)
    data[rng.integers(0, rows, 60), rng.integers(0, cols, 60)] += rng.uniform(3, 400, 60).astype(np.float32)
    mask = rng.random(shape) > 0.002
    mask[7, :] = False  # a lost row
    data[~mask] = rng.choice([0.0, 5.0, -3.0], size=int((~mask).sum())).astype(np.float32)
    data[11, 13] = np.nan
    mask[11, 13] = False
    data[20, 30] = np.nan  # and one a source called valid: never summed
    y, x = np.mgrid[0:rows, 0:cols]
    bins = np.rint(np.hypot(y - 0.4 * rows, x - 0.55 * cols)).astype(np.uint16)
    return data, mask, bins


def _passes(bins: np.ndarray, broad: bool) -> RadialPasses:
    return RadialPasses(bins, min_res=0.0, max_res=1e4, broad_windows=broad)


def _moments(passes: RadialPasses) -> np.ndarray:
    return np.array([bin_moments(passes.acc, b) for b in range(passes.acc.shape[2])])


@pytest.mark.parametrize("shape", [(256, 1024), (130, 1030)], ids=["jungfrau-width", "eiger-width"])
@pytest.mark.parametrize("background", [0.001, 0.05, 0.5])
def test_quiet_pixel_kernel_sums_counts_and_seeds_as_asking_every_pixel(
    shape: tuple[int, int], background: float
) -> None:
    data, mask, bins = _frame(shape, background, seed=int(background * 1000))
    floor = np.full(shape, 0.5, np.float32)
    floor[3, :] = 2.0  # a noisy row: its own, higher floor
    quiet, each = _passes(bins, True), _passes(bins, False)
    windows: dict[int, list[np.ndarray]] = {id(quiet): [], id(each): []}

    def clip(passes: RadialPasses) -> None:
        """A broad window as the spot finder sets it, the same for both kernels."""
        moments = _moments(passes)
        reach = np.where(moments[:, 0] > 0, 1.5 + 5 * np.sqrt(moments[:, 2]), np.inf)
        passes.window[:, 0] = moments[:, 1] - reach
        passes.window[:, 1] = moments[:, 1] + reach
        windows[id(passes)].append(passes.window.copy())

    n_quiet = quiet.run(data, mask, floor=floor, least_floor=0.5, iterations=3, row_step=4,
                        update=lambda last: clip(quiet), asic_shape=shape)
    n_each = each.run(data, mask, floor=floor, least_floor=0.5, iterations=3, row_step=4,
                      update=lambda last: clip(each))

    for quiet_window, each_window in zip(windows[id(quiet)], windows[id(each)], strict=True):
        np.testing.assert_allclose(quiet_window, each_window, rtol=1e-5)  # every pass clips alike
    np.testing.assert_allclose(_moments(quiet), _moments(each), rtol=1e-9, atol=1e-9)
    assert n_quiet == n_each > 0
    np.testing.assert_array_equal(quiet.seeds[:n_quiet], each.seeds[:n_each])
    for k, seed in enumerate(quiet.seeds[:n_quiet]):
        i, j = divmod(int(seed), shape[1])
        assert mask[i, j] and data[i, j] > floor[i, j] and quiet.seed_rings[k] == bins[i, j]
        np.testing.assert_allclose(quiet.seed_boxes[k], box_photons(data, mask, i, j, 0, shape[0], 0, shape[1]),
                                   rtol=1e-5, atol=1e-4)


def test_last_pass_without_spread_keeps_sums_and_counts() -> None:
    data, mask, bins = _frame((128, 1024), 0.02, seed=3)
    floor = np.full(data.shape, 0.5, np.float32)
    with_spread, without = _passes(bins, True), _passes(bins, True)
    for passes, spread in ((with_spread, True), (without, False)):
        passes.run(data, mask, floor=floor, least_floor=0.5, iterations=1, row_step=1,
                   update=lambda last: None, spread_last=spread)
    np.testing.assert_allclose(without.acc[0], with_spread.acc[0], rtol=1e-12)
    np.testing.assert_array_equal(without.acc[2], with_spread.acc[2])
    assert not without.acc[1].any()
