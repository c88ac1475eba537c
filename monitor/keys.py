"""CURVE key pairs for the monitor's sockets: ``python -m monitor.keys FOLDER NAME``.

It writes ``NAME.key`` (public: give it to the other side) and
``NAME.key_secret`` (keep it).  The collector's control endpoint serves with
its own pair and accepts only the clients whose public keys lie in one folder
(``monitor.control_keys``); ``python -m monitor.control --key`` and
``--server-key`` name a client's secret file and the server's public one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import zmq
import zmq.auth
from pydantic import BaseModel, ConfigDict
from zmq.auth.thread import ThreadAuthenticator

__all__ = ["CurveKeys", "main"]


class CurveKeys(BaseModel):
    """A server's key pair and the folder of the client keys it lets in (the YAML's ``control_keys``)."""

    model_config = ConfigDict(extra="forbid")

    server_secret_key: Path
    """This server's ``NAME.key_secret``."""
    client_keys: Path
    """A folder of the ``*.key`` public files of the clients allowed in."""

    def serve_on(self, socket: zmq.Socket, context: zmq.Context) -> ThreadAuthenticator:
        """Make ``socket`` a CURVE server that admits only the listed clients; the authenticator
        thread must be stopped when the socket closes."""
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve(domain="*", location=str(self.client_keys))
        public, secret = zmq.auth.load_certificate(self.server_secret_key)
        socket.curve_publickey, socket.curve_secretkey = public, secret
        socket.curve_server = True
        return authenticator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.keys", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("name", help="e.g. monitor (the server) or the client's user or host name")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(args.folder, args.name)
    print(f"public key {public} (give it to the other side), secret key {secret} (keep it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
