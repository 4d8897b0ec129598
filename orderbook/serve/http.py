"""The mirror's small HTTP pieces: its aiohttp logger, error and relay responses.  No state."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .forward import ApiError, Target, parse_target
from .stats import MirrorStats
from .ui import StaticFile
from .upstream import Answer

__all__ = ["Handler", "HttpLog", "checked_target", "error_response", "relay", "serve_file"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler."""


class HttpLog(logging.Logger):
    """aiohttp's server logger: a request it cannot parse is the peer's fault --
    counted and logged at DEBUG in one line, never with a traceback."""

    def __init__(self, stats: MirrorStats) -> None:
        super().__init__("orderbook.serve.http")
        self.parent = logging.getLogger("orderbook.serve")
        self._stats = stats

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        text = str(msg) % args if args else str(msg)
        if isinstance(exc, HttpProcessingError):
            self._stats.bad_http += 1
            self.debug("%s: %s", text, exc)
        else:
            self._stats.internal_errors += 1
            self.warning("%s: %r", text, exc)


def serve_file(file: StaticFile) -> Handler:
    """A handler answering ``file`` (with the page's headers).  O(1)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        return file.response()

    return serve


def checked_target(request: web.Request) -> Target:
    """The request's checked target (the middleware refused any other).  O(len)."""
    target = parse_target(request.raw_path)
    assert isinstance(target, Target)
    return target


def error_response(error: ApiError) -> web.Response:
    """The venue-style JSON error (with ``Retry-After`` when it has one)."""
    response = web.Response(status=error.status, body=error.body(), content_type="application/json")
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def relay(answer: Answer) -> web.Response:
    """An upstream answer as it came (status, body, content type, ``Retry-After``)."""
    response = web.Response(status=answer.status, body=answer.body,
                            headers={"Content-Type": answer.content_type})
    if answer.retry_after is not None:
        response.headers["Retry-After"] = str(answer.retry_after)
    return response
