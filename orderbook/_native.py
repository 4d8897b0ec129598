"""Loads the optional C fast paths (``orderbook._speedups``), or nothing.

The package is complete in pure Python; the C module, built at install time
when a compiler is present, speeds up the hot path: reading a depth frame's
JSON text into a :class:`~orderbook.wire.DepthEvent`
(:func:`~orderbook.wire.parse_frame`), applying a frame that continues a
synced book (:meth:`~orderbook.book.OrderBook.apply_delta`: validation, the
ladders, the sorted key lists, the exact best levels) and top-N views
(:meth:`~orderbook.book.Ladder.view`).  Each C function
handles only the well-formed common case and declines (returns ``None``) for
anything else, so the Python code stays the reference and the only place
errors are raised; results are identical either way.

Set the environment variable ``ORDERBOOK_PURE_PYTHON=1`` (before importing
``orderbook``) to use pure Python even when the C module is built.
:func:`orderbook.implementation` says which one is in use.
"""

from __future__ import annotations

import os
from types import ModuleType

PURE_PYTHON_ENV = "ORDERBOOK_PURE_PYTHON"


def _load() -> ModuleType | None:
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


speedups = _load()
"""The C module, or ``None`` when pure Python is in use."""


def implementation() -> str:
    """``"native"`` when the C fast paths are in use, else ``"python"``."""
    return "python" if speedups is None else "native"
