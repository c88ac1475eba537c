"""Detector geometry from a CrystFEL ``.geom`` file: pixel positions, radii, assembled images.

Parsing is left to ``cfelpyutils`` (the parser OM and the CFEL tools use); this
module turns the parsed panels into per-pixel maps of the raw frame.

Conventions are CrystFEL's: the beam is at lab (0, 0), +x is horizontal, +y
points up, positions are in pixels unless said otherwise (``pixel_size_m``
converts).  Pixel ``(ss, fs)`` covers ``[fs, fs+1) x [ss, ss+1)`` in panel
coordinates, so its centre is at ``corner + (fs+0.5)*fs_vector + (ss+0.5)*ss_vector``.
Raw positions elsewhere in the monitor (peak lists) put a pixel's centre at
integer (row, column); :meth:`DetectorGeometry.lab_position` takes those.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

with warnings.catch_warnings():  # cfelpyutils 2.2 builds TypedDicts with a deprecated helper on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from cfelpyutils.geometry import load_crystfel_geometry

from monitor.errors import ConfigurationError

__all__ = ["DetectorGeometry", "default_geometry_path", "global_value", "with_global_lines"]


def default_geometry_path() -> Path:
    """The shipped JUNGFRAU 1M geometry (two modules, 36-pixel gap, beam at the centre)."""
    return Path(str(resources.files("monitor") / "data" / "jungfrau1m.geom"))


def _key(line: str) -> str | None:
    """The key of a ``key = value`` line (comments stripped), or None."""
    content = line.split(";", 1)[0]
    if "=" not in content:
        return None
    return content.split("=", 1)[0].strip()


def global_value(path: Path | str, key: str) -> str | None:
    """The value of a top-level ``key`` in a CrystFEL geometry file (the last one, as CrystFEL reads), or None."""
    value = None
    for line in Path(path).read_text().splitlines():
        if _key(line) == key:
            value = line.split(";", 1)[0].split("=", 1)[1].strip()
    return value


def with_global_lines(text: str, lines: dict[str, str], *, comment: str, drop: tuple[str, ...] = ()) -> str:
    """Geometry ``text`` with the top-level ``lines`` (key -> value) set and the ``drop`` keys gone.

    Every line setting one of those keys is dropped, at the top level and per
    panel (``m0/dim0``), so no earlier or more specific line overrides them;
    the new block, headed by ``comment``, follows the file's leading comments.
    """
    gone = {*lines, *drop}
    kept = [line for line in text.splitlines() if (_key(line) or "").rsplit("/", 1)[-1] not in gone]
    head = 0
    while head < len(kept) and kept[head].lstrip().startswith(";"):
        head += 1
    rest = kept[head:]
    while rest and not rest[0].strip():
        rest.pop(0)
    block = [f"; {comment}", *(f"{key} = {value}" for key, value in lines.items()), ""]
    return "\n".join([*kept[:head], *([""] if head else []), *block, *rest]).rstrip("\n") + "\n"


@dataclass(frozen=True)
class _Panel:
    """One panel's rows/columns in the raw frame and its linear map to the lab."""

    name: str
    min_ss: int
    max_ss: int
    min_fs: int
    max_fs: int
    fs: tuple[float, float]
    ss: tuple[float, float]
    corner: tuple[float, float]


class DetectorGeometry:
    """Per-pixel lab positions of a raw frame, and the image assembled from it.

    Attributes (all ``frame_shape`` float32 maps, pixels): ``x``, ``y``
    (pixel centres, lab) and ``radius`` (distance from the beam).
    """

    def __init__(
        self, panels: list[_Panel], *, pixel_size_m: float, clen_m: float | None, photon_energy_kev: float | None = None
    ) -> None:
        if not panels:
            raise ConfigurationError("geometry has no panels")
        self._panels = panels
        self.pixel_size_m = pixel_size_m
        self.clen_m = clen_m
        self.photon_energy_kev = photon_energy_kev
        """The file's ``photon_energy`` (keV), None when it names none or takes it from the data."""
        self.frame_shape = (max(p.max_ss for p in panels) + 1, max(p.max_fs for p in panels) + 1)
        self.panel_index = np.full(self.frame_shape, -1, dtype=np.int16)
        """Panel number of each raw pixel, -1 where no panel covers it."""
        self.x = np.zeros(self.frame_shape, dtype=np.float32)
        self.y = np.zeros(self.frame_shape, dtype=np.float32)
        for number, panel in enumerate(panels):
            rows = slice(panel.min_ss, panel.max_ss + 1)
            cols = slice(panel.min_fs, panel.max_fs + 1)
            if (self.panel_index[rows, cols] != -1).any():
                raise ConfigurationError(f"geometry panel {panel.name} overlaps another panel in the raw frame")
            self.panel_index[rows, cols] = number
            ss, fs = np.meshgrid(
                np.arange(panel.max_ss - panel.min_ss + 1) + 0.5,
                np.arange(panel.max_fs - panel.min_fs + 1) + 0.5,
                indexing="ij",
            )
            self.x[rows, cols] = panel.corner[0] + fs * panel.fs[0] + ss * panel.ss[0]
            self.y[rows, cols] = panel.corner[1] + fs * panel.fs[1] + ss * panel.ss[1]
        self.radius = np.hypot(self.x, self.y).astype(np.float32)
        covered = self.panel_index >= 0
        self._image_row = np.rint(self.y[covered].max() - self.y).astype(np.intp)
        self._image_col = np.rint(self.x - self.x[covered].min()).astype(np.intp)
        self.image_shape = (int(self._image_row[covered].max()) + 1, int(self._image_col[covered].max()) + 1)
        self._covered = covered
        self._image_index = (self._image_row * self.image_shape[1] + self._image_col)[covered]

    @classmethod
    def from_crystfel(cls, path: Path | str) -> DetectorGeometry:
        """Read a CrystFEL ``.geom`` file (panels, ``res``, ``clen``)."""
        try:
            geometry = load_crystfel_geometry(str(path))
            parsed = geometry.detector
        except (OSError, RuntimeError, ValueError, KeyError) as error:
            raise ConfigurationError(f"cannot read CrystFEL geometry {path}: {error}") from error
        panels = [
            _Panel(
                name,
                p["orig_min_ss"],
                p["orig_max_ss"],
                p["orig_min_fs"],
                p["orig_max_fs"],
                (p["fsx"], p["fsy"]),
                (p["ssx"], p["ssy"]),
                (p["cnx"], p["cny"]),
            )
            for name, p in parsed["panels"].items()
        ]
        resolutions = {p["res"] for p in parsed["panels"].values()}
        if len(resolutions) != 1:
            raise ConfigurationError(f"geometry {path}: panels with different pixel sizes are not supported")
        clen = next(iter(parsed["panels"].values()))["clen"]
        energy_ev = geometry.beam["photon_energy"] * geometry.beam["photon_energy_scale"]
        return cls(
            panels, pixel_size_m=1.0 / resolutions.pop(), clen_m=float(clen) if isinstance(clen, float) else None,
            photon_energy_kev=energy_ev / 1000 if energy_ev > 0 and not geometry.beam["photon_energy_from"] else None,
        )

    def assemble(self, frame: np.ndarray, *, fill: float = np.nan, out: np.ndarray | None = None) -> np.ndarray:
        """The frame drawn as the detector looks from the sample (+y up = image row 0 on top).

        Pixels are placed at their nearest image pixel; image pixels no panel
        covers read ``fill``.  ``out`` (``image_shape``, float32) is reused if given.
        """
        if frame.shape != self.frame_shape:
            raise ValueError(f"frame has shape {frame.shape}, geometry expects {self.frame_shape}")
        image = np.empty(self.image_shape, dtype=np.float32) if out is None else out
        image.fill(fill)
        image.ravel()[self._image_index] = frame[self._covered]
        return image

    def lab_position(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lab (x, y) in pixels of raw-frame positions (row, column; pixel centres at integers).

        Positions are mapped with their own panel's vectors, so sub-pixel
        centres of mass keep their precision.
        """
        row = np.asarray(row, dtype=np.float64)
        col = np.asarray(col, dtype=np.float64)
        panel = self.panel_index[
            np.clip(np.rint(row).astype(np.intp), 0, self.frame_shape[0] - 1),
            np.clip(np.rint(col).astype(np.intp), 0, self.frame_shape[1] - 1),
        ]
        if (panel < 0).any():
            raise ValueError("a position lies outside every panel")
        table = np.array([(*p.fs, *p.ss, *p.corner, p.min_ss, p.min_fs) for p in self._panels])[panel].T
        fs = col - table[7] + 0.5
        ss = row - table[6] + 0.5
        return table[4] + fs * table[0] + ss * table[2], table[5] + fs * table[1] + ss * table[3]

    def image_position(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where raw-frame positions land in the image :meth:`assemble` makes (row, column)."""
        x, y = self.lab_position(row, col)
        return self.y[self._covered].max() - y, x - self.x[self._covered].min()
