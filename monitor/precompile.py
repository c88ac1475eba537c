"""Compile and cache, once, every numba kernel a run of a configuration uses: ``python -m monitor.precompile monitor.yaml``.

Every rank compiles the kernels it calls, and numba keeps them in the
package's ``__pycache__`` for the next run.  On a fresh install, though, all
ranks compile at once: on the 2-core test machine seven workers took 35 s,
while the simulated detector sent on and the frame assembler dropped the first
800 frames of the demo (counted ``workers_behind``).  Run once before the first
run (``make`` does, after installing), the ranks of every later run load the
cached kernels in about a second.  It opens no socket and writes no file but
numba's cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from monitor.config import load_config
from monitor.errors import ConfigurationError
from monitor.outputs.stored_pixels import StoredPixels
from monitor.simulation import SimulatedJungfrau1M

__all__ = ["main", "precompile"]


def precompile(config_path: Path) -> float:
    """Compile what a run of ``config_path`` calls: its pipeline (through the pipeline's own warm-up in
    ``initialize_processing_node``), the simulated detector and the hit files' pixel store.  Returns the
    seconds it took."""
    start = time.perf_counter()
    config = load_config(config_path)
    pipeline = config.pipeline_class(parameters=config.pipeline_parameters)
    pipeline.initialize_processing_node(node_rank=1, node_pool_size=2)
    detector = SimulatedJungfrau1M(seed=0, hit_fraction=1.0)
    raw, _ = detector.frame(0)
    photons = np.zeros(raw.shape, dtype=np.float32)
    for dtype in (np.int16, np.int32, np.float32):
        StoredPixels(raw.shape, np.dtype(dtype)).store(photons, np.ones(raw.shape, dtype=bool))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.precompile", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, nargs="?", default=Path("monitor.yaml"), help="the run's YAML")
    args = parser.parse_args(argv)
    try:
        seconds = precompile(args.config)
    except ConfigurationError as error:
        print(f"monitor.precompile: {error}", file=sys.stderr)
        return 2
    print(f"monitor.precompile: the kernels of {args.config} are compiled and cached ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
