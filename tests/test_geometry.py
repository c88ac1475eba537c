"""CrystFEL geometry: pixel positions, radii, assembled images, peak positions in the lab."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.errors import ConfigurationError
from monitor.simulation import SimulatedJungfrau1M
from sources.geometry import DetectorGeometry, default_geometry_path


@pytest.fixture(scope="module")
def geometry() -> DetectorGeometry:
    return DetectorGeometry.from_crystfel(default_geometry_path())


def test_default_geometry_is_two_modules_of_75_um_pixels(geometry: DetectorGeometry) -> None:
    assert geometry.frame_shape == (1024, 1024)
    assert geometry.pixel_size_m == pytest.approx(75e-6)
    assert geometry.clen_m == pytest.approx(0.12)
    np.testing.assert_array_equal(np.unique(geometry.panel_index[:512]), [0])
    np.testing.assert_array_equal(np.unique(geometry.panel_index[512:]), [1])


def test_module_0_is_above_module_1_with_a_36_pixel_gap(geometry: DetectorGeometry) -> None:
    assert geometry.y[0, 0] == pytest.approx(529.5) and geometry.y[511, 0] == pytest.approx(18.5)
    assert geometry.y[512, 0] == pytest.approx(-18.5)
    assert geometry.y[511, 0] - geometry.y[512, 0] == pytest.approx(37.0)
    assert geometry.x[0, 0] == pytest.approx(-511.5) and geometry.x[0, 1023] == pytest.approx(511.5)


def test_beam_is_at_the_detector_centre(geometry: DetectorGeometry) -> None:
    assert geometry.radius.min() == pytest.approx(np.hypot(0.5, 18.5), abs=1e-4)
    assert geometry.x.mean() == pytest.approx(0, abs=1e-3) and geometry.y.mean() == pytest.approx(0, abs=1e-3)


def test_radius_matches_the_simulator_layout(geometry: DetectorGeometry) -> None:
    simulator = SimulatedJungfrau1M(pool_size=1)
    np.testing.assert_allclose(geometry.radius, simulator.radius, atol=1e-3)


def test_assembled_image_places_pixels_and_leaves_the_gap_empty(geometry: DetectorGeometry) -> None:
    frame = np.arange(1024 * 1024, dtype=np.float32).reshape(1024, 1024)
    image = geometry.assemble(frame)
    assert image.shape == (1060, 1024)
    assert image[0, 0] == frame[0, 0] and image[511, 1023] == frame[511, 1023]
    assert np.isnan(image[512:548]).all()
    assert image[548, 5] == frame[512, 5] and image[-1, -1] == frame[-1, -1]
    assert np.isfinite(image).sum() == 1024 * 1024


def test_lab_position_of_fractional_peaks_follows_the_panel(geometry: DetectorGeometry) -> None:
    x, y = geometry.lab_position(np.array([0.0, 600.25]), np.array([511.5, 100.0]))
    np.testing.assert_allclose(x, [0.0, 100 - 511.5])
    np.testing.assert_allclose(y, [529.5, -18.5 - 88.25])
    row, col = geometry.image_position(np.array([600.25]), np.array([100.0]))
    np.testing.assert_allclose([row[0], col[0]], [600.25 + 36, 100.0])


def test_missing_geometry_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="nothing.geom"):
        DetectorGeometry.from_crystfel(tmp_path / "nothing.geom")
