"""Command line: ``python -m monitor CONFIG.yaml`` (under ``mpirun -n N`` for N ranks).

Errors end as one line on standard error and an exit code: 2 for a bad
configuration, 1 for anything that went wrong during the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]

ABORT_GRACE_S = 0.5
"""Before ``MPI_Abort``, time for the launcher to forward what this rank printed: Hydra drops the
output still in its pipes when it kills the job, and the summary would be lost with it."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor",
        description="Real-time MPI monitor for X-ray detector data streams (JUNGFRAU 1M). "
                    "Run under mpirun: one collector rank, the others work.",
    )
    parser.add_argument("config", type=Path, help="the YAML configuration (see monitor.yaml)")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--summary-json", type=Path, metavar="FILE", help="write the final figures here as JSON")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="only warnings, errors and the summary")
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import mpi4py

    mpi4py.rc.finalize = False  # the handler decides (skip_rank_finalization); see monitor.mpi.run
    from mpi4py import MPI

    from monitor.config import load_config
    from monitor.console import StatusLine, format_summary
    from monitor.errors import MonitorError
    from monitor.logs import setup_logging
    from monitor.memory import keep_frame_buffers
    from monitor.mpi import run

    rank = MPI.COMM_WORLD.rank
    setup_logging(rank=rank, verbosity=args.verbose - args.quiet)
    try:
        config = load_config(args.config)
    except MonitorError as error:  # every rank reads the same file and fails alike: no rank waits
        if rank == 0:
            print(f"monitor: error: {error}", file=sys.stderr)
        MPI.Finalize()
        return error.exit_code
    if args.check:
        if rank == 0:
            print(f"{args.config}: configuration OK")
        MPI.Finalize()
        return 0

    keep_frame_buffers()
    status = StatusLine(enabled=not args.quiet)
    try:
        outcome = run(config, print_status=status, summary_json=args.summary_json)
    except MonitorError as error:
        print(f"monitor: error: rank {rank}: {error}", file=sys.stderr)
        MPI.COMM_WORLD.Abort(error.exit_code)
        return error.exit_code
    if outcome.summary is not None:
        status.finish()
        print(format_summary(outcome.summary), flush=True)
        for message in outcome.summary["errors"]:
            print(f"monitor: error: {message}", file=sys.stderr)
        if outcome.summary["lost_ranks"]:
            print(f"monitor: error: rank(s) {', '.join(map(str, outcome.summary['lost_ranks']))} lost "
                  "(frozen or dead): the job ends with MPI_Abort", file=sys.stderr, flush=True)
    if outcome.abort:
        time.sleep(ABORT_GRACE_S)
        MPI.COMM_WORLD.Abort(outcome.exit_code)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
