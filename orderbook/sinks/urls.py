"""``--publish URL``: a sink from one URL, its options in the query string.

    redis://[:password@]host:port/db[?option=value&...]     (also rediss://)
    nats://host:port[?option=value&...]                      (also tls://)

Options (all optional): ``snapshot_interval`` (deltas between periodic
snapshots, ``none`` for none; default 1000 for Redis, none for NATS),
``maxlen`` (Redis only: entries kept per stream, approximately; default
100000), ``queue`` (messages waiting at most; default 10000), ``batch``
(messages per write; default 500), ``linger`` (seconds to gather a batch;
default 0.05), ``timeout`` (seconds a connection or write may take; default 5),
``prefix`` (of keys and subjects; default ``orderbook``).  Anything else is
refused, so a typo never silently changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import UsageError, shown
from .nats import NATS_OPTIONS, NatsSink
from .publisher import BrokerSink, PublishOptions
from .redis import DEFAULT_MAXLEN, RedisSink

__all__ = ["sink_from_url"]

_SCHEMES = {"redis": "redis", "rediss": "redis", "nats": "nats", "tls": "nats"}
_COMMON = ("snapshot_interval", "queue", "batch", "linger", "timeout", "prefix")


def _int(name: str, value: str) -> int:
    if not value.isdigit():
        raise UsageError(f"--publish option {name} must be a whole number, got {shown(value)}")
    return int(value)


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"--publish option {name} must be a number of seconds, got {shown(value)}") from None


def sink_from_url(url: str) -> BrokerSink:
    """The sink a ``--publish`` URL describes (see the module docstring).

    Raises :class:`UsageError` naming the problem (unknown scheme, unknown or
    bad option) and :class:`~orderbook.sinks.MissingExtra` when the broker's
    client library is not installed.
    """
    parts = urlsplit(url)
    broker = _SCHEMES.get(parts.scheme)
    if broker is None:
        raise UsageError(f"--publish {shown(url)}: unsupported scheme; use redis://host:port/db or "
                         f"nats://host:port")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise UsageError(f"--publish {shown(url)}: malformed options {shown(parts.query)}") from None
    options = dict(pairs)
    if len(options) != len(pairs):
        raise UsageError(f"--publish {shown(url)}: an option is given twice")
    allowed = _COMMON + (("maxlen",) if broker == "redis" else ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(f"--publish {shown(url)}: unknown option {', '.join(unknown)}; "
                         f"known: {', '.join(allowed)}")
    base = PublishOptions() if broker == "redis" else NATS_OPTIONS
    changes: dict[str, object] = {}
    if "snapshot_interval" in options:
        value = options["snapshot_interval"]
        changes["snapshot_interval"] = None if value.lower() == "none" else _int("snapshot_interval", value)
    if "queue" in options:
        changes["queue_size"] = _int("queue", options["queue"])
    if "batch" in options:
        changes["batch_size"] = _int("batch", options["batch"])
    if "linger" in options:
        changes["linger"] = _float("linger", options["linger"])
    if "timeout" in options:
        changes["write_timeout"] = _float("timeout", options["timeout"])
    if "prefix" in options:
        changes["prefix"] = options["prefix"]
    publish = replace(base, **changes)  # type: ignore[arg-type]
    plain = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if broker == "redis":
        maxlen = _int("maxlen", options["maxlen"]) if "maxlen" in options else DEFAULT_MAXLEN
        return RedisSink(plain, maxlen=maxlen, options=publish)
    return NatsSink(plain, options=publish)
