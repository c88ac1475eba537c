"""The ``outputs:`` section of the monitor's YAML file, as validated models.

Every field has a default, so a configuration without an ``outputs:`` section
gets the standard outputs: a results stream on the loopback interface, hit
files and an end-of-run report under ``output/<run>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from monitor.bind_check import Listener, tcp_listener
from monitor.endpoints import Endpoint

__all__ = [
    "Compression",
    "HitFileParameters",
    "LiveFeedParameters",
    "MetricsParameters",
    "OutputParameters",
    "ReportParameters",
    "ResultsStreamParameters",
]

Compression = Literal["blosc-shuffle-lz4", "bitshuffle-lz4", "bitshuffle-zstd", "blosc-lz4", "zstd", "none"]
"""The standard HDF5 filters (from hdf5plugin) hit files can be compressed with.

For whole photons (int16) of a JUNGFRAU 1M hit, the frame's bytes on disk and
the CPU to compress and store them, measured with hdf5plugin's wheel (built for
SSE2 only): ``blosc-shuffle-lz4`` (Blosc, byte shuffle, LZ4) 0.053 MB in 0.4 ms
(compressed before HDF5: :mod:`monitor.outputs.compression`); ``blosc-lz4``
(Blosc, bit shuffle) 0.042 MB; ``bitshuffle-lz4`` 0.050 MB in 1.7 ms; ``zstd``
0.024 MB in 1.7 ms; ``bitshuffle-zstd`` 0.035 MB in 6.4 ms.  Every one is an
HDF5 filter plugin that ``HDF5_PLUGIN_PATH`` makes known to h5dump and CrystFEL."""


class ResultsStreamParameters(BaseModel):
    """Where and how fast the collector publishes results for viewers."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    url: Endpoint = "tcp://127.0.0.1:5610"
    """PUB endpoint the viewer subscribes to (``tcp://HOST:PORT``; ``*`` as port picks a free one)."""
    request_url: Endpoint = "tcp://127.0.0.1:5611"
    """Endpoint answering requests ("latest_frame", "parameters", "status")."""
    rate_hz: float = Field(default=5.0, gt=0.0, le=100.0)
    """Most messages per second; the collector's tick rate caps it too."""
    bin_factor: int = Field(default=2, ge=1, le=16)
    """Images are averaged over bin_factor x bin_factor pixels before publishing."""


class HitFileParameters(BaseModel):
    """How hits are written to CXI (HDF5) files that CrystFEL reads as they are."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    writer: Literal["workers", "collector"] = "workers"
    """workers: each worker writes its own hits (the collector gets only the small results);
    collector: the collector writes every hit, from a thread (frames travel over MPI)."""
    max_hits_per_file: int = Field(default=500, ge=1)
    """A file is closed, complete and readable, and a new one started after this many hits..."""
    max_file_age_s: float = Field(default=60.0, gt=0.0)
    """...or once it has been open this long, whichever comes first (checked at every event)."""
    max_file_size_mb: float = Field(default=4096.0, gt=0.0)
    """...or once it reaches this size."""
    compression: Compression = "blosc-shuffle-lz4"
    frame_dtype: Literal["int16", "int32", "float32"] = "int16"
    """int16: whole photons, each pixel rounded to the nearest (0.05 MB a JUNGFRAU 1M hit with
    bitshuffle-lz4; :mod:`monitor.outputs.stored_pixels` says what rounding keeps and loses);
    int32: the same past 32,767 photons a pixel; float32: the calibrated photons as they are
    (lossless, 3.7 MB a hit: the noise in every pixel does not compress)."""
    max_peaks: int = Field(default=1024, ge=1)
    """Columns of the peak-list datasets; peaks past this count are not stored."""
    queue_size: int = Field(default=32, ge=1)
    """(writer: collector) hits waiting for the writer thread; more are dropped and counted."""
    preview_interval_s: float = Field(default=0.2, ge=0.0)
    """(writer: workers) a worker still sends the collector one written hit's frame this often,
    for the viewer and the live feed; 0 sends every frame."""


class LiveFeedParameters(BaseModel):
    """Hits served to ``indexamajig --zmq-input=URL --zmq-request=next --data-format=msgpack``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    url: Endpoint = "tcp://127.0.0.1:5612"
    """ROUTER endpoint indexamajig's workers connect their REQ sockets to."""
    queue_size: int = Field(default=16, ge=1)
    """Latest hits kept for requests; older ones are replaced (counted), the monitor never waits."""


class MetricsParameters(BaseModel):
    """A Prometheus endpoint (``/metrics`` over HTTP) for the facility's dashboards; off by default."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    """The address to serve on: the loopback interface unless a scraper elsewhere must reach it."""
    port: int = Field(default=9108, ge=1, le=65535)


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
    live_feed: LiveFeedParameters = Field(default_factory=LiveFeedParameters)
    metrics: MetricsParameters = Field(default_factory=MetricsParameters)
    report: ReportParameters = Field(default_factory=ReportParameters)

    def listening_addresses(self) -> list[Listener]:
        """The TCP addresses the enabled outputs will listen on, with their keys."""
        listeners = []
        if self.results_stream.enabled:
            listeners += tcp_listener("outputs.results_stream.url", self.results_stream.url)
            listeners += tcp_listener("outputs.results_stream.request_url", self.results_stream.request_url)
        if self.live_feed.enabled:
            listeners += tcp_listener("outputs.live_feed.url", self.live_feed.url)
        if self.metrics.enabled:
            listeners.append(("outputs.metrics.port", self.metrics.host, self.metrics.port))
        return listeners
