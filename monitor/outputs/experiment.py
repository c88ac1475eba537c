"""What a run's hit files must say about the experiment: photon energy, detector distance, geometry.

CrystFEL needs the photon energy and the detector distance of every frame.
They come from what the run itself used, never from a hard-coded line: the
photon energy from the calibration (its ``photon_energy_kev``, or the
simulated detector's energy), the distance and the panels from the geometry
file the pipeline read (``processing_layer.geometry_file``, the shipped
JUNGFRAU 1M when absent).  Both ranks that write hits (workers, or the
collector) and the collector that writes the run's geometry resolve them the
same way, from the configuration document every rank holds.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.errors import ConfigurationError
from sources.geometry import DetectorGeometry, default_geometry_path, global_value

__all__ = ["Experiment", "experiment_from_document"]


@dataclass(frozen=True)
class Experiment:
    """The run's constants written beside every frame."""

    photon_energy_ev: float
    detector_distance_m: float
    geometry_path: Path


def _simulator_photon_energy_kev() -> float:
    """The simulated detector's energy: ``SimulatedCalibration`` always builds it with the default."""
    from monitor.simulation import SimulatedJungfrau1M

    return float(inspect.signature(SimulatedJungfrau1M).parameters["photon_energy_kev"].default)


def experiment_from_document(document: Mapping[str, Any] | None) -> Experiment:
    """The experiment of the configuration ``document`` (the YAML as plain data).

    Raises :class:`ConfigurationError` naming what is missing when neither the
    calibration nor the geometry gives a photon energy, or the geometry no
    numeric ``clen``.
    """
    processing = dict((document or {}).get("processing_layer") or {})
    geometry_path = Path(processing.get("geometry_file") or default_geometry_path())
    calibration = processing.get("calibration") or {}
    if "photon_energy_kev" in calibration:
        photon_energy_ev = 1000.0 * float(calibration["photon_energy_kev"])
    elif "simulator_seed" in calibration:
        photon_energy_ev = 1000.0 * _simulator_photon_energy_kev()
    else:
        photon_energy_ev = _number(geometry_path, "photon_energy", "processing_layer.calibration.photon_energy_kev")
    clen_m = DetectorGeometry.from_crystfel(geometry_path).clen_m
    if clen_m is None:
        raise ConfigurationError(f"geometry {geometry_path}: hit files need a numeric clen (detector distance, m)")
    return Experiment(photon_energy_ev=photon_energy_ev, detector_distance_m=clen_m, geometry_path=geometry_path)


def _number(geometry_path: Path, key: str, alternative: str) -> float:
    value = global_value(geometry_path, key)
    try:
        return float((value or "").split()[0])
    except (ValueError, IndexError):
        raise ConfigurationError(
            f"hit files need a photon energy: set {alternative}, or a numeric {key} in {geometry_path}"
        ) from None
