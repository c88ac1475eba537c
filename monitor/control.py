"""Steering a running monitor: ``python -m monitor.control tcp://HOST:PORT get|set KEY=VALUE ...``.

The collector binds a ROUTER socket (``monitor.control_url``, 127.0.0.1 by
default) and answers JSON requests (over ZeroMQ's CURVE security when
``monitor.control_keys`` names the server's key pair and the folder of the
client keys it accepts: a client without one of them gets nothing, and its
failed handshake is logged; ``python -m monitor.keys`` makes key pairs): ``{"get": true}`` with the live
parameters and the number of the set in force, ``{"set": {"peakfinder8.
adc_threshold": 0.3}}`` with the new set's number, or the reason it was
refused (then nothing changed).  JSON only: nothing from this socket is ever
unpickled or evaluated.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from ruamel.yaml import YAML
from zmq.utils.monitor import recv_monitor_message

from monitor.errors import MonitorError, shorten
from monitor.keys import CurveKeys
from monitor.logs import RateLimitedLog

log = logging.getLogger(__name__)

__all__ = ["ControlEndpoint", "ControlRequest", "main"]

REPLY_TIMEOUT_S = 5.0

MAX_REQUEST_BYTES = 64 << 10
"""A larger message ends its sender's connection (ZeroMQ's own limit): a request is a few keys."""

REQUESTS_PER_POLL = 4
"""Requests answered per poll (one per 50 ms): 80 a second, far above a person's or a script's
pace; a client that floods waits in its own queue (bounded below) instead of taking the
collector's loop, and whatever it sends past that queue is dropped by ZeroMQ."""

RECEIVE_QUEUE = 100
"""Requests queued for the collector; a flood past it is dropped."""


class ControlRequest:
    """One request as it arrived: who sent it (the peer's address) and what it asks."""

    def __init__(self, identity: bytes, peer: str, body: dict[str, Any]) -> None:
        self.identity = identity
        self.peer = peer
        self.body = body


class ControlEndpoint:
    """The collector's end: non-blocking, so that steering never slows the run."""

    def __init__(self, url: str, *, keys: CurveKeys | None = None, context: zmq.Context | None = None) -> None:
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self._socket.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
        self._socket.setsockopt(zmq.SNDHWM, RECEIVE_QUEUE)
        self._problems = RateLimitedLog(log, interval_s=10.0, burst=3)
        self._authenticator = None
        self._handshakes = None
        if keys is not None:
            self._authenticator = keys.serve_on(self._socket, self._context)
            self._handshakes = self._socket.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        try:
            self._socket.bind(url)
        except zmq.ZMQError as error:
            self._socket.close(linger=0)
            raise MonitorError(f"monitor.control_url: cannot bind {url}: {error}") from None

    def poll(self) -> list[ControlRequest]:
        """Up to REQUESTS_PER_POLL requests waiting now (malformed ones are answered with the reason
        and left out).  Never raises: whatever a client sends, the run goes on."""
        self._log_refused_handshakes()
        requests = []
        for _ in range(REQUESTS_PER_POLL):
            try:
                identity, *_, payload = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            except zmq.ZMQError as error:
                self._problems.warning(f"control: a request could not be read ({error})")
                break
            peer = _peer_address(payload)
            try:
                body = json.loads(payload.bytes)
                if not isinstance(body, dict):
                    raise ValueError("a request is a JSON object")
            except ValueError as error:
                self._problems.warning(f"control: malformed request from {peer}: {shorten(str(error))}")
                self.reply(identity.bytes, {"error": f"malformed request: {shorten(str(error))}"})
                continue
            requests.append(ControlRequest(identity.bytes, peer, body))
        return requests

    def warn(self, message: str) -> None:
        """A refused request, logged at a bounded rate (a client may send thousands)."""
        self._problems.warning(message)

    def _log_refused_handshakes(self) -> None:
        while self._handshakes is not None and self._handshakes.poll(0):
            event = recv_monitor_message(self._handshakes)
            log.warning("control: a client without an accepted key was refused (%s)",
                        zmq.Event(event["event"]).name.lower().replace("_", " "))

    def reply(self, identity: bytes, answer: dict[str, Any]) -> None:
        """Send at once or not at all: a client that does not read its answers loses them."""
        try:
            self._socket.send_multipart([identity, b"", json.dumps(answer).encode()], zmq.NOBLOCK)
        except zmq.ZMQError as error:
            self._problems.warning(f"control: an answer could not be sent ({error})")

    def close(self) -> None:
        if self._handshakes is not None:
            self._socket.disable_monitor()
            self._handshakes.close(linger=0)
        self._socket.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()


def _peer_address(message: zmq.Frame) -> str:
    """Who sent it; ZeroMQ cannot say for every kind of peer (an old ZMTP 1.0 greeting)."""
    try:
        return message.get("Peer-Address") or "unknown peer"
    except zmq.ZMQError:
        return "unknown peer"


def _assignments(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each value read as a YAML scalar (0.3, 8, true, a string)."""
    yaml = YAML(typ="safe", pure=True)
    changes = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"{pair!r}: expected KEY=VALUE")
        changes[key] = yaml.load(value)
    return changes


def request(url: str, body: dict[str, Any], *, timeout_s: float = REPLY_TIMEOUT_S,
            client_key: Path | None = None, server_key: Path | None = None) -> dict[str, Any] | None:
    """Send one request (with CURVE when given this client's secret key file and the server's
    public one); the answer, or None if none came in ``timeout_s``."""
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    if client_key is not None and server_key is not None:
        socket.curve_publickey, socket.curve_secretkey = zmq.auth.load_certificate(client_key)
        socket.curve_serverkey, _ = zmq.auth.load_certificate(server_key)
    try:
        socket.connect(url)
        socket.send(json.dumps(body).encode())
        if not socket.poll(int(timeout_s * 1000)):
            return None
        try:
            answer = json.loads(socket.recv())
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ValueError(f"the answer from {url} is not a monitor's control reply: is it the "
                             "monitor.control_url?")
        return answer
    finally:
        socket.close()
        context.term()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.control", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the monitor's control_url, e.g. tcp://127.0.0.1:5613")
    parser.add_argument("action", choices=["get", "set"])
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                        help="set: e.g. peakfinder8.adc_threshold=0.3 min_num_peaks_for_hit=8")
    parser.add_argument("--key", type=Path, metavar="FILE", help="this client's secret key file (CURVE)")
    parser.add_argument("--server-key", type=Path, metavar="FILE", help="the monitor's public key file (CURVE)")
    args = parser.parse_args(argv)
    try:
        body: dict[str, Any] = {"get": True} if args.action == "get" else {"set": _assignments(args.assignments)}
    except ValueError as error:
        print(f"monitor.control: error: {error}", file=sys.stderr)
        return 2
    if args.action == "set" and not body["set"]:
        print("monitor.control: error: set needs at least one KEY=VALUE", file=sys.stderr)
        return 2
    try:
        answer = request(args.url, body, client_key=args.key, server_key=args.server_key)
    except (ValueError, OSError, zmq.ZMQError) as error:
        print(f"monitor.control: error: {error}", file=sys.stderr)
        return 2
    if answer is None:
        print(f"monitor.control: error: no answer from {args.url} within {REPLY_TIMEOUT_S:g} s", file=sys.stderr)
        return 2
    if "error" in answer:
        print(f"monitor.control: refused: {answer['error']}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
