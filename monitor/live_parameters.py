"""Which pipeline parameters may change while a run goes on, and the numbered sets they make.

A change is validated by the same pydantic model as the YAML (a wrong type or
an unknown key is refused with its reason, and nothing changes).  Every
accepted change makes a new numbered set; each per-event result says which
set it was computed with, so the summary can give each set its events and
its hit rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import BaseModel

from monitor.errors import shorten

__all__ = ["LIVE_KEYS", "ParameterSet", "apply_changes"]

LIVE_KEYS = (
    "spot_finder", "spotfinder", "peakfinder8", "min_num_peaks_for_hit", "max_num_peaks_for_hit", "ice_ring_sigma",
)
"""Top-level pipeline keys a run may change: peak finding and what counts as a hit."""


def apply_changes(current: BaseModel, changes: dict[str, Any], pipeline_class: type) -> BaseModel:
    """``current`` with ``changes`` (dotted keys: ``peakfinder8.adc_threshold``) applied and
    validated; ValueError with one line naming the key and the reason otherwise."""
    document = current.model_dump()
    for key, value in changes.items():
        path = key.split(".")
        if path[0] not in LIVE_KEYS:
            raise ValueError(f"{shorten(key)}: not a parameter that can change during a run "
                             f"(those are {', '.join(LIVE_KEYS)} and the keys under spotfinder and peakfinder8)")
        target = document
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                raise ValueError(f"{shorten(key)}: unknown key")
            target = target[part]
        target[path[-1]] = value
    try:
        updated = type(current).model_validate(document)
    except pydantic.ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or ", ".join(changes)
        raise ValueError(f"{where}: {problem['msg'].removeprefix('Value error, ')}") from None
    try:
        pipeline_class(parameters=updated)  # the pipeline's own checks (min <= max, ...)
    except ValueError as error:
        raise ValueError(str(error)) from None
    return updated


@dataclass
class ParameterSet:
    """One numbered set of live parameters and what was computed with it."""

    number: int
    changes: dict[str, Any]
    requested_by: str
    since: float = field(default_factory=time.time)
    events: int = 0
    hits: int = 0
    first_event_id: int | None = None
    last_event_id: int | None = None

    def count(self, values: dict[str, Any]) -> None:
        self.events += 1
        self.hits += bool(values.get("is_hit"))
        event_id = values.get("event_id")
        if isinstance(event_id, int):
            self.first_event_id = event_id if self.first_event_id is None else min(self.first_event_id, event_id)
            self.last_event_id = event_id if self.last_event_id is None else max(self.last_event_id, event_id)

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "changes": self.changes, "requested_by": self.requested_by,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.since)),
                "events": self.events, "hit_rate": self.hits / self.events if self.events else None,
                "first_event_id": self.first_event_id, "last_event_id": self.last_event_id}
