"""Errors become one line, whatever raised them."""

from __future__ import annotations

from mpi4py import MPI

from monitor.errors import one_line


def test_an_mpi_error_stack_becomes_its_first_line():
    class StackedError(Exception):
        __module__ = "mpi4py.MPI"

    error = StackedError("Other MPI error, error stack:\nMPIR_Iprobe(123): ...\nMPID_nem_tcp_connpoll: ...")
    assert one_line(error) == "MPI: Other MPI error"
    assert one_line(MPI.Exception(MPI.ERR_TRUNCATE)).startswith("MPI: Message truncated")


def test_other_errors_keep_their_type_and_message():
    assert one_line(RuntimeError("deliberate failure")) == "RuntimeError: deliberate failure"
    assert one_line(KeyError("detector_data")) == "KeyError: 'detector_data'"
    assert one_line(ValueError()) == "ValueError"
