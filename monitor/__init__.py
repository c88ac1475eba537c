"""Real-time, MPI-parallel monitor for X-ray detector data streams.

The data path reads top to bottom: a frame sender (PSI's frame synchronizer, our
assembler or our simulator) -> :mod:`handlers` (one event = one detector frame)
-> :mod:`sources` (raw frame, calibration, timestamp, event id) ->
:mod:`monitor.processing` (per-event work on workers, aggregation on the
collector) -> outputs.  :mod:`monitor.mpi` moves results between ranks.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
