"""Simulated detectors: pixel content with a known ground truth.

:mod:`monitor.simulation.detector` makes JUNGFRAU 1M raw frames (pedestals,
gains, gain switching, noise, background, dead pixels, lost packets) with the
Bragg spots of a crystal lattice from :mod:`monitor.simulation.crystal`, and says
exactly what it put in them, so the science can be checked against the truth.
"""

from monitor.simulation.detector import FrameTruth, PeakTruth, SimulatedJungfrau1M

__all__ = ["FrameTruth", "PeakTruth", "SimulatedJungfrau1M"]
