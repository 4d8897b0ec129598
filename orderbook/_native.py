"""Loads the optional C module (``orderbook._speedups``), or nothing.

The package is complete in pure Python.  The C module, built at install
time when a compiler is present, owns native twins of the two hot-path
types, with the same API and behaviour as their Python versions:

* ``DepthEvent`` (:mod:`orderbook.protocol.wire`): a depth frame read straight from
  its JSON text by ``depth_frame``, its levels held parsed (no Python object
  per level) until ``.bids`` / ``.asks`` is read;
* ``Ladder`` (:mod:`orderbook.core.ladder`): one side of a book in chunked sorted
  arrays of fixed-point levels, with ``apply_levels`` (validate a whole
  frame, then apply it) and ``crossed``.

It touches no other class's layout; its errors and tuning constants come
from the Python modules (``configure``).  ``tests/test_native.py`` runs both
implementations on the same random inputs and compares every result.

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
