"""``python -m monitor.assembler STREAM_URL... --bind URL [...]``.

The options are made from :class:`AssemblerParameters` itself (names, help
text, validation), so that the command line and the YAML section cannot drift
apart, and :func:`arguments_for` turns parameters back into the same options
for the subprocess the monitor starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pydantic

from monitor.assembler.parameters import AssemblerParameters
from monitor.assembler.service import Assembler
from monitor.atomic_files import write_text_atomically
from monitor.errors import ConfigurationError, MonitorError
from monitor.memory import keep_frame_buffers

__all__ = ["main", "arguments_for", "parse_arguments"]

_POSITIONAL = "streams"


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _label(location: tuple[int | str, ...]) -> str:
    """How the command line names the value a validation error is about."""
    name = str(location[0]) if location else "?"
    return "STREAM_URL" if name == _POSITIONAL else _option(name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.assembler",
        description="Assemble JUNGFRAU receiver streams into whole frames, sent as PSI's frame synchronizer does.",
    )
    for name, field in AssemblerParameters.model_fields.items():
        help_text = " ".join((field.description or "").split())
        if name == _POSITIONAL:
            parser.add_argument(name, nargs="+", metavar="STREAM_URL", help=help_text)
        elif field.annotation is bool:
            parser.add_argument(_option(name), dest=name, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(_option(name), dest=name, metavar="VALUE",
                                help=f"{help_text} (default: {field.default})")
    parser.add_argument("--parent", type=int, metavar="PID",
                        help="exit when this process is no longer our parent (set by start_assembler)")
    parser.add_argument("--final-report", type=Path, metavar="FILE",
                        help="on exit, write every acquisition's final counts here as JSON (the monitor reads it)")
    return parser


@dataclass(frozen=True)
class _Options:
    """What the command line says besides the assembler's parameters."""

    parent: int | None
    final_report: Path | None


def parse_arguments(argv: Sequence[str]) -> tuple[AssemblerParameters, _Options]:
    """Parameters (validated by the model, as the YAML is), the parent pid to watch, the report file."""
    namespace = vars(_parser().parse_args(argv))
    options = _Options(parent=namespace.pop("parent"), final_report=namespace.pop("final_report"))
    given = {name: value for name, value in namespace.items() if value is not None}
    try:
        return AssemblerParameters.model_validate(given), options
    except pydantic.ValidationError as error:
        problems = "; ".join(f"{_label(e['loc'])}: {e['msg']}" for e in error.errors())
        raise ConfigurationError(f"assembler: {problems}") from None


def arguments_for(parameters: AssemblerParameters) -> list[str]:
    """The command-line arguments that give back ``parameters`` (defaults left out)."""
    arguments = list(parameters.streams)
    for name, value in parameters.model_dump(exclude_defaults=True, exclude={_POSITIONAL}).items():
        if value is True:
            arguments.append(_option(name))
        else:
            arguments += [_option(name), str(value)]
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    """Run until the acquisition ends (if told to), SIGTERM/SIGINT, or the parent dies."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        parameters, options = parse_arguments(sys.argv[1:] if argv is None else argv)
        keep_frame_buffers()
        parent = options.parent
        with Assembler(parameters) as assembler:
            try:
                assembler.run(should_stop=lambda: stop_requested,
                              orphaned=lambda: parent is not None and os.getppid() != parent)
            finally:
                if options.final_report is not None:
                    write_text_atomically(options.final_report, json.dumps(assembler.final_report()))
    except MonitorError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    return 0
