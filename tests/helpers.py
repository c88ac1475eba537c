"""Test helpers: free ports, configurations derived from the shipped default, mpirun."""

from __future__ import annotations

import contextlib
import random
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

__all__ = ["ROOT", "DEFAULT_CONFIG", "MPIRUN", "assert_balanced", "free_port", "free_ports", "free_tcp_url",
           "process_pid", "write_config"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "monitor.yaml"
MPIRUN = Path(sys.executable).parent / "mpirun"


def _ephemeral_ports() -> range:
    """The kernel's range for the local ports of outgoing connections.

    Test servers stay below it: a ZMQ socket reconnecting to a dead peer takes
    a new local port from this range several times a second, and a listener
    that later binds one of those ports fails with "Address already in use".
    """
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_HANDED_OUT: set[int] = set()


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (receiver streams sit on consecutive ports).

    No port is handed out twice in one test process, so two calls never give
    the same port even though nobody has bound the first one yet.
    """
    ephemeral = _ephemeral_ports()
    for _ in range(200):
        first = random.randrange(10000, 65536 - count)
        ports = range(first, first + count)
        if any(port in ephemeral or port in _HANDED_OUT for port in ports):
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in ports:
                    probe = stack.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        _HANDED_OUT.update(ports)
        return first
    raise RuntimeError(f"no {count} consecutive free ports")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    return free_ports(1)


def free_tcp_url() -> str:
    """A loopback URL nobody listens on right now, for a child process to bind."""
    return f"tcp://127.0.0.1:{free_port()}"


def write_config(folder: Path, changes: dict[str, dict[str, Any]], name: str = "monitor.yaml") -> Path:
    """The shipped ``monitor.yaml`` with ``changes`` merged into its sections, on a free port.

    Naming a ``pipeline`` replaces the whole ``processing_layer`` section.
    """
    yaml = YAML()
    document = yaml.load(DEFAULT_CONFIG.read_text())
    layer = document["data_retrieval_layer"]
    first = free_ports(2)
    layer["simulator"]["url"] = f"tcp://127.0.0.1:{first}"
    layer["assembler"].update(streams=[f"tcp://127.0.0.1:{first}", f"tcp://127.0.0.1:{first + 1}"],
                              bind=f"tcp://127.0.0.1:{free_port()}", stats=f"tcp://127.0.0.1:{free_port()}")
    document["outputs"]["output_dir"] = str(folder / "output")
    document["monitor"]["control_url"] = f"tcp://127.0.0.1:{free_port()}"
    document["outputs"]["results_stream"].update(url=f"tcp://127.0.0.1:{free_port()}",
                                                 request_url=f"tcp://127.0.0.1:{free_port()}")
    for section, values in changes.items():
        if section == "processing_layer" and "pipeline" in values:
            document[section] = {}  # another pipeline: its own keys only
        target = document.setdefault(section, {})
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key].update(value)
            else:
                target[key] = value
    path = folder / name
    with path.open("w") as stream:
        yaml.dump(document, stream)
    return path


def assert_balanced(summary: dict[str, Any], *, sent: int | None = None) -> dict[str, Any]:
    """The run's frame accounting adds up, with nothing unaccounted; returns it for more checks.

    ``sent``: what the source is known to have sent (the test's own figure).
    """
    accounting = summary["accounting"]
    assert accounting["processed"] == summary["events_processed"]
    assert accounting["failed"] == summary["events_failed"]
    counted = accounting["processed"] + accounting["failed"] + sum(accounting["dropped"].values())
    assert accounting["sent"] is not None and accounting["unaccounted"] == 0, accounting
    assert accounting["sent"] == counted, accounting
    if sent is not None:
        assert accounting["sent"] == sent, accounting
    return accounting


def process_pid(matches: Callable[[list[bytes], list[bytes]], bool], what: str, timeout: float = 60) -> int:
    """The pid of the first process whose command line and environment (NUL-split) ``matches``
    accepts, waited for up to ``timeout`` seconds (AssertionError naming ``what`` after that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if entry.name.isdigit() and matches(command, environ):
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no {what}")
