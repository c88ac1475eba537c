"""Files written whole or not at all: a reader (or a kill at any moment) sees the old file or
the new one, never half of one.  No MPI here: helper processes outside the job use it too."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_text_atomically"]


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` (a hidden ``.NAME.partial``), then rename it into place."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text)
        partial.replace(path)
    except BaseException:  # a full disk: leave the old file, not a half-written one beside it
        partial.unlink(missing_ok=True)
        raise
