"""What the assembler counts, per acquisition and per stream, and how it says so.

Every frame number the streams announce ends up in exactly one place: sent
(whole or marked incomplete), dropped with a reason, or a gap no stream
delivered.  The same counts feed the status line, the final summary, the JSON
stats socket and the ``comleteFrames`` of ``series_end``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["StreamCounts", "AcquisitionCounts", "LifetimeCounts", "DropReason"]

DropReason = Literal["incomplete", "superseded", "workers_behind", "stop"]
"""Why a frame was not sent: the incomplete policy said drop; a newer frame replaced it
(latest_only); the buffer for frames waiting for the workers was full (lossless); the
assembler was stopped before the frame could go out."""


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
    last_progress: float | None = None
    """``progress`` (percent of the acquisition) and ``frameIndex`` of this stream's last image:
    what an acquisition whose end was lost can still say about the frames that never came."""
    last_frame_index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "port": self.port, "images": self.images, "lost_packets": self.lost_packets,
            "gaps": self.gaps, "late": self.late, "bad": self.bad, "sent": self.sent,
            "first_frame": self.first_frame, "last_frame": self.last_frame, "ended": self.ended,
            "end_missing": self.end_missing,
        }

    def expected_frames(self) -> int | None:
        """Frames of the whole acquisition by this stream's last ``progress``: an estimate."""
        if not self.last_progress or self.last_frame_index is None:
            return None
        return round((self.last_frame_index + 1) * 100.0 / self.last_progress)

    def counting_origin(self) -> int | None:
        """The frame number this stream's receiver counts ``frameIndex`` from: the same number
        for every image of one acquisition, whatever pauses there were in it."""
        if self.last_frame is None or self.last_frame_index is None:
            return None
        return self.last_frame - self.last_frame_index


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
    end_lost: bool = False
    """Closed because every stream went silent for ``acquisition_timeout_s`` without an end message."""
    continued_by: int | None = None
    """Closed on silence, then resumed: the next acquisition's images carried on this one's
    ``frameIndex`` count, so the source had only paused (its end was not lost)."""
    continues: int | None = None
    """The acquisition this one resumes after a pause (see ``continued_by``)."""
    stopped: bool = False
    """Closed because the assembler was stopped."""
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

    def estimated_not_received(self) -> int | None:
        """After a lost end message: frames the streams' last ``progress`` says were still to come
        (an estimate, never counted as a loss); None when the end arrived or nothing says."""
        if not self.end_lost or self.continued_by is not None or self.first_frame is None or self.last_frame is None:
            return None
        expected = [n for n in (s.expected_frames() for s in self.streams) if n is not None]
        if not expected:
            return None
        return max(0, max(expected) - (self.last_frame - self.first_frame + 1))

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
            "sent": self.sent, "dropped": dict(self.dropped), "gaps": self.gaps,
            "end_lost": self.end_lost, "continued_by": self.continued_by, "continues": self.continues,
            "stopped": self.stopped,
            "estimated_not_received": self.estimated_not_received(),
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
        extra = "".join(f", {name} {n}" for name, n in problems.items() if n)
        if self.continues is not None:
            extra += f", continues acquisition {self.continues} after a pause"
        if self.continued_by is not None:
            extra += f", paused longer than the acquisition timeout: continued as acquisition {self.continued_by}"
        elif self.end_lost:
            estimate = self.estimated_not_received()
            extra += ", end message lost" + ("" if estimate is None else f" (about {estimate} frames never "
                                                                          "arrived, estimated from progress)")
        if self.stopped:
            extra += ", stopped"
        return (
            f"acquisition {self.number}: images {images}, frames sent {self.sent} "
            f"(assembled {self.assembled}, incomplete {self.incomplete}), dropped {dropped}, "
            f"frame gaps {self.gaps}{extra}"
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
