"""The outputs of one run: its folder, the outputs the YAML asks for, driven as one.

The collector loop holds one :class:`OutputGroup` and calls it like a single
:class:`~monitor.outputs.protocol.CollectorOutput`.  The group adds the
outputs' own counters (hits written and dropped, messages published) to the
status every output sees, and to the summary each one is closed with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monitor.errors import ConfigurationError
from monitor.outputs.experiment import experiment_from_document
from monitor.outputs.hit_files import HitFiles
from monitor.outputs.live_feed import LiveFeed
from monitor.outputs.metrics import PrometheusMetrics
from monitor.outputs.parameters import OutputParameters
from monitor.outputs.protocol import CollectorOutput, CountingOutput
from monitor.outputs.report import RunReport
from monitor.outputs.results_stream import ResultsStream
from monitor.processing.protocol import ProcessedEvent

__all__ = ["OutputGroup", "build_outputs", "create_run_dir"]

log = logging.getLogger(__name__)


def create_run_dir(output_dir: Path) -> Path:
    """Create and return a new, empty ``output_dir/run-YYYYmmdd-HHMMSS-<n>`` folder.

    ``<n>`` counts up from 0 until the name is free, so two runs started in the
    same second (or a restart) never share a folder.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            run_dir = output_dir / f"run-{stamp}-{n}"
            try:
                run_dir.mkdir()
            except FileExistsError:
                continue
            return run_dir
    except OSError as error:
        raise ConfigurationError(f"outputs.output_dir: cannot create a run folder in {output_dir}: {error}") from error
    raise ConfigurationError(f"outputs.output_dir: {output_dir} already holds 1000 runs named run-{stamp}-*")


def build_outputs(
    parameters: OutputParameters,
    *,
    monitor_parameters: Mapping[str, Any] | None = None,
) -> list[CollectorOutput]:
    """The outputs ``parameters`` enables, in closing order: hit files, live feed, results stream, report.

    ``monitor_parameters`` (the whole configuration, JSON-like) is what the
    results stream answers "parameters" requests with, and where the hit
    files and the live feed find the run's photon energy and geometry.  The
    report comes last so that the summary it writes holds the other outputs'
    final counters.
    """
    outputs: list[CollectorOutput] = []
    experiment = None
    if parameters.hit_files.enabled or parameters.live_feed.enabled:
        experiment = experiment_from_document(monitor_parameters)
    if parameters.hit_files.enabled:
        outputs.append(HitFiles(parameters=parameters.hit_files, experiment=experiment))
    if parameters.live_feed.enabled:
        outputs.append(LiveFeed(parameters=parameters.live_feed, experiment=experiment))
    if parameters.results_stream.enabled:
        outputs.append(ResultsStream(parameters=parameters.results_stream, monitor_parameters=monitor_parameters))
    if parameters.metrics.enabled:
        outputs.append(PrometheusMetrics(parameters=parameters.metrics))
    if parameters.report.enabled:
        outputs.append(RunReport())
    return outputs


class OutputGroup:
    """Several outputs driven as one :class:`CollectorOutput`; every one is closed, whatever fails."""

    def __init__(self, outputs: Sequence[CollectorOutput]) -> None:
        self.outputs = list(outputs)
        self._opened: list[CollectorOutput] = []
        self.run_dir: Path | None = None

    def open(self, *, run_dir: Path) -> None:
        """Open each output in order; if one fails, those already open are closed and the error raised."""
        self.run_dir = run_dir
        for output in self.outputs:
            try:
                output.open(run_dir=run_dir)
            except BaseException:
                self.close(summary={"error": "an output failed to open"})
                raise
            self._opened.append(output)

    def on_result(self, result: ProcessedEvent) -> None:
        for output in self._opened:
            output.on_result(result)

    def on_tick(self, *, status: dict[str, Any], snapshot: dict[str, Any]) -> None:
        status = {**status, **self.counters()}
        for output in self._opened:
            output.on_tick(status=status, snapshot=snapshot)

    def close(self, *, summary: dict[str, Any]) -> None:
        """Close every open output in order; the first error is raised once all are closed."""
        first_error: BaseException | None = None
        while self._opened:
            output = self._opened.pop(0)
            try:
                output.close(summary={**summary, "outputs": self.counters()})
            except BaseException as error:  # the others must still close (files, sockets)
                if first_error is None:
                    first_error = error  # the caller reports it
                else:
                    log.error("closing %s failed: %s", type(output).__name__, error)
        if first_error is not None:
            raise first_error

    def counters(self) -> dict[str, int]:
        """Every output's running counters in one flat dict (names are unique across outputs)."""
        counters: dict[str, int] = {}
        for output in self.outputs:
            if isinstance(output, CountingOutput):
                counters |= output.counters()
        return counters
