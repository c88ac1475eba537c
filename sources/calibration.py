"""JUNGFRAU calibration: raw uint16 frames to photons, with a validity mask.

Each raw pixel carries its gain stage in bits 14-15 (``00`` G0, ``01`` G1,
``11`` G2, ``10`` invalid) and its ADC value in bits 0-13; photons are
``(ADC - pedestal[g]) / (gain[g] * photon_energy_keV)`` with per-pixel maps.

The whole frame goes through one compiled pass: gain decoding, pedestal
subtraction, gain division and masking happen together, into buffers that are
allocated once.  (OM's three ``numpy.where`` passes cost 42 ms a frame here and
turn invalid-gain pixels into numbers; this costs about the memory traffic.)
A pixel is *invalid* when its gain bits are ``10``, when it reads ``0xFFFF``
(a lost packet) or when the bad-pixel mask flags it; invalid pixels read 0
photons and ``False`` in the mask, so no invented number reaches the science.

File formats, one file per module in module order (module ``i`` holds frame
rows ``512*i .. 512*i+511``):

* gain: PSI's raw little-endian float64 binary, six 512 x 1024 arrays
  G0, G1, G2, HG0, HG1, HG2 in ADU/keV (``high_gain`` picks the last three);
* pedestal: ``.npy``, float (3, 512, 1024), ADU per gain stage, as written by
  ``python -m monitor.dark``;
* noise (optional): ``.npy``, float (3, 512, 1024), each pixel's dark noise
  (ADU, standard deviation) per gain stage, written beside the pedestals by
  ``python -m monitor.dark``: :attr:`JungfrauCalibration.noise_photons` turns it
  into photons, and peakfinder8 sets its thresholds in units of it;
* bad-pixel mask (optional, whole detector): ``.npy`` (rows, 1024), nonzero = bad.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from monitor.errors import ConfigurationError
from sources.jungfrau1m import FrameBands

__all__ = ["CalibrationParameters", "JungfrauCalibration", "read_gain_file", "read_pedestal_file"]

MODULE_SHAPE = (512, 1024)
SATURATED = 0xC000
"""G2 with ADC 0: how a real JUNGFRAU marks a saturated pixel (still valid, and counted)."""
_GAIN_ARRAYS = 6


class CalibrationParameters(BaseModel):
    """Where the calibration files are and how to apply them."""

    model_config = ConfigDict(extra="forbid")

    gain_files: list[Path] = Field(min_length=1, description="PSI gain file per module, in module order")
    pedestal_files: list[Path] = Field(min_length=1, description="pedestal .npy per module, in module order")
    noise_files: list[Path] | None = Field(
        default=None, description="dark-noise .npy per module, in module order (peakfinder8's thresholds use it)"
    )
    mask_file: Path | None = Field(default=None, description="bad-pixel mask .npy for the whole detector")
    photon_energy_kev: PositiveFloat
    high_gain: bool = Field(default=False, description="use HG0, HG1, HG2 (detector run in high-gain G0)")


def read_gain_file(path: Path, *, high_gain: bool) -> np.ndarray:
    """One module's gain maps (3, 512, 1024), float64 ADU/keV, from a PSI gain file."""
    expected = _GAIN_ARRAYS * MODULE_SHAPE[0] * MODULE_SHAPE[1]
    try:
        values = np.fromfile(path, dtype="<f8")
    except OSError as error:
        raise ConfigurationError(f"cannot read gain file {path}: {error}") from error
    if values.size != expected:
        raise ConfigurationError(
            f"gain file {path} holds {values.size} float64 values, expected {expected} "
            f"(six {MODULE_SHAPE[0]}x{MODULE_SHAPE[1]} arrays G0, G1, G2, HG0, HG1, HG2)"
        )
    maps = values.reshape(_GAIN_ARRAYS, *MODULE_SHAPE)
    return maps[3:] if high_gain else maps[:3]


def read_pedestal_file(path: Path, *, what: str = "pedestal") -> np.ndarray:
    """One module's pedestals (or, ``what="noise"``, dark noise): (3, 512, 1024), ADU per gain stage, from ``.npy``."""
    try:
        pedestal = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read {what} file {path}: {error}") from error
    if pedestal.shape != (3, *MODULE_SHAPE):
        raise ConfigurationError(f"{what} file {path} has shape {pedestal.shape}, expected (3, 512, 1024)")
    return pedestal


def _read_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
    """The bad-pixel mask (True = bad), all good when no file is given."""
    if path is None:
        return np.zeros(shape, dtype=np.bool_)
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read bad-pixel mask {path}: {error}") from error
    if mask.shape != shape:
        raise ConfigurationError(f"bad-pixel mask {path} has shape {mask.shape}, expected {shape}")
    return mask != 0


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def _calibrate_g0_row(
    raw: np.ndarray, pedestal: np.ndarray, scale: np.ndarray, photons: np.ndarray, valid: np.ndarray,
) -> tuple[int, float, bool]:
    """One row as if every pixel were in G0, branch-free so that it runs on SIMD lanes.

    Returns (invalid pixels, photon sum of the valid ones, whether any pixel was *not* in G0: then
    the row is redone by the general path).  A pixel reading ``0xFFFF`` is not in G0 either.
    """
    others = 0
    invalid = 0
    total = np.float32(0.0)
    zero = np.float32(0.0)
    for j in range(raw.shape[0]):
        value = np.int32(raw[j])
        others |= value
        factor = scale[j]
        good = (value < 0x4000) & (factor != zero)
        photon = (np.float32(value & 0x3FFF) - pedestal[j]) * factor
        photon = photon if good else zero
        photons[j] = photon
        valid[j] = good
        total += photon
        invalid += not good
    return invalid, float(total), others >= 0x4000


@numba.njit(cache=True, nogil=True)
def _calibrate_rows(
    raw: np.ndarray,
    row0: int,
    pedestal: np.ndarray,
    scale: np.ndarray,
    photons: np.ndarray,
    valid: np.ndarray,
) -> tuple[int, int, float]:
    """Calibrate ``raw`` into rows ``row0..`` of ``photons``/``valid``.

    ``scale`` is ``1 / (gain * photon_energy_keV)``, with 0 where the
    bad-pixel mask flags the pixel: one array read serves both, which keeps the
    pass at the memory-traffic floor.  Gain bits ``10`` map to no stage.
    Nearly every row of a diffraction frame is all G0: it goes through
    :func:`_calibrate_g0_row` (3-4 times faster than asking each pixel its
    stage), and only a row holding a gain switch, a lost packet or an invalid
    gain is redone pixel by pixel.
    Returns (invalid pixels, saturated pixels ``0xC000``, photon sum of valid
    pixels): figures every pipeline wants, for free while the pixels are here.
    """
    invalid = 0
    saturated = 0
    total = 0.0
    rows, cols = raw.shape
    for i in range(rows):
        r = row0 + i
        row_invalid, row_total, switched = _calibrate_g0_row(raw[i], pedestal[0, r], scale[0, r], photons[r], valid[r])
        if not switched:
            invalid += row_invalid
            total += row_total
            continue
        for j in range(cols):
            value = np.int32(raw[i, j])
            bits = value >> 14
            stage = bits if bits < 2 else 2
            factor = scale[stage, r, j]
            if value == 0xFFFF or bits == 2 or factor == 0.0:
                photons[r, j] = 0.0
                valid[r, j] = False
                invalid += 1
            else:
                photon = (np.float32(value & 0x3FFF) - pedestal[stage, r, j]) * factor
                photons[r, j] = photon
                valid[r, j] = True
                total += photon
                saturated += value == SATURATED
    return invalid, saturated, total


class JungfrauCalibration:
    """Turns raw JUNGFRAU frames into photons and a validity mask.

    The returned arrays are buffers owned by this object and **reused by the
    next call**: copy what must outlive the event.  Construction reads the
    files once per rank.
    """

    def __init__(self, parameters: CalibrationParameters) -> None:
        if len(parameters.gain_files) != len(parameters.pedestal_files):
            raise ConfigurationError(
                f"calibration needs one gain and one pedestal file per module: got "
                f"{len(parameters.gain_files)} gain and {len(parameters.pedestal_files)} pedestal files"
            )
        if parameters.noise_files is not None and len(parameters.noise_files) != len(parameters.gain_files):
            raise ConfigurationError(
                f"calibration needs one noise file per module: got {len(parameters.noise_files)} noise files "
                f"for {len(parameters.gain_files)} modules"
            )
        n_modules = len(parameters.gain_files)
        shape = (n_modules * MODULE_SHAPE[0], MODULE_SHAPE[1])
        gain = np.concatenate(
            [read_gain_file(path, high_gain=parameters.high_gain) for path in parameters.gain_files], axis=1
        )
        pedestal = np.concatenate([read_pedestal_file(path) for path in parameters.pedestal_files], axis=1)
        noise = None
        if parameters.noise_files is not None:
            noise = np.concatenate([read_pedestal_file(path, what="noise") for path in parameters.noise_files], axis=1)
        self._setup(pedestal, gain * parameters.photon_energy_kev, _read_mask(parameters.mask_file, shape), noise)

    @classmethod
    def from_maps(
        cls, *, pedestal: np.ndarray, gain: np.ndarray, photon_energy_kev: float, bad_pixels: np.ndarray | None = None,
        noise: np.ndarray | None = None,
    ) -> JungfrauCalibration:
        """From maps in memory: pedestal (ADU), gain (ADU/keV) and optional dark noise (ADU), all
        (3, rows, 1024); bad_pixels True = bad.

        For maps that never were files, such as a simulated detector's truth.
        """
        if pedestal.shape != gain.shape or pedestal.ndim != 3 or pedestal.shape[0] != 3:
            raise ValueError(f"pedestal {pedestal.shape} and gain {gain.shape} must both be (3, rows, cols)")
        shape = pedestal.shape[1:]
        self = cls.__new__(cls)
        bad = np.zeros(shape, dtype=np.bool_) if bad_pixels is None else np.asarray(bad_pixels, dtype=np.bool_)
        if noise is not None and noise.shape != pedestal.shape:
            raise ValueError(f"noise {noise.shape} must have the pedestal's shape {pedestal.shape}")
        self._setup(pedestal, gain * photon_energy_kev, bad, noise)
        return self

    @classmethod
    def adc_only(cls, *, n_modules: int = 2) -> JungfrauCalibration:
        """No calibration: the ADC value (bits 0-13) as is, with the same masking of invalid pixels.

        For when calibration is switched off: pipelines still get float32
        values and a mask, from the same single pass.
        """
        shape = (n_modules * MODULE_SHAPE[0], MODULE_SHAPE[1])
        self = cls.__new__(cls)
        self._setup(np.zeros((3, *shape)), np.ones((3, *shape)), np.zeros(shape, dtype=np.bool_))
        return self

    def _setup(
        self, pedestal: np.ndarray, adu_per_photon: np.ndarray, bad_pixels: np.ndarray, noise: np.ndarray | None = None
    ) -> None:
        """Keep the maps in the form the kernel reads: float32 pedestal, and 1/gain with 0 for bad pixels;
        the G0 noise in photons beside them."""
        self.shape = bad_pixels.shape
        self.pedestal = np.ascontiguousarray(pedestal, dtype=np.float32)
        self.bad_pixels = bad_pixels
        with np.errstate(divide="ignore"):
            scale = 1.0 / adu_per_photon
        unusable = ~np.isfinite(scale) | bad_pixels[None]
        self._scale = np.where(unusable, 0.0, scale).astype(np.float32)
        self.noise_photons = None if noise is None else (np.abs(noise[0]) * self._scale[0]).astype(np.float32)
        """Each pixel's dark noise in G0, in photons (0 for bad pixels), or None when no noise map was given.

        G0 is where weak signals live: a pixel switches gain only well above 20 photons."""
        self._photons = np.zeros(self.shape, dtype=np.float32)
        self._valid = np.zeros(self.shape, dtype=np.bool_)
        self.n_invalid = 0
        """Invalid pixels in the last calibrated frame."""
        self.n_saturated = 0
        """Saturated pixels (raw ``0xC000``) in the last calibrated frame."""
        self.photon_sum = 0.0
        """Sum of the valid pixels of the last calibrated frame."""

    def calibrate(self, raw: np.ndarray | FrameBands | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Photons (float32) and mask (bool, True = valid) of one raw frame.

        ``raw`` is the whole uint16 frame, its :class:`FrameBands` (the
        ``detector_modules`` source: views on the received message parts, so
        the frame is assembled by this pass, not by a copy before it), or a
        sequence of per-module uint16 (512, 1024) arrays in module order.  Both
        results are reused buffers: valid until the next call.
        """
        if isinstance(raw, np.ndarray):
            self._check(raw, self.shape, "raw frame")
            parts = [(raw, 0)]
        elif isinstance(raw, FrameBands):
            if raw.shape != self.shape:
                raise ValueError(f"raw frame has shape {raw.shape}, expected {self.shape}")
            for row0, band in raw.bands:
                self._check(band, (band.shape[0], self.shape[1]), f"rows {row0}-{row0 + band.shape[0] - 1}")
            parts = [(band, row0) for row0, band in raw.bands]
        else:
            if len(raw) != self.shape[0] // MODULE_SHAPE[0]:
                raise ValueError(f"expected {self.shape[0] // MODULE_SHAPE[0]} module arrays, got {len(raw)}")
            for module, part in enumerate(raw):
                self._check(part, MODULE_SHAPE, f"module {module}")
            parts = [(part, module * MODULE_SHAPE[0]) for module, part in enumerate(raw)]
        self.n_invalid = self.n_saturated = 0
        self.photon_sum = 0.0
        for part, row0 in parts:
            invalid, saturated, total = _calibrate_rows(
                part, row0, self.pedestal, self._scale, self._photons, self._valid
            )
            self.n_invalid += invalid
            self.n_saturated += saturated
            self.photon_sum += total
        return self._photons, self._valid

    @staticmethod
    def _check(raw: np.ndarray, shape: tuple[int, int], what: str) -> None:
        if raw.dtype != np.uint16:
            raise TypeError(f"{what} must be uint16, got {raw.dtype}")
        if raw.shape != shape:
            raise ValueError(f"{what} has shape {raw.shape}, expected {shape}")
