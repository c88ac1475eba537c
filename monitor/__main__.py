"""Command line: ``python -m monitor CONFIG.yaml`` (under ``mpirun -n N`` for N ranks).

Errors end as one line on standard error and an exit code: 2 for a bad
configuration or a launch that gave MPI one rank, 1 for anything that went
wrong during the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.errors import MonitorError
    from monitor.launch import Launch

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
    parser.add_argument("--version", action=_VersionAction, help="print the versions and the MPI library, then exit")
    parser.add_argument("config", type=Path, help="the YAML configuration (see monitor.yaml)")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--summary-json", type=Path, metavar="FILE", help="write the final figures here as JSON")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="only warnings, errors and the summary")
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


class _VersionAction(argparse.Action):
    """``--version`` without a configuration, and without starting MPI (one process, any launcher)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from monitor.launch import version_report

        print(version_report())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from monitor.errors import MonitorError
    from monitor.launch import Launch, start_mpi

    launch = Launch.from_environment(os.environ)
    try:  # first, before the slow imports: a mismatched launch ends every task within a second
        MPI = None if args.check else start_mpi(environ=os.environ)  # --check: one process's work
    except MonitorError as error:
        return _report(error, launch)
    from monitor.config import load_config

    try:
        config = load_config(args.config)
    except MonitorError as error:  # every rank reads the same file and fails alike: no rank waits
        if MPI is not None:
            MPI.Finalize()
        return _report(error, launch)
    if args.check:
        if launch.prints:
            print(f"{args.config}: configuration OK")
        return 0

    from monitor.console import StatusLine, format_summary
    from monitor.logs import setup_logging
    from monitor.memory import keep_frame_buffers
    from monitor.mpi import run

    rank = MPI.COMM_WORLD.rank
    setup_logging(rank=rank, verbosity=args.verbose - args.quiet)
    keep_frame_buffers()
    status = StatusLine(enabled=not args.quiet)
    try:
        outcome = run(config, print_status=status, summary_json=args.summary_json)
    except MonitorError as error:
        print(f"monitor: error: rank {rank}: {error}", file=sys.stderr)
        if not MPI.Is_finalized():  # the collector finalizes before its last files are closed
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


def _report(error: MonitorError, launch: Launch) -> int:
    """One line for a problem every task has alike, from the launcher's task 0; the error's exit code."""
    if launch.prints:
        print(f"monitor: error: {error}", file=sys.stderr)
    return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
