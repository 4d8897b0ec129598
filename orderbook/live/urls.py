"""URL checks for the venue's endpoints: a wrong URL is a :class:`~orderbook.errors.UsageError`
at once, naming it and what is wrong, before any connection is tried.  O(len(url)) each."""

from __future__ import annotations

from urllib.parse import urlsplit

from websockets.exceptions import InvalidURI
from websockets.uri import WebSocketURI, parse_uri

from ..errors import UsageError

__all__ = ["check_rest_url", "check_ws_url", "parse_ws_url"]


def parse_ws_url(url: str) -> WebSocketURI:
    """``url`` split into scheme, host, port and resource, or :class:`UsageError`
    if it cannot name a WebSocket (``ws://`` or ``wss://`` and a host)."""
    try:
        return parse_uri(url)
    except InvalidURI as exc:
        raise UsageError(f"invalid WebSocket URL {url!r}: {exc.msg} "
                         "(expected ws://HOST[:PORT]/ or wss://...)") from exc


def check_ws_url(url: str) -> str:
    """Return ``url`` if it can name a WebSocket (``ws://`` or ``wss://`` and a
    host), else raise :class:`UsageError` naming it and what is wrong."""
    parse_ws_url(url)
    return url


def check_rest_url(url: str) -> str:
    """Return ``url`` if it can name a REST API (``http://`` or ``https://`` and
    a host), else raise :class:`UsageError` naming it and what is wrong."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as exc:  # e.g. a bad port or IPv6 literal
        raise UsageError(f"invalid REST URL {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"invalid REST URL {url!r}: scheme isn't http or https "
                         "(expected http://HOST[:PORT] or https://...)")
    if not host:
        raise UsageError(f"invalid REST URL {url!r}: hostname isn't provided")
    return url
