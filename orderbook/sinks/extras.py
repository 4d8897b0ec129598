"""Optional dependencies: each broker's client library comes with an extra.

``pip install 'orderbook[redis]'`` brings redis-py and hiredis, ``'orderbook[nats]'``
nats-py.  Without it, creating a sink or reader of that broker raises
:class:`MissingExtra` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UsageError

__all__ = ["MissingExtra", "require"]

_LIBRARIES = {"redis": "redis-py and hiredis", "nats": "nats-py"}


class MissingExtra(UsageError):
    """A broker's client library is not installed; ``extra`` names the extra that brings it."""

    def __init__(self, extra: str, library: str) -> None:
        super().__init__(f"publishing to {extra} needs {library}: pip install 'orderbook[{extra}]'")
        self.extra = extra
        self.library = library


def require(extra: str, module: str) -> ModuleType:
    """Import ``module`` of ``extra``'s library, or raise :class:`MissingExtra`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(extra, _LIBRARIES.get(extra, extra)) from exc
