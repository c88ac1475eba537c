"""The ``outputs:`` section of the monitor's YAML file, as validated models.

Every field has a default, so a configuration without an ``outputs:`` section
gets the standard outputs: a results stream on the loopback interface, hit
files and an end-of-run report under ``output/<run>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.endpoints import check_endpoint

__all__ = [
    "Compression",
    "HitFileParameters",
    "OutputParameters",
    "ReportParameters",
    "ResultsStreamParameters",
]

Compression = Literal["bitshuffle-lz4", "blosc-lz4", "zstd", "none"]
"""The standard HDF5 filters (from hdf5plugin) hit files can be compressed with."""


class ResultsStreamParameters(BaseModel):
    """Where and how fast the collector publishes results for viewers."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    url: str = "tcp://127.0.0.1:5610"
    """PUB endpoint the viewer subscribes to (``tcp://HOST:PORT``; ``*`` as port picks a free one)."""
    request_url: str = "tcp://127.0.0.1:5611"
    """Endpoint answering requests ("latest_frame", "parameters", "status")."""
    rate_hz: float = Field(default=5.0, gt=0.0, le=100.0)
    """Most messages per second; the collector's tick rate caps it too."""
    bin_factor: int = Field(default=2, ge=1, le=16)
    """Images are averaged over bin_factor x bin_factor pixels before publishing."""

    @field_validator("url", "request_url")
    @classmethod
    def _is_zmq_endpoint(cls, value: str) -> str:
        return check_endpoint(value)


class HitFileParameters(BaseModel):
    """How hits are written to CXI (HDF5) files that CrystFEL reads."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_file_size_mb: float = Field(default=4096.0, gt=0.0)
    """A new file is started once the current one reaches this size."""
    compression: Compression = "bitshuffle-lz4"
    frame_dtype: Literal["int32", "float32"] = "int32"
    """int32: frames rounded to whole photons, as a photon-counting JUNGFRAU is usually kept
    (about ten times smaller once compressed); float32: the calibrated values as they are."""
    max_peaks: int = Field(default=1024, ge=1)
    """Columns of the peak-list datasets; peaks past this count are not stored."""
    queue_size: int = Field(default=32, ge=1)
    """Hits waiting for the writer thread; more are dropped (and counted), never waited for."""
    flush_interval_s: float = Field(default=1.0, gt=0.0)
    """Longest time written hits stay unflushed (what a killed run can lose)."""


class ReportParameters(BaseModel):
    """The end-of-run report: report.png and summary.json in the run folder."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class OutputParameters(BaseModel):
    """Everything a run shows and keeps; one subfolder of ``output_dir`` per run."""

    model_config = ConfigDict(extra="forbid")

    output_dir: Path = Path("output")
    results_stream: ResultsStreamParameters = Field(default_factory=ResultsStreamParameters)
    hit_files: HitFileParameters = Field(default_factory=HitFileParameters)
    report: ReportParameters = Field(default_factory=ReportParameters)
