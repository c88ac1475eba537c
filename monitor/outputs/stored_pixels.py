"""What a hit file stores of a calibrated frame: whole photons (or float32), and which pixels are invalid.

Calibrated JUNGFRAU photons carry the electronic noise (about 0.01 photon)
in every pixel, and those noise bits defeat any compressor: lossless
float32 hits stay near the frame's own 4 MB.  The default stores what a
photon-counting pipeline (PSI's Jungfraujoch among them) keeps instead:
each pixel rounded to the nearest whole photon, as int16, which Blosc-LZ4
(or bitshuffle-LZ4) packs to about 0.06 MB for a JUNGFRAU 1M hit.

* **Sub-photon values** round to the nearest photon, halves up: below half
  a photon a pixel stores 0, from half a photon 1.  The noise (0.01 photon)
  never crosses it; a pixel holding k photons stores k exactly unless its
  noise exceeds half a photon (the simulator's noisy pixels, 1 in 10,000, at
  0.2 photon).
* **Charge shared between pixels**: a photon is counted once, in the pixel
  that holds the most of its charge.  Shared across one pixel border, its
  own pixel keeps half or more and rounding does it.  Near a pixel corner
  its charge spreads over a 2x2 block where no pixel holds half; then the
  block's largest pixel, from a quarter of a photon up, stores the photon
  when the block holds half a photon or more and none of its pixels rounds
  up on its own.  Without that corner rule, rounding alone lost 2.6 % of the
  photons of 5-10 photon spots on the simulator (10 um charge clouds); with
  it, 0.02-0.24 % (``benchmarks/bench_hit_files.py`` measures it against the
  simulator's truth).  ``frame_dtype: float32`` keeps every fraction
  (lossless, about 4 MB a hit).
* **Range**: int16 holds -32767..32767 photons (a JUNGFRAU pixel saturates
  near 10^4 photons of 12 keV); values beyond are clipped; ``int32`` widens
  the top.  Every dtype stores nothing below -32767, so the invalid value
  below it stays apart.
* **Invalid pixels**: a pixel without a valid reading in a hit (bad pixel,
  lost packet) stores :data:`INVALID_PIXEL`, which the run's geometry flags
  (``flag_lessthan``).  The file's 2-D mask holds the pixels invalid in every
  hit of the file (the detector's bad pixels), written once and rewritten
  only when a hit has a valid reading where the mask had none.

One compiled pass over the frame does the rounding, the clipping and the
invalid pixels, row by row, into a buffer kept for the file
(:class:`StoredPixels`); the mask check reads only the pixels the mask holds.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["FLAG_LESSTHAN", "INVALID_PIXEL", "StoredPixels"]

INVALID_PIXEL = -32768
"""A stored pixel without a valid reading in its hit (exact in int16, int32 and float32)."""

FLAG_LESSTHAN = INVALID_PIXEL + 1
"""The geometry's ``flag_lessthan``: CrystFEL marks stored values below it (only :data:`INVALID_PIXEL`) bad."""


_DTYPES = (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.float32))


@numba.njit(cache=True, nogil=True)
def _corner_photon(photons: np.ndarray, valid: np.ndarray, row: int, col: int) -> bool:
    """True if pixel (row, col) holds the largest share of a photon's charge spread over a 2x2 block
    of valid pixels, none of which holds half a photon: the photon landed near their common corner."""
    rows, cols = photons.shape
    value = photons[row, col]
    for d_row in (-1, 1):
        for d_col in (-1, 1):
            other_row, other_col = row + d_row, col + d_col
            if not (0 <= other_row < rows and 0 <= other_col < cols):
                continue
            if not (valid[other_row, col] and valid[row, other_col] and valid[other_row, other_col]):
                continue
            beside, above, diagonal = photons[row, other_col], photons[other_row, col], photons[other_row, other_col]
            if max(beside, above, diagonal) < value and value + beside + above + diagonal >= 0.5:
                return True
    return False


@numba.njit(cache=True, nogil=True)
def _store(photons: np.ndarray, valid: np.ndarray, out: np.ndarray, sharing: np.ndarray, whole: bool,
           low: np.floating, high: np.floating) -> None:
    """Fill ``out`` from ``photons`` (2-D; ``valid`` as bytes), row by row.

    The first loop over a row has no branch on a pixel's value, so it
    compiles to vector code; for whole photons it marks in ``sharing`` (a
    row of uint8, cols rounded up to 8) the pixels from a quarter of a photon
    that round to none, about 0.3 % of them.  The second reads those marks
    eight at a time, while the row is in the cache, and looks at the
    neighbours of the marked pixels only.
    """
    half, quarter = photons.dtype.type(0.5), photons.dtype.type(0.25)
    rows, cols = photons.shape
    words = sharing.view(np.uint64)
    for row in range(rows):
        values, readings, stored_row = photons[row], valid[row], out[row]
        for col in range(cols):
            value = values[col]
            ok = (readings[col] != 0) & (value == value)  # NaN is no reading either
            stored = np.floor(value + half) if whole else value
            stored_row[col] = min(max(stored, low), high) if ok else INVALID_PIXEL
            sharing[col] = (value >= quarter) & (stored == 0)  # never for float32, where stored is the value
        if not whole:
            continue
        for word in range(words.size):
            if words[word]:
                for col in range(8 * word, min(8 * word + 8, cols)):
                    if sharing[col] and readings[col] and _corner_photon(photons, valid, row, col):
                        stored_row[col] = 1


class StoredPixels:
    """The stored form of one file's frames (``dtype``), and the file's mask: pixels invalid in every hit."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        dtype = np.dtype(dtype)
        if dtype not in _DTYPES:
            raise ValueError(f"frames cannot be stored as {dtype}: only as int16, int32 or float32")
        self.pixels = np.empty(shape, dtype=dtype)
        """The latest frame as stored (reused: the file writes it before the next frame comes)."""
        self.masked = np.ones(shape, dtype=bool)
        """Pixels without a valid reading in every frame stored so far (all, before the first)."""
        self._masked_at = np.flatnonzero(self.masked)
        """Where :attr:`masked` is set (the detector's bad pixels, after the first frame): the only pixels
        whose reading can change the mask, so that no frame-sized read asks it."""
        self._all_valid = np.ones(shape, dtype=bool)
        self._sharing = np.zeros(-(-shape[-1] // 8) * 8, dtype=np.uint8)
        self._whole = dtype.kind == "i"
        self._high = float(np.iinfo(dtype).max) if self._whole else float(np.finfo(dtype).max)

    def store(self, photons: np.ndarray, valid: np.ndarray | None) -> bool:
        """Turn one frame into :attr:`pixels`; True when :attr:`masked` shrank (the file's mask must be rewritten).

        ``valid`` is True where the frame has a valid reading (None: everywhere).
        """
        if photons.shape != self.pixels.shape or (valid is not None and valid.shape != self.pixels.shape):
            raise ValueError(f"frame of shape {photons.shape} (valid {None if valid is None else valid.shape}), "
                             f"stored frames are {self.pixels.shape}")
        valid = self._all_valid if valid is None else valid
        number = photons.dtype.type if photons.dtype.kind == "f" else np.float64
        photons, valid = np.ascontiguousarray(photons), np.ascontiguousarray(valid)
        _store(photons, valid.view(np.uint8), self.pixels, self._sharing, self._whole, number(FLAG_LESSTHAN),
               number(self._high))
        readings = photons.ravel()[self._masked_at]
        unmasked = bool((valid.ravel()[self._masked_at] & (readings == readings)).any())  # NaN is no reading
        if unmasked:
            self.masked &= ~valid
            self._masked_at = np.flatnonzero(self.masked)
        return unmasked
