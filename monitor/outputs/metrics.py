"""A Prometheus endpoint on the collector, for a facility's dashboards (``outputs.metrics``).

Counters and gauges are read from the collector's latest status at scrape
time (a custom collector over one dict, replaced whole at every tick), so a
scrape never touches the collector loop and a run nobody scrapes pays only
for keeping a reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import start_http_server

from monitor.errors import MonitorError
from monitor.outputs.parameters import MetricsParameters
from monitor.processing.protocol import ProcessedEvent

__all__ = ["PrometheusMetrics"]

_COUNTERS = {"events": "frames handled (processed or failed)", "hits": "hits found",
             "failed": "frames that could not be read"}
_GAUGES = {"events_per_s": "frames handled per second (last 2 s)", "hit_rate": "rolling hit rate",
           "parameter_set": "number of the live parameter set in force", "assembler_queued": "frames waiting for a worker"}


class PrometheusMetrics:
    """A :class:`~monitor.outputs.protocol.CollectorOutput` serving ``/metrics`` over HTTP."""

    def __init__(self, *, parameters: MetricsParameters) -> None:
        self._parameters = parameters
        self._status: dict[str, Any] = {}
        self._server: Any = None

    def open(self, *, run_dir: Path) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            self._server, _ = start_http_server(self._parameters.port, addr=self._parameters.host, registry=registry)
        except OSError as error:
            raise MonitorError(f"outputs.metrics: cannot serve on {self._parameters.host}:{self._parameters.port}: "
                               f"{error}") from None

    def on_result(self, result: ProcessedEvent) -> None:
        """Everything it shows is in the status."""

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        self._status = status

    def close(self, *, summary: dict[str, Any]) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def collect(self) -> list[Any]:
        """The metric families, from the status as it was at the last tick (prometheus_client calls this)."""
        status = self._status
        families: list[Any] = []
        for key, text in _COUNTERS.items():
            if isinstance(status.get(key), (int, float)):
                families.append(CounterMetricFamily(f"monitor_{key}", text, value=status[key]))
        dropped = CounterMetricFamily("monitor_dropped", "frames dropped, by reason", labels=["reason"])
        for reason, count in (status.get("dropped_by_reason") or {}).items():
            dropped.add_metric([reason], count)
        families.append(dropped)
        for key, text in _GAUGES.items():
            if isinstance(status.get(key), (int, float)):
                families.append(GaugeMetricFamily(f"monitor_{key}", text, value=status[key]))
        last_seen = GaugeMetricFamily("monitor_worker_last_seen_seconds", "seconds since a worker was last heard",
                                      labels=["rank"])
        for rank, age in (status.get("worker_last_seen_s") or {}).items():
            last_seen.add_metric([str(rank)], age)
        families.append(last_seen)
        busy = GaugeMetricFamily("monitor_worker_busy_fraction", "share of the last second a worker spent on events",
                                 labels=["rank"])
        for rank, fraction in (status.get("worker_busy_fraction") or {}).items():
            busy.add_metric([str(rank)], fraction)
        families.append(busy)
        return families
