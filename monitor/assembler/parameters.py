"""What the frame assembler is told: one validated parameter object (YAML or command line)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.endpoints import Endpoint, check_endpoint

__all__ = ["AssemblerParameters", "IncompletePolicy", "QueuePolicy"]

IncompletePolicy = Literal["drop", "send_marked"]
"""What happens to a frame missing a part or with lost packets (``completeImage`` 0)."""

QueuePolicy = Literal["lossless", "latest_only"]
"""What happens when frames come faster than the workers take them."""


class AssemblerParameters(BaseModel):
    """The frame assembler's settings (the YAML ``assembler`` section, or the command line)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    streams: list[str] = Field(min_length=1, max_length=16)
    """Receiver stream URLs (PUB sockets the assembler subscribes to), one per module or
    half-module; stream i is named by UDP port 50012+i in the frames it sends."""
    bind: Endpoint = "tcp://*:5555"
    """Where the PUSH socket for the workers binds (PSI's synchronizer uses tcp://*:5555)."""
    stats: Endpoint | None = None
    """Where a PUB socket publishes the accounting as JSON (about 1 Hz and at each end); none if unset."""
    part_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """How long a frame waits for a stream that has not yet sent its part (or its end message).
    A stream that skipped a frame delays nothing (its next frame resolves it); this only bounds
    the wait for a silent stream.  2 s, not less: on a busy 2-core machine a sender descheduled
    between its two module images made 0.5 s report a "late" part in a clean run."""
    incomplete: IncompletePolicy = "send_marked"
    """Frames missing a part or with lost packets: drop them, or send them with the missing
    part absent and completeImage 0 kept (the handler marks those pixels invalid)."""
    queue: QueuePolicy = "lossless"
    """lossless: frames wait for a free worker in the assembler's buffer (``buffer_mb``) and are
    dropped, counted as ``workers_behind``, only past it; latest_only: a newer frame replaces a
    waiting one (preview).  The streams are read all the time either way: a receiver's PUB socket
    cannot be held back, it would drop silently."""
    buffer_mb: float = Field(default=2048, gt=0, le=1 << 20)
    """lossless: memory for whole frames waiting for a worker, in MiB (2048: about 1,000 frames of
    a JUNGFRAU 1M, half a second at 2.2 kHz)."""
    queue_size: int = Field(default=8, ge=1, le=100_000)
    """Frames queued inside ZMQ for each connected worker (the PUSH socket's high-water mark);
    latest_only: also the frames waiting here."""
    acquisition_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    """An acquisition whose streams have all been silent this long, with no end message, is closed
    as ``end message lost`` (a PUB stream can lose it like any other message)."""
    stop_timeout_s: float = Field(default=5.0, gt=0, le=600)
    """On SIGTERM, how long frames waiting here may still go to the workers; those left are
    counted as ``stop``."""
    max_pending_frames: int = Field(default=64, ge=1, le=100_000)
    """Frames waiting for their remaining parts, at most; the oldest is resolved as incomplete past it."""
    receive_hwm: int = Field(default=1000, ge=1)
    """Messages queued per receiver stream before ZMQ drops (the receiver's own PUB default is 1000)."""
    max_message_bytes: int = Field(default=2 << 20, ge=1 << 10)
    """ZMQ refuses larger message parts on the receiver streams (a whole module is 1 MiB)."""
    io_threads: int = Field(default=2, ge=1, le=16)
    """ZMQ I/O threads.  With two or more, the last one writes to the workers and the others read
    the streams, so that reading and writing 2 MiB a frame run side by side (one thread capped
    the assembler near 700 frames/s)."""
    status_interval_s: float = Field(default=1.0, ge=0)
    """Seconds between status lines on stderr and stats messages; 0 for neither."""
    stop_after_acquisition: bool = False
    """Exit after the first acquisition's end message has been sent (live use keeps running)."""

    @field_validator("streams")
    @classmethod
    def _streams_are_distinct_endpoints(cls, streams: list[str]) -> list[str]:
        for url in streams:
            check_endpoint(url)
        if len(set(streams)) != len(streams):
            raise ValueError(f"a stream is named twice in {streams}")
        return streams
