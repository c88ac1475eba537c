"""What the assembler counts, per acquisition and per stream, and how it says so.

Every frame number the streams announce ends up in exactly one place: sent
(whole or marked incomplete), dropped with a reason, or a gap no stream
delivered.  The same counts feed the status line, the final summary, the JSON
stats socket and the ``comleteFrames`` of ``series_end``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["StreamCounts", "AcquisitionCounts", "LifetimeCounts", "DropReason", "RateLimitedLog"]

DropReason = Literal["incomplete", "superseded", "shutdown"]
"""Why a frame was not sent: the incomplete policy said drop; a newer frame replaced it
(latest_only); the assembler stopped before it was sent.  (A lossless queue drops nothing:
when it is full the streams are not read, and what the receivers then drop shows as gaps.)"""


@dataclass(slots=True)
class StreamCounts:
    """One receiver stream within one acquisition."""

    url: str
    port: int
    images: int = 0
    """Data messages accepted."""
    lost_packets: int = 0
    """Images the receiver marked ``completeImage`` 0 (0xFFFF rows inside)."""
    gaps: int = 0
    """Frame numbers this stream skipped between two of its images."""
    late: int = 0
    """Images discarded because their frame had already been resolved (or came out of order)."""
    bad: int = 0
    """Messages that did not parse (see the log for why)."""
    sent: int = 0
    """Images of this stream inside frames handed to the workers (``comleteFrames``)."""
    first_frame: int | None = None
    last_frame: int | None = None
    ended: bool = False
    end_missing: bool = False
    """The acquisition closed without this stream's end message (timeout or a new acquisition)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "port": self.port, "images": self.images, "lost_packets": self.lost_packets,
            "gaps": self.gaps, "late": self.late, "bad": self.bad, "sent": self.sent,
            "first_frame": self.first_frame, "last_frame": self.last_frame, "ended": self.ended,
            "end_missing": self.end_missing,
        }


@dataclass(slots=True)
class AcquisitionCounts:
    """One acquisition: from its first data message to the end messages of all streams."""

    number: int
    streams: list[StreamCounts]
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    assembled: int = 0
    """Frames with every part and no lost packets."""
    incomplete: int = 0
    """Frames missing a part or holding lost packets (sent marked, or dropped: see ``dropped``)."""
    missing_parts: int = 0
    """Module images absent from incomplete frames."""
    sent: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    blocked_s: float = 0.0
    """Seconds the streams went unread because the lossless queue to the workers was full."""
    first_frame: int | None = None
    last_frame: int | None = None

    @property
    def resolved(self) -> int:
        return self.assembled + self.incomplete

    @property
    def gaps(self) -> int:
        """Frame numbers between the first and last frame that no stream delivered."""
        if self.first_frame is None or self.last_frame is None:
            return 0
        return self.last_frame - self.first_frame + 1 - self.resolved

    def add_dropped(self, reason: DropReason) -> None:
        self.dropped[reason] += 1

    def count_frame(self, number: int, *, complete: bool, missing_parts: int) -> None:
        if complete:
            self.assembled += 1
        else:
            self.incomplete += 1
            self.missing_parts += missing_parts
        self.first_frame = number if self.first_frame is None else min(self.first_frame, number)
        self.last_frame = number if self.last_frame is None else max(self.last_frame, number)

    def as_dict(self) -> dict[str, Any]:
        return {
            "acquisition": self.number, "started_at": self.started_at, "ended_at": self.ended_at,
            "assembled": self.assembled, "incomplete": self.incomplete, "missing_parts": self.missing_parts,
            "sent": self.sent, "dropped": dict(self.dropped), "gaps": self.gaps, "blocked_s": round(self.blocked_s, 3),
            "first_frame": self.first_frame, "last_frame": self.last_frame,
            "streams": [stream.as_dict() for stream in self.streams],
        }

    def summary(self) -> str:
        """One line: what came in, what went out, what was lost and why."""
        dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.dropped.items())) or "none"
        images = "/".join(str(s.images) for s in self.streams)
        problems = {
            "lost packets": sum(s.lost_packets for s in self.streams),
            "stream gaps": sum(s.gaps for s in self.streams),
            "late": sum(s.late for s in self.streams),
            "bad": sum(s.bad for s in self.streams),
            "ends missing": sum(s.end_missing for s in self.streams),
        }
        blocked = f", blocked by workers {self.blocked_s:.1f} s" if self.blocked_s >= 0.05 else ""
        extra = "".join(f", {name} {n}" for name, n in problems.items() if n)
        return (
            f"acquisition {self.number}: images {images}, frames sent {self.sent} "
            f"(assembled {self.assembled}, incomplete {self.incomplete}), dropped {dropped}, "
            f"frame gaps {self.gaps}{extra}{blocked}"
        )


@dataclass(slots=True)
class LifetimeCounts:
    """What happened outside any acquisition, since the assembler started."""

    acquisitions: int = 0
    frames_sent: int = 0
    lone_ends: int = 0
    """End messages with no acquisition open: a failed start, or an end repeated on request."""
    duplicate_ends: int = 0
    """A second end message from a stream within one acquisition."""
    bad: int = 0
    """Messages that did not parse while no acquisition was open."""
    late: int = 0
    """Images of frames already resolved, while no acquisition was open."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "acquisitions": self.acquisitions, "frames_sent": self.frames_sent, "lone_ends": self.lone_ends,
            "duplicate_ends": self.duplicate_ends, "bad": self.bad, "late": self.late,
        }


class RateLimitedLog:
    """At most one line per ``interval_s``; the lines held back are counted in the next one.

    Bad input can arrive at the detector's frame rate: the log must say what is
    wrong without becoming the bottleneck.
    """

    def __init__(self, logger: logging.Logger, *, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last = -float("inf")
        self._held_back = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            self._held_back += 1
            return
        if self._held_back:
            message += f" (and {self._held_back} similar lines held back)"
        self._logger.warning(message)
        self._last = now
        self._held_back = 0
