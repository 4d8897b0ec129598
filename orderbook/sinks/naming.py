"""Where each symbol's book is published: Redis stream keys and NATS subjects.

Redis keys are binary safe, so a stream is named after the symbol as it is:
``orderbook:{SYMBOL}`` (``orderbook:SPCX.US_USDC``).

NATS separates subject tokens with dots, and the venue's symbols may contain
dots (``SPCX.US_USDC``), so a symbol is *escaped* into one token:

    Every character other than ASCII letters, digits, ``_`` and ``-`` is
    written as ``~`` followed by the two upper-case hex digits of each of its
    UTF-8 bytes.  ``SPCX.US_USDC`` -> ``SPCX~2EUS_USDC``, ``A~B`` -> ``A~7EB``.

The rule is reversible (:func:`symbol_of_token` undoes it) and canonical: a
token is accepted only in the form :func:`subject_token` produces, so each
symbol has exactly one token and each token at most one symbol.  The
subjects are ``orderbook.{TOKEN}.delta`` and ``orderbook.{TOKEN}.snapshot``.

The ``orderbook`` prefix can be changed (``prefix=`` of the sinks and
readers): for Redis any non-empty text, for NATS one or
more dot-separated tokens of letters, digits, ``_`` and ``-``.
"""

from __future__ import annotations

import re

from ..errors import UsageError, shown

__all__ = [
    "DEFAULT_PREFIX",
    "delta_subject",
    "redis_key",
    "snapshot_subject",
    "subject_token",
    "symbol_of_token",
]

DEFAULT_PREFIX = "orderbook"
"""The first part of every stream key and subject."""

_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_TOKEN = re.compile(r"(?:[A-Za-z0-9_-]|~[0-9A-F]{2})+\Z")
_NATS_PREFIX = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\Z")


def subject_token(symbol: str) -> str:
    """``symbol`` as one NATS subject token (see the module docstring).  O(len).

    Raises :class:`UsageError` for an empty symbol.
    """
    if not symbol:
        raise UsageError("a symbol cannot be empty")
    if all(char in _PLAIN for char in symbol):
        return symbol
    out = []
    for char in symbol:
        if char in _PLAIN:
            out.append(char)
        else:
            out.extend(f"~{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def symbol_of_token(token: str) -> str:
    """The symbol a token produced by :func:`subject_token` names.  O(len).

    Raises :class:`UsageError` for a token not in canonical form (an escape of
    a plain character, lower-case hex, a stray ``~``, bytes that are not UTF-8).
    """
    if not _TOKEN.match(token):
        raise UsageError(f"not a symbol token: {shown(token)}")
    raw = bytearray()
    index = 0
    while index < len(token):
        char = token[index]
        if char == "~":
            raw.append(int(token[index + 1:index + 3], 16))
            index += 3
        else:
            raw.append(ord(char))
            index += 1
    try:
        symbol = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"not a symbol token (not UTF-8): {shown(token)}") from None
    if subject_token(symbol) != token:
        raise UsageError(f"not a canonical symbol token: {shown(token)}")
    return symbol


def check_redis_prefix(prefix: str) -> str:
    """``prefix`` if it can start a stream key, else :class:`UsageError`."""
    if not prefix:
        raise UsageError("a Redis key prefix cannot be empty")
    return prefix


def check_nats_prefix(prefix: str) -> str:
    """``prefix`` if it can start a subject (dot-separated plain tokens), else :class:`UsageError`."""
    if not _NATS_PREFIX.match(prefix):
        raise UsageError(f"a NATS subject prefix must be dot-separated tokens of letters, digits, "
                         f"'_' and '-', got {shown(prefix)}")
    return prefix


def redis_key(symbol: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The Redis stream of ``symbol``: ``orderbook:{SYMBOL}``.  O(len)."""
    if not symbol:
        raise UsageError("a symbol cannot be empty")
    return f"{prefix}:{symbol}"


def delta_subject(symbol: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The NATS subject of ``symbol``'s messages: ``orderbook.{TOKEN}.delta``.  O(len)."""
    return f"{prefix}.{subject_token(symbol)}.delta"


def snapshot_subject(symbol: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The NATS request/reply subject of ``symbol``'s book: ``orderbook.{TOKEN}.snapshot``.  O(len)."""
    return f"{prefix}.{subject_token(symbol)}.snapshot"
