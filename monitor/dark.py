"""Pedestals and bad pixels from dark runs: ``python -m monitor.dark SOURCE --output DIR``.

At the beamline a pedestal measurement is three dark acquisitions, one per
gain stage: G0 (dynamic gain, no beam), then G1 and G2 forced.  This tool
listens to the frame stream (synchronizer-shaped, like the monitor's workers:
PSI's slsFrameSynchronizer, ``monitor.assembler`` or the simulator) while the
operator runs them.  Each frame is assigned to the stage most of its pixels
report; per pixel and stage it accumulates the ADC mean and spread, until
``--frames-per-stage`` frames of every stage are in.

It writes what :mod:`sources.calibration` reads:

* ``pedestal_m{i}.npy``: float32 (3, 512, 1024), ADC mean per gain stage, per module;
* ``noise_m{i}.npy``: float32 (3, 512, 1024), ADC standard deviation per gain
  stage, per module: the noise map peakfinder8's thresholds are in units of;
* ``bad_pixels.npy``: bool (rows, 1024), True = bad;
* ``bad_pixels.h5``: the same mask for CrystFEL, ``/mask`` uint16 (rows, 1024),
  1 = bad, named in a geometry by ``mask_file = bad_pixels.h5``, ``mask = /mask``,
  ``mask_good = 0x0``, ``mask_bad = 0x1`` (HDF5 1.8/1.10 format, uncompressed);
* ``dark_summary.json``: frames per stage, median noise per stage, bad pixels by kind.

A pixel is bad when, in any recorded stage, it is
**stuck** (noise below ``stuck_factor`` x the stage's median noise: a dead or
frozen pixel), **noisy** (noise above ``noisy_factor`` x the median),
**never switching** (in a forced G1/G2 run, in another gain stage in more
than ``max_wrong_gain_fraction`` of the frames), or **without data** (no valid
reading at all).  Lost-packet pixels (``0xFFFF``) are left out of every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import zmq

from monitor.errors import MonitorError
from monitor.memory import keep_frame_buffers
from monitor.wire import SyncFrame, parse_sync_message
from sources.jungfrau1m import Jungfrau1MFrame

__all__ = ["DarkRunError", "DarkAccumulator", "DarkResult", "BadPixelCriteria", "record", "write_crystfel_mask",
           "write_dark_files", "main"]

MODULE_ROWS = 512
STAGE_BITS = (0, 1, 3)
"""Gain bits 14-15 of G0, G1, G2."""


class DarkRunError(MonitorError):
    """The dark run cannot give pedestals (a stage missing, nothing received)."""


@numba.njit(cache=True, nogil=True)
def _gain_bit_counts(raw: np.ndarray) -> np.ndarray:
    """How many pixels report each gain-bit pattern 0..3, lost pixels (0xFFFF) left out."""
    counts = np.zeros(4, dtype=np.int64)
    for value in raw.ravel():
        if value != 0xFFFF:
            counts[value >> 14] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def _accumulate_dark(
    raw: np.ndarray, bits: int, shift: np.ndarray, total: np.ndarray, total_sq: np.ndarray, count: np.ndarray,
    wrong: np.ndarray,
) -> None:
    """Add one frame of a stage: ADC sums (shifted for precision) where the pixel is in that stage."""
    flat = raw.ravel()
    for p in range(flat.size):
        value = flat[p]
        if value == 0xFFFF:
            continue
        if (value >> 14) != bits:
            wrong[p] += 1
            continue
        adc = np.float64(value & 0x3FFF) - shift[p]
        total[p] += adc
        total_sq[p] += adc * adc
        count[p] += 1


@dataclass(frozen=True)
class BadPixelCriteria:
    """Thresholds of the bad-pixel classes (see the module docstring)."""

    noisy_factor: float = 5.0
    stuck_factor: float = 0.1
    max_wrong_gain_fraction: float = 0.1


@dataclass(frozen=True)
class DarkResult:
    """Pedestal and noise maps (3, rows, cols) per gain stage, bad pixels by kind, frames per stage."""

    pedestal: np.ndarray
    noise: np.ndarray
    bad: dict[str, np.ndarray]
    frames: tuple[int, int, int]

    @property
    def bad_pixels(self) -> np.ndarray:
        return np.logical_or.reduce(list(self.bad.values()))


class DarkAccumulator:
    """Per-pixel ADC statistics of dark frames, one set per gain stage."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        n = shape[0] * shape[1]
        self._shift = np.zeros((3, n))
        self._total = np.zeros((3, n))
        self._total_sq = np.zeros((3, n))
        self._count = np.zeros((3, n), dtype=np.int64)
        self._wrong = np.zeros((3, n), dtype=np.int64)
        self.frames = [0, 0, 0]

    @staticmethod
    def stage_of(raw: np.ndarray) -> int | None:
        """The gain stage most pixels of the frame report (None if most report the invalid '10')."""
        counts = _gain_bit_counts(raw)
        pattern = int(np.argmax(counts))
        return None if pattern == 2 or counts[pattern] == 0 else STAGE_BITS.index(pattern)

    def add(self, raw: np.ndarray, stage: int) -> None:
        """Accumulate one frame of ``stage``; its first frame also sets the numerical shift."""
        if raw.shape != self.shape:
            raise ValueError(f"frame has shape {raw.shape}, expected {self.shape}")
        if self.frames[stage] == 0:
            self._shift[stage] = (raw & 0x3FFF).ravel()
        _accumulate_dark(
            raw, STAGE_BITS[stage], self._shift[stage], self._total[stage], self._total_sq[stage],
            self._count[stage], self._wrong[stage],
        )
        self.frames[stage] += 1

    def result(self, criteria: BadPixelCriteria = BadPixelCriteria()) -> DarkResult:
        """Pedestals, noise and bad pixels of the stages recorded so far."""
        count = self._count.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._total / count
            noise = np.sqrt(np.maximum(self._total_sq / count - mean**2, 0.0))
        pedestal = np.where(count > 0, mean + self._shift, 0.0)
        recorded = [stage for stage in range(3) if self.frames[stage]]
        bad = {kind: np.zeros(self.shape[0] * self.shape[1], dtype=bool) for kind in
               ("no_data", "stuck", "noisy", "never_switching")}
        for stage in recorded:
            has_data = count[stage] > 0
            median = float(np.median(noise[stage][has_data])) if has_data.any() else 0.0
            bad["no_data"] |= ~has_data
            bad["stuck"] |= has_data & (noise[stage] < criteria.stuck_factor * median)
            bad["noisy"] |= has_data & (noise[stage] > criteria.noisy_factor * median)
            if stage > 0:
                bad["never_switching"] |= self._wrong[stage] > criteria.max_wrong_gain_fraction * self.frames[stage]
        return DarkResult(
            pedestal=pedestal.reshape(3, *self.shape).astype(np.float32),
            noise=np.nan_to_num(noise).reshape(3, *self.shape).astype(np.float32),
            bad={kind: mask.reshape(self.shape) for kind, mask in bad.items()},
            frames=(self.frames[0], self.frames[1], self.frames[2]),
        )


def record(
    url: str, *, frames_per_stage: int, stages: tuple[int, ...] = (0, 1, 2), idle_timeout_s: float = 30.0,
    shape: tuple[int, int] = (1024, 1024),
) -> DarkAccumulator:
    """Pull frames from ``url`` until every stage in ``stages`` has ``frames_per_stage`` frames.

    Frames of a stage already complete, of a stage not asked for, or with
    most pixels in the invalid gain are skipped.  Raises :class:`DarkRunError`
    when nothing arrives for ``idle_timeout_s`` before the stages are complete.
    """
    accumulator = DarkAccumulator(shape)
    assemble = Jungfrau1MFrame(shape)
    assemble.initialize_data_source()
    context = zmq.Context()
    socket = context.socket(zmq.PULL)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(url)
    try:
        while any(accumulator.frames[stage] < frames_per_stage for stage in stages):
            if not socket.poll(int(idle_timeout_s * 1000), zmq.POLLIN):
                missing = {f"G{s}": accumulator.frames[s] for s in stages if accumulator.frames[s] < frames_per_stage}
                raise DarkRunError(
                    f"nothing arrived from {url} for {idle_timeout_s:g} s; frames so far {missing} "
                    f"of {frames_per_stage} per stage"
                )
            message = parse_sync_message(socket.recv_multipart(copy=False))
            if not isinstance(message, SyncFrame):
                continue
            raw = assemble.get_data(event={"frame": message})
            stage = accumulator.stage_of(raw)
            if stage in stages and accumulator.frames[stage] < frames_per_stage:
                accumulator.add(raw, stage)
    finally:
        socket.close()
        context.term()
    return accumulator


CRYSTFEL_MASK_FILE = "bad_pixels.h5"
CRYSTFEL_MASK_DATASET = "/mask"
CRYSTFEL_MASK_BAD = 1


def write_crystfel_mask(path: Path, bad_pixels: np.ndarray) -> None:
    """The bad-pixel mask as a geometry's ``mask_file`` names it: ``/mask``, uint16, 1 = bad."""
    from monitor.outputs.cxi import LIBVER
    from monitor.outputs.hdf5_filters import h5py

    with h5py.File(path, "w", libver=LIBVER) as mask:
        dataset = mask.create_dataset(CRYSTFEL_MASK_DATASET,
                                      data=np.where(bad_pixels, CRYSTFEL_MASK_BAD, 0).astype(np.uint16))
        dataset.attrs["bad_bits"] = np.uint16(CRYSTFEL_MASK_BAD)
        dataset.attrs["good_bits"] = np.uint16(0)


def write_dark_files(folder: Path, result: DarkResult) -> dict[str, Any]:
    """Write pedestal, noise, bad-pixel and summary files; return the calibration file keys that name them."""
    folder.mkdir(parents=True, exist_ok=True)
    pedestal_files, noise_files = [], []
    for module in range(result.pedestal.shape[1] // MODULE_ROWS):
        rows = slice(module * MODULE_ROWS, (module + 1) * MODULE_ROWS)
        for name, maps, paths in (("pedestal", result.pedestal, pedestal_files), ("noise", result.noise, noise_files)):
            path = folder / f"{name}_m{module}.npy"
            np.save(path, maps[:, rows])
            paths.append(str(path))
    mask_file = folder / "bad_pixels.npy"
    np.save(mask_file, result.bad_pixels)
    write_crystfel_mask(folder / CRYSTFEL_MASK_FILE, result.bad_pixels)
    summary = {
        "frames_per_stage": {f"G{s}": n for s, n in enumerate(result.frames)},
        "median_noise_adu": {
            f"G{s}": float(np.median(result.noise[s][~result.bad_pixels])) if n else None
            for s, n in enumerate(result.frames)
        },
        "bad_pixels": {kind: int(mask.sum()) for kind, mask in result.bad.items()},
        "bad_pixels_total": int(result.bad_pixels.sum()),
    }
    (folder / "dark_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"pedestal_files": pedestal_files, "noise_files": noise_files, "mask_file": str(mask_file),
            "summary": summary}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.dark", description="Record dark runs (G0, G1, G2) and write pedestals and bad pixels."
    )
    parser.add_argument("source", help="frame sender URL, e.g. tcp://detector-host:5555")
    parser.add_argument("--output", type=Path, required=True, help="folder for the pedestal and mask files")
    parser.add_argument("--frames-per-stage", type=int, default=1000)
    parser.add_argument("--stages", type=int, nargs="+", choices=(0, 1, 2), default=[0, 1, 2])
    parser.add_argument("--idle-timeout", type=float, default=30.0, help="seconds without frames before giving up")
    parser.add_argument("--noisy-factor", type=float, default=BadPixelCriteria.noisy_factor)
    parser.add_argument("--stuck-factor", type=float, default=BadPixelCriteria.stuck_factor)
    parser.add_argument("--max-wrong-gain-fraction", type=float, default=BadPixelCriteria.max_wrong_gain_fraction)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Record, analyse, write; errors end as one line on standard error."""
    args = _parser().parse_args(argv)
    try:
        if args.frames_per_stage < 2:
            raise DarkRunError("--frames-per-stage must be at least 2 to measure noise")
        keep_frame_buffers()
        started = time.monotonic()
        accumulator = record(
            args.source, frames_per_stage=args.frames_per_stage, stages=tuple(sorted(set(args.stages))),
            idle_timeout_s=args.idle_timeout,
        )
        criteria = BadPixelCriteria(args.noisy_factor, args.stuck_factor, args.max_wrong_gain_fraction)
        written = write_dark_files(args.output, accumulator.result(criteria))
    except MonitorError as error:
        print(f"monitor.dark: {error}", file=sys.stderr)
        return error.exit_code
    print(f"dark run recorded in {time.monotonic() - started:.1f} s: {json.dumps(written['summary'])}")
    print("calibration:")
    print(f"  pedestal_files: {json.dumps(written['pedestal_files'])}")
    print(f"  noise_files: {json.dumps(written['noise_files'])}")
    print(f"  mask_file: {written['mask_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
