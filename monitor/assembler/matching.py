"""Matching the receiver streams' images into whole frames, and frames into acquisitions.

No sockets here: :class:`FrameMatcher` is fed raw message parts per stream and
hands synchronizer-shaped messages to a callback, so that the rules can be
tested (and read) on their own:

* images are matched on ``frameNumber`` (``frameIndex`` differs between streams);
* each stream delivers its frames in increasing order, so a frame still waiting
  for stream ``s`` is resolved as soon as ``s`` has sent a later frame, ended,
  or stayed silent for ``part_timeout_s``; a silent stream therefore delays
  frames by at most the timeout, a stream that skipped a frame delays nothing;
* an acquisition opens with its first data message and closes once every
  stream has sent its single-part end message (or stayed silent for the
  timeout after another stream's); pending frames are resolved by the
  incomplete policy before ``series_end`` goes out; end messages with no
  acquisition open (a failed start, an end repeated on request) change nothing;
* an acquisition whose streams have all been silent for ``acquisition_timeout_s``
  with no end message is closed as ``end message lost``: a PUB stream can lose its
  end like any other message, and nothing else would ever close it; if the source
  had only paused (a trigger that stopped for a while), its next images carry on
  the closed acquisition's ``frameIndex`` count, and the next acquisition is
  recorded as that one continued.

Pixel buffers are never copied: the received ZMQ frames go into the outgoing
messages as they are.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

from monitor import wire
from monitor.assembler.accounting import AcquisitionCounts, LifetimeCounts, StreamCounts
from monitor.assembler.parameters import IncompletePolicy
from monitor.errors import WireFormatError
from monitor.logs import RateLimitedLog

__all__ = ["FrameMatcher", "OutgoingStart", "OutgoingFrame", "OutgoingEnd", "Outgoing"]

log = logging.getLogger("monitor.assembler")

_MODULE_ROWS = 512
"""Rows of one JUNGFRAU module; a stream of fewer rows is one of its UDP interfaces."""
_RESOLVED_MEMORY = 4096
"""Frame numbers remembered after resolution, to recognise images that come too late."""


@dataclass(slots=True)
class OutgoingStart:
    """The synchronizer's start message: one ``header`` part per stream."""

    acquisition: AcquisitionCounts
    message: list[bytes]

    def parts(self) -> list[bytes]:
        return self.message

    def sent(self) -> None:
        """Nothing to count: a start message is not a frame."""


@dataclass(slots=True)
class OutgoingFrame:
    """One whole (or marked incomplete) frame: (stream, encoded header, pixels) in port order."""

    acquisition: AcquisitionCounts
    number: int
    images: list[tuple[int, bytes, wire.BufferLike]]
    nbytes: int = 0
    """The pixel bytes this frame holds (the assembler's buffer is bounded by them)."""

    def __post_init__(self) -> None:
        self.nbytes = sum(wire.part_nbytes(data) for _, _, data in self.images)

    def parts(self) -> list[wire.BufferLike]:
        message: list[wire.BufferLike] = []
        for _, header, data in self.images:
            message += [header, data]
        return message

    def sent(self) -> None:
        self.acquisition.sent += 1
        for stream, _, _ in self.images:
            self.acquisition.streams[stream].sent += 1


@dataclass(slots=True)
class OutgoingEnd:
    """The synchronizer's ``series_end`` (a part per receiver), built when sent so that its counts are final."""

    acquisition: AcquisitionCounts
    receivers: list[list[int]]

    def parts(self) -> list[bytes]:
        streams = self.acquisition.streams
        return wire.build_sync_end(
            [([streams[i].port for i in group], [streams[i].sent for i in group]) for group in self.receivers],
            last_frame_numbers=[[streams[i].last_frame or 0 for i in group] for group in self.receivers],
            frames_sent=self.acquisition.sent,
        )

    def sent(self) -> None:
        """Nothing to count: the end message carries the counts."""


Outgoing = Union[OutgoingStart, OutgoingFrame, OutgoingEnd]


@dataclass(slots=True)
class _PendingFrame:
    number: int
    created: float
    images: list[tuple[bytes, wire.ModuleImage] | None]
    missing: int


@dataclass(slots=True)
class _Acquisition:
    counts: AcquisitionCounts
    first_headers: list[dict | None]
    last_activity: list[float]
    receivers: list[list[int]] = field(default_factory=list)
    """Stream indices per receiver (module), known once the acquisition starts sending."""
    pending: dict[int, _PendingFrame] = field(default_factory=dict)
    silent_named: set[int] = field(default_factory=set)
    """Streams already named in a warning for delivering nothing in this acquisition."""


class FrameMatcher:
    """Whole frames from per-stream images, with every frame number accounted for."""

    def __init__(
        self, *, urls: Sequence[str], part_timeout_s: float, max_pending_frames: int,
        incomplete: IncompletePolicy, emit: Callable[[Outgoing], None], acquisition_timeout_s: float = 5.0,
    ) -> None:
        self._urls = list(urls)
        self._timeout = part_timeout_s
        self._acquisition_timeout = acquisition_timeout_s
        self._max_pending = max_pending_frames
        self._send_incomplete = incomplete == "send_marked"
        self._emit = emit
        self._acquisition: _Acquisition | None = None
        self._last_closed: _Acquisition | None = None
        self._resolved: set[int] = set()
        self._resolved_order: deque[int] = deque()
        self._bad_input = RateLimitedLog(log)
        self.lifetime = LifetimeCounts()

    @property
    def current(self) -> AcquisitionCounts | None:
        """The open acquisition's counts, or None between acquisitions."""
        return None if self._acquisition is None else self._acquisition.counts

    @property
    def pending(self) -> int:
        return 0 if self._acquisition is None else len(self._acquisition.pending)

    def add(self, stream: int, parts: Sequence[wire.BufferLike], now: float) -> None:
        """Take one message from stream ``stream`` (its index in ``urls``)."""
        try:
            message = wire.parse_receiver_message(parts)
            if isinstance(message, wire.ReceiverEnd):
                self._end(stream, now)
                return
            header = wire.encode_header(
                wire.sync_module_header(message.image.header, port=wire.FIRST_UDP_PORT + stream)
            )
        except WireFormatError as error:
            self._bad(stream, parts, error)
            return
        self._image(stream, header, message.image, now)

    def expire(self, now: float) -> None:
        """Resolve frames that waited ``part_timeout_s``; close an acquisition whose last ends are overdue."""
        acquisition = self._acquisition
        if acquisition is None:
            return
        pending = acquisition.pending
        while pending:
            oldest = next(iter(pending.values()))
            if now - oldest.created < self._timeout:
                break
            self._resolve(acquisition, oldest)
        if now >= self._close_deadline(acquisition):
            if not any(stream.ended for stream in acquisition.counts.streams):
                acquisition.counts.end_lost = True
                log.warning("acquisition %d: no end message and no data for %g s: closed as 'end message lost' "
                            "(unless the source only paused: its next frames would show it)",
                            acquisition.counts.number, self._acquisition_timeout)
            self._close(acquisition)

    def close_current(self) -> None:
        """Close the open acquisition now (the assembler is stopping): pending frames are resolved."""
        if self._acquisition is not None:
            self._acquisition.counts.stopped = True
            self._close(self._acquisition)

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has something to do next, if ever."""
        acquisition = self._acquisition
        if acquisition is None:
            return None
        deadlines = [self._close_deadline(acquisition)]
        if acquisition.pending:
            deadlines.append(next(iter(acquisition.pending.values())).created + self._timeout)
        return min(deadlines)

    # --- data --------------------------------------------------------------------

    def _image(self, stream: int, header: bytes, image: wire.ModuleImage, now: float) -> None:
        number = image.frame_number
        acquisition = self._acquisition
        if acquisition is not None and acquisition.counts.streams[stream].ended:
            self._close(acquisition)  # this stream has begun the next acquisition
            acquisition = None
        if acquisition is None:
            if number in self._resolved:  # a straggler of the acquisition just closed
                self.lifetime.late += 1
                return
            acquisition = self._open(now)
            self._note_resumption(acquisition, stream, number, _int_or_none(image.header.get("frameIndex")), now)
        counts = acquisition.counts.streams[stream]
        if counts.last_frame is not None and number <= counts.last_frame:
            counts.late += 1  # out of order: cannot happen on one PUB stream, but must not crash
            return
        if counts.last_frame is None:
            counts.first_frame = number
            acquisition.first_headers[stream] = image.header
        elif number > counts.last_frame + 1:
            counts.gaps += number - counts.last_frame - 1
        counts.last_frame = number
        counts.last_progress = _number_or_none(image.header.get("progress"))
        counts.last_frame_index = _int_or_none(image.header.get("frameIndex"))
        counts.images += 1
        counts.lost_packets += not image.complete
        acquisition.last_activity[stream] = now
        if number in self._resolved:
            counts.late += 1  # its frame timed out waiting for this image
            return

        pending = acquisition.pending
        frame = pending.get(number)
        if frame is None:
            frame = pending[number] = _PendingFrame(number, now, [None] * len(self._urls), len(self._urls))
        frame.images[stream] = (header, image)
        frame.missing -= 1
        if frame.missing == 0 or self._decidable(acquisition, frame, now):
            self._resolve(acquisition, frame)
        if pending:
            self._resolve_passed(acquisition, stream, number, now)
        while len(pending) > self._max_pending:
            self._resolve(acquisition, next(iter(pending.values())))

    def _decidable(self, acquisition: _Acquisition, frame: _PendingFrame, now: float) -> bool:
        """No stream can still complete ``frame``: each missing one has ended, sent a later
        frame, or been silent for ``part_timeout_s`` since this frame began (not merely since
        its own last image: after a pause of the whole source, the first stream to resume must
        not make the others' parts of that frame late)."""
        streams = acquisition.counts.streams
        for s, image in enumerate(frame.images):
            if image is None and not (
                streams[s].ended
                or (streams[s].last_frame is not None and streams[s].last_frame > frame.number)
                or now - max(acquisition.last_activity[s], frame.created) >= self._timeout
            ):
                return False
        return True

    def _resolve_passed(self, acquisition: _Acquisition, stream: int, number: float, now: float) -> None:
        """Resolve earlier frames that ``stream`` skipped, once no other stream can still complete them."""
        waiting = [f for f in acquisition.pending.values() if f.number < number and f.images[stream] is None]
        for frame in waiting:
            if self._decidable(acquisition, frame, now):
                self._resolve(acquisition, frame)

    def readable(self) -> list[bool]:
        """Which streams to read now: while half the pending table is used, only the streams the
        oldest frame waits for, so that streams running ahead cannot fill the table with frames
        the slower ones would have completed (they wait in ZMQ and TCP buffers meanwhile)."""
        acquisition = self._acquisition
        if acquisition is None or len(acquisition.pending) < max(1, self._max_pending // 2):
            return [True] * len(self._urls)
        oldest = next(iter(acquisition.pending.values()))
        return [image is None for image in oldest.images]

    def _resolve(self, acquisition: _Acquisition, frame: _PendingFrame) -> None:
        """Send or drop one frame by the policy; it can never come back."""
        del acquisition.pending[frame.number]
        self._remember(frame.number)
        counts = acquisition.counts
        present = [(s, part) for s, part in enumerate(frame.images) if part is not None]
        complete = frame.missing == 0 and all(image.complete for _, (_, image) in present)
        counts.count_frame(frame.number, complete=complete, missing_parts=frame.missing)
        if frame.missing:
            self._name_silent_streams(acquisition)
        if not complete and not self._send_incomplete:
            counts.add_dropped("incomplete")
            return
        self._start_sending(acquisition)
        self._emit(OutgoingFrame(counts, frame.number, [(s, header, image.data) for s, (header, image) in present]))

    def _name_silent_streams(self, acquisition: _Acquisition) -> None:
        """A stream that has delivered nothing while others deliver is named once per acquisition:
        otherwise every frame just comes out incomplete and nobody says why."""
        streams = acquisition.counts.streams
        delivered = sum(stream.images for stream in streams)
        for index, stream in enumerate(streams):
            if stream.images == 0 and delivered and index not in acquisition.silent_named:
                acquisition.silent_named.add(index)
                log.warning("stream %d (%s) has sent nothing in acquisition %d while the others sent %d images: "
                            "is its receiver running and streaming to this address?",
                            index, stream.url, acquisition.counts.number, delivered)

    def _remember(self, number: int) -> None:
        self._resolved.add(number)
        self._resolved_order.append(number)
        if len(self._resolved_order) > _RESOLVED_MEMORY:
            self._resolved.discard(self._resolved_order.popleft())

    # --- acquisitions ------------------------------------------------------------

    def _open(self, now: float) -> _Acquisition:
        self.lifetime.acquisitions += 1
        n = len(self._urls)
        counts = AcquisitionCounts(
            number=self.lifetime.acquisitions,
            streams=[StreamCounts(url=url, port=wire.FIRST_UDP_PORT + i) for i, url in enumerate(self._urls)],
        )
        self._acquisition = _Acquisition(counts, first_headers=[None] * n, last_activity=[now] * n)
        return self._acquisition

    def _note_resumption(
        self, acquisition: _Acquisition, stream: int, number: int, frame_index: int | None, now: float,
    ) -> None:
        """A receiver counts ``frameIndex`` from its acquisition's first frame: an image that keeps
        the count of an acquisition closed on silence shows that the source paused, not that it
        ended (so nothing was lost, and no frames are estimated missing)."""
        previous = self._last_closed
        if previous is None or not previous.counts.end_lost or frame_index is None:
            return
        if number - frame_index != previous.counts.streams[stream].counting_origin():
            return
        previous.counts.continued_by = acquisition.counts.number
        acquisition.counts.continues = previous.counts.number
        log.info("acquisition %d continues acquisition %d: the source paused for %.1f s, longer than "
                 "acquisition_timeout_s (%g s); its end message was not lost", acquisition.counts.number,
                 previous.counts.number, now - max(previous.last_activity), self._acquisition_timeout)

    def _start_sending(self, acquisition: _Acquisition) -> None:
        """Emit the start message before the acquisition's first frame (or its end): a part per receiver.

        A receiver is a module: with two UDP interfaces, two consecutive
        streams of 256 rows each (slsReceiver numbers them so), as PSI groups them.
        """
        if acquisition.receivers:
            return
        headers = acquisition.first_headers
        reference = next(h for h in headers if h is not None)
        per_module = _MODULE_ROWS // reference["shape"][1] if reference["shape"][1] else 1
        if per_module < 1 or len(headers) % per_module:
            per_module = 1
        acquisition.receivers = [list(range(i, i + per_module)) for i in range(0, len(headers), per_module)]
        ports = [stream.port for stream in acquisition.counts.streams]
        fields = [
            wire.sync_start_fields(
                next((headers[i] for i in group if headers[i] is not None), reference),
                ports=[ports[i] for i in group],
            )
            for group in acquisition.receivers
        ]
        self._emit(OutgoingStart(acquisition.counts, wire.build_sync_start(fields)))

    def _end(self, stream: int, now: float) -> None:
        acquisition = self._acquisition
        if acquisition is None:
            self.lifetime.lone_ends += 1
            log.info("stream %d (%s): end message with no acquisition open (failed start, or an end "
                     "sent again): ignored", stream, self._urls[stream])
            return
        counts = acquisition.counts.streams[stream]
        if counts.ended:
            self.lifetime.duplicate_ends += 1
            return
        counts.ended = True
        acquisition.last_activity[stream] = now
        if all(s.ended for s in acquisition.counts.streams):
            self._close(acquisition)
        else:
            self._resolve_passed(acquisition, stream, float("inf"), now)

    def _close_deadline(self, acquisition: _Acquisition) -> float:
        """Once a stream has ended, the others have ``part_timeout_s`` of silence to end too;
        before that, all of them ``acquisition_timeout_s`` (the end messages were lost)."""
        streams = acquisition.counts.streams
        if not any(s.ended for s in streams):
            return max(acquisition.last_activity) + self._acquisition_timeout
        return max(acquisition.last_activity[i] for i, s in enumerate(streams) if not s.ended) + self._timeout

    def _close(self, acquisition: _Acquisition) -> None:
        for stream in acquisition.counts.streams:
            stream.end_missing = not stream.ended
            stream.ended = True
        for frame in list(acquisition.pending.values()):
            self._resolve(acquisition, frame)
        self._start_sending(acquisition)
        acquisition.counts.ended_at = time.time()
        self._acquisition = None
        self._last_closed = acquisition
        self._emit(OutgoingEnd(acquisition.counts, acquisition.receivers))

    # --- bad input ---------------------------------------------------------------

    def _bad(self, stream: int, parts: Sequence[wire.BufferLike], error: WireFormatError) -> None:
        if self._acquisition is None:
            self.lifetime.bad += 1
        else:
            self._acquisition.counts.streams[stream].bad += 1
        self._bad_input.warning(
            f"stream {stream} ({self._urls[stream]}): frame {_frame_number_hint(parts)}: "
            f"message ignored: {error}"
        )


def _frame_number_hint(parts: Sequence[wire.BufferLike]) -> str:
    """The frame number a bad message claims, if it says one (for the log line only)."""
    try:
        header = json.loads(bytes(memoryview(getattr(parts[0], "buffer", parts[0]))))
        return str(int(header["frameNumber"]))
    except Exception:  # anything at all: this only decorates a log line about bad input
        return "?"


def _number_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
