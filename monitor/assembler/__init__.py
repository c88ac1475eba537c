"""The frame assembler: JUNGFRAU receiver streams in, whole frames out, as PSI's synchronizer sends them.

Each receiver stream (one per module, or per half-module with two UDP
interfaces) is a PUB socket sending ``[json, pixels]`` per image and a
single-part end message per acquisition.  The assembler subscribes to all of
them, matches images by frame number and sends each whole frame once, on a
PUSH socket, as start / frame / series_end messages (``monitor.wire``): the
workers cannot tell it from PSI's ``slsFrameSynchronizer``, except that the
pixels are real.  Every frame number is accounted for (sent, dropped and why,
or a gap) in the log, on a JSON stats socket and in ``series_end``.

Modules, in the order data flows through them: ``parameters`` (what it is
told), ``matching`` (images -> frames -> acquisitions, no sockets),
``accounting`` (the counts), ``service`` (sockets and the poll loop),
``process`` (child process and stats client for the monitor),
``command_line`` (``python -m monitor.assembler``).
"""

from __future__ import annotations

from monitor.assembler.parameters import AssemblerParameters, IncompletePolicy, QueuePolicy
from monitor.assembler.process import AssemblerProcess, AssemblerStats, start_assembler
from monitor.assembler.service import Assembler

__all__ = [
    "Assembler",
    "AssemblerParameters",
    "AssemblerProcess",
    "AssemblerStats",
    "IncompletePolicy",
    "QueuePolicy",
    "start_assembler",
]
