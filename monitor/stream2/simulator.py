"""A simulated DECTRIS EIGER2 on Stream V2: ``python -m monitor.stream2.simulator``.

It binds a PUSH socket as a DCU does and sends one series: a start message
(geometry, energy, channels, a 32-bit pixel mask with the module gaps and a
few dead and noisy pixels), one image message per exposure, and an end
message.  Images hold the crystal simulator's Bragg spots
(:class:`monitor.simulation.crystal.CrystalModel`, the lysozyme crystal of the
JUNGFRAU simulator) in counts, each photon placed by its spot's profile, over
a flat background; masked pixels read the no-data value, bright pixels stop
at the saturation value.  ``--flavour jungfraujoch`` sends PSI Jungfraujoch's
variant: bitshuffle+Zstd, one ``default`` channel, ``detector_distance``, and
its extra ``calibration`` and ``metadata`` messages.

Every image is deterministic in ``(seed, image_id)``; ``--truth FILE`` records
one JSON line per image sent (``frame_number``, ``is_hit``, spots on the
detector).  SIGTERM or SIGINT ends the series early; the end message still goes out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cbor2
import numpy as np
import zmq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.endpoints import Endpoint
from monitor.simulated_sending import STOP, exit_with_parent, paced
from monitor.simulation.crystal import CrystalChoice, CrystalModel, crystal_from_text, crystal_settings, crystal_to_text
from monitor.stream2.cbor import Compression, encode_array, nodata_of

__all__ = ["EIGER2_MODELS", "Stream2SimulatorParameters", "SimulatedEiger2", "main"]

MODULE_SHAPE = (512, 1028)
"""An EIGER2 module: rows, columns."""
MODULE_GAP = (38, 12)
"""Gap pixels between modules: rows (vertical), columns (horizontal)."""
EIGER2_MODELS: dict[str, tuple[int, int]] = {"500K": (1, 1), "1M": (2, 1), "4M": (4, 2), "9M": (6, 3), "16M": (8, 4)}
"""Modules (rows, columns) of each EIGER2 model; 4M is 2162 x 2068 pixels, 16M 4362 x 4148."""
PIXEL_SIZE_M = 75e-6
GAP_BIT, DEAD_BIT, NOISY_BIT = 1 << 0, 1 << 1, 1 << 4
_BACKGROUND_PHOTONS = 0.005
"""Flat background, photons per pixel and image (the JUNGFRAU simulator's)."""


class Stream2SimulatorParameters(BaseModel):
    """What to simulate and where to send it (the YAML ``simulator`` section of a Stream V2 handler)."""

    model_config = ConfigDict(extra="forbid")

    url: Endpoint = "tcp://127.0.0.1:31001"
    detector: Literal["500K", "1M", "4M", "9M", "16M"] = "4M"
    frames: int = Field(default=1000, ge=0)
    rate_hz: float = Field(default=200.0, gt=0)
    dtype: Literal["uint8", "uint16", "uint32"] = "uint32"
    compression: Compression = "bslz4"
    channels: Literal[1, 2] = 1
    """Two: ``threshold_1`` (every photon) and ``threshold_2`` (a high threshold: a few)."""
    flavour: Literal["dectris", "jungfraujoch"] = "dectris"
    series_id: int = Field(default=1, ge=0)
    seed: int = 0
    hit_fraction: float = Field(default=0.25, ge=0, le=1)
    crystal: CrystalChoice = "medium"
    distance_m: float = Field(default=0.12, gt=0)
    photon_energy_ev: float = Field(default=12400.0, gt=0)
    truth_file: Path | None = None

    @model_validator(mode="after")
    def _jungfraujoch_compresses_with_bitshuffle(self) -> Stream2SimulatorParameters:
        if self.flavour == "jungfraujoch" and self.compression not in ("bslz4", "bszstd"):
            raise ValueError(f"Jungfraujoch sends bslz4 or bszstd, not {self.compression}")
        return self

    def command_line(self) -> list[str]:
        """The arguments that make ``python -m monitor.stream2.simulator`` run these parameters."""
        args = ["--url", self.url, "--detector", self.detector, "--frames", str(self.frames),
                "--rate", str(self.rate_hz), "--dtype", self.dtype, "--compression", self.compression,
                "--channels", str(self.channels), "--flavour", self.flavour, "--series-id", str(self.series_id),
                "--seed", str(self.seed), "--hit-fraction", str(self.hit_fraction),
                "--crystal", crystal_to_text(self.crystal), "--distance", str(self.distance_m),
                "--energy", str(self.photon_energy_ev)]
        return args + (["--truth", str(self.truth_file)] if self.truth_file is not None else [])


@dataclass(frozen=True)
class _Image:
    counts: dict[str, np.ndarray]
    is_hit: bool
    spots: int


class SimulatedEiger2:
    """Images of an EIGER2 with a crystal in the beam, deterministic in ``(seed, image_id)``."""

    def __init__(self, parameters: Stream2SimulatorParameters) -> None:
        self.parameters = p = parameters
        rows, cols = EIGER2_MODELS[p.detector]
        self.shape = (rows * MODULE_SHAPE[0] + (rows - 1) * MODULE_GAP[0],
                      cols * MODULE_SHAPE[1] + (cols - 1) * MODULE_GAP[1])
        self.beam_center_px = (self.shape[1] / 2, self.shape[0] / 2)
        self.dtype = np.dtype(p.dtype)
        self.nodata = nodata_of(self.dtype)
        self.saturation = min(int(np.iinfo(self.dtype).max) - 1, 10_000_000)
        self.mask = self._pixel_mask(rows, cols)
        self._invalid = self.mask != 0
        self._empty = np.where(self._invalid, self.nodata, 0).astype(self.dtype)
        """An image without photons: each image starts as a copy of it (a copy is faster than masking)."""
        self.channels = ("default",) if p.flavour == "jungfraujoch" else (
            ("threshold_1", "threshold_2")[: p.channels])
        corner = math.hypot(*self.shape) / 2 + 1
        self.crystal = CrystalModel(
            crystal_settings(p.crystal), photon_energy_kev=p.photon_energy_ev / 1000, distance_m=p.distance_m,
            pixel_size_m=PIXEL_SIZE_M, max_radius_px=corner, seed=p.seed,
            on_detector=lambda y, x: self._on_detector(*self._raw(y, x)),
        )

    def _pixel_mask(self, rows: int, cols: int) -> np.ndarray:
        """Gaps between modules (bit 0), a few dead (bit 1) and noisy (bit 4) pixels, as a DCU sends it."""
        mask = np.zeros(self.shape, dtype=np.uint32)
        for k in range(1, rows):
            top = k * MODULE_SHAPE[0] + (k - 1) * MODULE_GAP[0]
            mask[top : top + MODULE_GAP[0]] |= GAP_BIT
        for k in range(1, cols):
            left = k * MODULE_SHAPE[1] + (k - 1) * MODULE_GAP[1]
            mask[:, left : left + MODULE_GAP[1]] |= GAP_BIT
        rng = np.random.default_rng([self.parameters.seed, 0xEE])
        flat = mask.ravel()
        chosen = rng.choice(flat.size, size=2 * (flat.size // 10_000), replace=False)
        flat[chosen[: chosen.size // 2]] |= DEAD_BIT
        flat[chosen[chosen.size // 2 :]] |= NOISY_BIT
        return mask

    def _raw(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (row, column) of lab positions (pixels from the beam; y down the detector)."""
        return y + self.beam_center_px[1] - 0.5, x + self.beam_center_px[0] - 0.5

    def _on_detector(self, row: np.ndarray, col: np.ndarray) -> np.ndarray:
        r, c = np.rint(row).astype(np.intp), np.rint(col).astype(np.intp)
        inside = (r >= 0) & (r < self.shape[0]) & (c >= 0) & (c < self.shape[1])
        inside[inside] = ~self._invalid[r[inside], c[inside]]
        return inside

    def image(self, image_id: int) -> _Image:
        """One exposure's counts per channel (uint, ``nodata`` where masked) and its truth."""
        p = self.parameters
        rng = np.random.default_rng([p.seed, image_id])
        is_hit = bool(rng.random() < p.hit_fraction)
        size = self.shape[0] * self.shape[1]
        pixels = [rng.integers(0, size, rng.poisson(_BACKGROUND_PHOTONS * size))]
        spots = 0
        if is_hit:
            drawn = self.crystal.spots(rng)
            row, col = self._raw(drawn.y, drawn.x)
            landed = self._on_detector(row, col)
            spots = int(np.count_nonzero(landed))
            photons = rng.poisson(drawn.photons[landed])
            each = np.repeat(np.arange(spots), photons)
            r = np.rint(row[landed][each] + rng.standard_normal(each.size) * drawn.sigma_y[landed][each])
            c = np.rint(col[landed][each] + rng.standard_normal(each.size) * drawn.sigma_x[landed][each])
            inside = (r >= 0) & (r < self.shape[0]) & (c >= 0) & (c < self.shape[1])
            pixels.append(r[inside].astype(np.int64) * self.shape[1] + c[inside].astype(np.int64))
        where, counts = np.unique(np.concatenate(pixels), return_counts=True)
        read = ~self._invalid.ravel()[where]
        where, counts = where[read], np.minimum(counts[read], self.saturation)
        first = self._empty.copy()
        first.ravel()[where] = counts
        channels = {self.channels[0]: first}
        if len(self.channels) == 2:  # a threshold above the photon energy: a few counts (pile-up)
            second = self._empty.copy()
            second.ravel()[where] = rng.binomial(counts, 0.02)
            channels[self.channels[1]] = second
        return _Image(channels, is_hit, spots)


def start_message(detector: SimulatedEiger2, unique_id: str) -> dict[str, Any]:
    """The series' start message (DECTRIS' fields; Jungfraujoch's where its flavour differs)."""
    p = detector.parameters
    message: dict[str, Any] = {
        "type": "start", "series_id": p.series_id, "series_unique_id": unique_id,
        "arm_date": cbor2.CBORTag(0, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        "beam_center_x": detector.beam_center_px[0], "beam_center_y": detector.beam_center_px[1],
        "channels": list(detector.channels), "count_time": 1 / p.rate_hz, "frame_time": 1 / p.rate_hz,
        "countrate_correction_enabled": False, "flatfield_enabled": False,
        "detector_description": f"Dectris EIGER2 Si {p.detector} (simulated)", "detector_serial_number": "E-SIM",
        "image_dtype": p.dtype, "image_size_x": detector.shape[1], "image_size_y": detector.shape[0],
        "incident_energy": p.photon_energy_ev, "incident_wavelength": 12398.419843320026 / p.photon_energy_ev,
        "number_of_images": p.frames, "pixel_mask_enabled": True,
        "pixel_mask": {channel: encode_array(detector.mask, p.compression) for channel in detector.channels},
        "pixel_size_x": PIXEL_SIZE_M, "pixel_size_y": PIXEL_SIZE_M, "saturation_value": detector.saturation,
        "sensor_material": "Si", "sensor_thickness": 450e-6,
        "threshold_energy": {channel: p.photon_energy_ev / 2 * (k + 1) for k, channel in enumerate(detector.channels)},
        "virtual_pixel_interpolation_enabled": True,
    }
    if p.flavour == "jungfraujoch":
        message["detector_distance"] = p.distance_m
    else:
        message["detector_translation"] = [0.0, 0.0, p.distance_m]
    return message


def image_message(detector: SimulatedEiger2, image_id: int, image: _Image, unique_id: str,
                  series_date: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    """One exposure's message; its times count from ``series_date`` (RFC 3339), in 100 ns ticks."""
    p = detector.parameters
    ticks = int(1e7 / p.rate_hz)
    return {
        "type": "image", "series_id": p.series_id, "series_unique_id": unique_id, "image_id": image_id,
        "series_date": cbor2.CBORTag(0, series_date),
        "real_time": [ticks, 10_000_000], "start_time": [image_id * ticks, 10_000_000],
        "stop_time": [(image_id + 1) * ticks, 10_000_000],
        "data": {channel: encode_array(counts, p.compression) for channel, counts in image.counts.items()},
    }


def run_simulator(parameters: Stream2SimulatorParameters) -> int:
    """Send one series; return the images sent."""
    detector = SimulatedEiger2(parameters)
    detector.image(0)  # draw once before the clock starts (the crystal's first spots compile nothing, but warm)
    unique_id = str(uuid.uuid4())
    series_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    jungfraujoch = parameters.flavour == "jungfraujoch"
    sent = 0
    with zmq.Context() as context, context.socket(zmq.PUSH) as socket:
        socket.setsockopt(zmq.LINGER, 5000)
        socket.bind(parameters.url)
        truth = parameters.truth_file.open("w") if parameters.truth_file is not None else None
        try:
            socket.send(cbor2.dumps(start_message(detector, unique_id)))
            if jungfraujoch:
                socket.send(cbor2.dumps({"type": "calibration", "series_id": parameters.series_id,
                                         "data": {"pedestal_g0": encode_array(np.zeros(8, np.uint16))}}))
            for image_id in paced(parameters.frames, parameters.rate_hz, 0):
                image = detector.image(image_id)
                socket.send(cbor2.dumps(image_message(detector, image_id, image, unique_id, series_date)))
                sent += 1
                if truth is not None:
                    truth.write(json.dumps({"frame_number": image_id, "is_hit": image.is_hit,
                                            "spots": image.spots}) + "\n")
                    truth.flush()
                if jungfraujoch and image_id % 100 == 99:
                    socket.send(cbor2.dumps({"type": "metadata", "series_id": parameters.series_id,
                                             "images": list(range(image_id - 99, image_id + 1))}))
            socket.send(cbor2.dumps({"type": "end", "series_id": parameters.series_id,
                                     "series_unique_id": unique_id}))
        finally:
            if truth is not None:
                truth.close()
    return sent


def _arguments(argv: list[str] | None) -> Stream2SimulatorParameters:
    parser = argparse.ArgumentParser(prog="python -m monitor.stream2.simulator", description=__doc__.split("\n\n")[0])
    defaults = Stream2SimulatorParameters()
    parser.add_argument("--url", default=defaults.url, help="where to bind the PUSH socket (a DCU: port 31001)")
    parser.add_argument("--detector", default=defaults.detector, choices=list(EIGER2_MODELS))
    parser.add_argument("--frames", type=int, default=defaults.frames)
    parser.add_argument("--rate", type=float, default=defaults.rate_hz, help="images per second")
    parser.add_argument("--dtype", default=defaults.dtype, choices=["uint8", "uint16", "uint32"])
    parser.add_argument("--compression", default=defaults.compression, choices=["none", "bslz4", "bszstd", "lz4"])
    parser.add_argument("--channels", type=int, default=defaults.channels, choices=[1, 2])
    parser.add_argument("--flavour", default=defaults.flavour, choices=["dectris", "jungfraujoch"])
    parser.add_argument("--series-id", type=int, default=defaults.series_id)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--hit-fraction", type=float, default=defaults.hit_fraction)
    parser.add_argument("--crystal", type=crystal_from_text, default=defaults.crystal,
                        help="weak, medium, strong, or the crystal's settings as JSON")
    parser.add_argument("--distance", type=float, default=defaults.distance_m, help="detector distance, m")
    parser.add_argument("--energy", type=float, default=defaults.photon_energy_ev, help="photon energy, eV")
    parser.add_argument("--truth", type=Path, default=None, help="write each image's truth here (JSON lines)")
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        exit_with_parent()
    return Stream2SimulatorParameters(
        url=args.url, detector=args.detector, frames=args.frames, rate_hz=args.rate, dtype=args.dtype,
        compression=args.compression, channels=args.channels, flavour=args.flavour, series_id=args.series_id,
        seed=args.seed, hit_fraction=args.hit_fraction, crystal=args.crystal, distance_m=args.distance,
        photon_energy_ev=args.energy, truth_file=args.truth,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        parameters = _arguments(argv)
    except ValidationError as error:
        print(f"stream2 simulator: {error.errors()[0]['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    STOP.install()
    started = time.perf_counter()
    sent = run_simulator(parameters)
    elapsed = time.perf_counter() - started
    print(f"stream2 simulator: sent {sent} images in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.0f}/s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
