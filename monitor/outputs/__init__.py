"""What a run shows and keeps: results stream for viewers, hit files, end-of-run report.

This package module holds only the light parts every rank may import (the
parameters of the ``outputs:`` YAML section and the output Protocol).  The
collector builds and drives the outputs through :mod:`monitor.outputs.group`,
which pulls in zmq, h5py and matplotlib::

    from monitor.outputs.group import OutputGroup, build_outputs, create_run_dir

    run_dir = create_run_dir(parameters.output_dir)
    outputs = OutputGroup(build_outputs(parameters, monitor_parameters=config_as_dict))
    outputs.open(run_dir=run_dir)
    try:
        ...  # outputs.on_result(result) per result, outputs.on_tick(...) at 5-10 Hz
    finally:
        outputs.close(summary=pipeline.summary())
"""

from __future__ import annotations

from monitor.outputs.parameters import (
    HitFileParameters,
    LiveFeedParameters,
    OutputParameters,
    ReportParameters,
    ResultsStreamParameters,
)
from monitor.outputs.protocol import CollectorOutput, CountingOutput

__all__ = [
    "CollectorOutput",
    "CountingOutput",
    "HitFileParameters",
    "LiveFeedParameters",
    "OutputParameters",
    "ReportParameters",
    "ResultsStreamParameters",
]
