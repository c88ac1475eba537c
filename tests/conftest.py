"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import write_config


@pytest.fixture
def config_factory(tmp_path: Path):
    """Make configurations from the shipped default: ``config_factory({"monitor": {...}})``."""

    def make(changes: dict[str, dict[str, Any]] | None = None, name: str = "monitor.yaml") -> Path:
        return write_config(tmp_path, changes or {}, name)

    return make
