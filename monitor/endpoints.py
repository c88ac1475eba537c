"""ZeroMQ endpoint strings: checked before any socket sees them.

ZMQ's own answer to a malformed endpoint is a bare ``Invalid argument`` at
connect time, on every worker at once; checking here turns it into one line
that names the value, at configuration time.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["Endpoint", "check_endpoint", "endpoint_for_peers", "endpoint_with_port_offset", "is_loopback"]

_TCP = re.compile(r"^tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.*-]+):(?P<port>\d+|\*)$")
_OTHER = re.compile(r"^(ipc|inproc)://.+$")


def check_endpoint(url: str) -> str:
    """Return ``url`` if it is a usable ZMQ endpoint, else raise ValueError saying why."""
    match = _TCP.match(url)
    if match:
        port = match["port"]
        if port != "*" and not 1 <= int(port) <= 65535:
            raise ValueError(f"port {port} of {url!r} is outside 1-65535")
        return url
    if _OTHER.match(url):
        return url
    raise ValueError(f"{url!r} is not a ZMQ endpoint (expected tcp://HOST:PORT, ipc://PATH or inproc://NAME)")


Endpoint = Annotated[str, AfterValidator(check_endpoint)]
"""A configuration field that holds a ZMQ endpoint, checked as the YAML is read."""


def endpoint_with_port_offset(url: str, offset: int) -> str:
    """The endpoint ``offset`` ports above ``url``'s (receiver streams sit on consecutive ports)."""
    match = _TCP.match(check_endpoint(url))
    if match is None or match["port"] == "*":
        if offset == 0:
            return url
        raise ValueError(f"{url!r} has no port to count up from")
    return f"tcp://{match['host']}:{int(match['port']) + offset}"


_WILDCARD_HOSTS = {"*", "0.0.0.0", "[::]"}
_LOOPBACK_NAMES = {"localhost", "[::1]", "ip6-localhost"}


def endpoint_for_peers(url: str, host: str) -> str:
    """Where peers connect to a socket bound on ``url``: a wildcard host (every interface) becomes
    ``host``, the binding node's name; a named host stays."""
    match = _TCP.match(url)
    if match is None or match["host"] not in _WILDCARD_HOSTS:
        return url
    return f"tcp://{host}:{match['port']}"


def is_loopback(url: str) -> bool:
    """True for a TCP endpoint only this host can reach (127.x, ::1, localhost); ipc and inproc too."""
    match = _TCP.match(url)
    if match is None:
        return True
    return match["host"].startswith("127.") or match["host"] in _LOOPBACK_NAMES
