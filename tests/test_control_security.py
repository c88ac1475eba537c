"""The control endpoint behind CURVE: only listed client keys get an answer; the others get
nothing, and are logged."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from helpers import free_tcp_url
from monitor.control import ControlEndpoint, request
from monitor.keys import CurveKeys, main as make_keys


@pytest.fixture
def keys(tmp_path):
    make_keys([str(tmp_path / "server"), "monitor"])
    make_keys([str(tmp_path / "clients"), "beamline"])
    make_keys([str(tmp_path / "elsewhere"), "stranger"])
    return tmp_path


def test_only_a_client_with_a_listed_key_gets_an_answer(keys, caplog):
    url = free_tcp_url()
    endpoint = ControlEndpoint(url, keys=CurveKeys(server_secret_key=keys / "server/monitor.key_secret",
                                                   client_keys=keys / "clients"))
    answering = True

    def answer() -> None:
        while answering:
            for incoming in endpoint.poll():
                endpoint.reply(incoming.identity, {"parameter_set": 0, "peer": incoming.peer})
            time.sleep(0.01)

    with caplog.at_level(logging.WARNING, logger="monitor.control"):
        thread = threading.Thread(target=answer)
        thread.start()
        try:
            server = keys / "server/monitor.key"
            listed = request(url, {"get": True}, client_key=keys / "clients/beamline.key_secret", server_key=server)
            stranger = request(url, {"get": True}, timeout_s=2,
                               client_key=keys / "elsewhere/stranger.key_secret", server_key=server)
            plain = request(url, {"get": True}, timeout_s=2)
            time.sleep(0.3)
        finally:
            answering = False
            thread.join()
            endpoint.close()
    assert listed == {"parameter_set": 0, "peer": "127.0.0.1"}
    assert stranger is None and plain is None
    refused = [r.getMessage() for r in caplog.records if "without an accepted key was refused" in r.getMessage()]
    assert len(refused) >= 2
