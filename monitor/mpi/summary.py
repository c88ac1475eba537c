"""The run's summary: its figures, the frame accounting that must balance, and its checkpoints.

Conservation: every frame the source sent is processed, failed, or dropped
with a reason, at the place where it happened:

    sent == processed + failed + sum(dropped.values()) + unaccounted

``sent`` is the source's own word (the simulator's count, or the frame
sender's end message), None when nothing states it; then ``unaccounted`` is
None too.  Each figure comes from its component's last word: the assembler's
final report, the workers' ``bye``, the end messages.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from monitor.atomic_files import write_text_atomically

__all__ = ["frame_accounting", "write_json_atomically"]


def frame_accounting(*, source: dict[str, Any], processed: int, failed: int, frames_announced: int | None,
                     lost_ranks: list[int], complete: bool) -> dict[str, Any]:
    """The accounting table.

    ``source`` is the handler's ``source_accounting()``; ``frames_announced``
    the frames the end messages said were handed to the workers.  Frames
    handed to the workers but never handled are ``worker_lost`` when a
    worker was lost, else ``stop`` (a stop that could not wait for them).
    ``complete``: False in a checkpoint, where frames still in flight are
    neither counted as lost nor as unaccounted.
    """
    dropped: Counter[str] = Counter(source.get("dropped", {}))
    delivered = source.get("delivered")
    if delivered is None:
        delivered = frames_announced
    handled = processed + failed
    if complete and delivered is not None and delivered > handled:
        dropped["worker_lost" if lost_ranks else "stop"] += delivered - handled
    sent = source.get("sent")
    if sent is None and source.get("delivered") is None:
        sent = frames_announced  # a frame sender (PSI's synchronizer) is the source: its end message says
    accounted = handled + sum(dropped.values())
    estimates = dict(source.get("estimates", {}))
    died = source.get("died") or []
    if complete and died and sent is not None:
        # A feeding process that died took its queues with it, and its last word (the simulator's
        # truth) may be a frame behind what it sent: the difference is laid at its door, never left
        # as a negative "unaccounted".
        if sent > accounted:
            dropped[f"{died[0]}_died"] += sent - accounted
            accounted = sent
        elif accounted > sent:
            estimates["frames_sent_after_the_dead_sources_last_word"] = accounted - sent
            sent = accounted
    table: dict[str, Any] = {
        "sent": sent,
        "processed": processed,
        "failed": failed,
        "dropped": dict(sorted(dropped.items())),
        "unaccounted": sent - accounted if sent is not None and complete else None,
    }
    if not complete:  # from the source's count where it has one, else from what was handed to the workers
        # (by the assembler's latest report, which lags its workers' results by up to a second)
        table["in_flight"] = (sent - accounted if sent is not None
                              else None if delivered is None else max(0, delivered - handled))
    if estimates:
        table["estimates"] = estimates
    return table


def write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never half of one (a kill can come at any time)."""
    write_text_atomically(path, json.dumps(document, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in the pipeline's figures."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")
