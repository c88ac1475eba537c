"""The live viewer: ``python -m monitor.viewer tcp://HOST:PORT`` (Qt + pyqtgraph).

It subscribes to the collector's results stream (``docs/results-stream.md``),
shows only the newest message and never asks the monitor to wait: a viewer
that lags skips messages, the monitor does not notice.
"""
