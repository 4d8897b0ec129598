"""The venue's WebSocket request protocol: ``SUBSCRIBE`` / ``UNSUBSCRIBE``.  No I/O.

A client sends ``{"method": "SUBSCRIBE", "params": ["depth.SOL_USDC", ...]}``
(or ``UNSUBSCRIBE``); the venue sends no acknowledgement, and answers what it
refuses with error replies ``{"id": null, "error": {"code": ..., "message":
...}}`` (plus ``"stream"``: the refused name, when the error is about one
stream).  :func:`parse_request` turns one incoming message into a
:class:`Request` (each entry of ``params`` a parsed :class:`StreamName` or
the :class:`ErrorReply` it earns) or, for a message that is no request at
all, one :class:`ErrorReply`.  Which streams a server actually serves (which
symbols, which depth kinds) is the server's decision, not this module's.

Bounds: a request names at most :data:`MAX_STREAMS` streams.  Beyond that
the whole request is refused with ONE error reply (``TOO_MANY_STREAMS``) and
nothing in it is carried out, so one message can never earn more than
:data:`MAX_STREAMS` replies.  100 is twice the batch the replicator sends
(50 names per SUBSCRIBE) and far above what ccxt sends (one stream per
message); the venue publishes no limit of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import orjson

from .streams import StreamName, parse_stream

__all__ = ["MAX_STREAMS", "ErrorCode", "ErrorReply", "Method", "Request", "parse_request"]

MAX_STREAMS = 100
"""The most stream names one SUBSCRIBE or UNSUBSCRIBE may carry."""


class Method(StrEnum):
    """The request methods of the venue's WebSocket API."""

    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"


class ErrorCode(StrEnum):
    """The ``error.code`` of a refused request."""

    INVALID_CLIENT_REQUEST = "INVALID_CLIENT_REQUEST"
    """Not JSON, not an object, unknown method, ``params`` not a list."""
    INVALID_STREAM = "INVALID_STREAM"
    """A name that is not a stream this server serves."""
    INVALID_SYMBOL = "INVALID_SYMBOL"
    """A well-formed stream name for a symbol the server does not know."""
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    """More than :data:`MAX_STREAMS` names in one request."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """One error reply: ``code``, ``message``, the refused ``stream`` name (as
    the client sent it, any JSON value; ``None``: the error is about the whole
    request) and the request's ``id`` (an int or a string, echoed; else null)."""

    code: ErrorCode
    message: str
    stream: object = None
    request_id: int | str | None = None

    def encode(self) -> bytes:
        """The reply as compact JSON.  O(len(message))."""
        reply: dict[str, object] = {"id": self.request_id,
                                    "error": {"code": str(self.code), "message": self.message}}
        if self.stream is not None:
            reply["stream"] = self.stream
        return orjson.dumps(reply)


@dataclass(frozen=True, slots=True)
class Request:
    """A well-formed request: its ``method``, its ``id`` and, in ``params``
    order, each entry parsed (``(name, StreamName)``) or refused (an
    :class:`ErrorReply` with ``INVALID_STREAM``)."""

    method: Method
    entries: tuple[tuple[str, StreamName] | ErrorReply, ...]
    request_id: int | str | None = None

    def refuse(self, name: str, code: ErrorCode, message: str) -> ErrorReply:
        """The error reply for entry ``name`` of this request."""
        return ErrorReply(code, message, name, self.request_id)


def parse_request(message: str | bytes, *, max_streams: int = MAX_STREAMS) -> Request | ErrorReply:
    """Parse one client message.  O(len(message)).

    Returns a :class:`Request`, or the single :class:`ErrorReply` a message
    gets when it is not a request (bad JSON, not an object, a method other
    than SUBSCRIBE/UNSUBSCRIBE, ``params`` missing or not a list) or names
    more than ``max_streams`` streams.  Duplicate names are kept (applying a
    subscription twice is harmless).
    """
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError:
        return ErrorReply(ErrorCode.INVALID_CLIENT_REQUEST, "Expected SUBSCRIBE or UNSUBSCRIBE")
    if not isinstance(request, dict):
        return ErrorReply(ErrorCode.INVALID_CLIENT_REQUEST, "Expected SUBSCRIBE or UNSUBSCRIBE")
    raw_id = request.get("id")
    request_id = raw_id if isinstance(raw_id, (int, str)) and not isinstance(raw_id, bool) else None
    method, params = request.get("method"), request.get("params")
    if method not in (Method.SUBSCRIBE, Method.UNSUBSCRIBE) or not isinstance(params, list):
        return ErrorReply(ErrorCode.INVALID_CLIENT_REQUEST, "Expected SUBSCRIBE or UNSUBSCRIBE",
                          request_id=request_id)
    if len(params) > max_streams:
        return ErrorReply(ErrorCode.TOO_MANY_STREAMS,
                          f"At most {max_streams} streams per request, got {len(params)}",
                          request_id=request_id)
    entries: list[tuple[str, StreamName] | ErrorReply] = []
    for name in params:
        stream = parse_stream(name)
        if stream is None:
            entries.append(ErrorReply(ErrorCode.INVALID_STREAM, f"Unknown stream: {name!r}",
                                      name, request_id))
        else:
            entries.append((name, stream))
    return Request(Method(method), tuple(entries), request_id)
