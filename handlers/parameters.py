"""The YAML keys handlers share: every handler's, and those of the photon-counting sources (Stream V2, files)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CountingSourceParameters", "HandlerParameters"]


class HandlerParameters(BaseModel):
    """Keys every handler reads; each handler's model adds its own."""

    model_config = ConfigDict(extra="forbid")

    data_event_handler: str
    source: str
    collector_rank: Literal["first", "last"] = "first"
    skip_rank_finalization: bool = False


class CountingSourceParameters(HandlerParameters):
    """Keys of the handlers whose frames are counts of photons."""

    required_data: list[Literal["detector_data", "timestamp", "event_id"]] = Field(
        default_factory=lambda: ["detector_data", "timestamp", "event_id"], min_length=1
    )
    geometry_file: Path | None = None
    """Where the source's detector (a start message's, a master file's) is written as a CrystFEL geometry
    before the pipeline starts: name the same file in ``processing_layer.geometry_file``."""
