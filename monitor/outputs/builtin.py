"""Turning numpy and path values into plain Python, for msgpack headers and JSON files.

Pipelines hand over ``np.float64`` figures and the odd small array; msgpack and
``json`` know neither.  Both encoders pass :func:`to_builtin` as their
``default`` hook, so the two files agree on what a value becomes.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["to_builtin"]


def to_builtin(value: Any) -> Any:
    """Return ``value`` as a msgpack/JSON-native object, or raise :class:`TypeError`.

    >>> to_builtin(np.float32(1.5)), to_builtin(np.arange(3)), to_builtin(PurePath("a/b"))
    (1.5, [0, 1, 2], 'a/b')
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} value {value!r} as msgpack/JSON")
