"""Every TCP port a run will listen on, tried before anything starts.

A taken port found only when its socket binds costs the run its start-up (the
simulator and the assembler are already running, the workers compiling) and
reads as a failure during the run.  Tried first, on the collector's host, it is
a configuration error: one line naming the key and the address, exit code 2,
within a second.  The try binds a plain socket the way ZeroMQ and the metrics
server bind theirs (``SO_REUSEADDR``), so a port ZeroMQ would take passes, and
releases it at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from monitor.endpoints import is_loopback
from monitor.errors import ConfigurationError

__all__ = ["Listener", "check_listeners", "check_reachable", "tcp_listener"]

Listener = tuple[str, str, int]
"""(configuration key, host, port) of one address the run will bind."""

_ANY = {"*", "0.0.0.0", ""}


def tcp_listener(key: str, url: str | None) -> list[Listener]:
    """The listener of a ``tcp://HOST:PORT`` endpoint; none for another transport or a ``*`` port."""
    if url is None or not url.startswith("tcp://"):
        return []
    host, _, port = url.removeprefix("tcp://").rpartition(":")
    if port == "*":
        return []
    return [(key, host.strip("[]"), int(port))]


def check_listeners(listeners: Iterable[Listener]) -> None:
    """Raise :class:`ConfigurationError` for the first address that cannot be bound here, or that two
    keys both claim."""
    claimed: dict[tuple[str, int], str] = {}
    for key, host, port in listeners:
        address = (host if host not in _ANY else "*", port)
        if address in claimed:
            raise ConfigurationError(f"{key}: {host}:{port} is also {claimed[address]}'s address")
        claimed[address] = key
        problem = _why_unbindable(host, port)
        if problem:
            raise ConfigurationError(f"{key}: cannot listen on {host}:{port}: {problem}")


def _why_unbindable(host: str, port: int) -> str | None:
    try:
        infos = socket.getaddrinfo(None if host in _ANY else host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"unknown host ({error.strerror})"
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError as error:
            return error.strerror or str(error)
    return None


def check_reachable(url: str | None, *, here: str | None, remote_hosts: list[str]) -> None:
    """Raise :class:`ConfigurationError` when workers on other hosts would connect to a loopback
    address: they would reach nothing (or some other program on their own host) and wait for ever."""
    if url is None or not remote_hosts or not is_loopback(url):
        return
    port = url.rpartition(":")[2]
    raise ConfigurationError(
        f"data_retrieval_layer: workers on {', '.join(sorted(set(remote_hosts)))} would connect to {url}, "
        f"their own loopback: bind the frame sender to every interface (tcp://*:{port}; workers then "
        f"connect to {here}) or to {here}'s name")
