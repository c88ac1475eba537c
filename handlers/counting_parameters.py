"""The YAML keys shared by the handlers of photon-counting sources (Stream V2, NXmx files)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CountingSourceParameters"]


class CountingSourceParameters(BaseModel):
    """Keys every counting-source handler reads; each handler's model adds its own."""

    model_config = ConfigDict(extra="forbid")

    data_event_handler: str
    source: str
    collector_rank: Literal["first", "last"] = "first"
    skip_rank_finalization: bool = False
    required_data: list[Literal["detector_data", "timestamp", "event_id"]] = Field(
        default_factory=lambda: ["detector_data", "timestamp", "event_id"], min_length=1
    )
    geometry_file: Path | None = None
    """Where the source's detector (a start message's, a master file's) is written as a CrystFEL geometry
    before the pipeline starts: name the same file in ``processing_layer.geometry_file``."""
