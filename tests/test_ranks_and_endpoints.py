"""Rank roles from the handler's answer, and ZMQ endpoint checks."""

from __future__ import annotations

import pytest

from monitor.endpoints import check_endpoint, endpoint_with_port_offset
from monitor.mpi.ranks import RankLayout


@pytest.mark.parametrize(("designated", "size", "collector"), [("first", 2, 0), ("first", 8, 0), ("last", 2, 1), ("last", 8, 7)])
def test_the_collector_is_rank_0_or_the_last_rank(designated, size, collector):
    layouts = [RankLayout.from_handler(rank=r, size=size, designated=designated) for r in range(size)]
    assert [layout.is_collector for layout in layouts] == [r == collector for r in range(size)]
    assert layouts[0].workers == [r for r in range(size) if r != collector]


def test_one_rank_or_a_bad_answer_is_refused():
    with pytest.raises(ValueError, match="at least 2 MPI ranks"):
        RankLayout.from_handler(rank=0, size=1, designated="first")
    with pytest.raises(ValueError, match="'first' or 'last'"):
        RankLayout.from_handler(rank=0, size=4, designated="middle")  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:5555", "tcp://*:5555", "tcp://det-host.psi.ch:30001",
                                 "tcp://[::1]:5555", "ipc:///tmp/frames", "inproc://frames"])
def test_good_endpoints_pass(url):
    assert check_endpoint(url) == url


@pytest.mark.parametrize(("url", "why"), [("tcp://127.0.0.1:notaport", "not a ZMQ endpoint"),
                                          ("tcp://127.0.0.1:0", "outside 1-65535"),
                                          ("127.0.0.1:5555", "not a ZMQ endpoint"),
                                          ("http://host:80", "not a ZMQ endpoint")])
def test_bad_endpoints_say_why(url, why):
    with pytest.raises(ValueError, match=why):
        check_endpoint(url)


def test_receiver_streams_count_ports_up():
    assert endpoint_with_port_offset("tcp://127.0.0.1:30001", 3) == "tcp://127.0.0.1:30004"
