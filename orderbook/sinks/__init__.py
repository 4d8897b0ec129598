"""Publishing books to brokers teams already run: Redis Streams and NATS.

Publishing::

    from orderbook import Replicator
    from orderbook.sinks import NatsSink, RedisSink

    sinks = [RedisSink("redis://127.0.0.1:6379/0"), NatsSink("nats://127.0.0.1:4222")]
    async with Replicator(["SOL_USDC"], sinks=sinks) as rep:
        ...                      # each sink runs beside the replicator until it closes

or ``orderbook serve SOL_USDC --publish redis://127.0.0.1:6379/0`` (repeatable;
options in the URL's query, see :func:`sink_from_url`).  Reading::

    async with redis_book("redis://127.0.0.1:6379/0", "SOL_USDC") as follower:
        async for book in follower:          # an exact OrderBook, after each change
            ...

Modules, one responsibility each:

* :mod:`~orderbook.sinks.messages` -- the message and its two encodings;
* :mod:`~orderbook.sinks.naming` -- stream keys, subjects, the symbol escaping rule;
* :mod:`~orderbook.sinks.core` -- the published sequence and the bounded queue (pure);
* :mod:`~orderbook.sinks.publisher` -- the asyncio shell: pump, connector, reconnects;
* :mod:`~orderbook.sinks.redis`, :mod:`~orderbook.sinks.nats` -- one broker each,
  publishing and reading;
* :mod:`~orderbook.sinks.follow` -- the reader's book and its bridging rule;
* :mod:`~orderbook.sinks.urls` -- ``--publish URL``;
* :mod:`~orderbook.sinks.extras` -- the optional client libraries.

The client libraries are extras: ``pip install 'orderbook[redis]'`` (redis-py)
and ``'orderbook[nats]'`` (nats-py); without one, creating its sink or reader
raises :class:`MissingExtra` naming the extra.
"""

from ..live.sink import Sink, SinkStats
from .core import CoreCounters, PublisherCore
from .extras import MissingExtra
from .follow import BookFollower, FollowerStats
from .messages import Message, MessageKind, decode_fields, decode_json
from .naming import delta_subject, redis_key, snapshot_subject, subject_token, symbol_of_token
from .nats import NatsBook, NatsSink, nats_book
from .publisher import BrokerSink, PublishOptions
from .redis import RedisBook, RedisSink, redis_book
from .urls import sink_from_url

__all__ = [
    "BookFollower",
    "BrokerSink",
    "CoreCounters",
    "FollowerStats",
    "Message",
    "MessageKind",
    "MissingExtra",
    "NatsBook",
    "NatsSink",
    "PublishOptions",
    "PublisherCore",
    "RedisBook",
    "RedisSink",
    "Sink",
    "SinkStats",
    "decode_fields",
    "decode_json",
    "delta_subject",
    "nats_book",
    "redis_book",
    "redis_key",
    "sink_from_url",
    "snapshot_subject",
    "subject_token",
    "symbol_of_token",
]
