"""Test helper: the shipped EIGER2 example (``examples/eiger2-stream2.yaml``) on free ports, in a test's folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from helpers import MPIRUN, ROOT, free_tcp_url

__all__ = ["EXAMPLE", "example_config", "run_monitor"]

EXAMPLE = ROOT / "examples" / "eiger2-stream2.yaml"


def example_config(folder: Path, *, retrieval: dict[str, Any] | None = None, simulator: dict[str, Any] | None = None,
                   geometry: Path | None = None, **layer: Any) -> Path:
    """The example writing into ``folder`` (made if need be), the source's geometry file there too;
    ``layer`` and ``simulator`` change its ``data_retrieval_layer`` keys, ``retrieval`` replaces the
    section (another handler), ``geometry`` is a geometry file of one's own (the source writes none)."""
    folder.mkdir(parents=True, exist_ok=True)
    yaml = YAML()
    document = yaml.load(EXAMPLE.read_text())
    written = str(folder / "detector-from-source.geom")
    if retrieval is not None:
        document["data_retrieval_layer"] = retrieval
    else:
        document["data_retrieval_layer"]["simulator"].update(url=free_tcp_url(), **(simulator or {}))
        document["data_retrieval_layer"]["relay_bind"] = free_tcp_url()
    document["data_retrieval_layer"].update(geometry_file=None if geometry else written, **layer)
    document["processing_layer"]["geometry_file"] = str(geometry or written)
    document["outputs"]["output_dir"] = str(folder / "output")
    document["outputs"]["results_stream"].update(url=free_tcp_url(), request_url=free_tcp_url())
    path = folder / "eiger2.yaml"
    with path.open("w") as stream:
        yaml.dump(document, stream)
    return path


def run_monitor(ranks: int, config: Path, summary: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``mpirun -n ranks python -m monitor config --summary-json summary``, as a user starts it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.run([str(MPIRUN), "-n", str(ranks), sys.executable, "-m", "monitor", str(config),
                           "--summary-json", str(summary)], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)
