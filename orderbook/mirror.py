"""``orderbook serve``: a local mirror of the venue's market data, fed by a :class:`Replicator`.

One ``websockets`` server on one port (127.0.0.1 by default) answers:

* ``GET /api/v1/depth?symbol=&limit=`` -- the venue's depth body, from the
  mirror's *published* book of the symbol at one update id (read without
  yielding to the event loop); HTTP 503 while the symbol is not synced, 400
  for a symbol this mirror does not replicate or a bad ``limit``;
* ``GET /api/v1/markets`` -- the venue's own body, cached and refreshed every
  ``markets_refresh`` seconds;
* any other ``GET /api/v1/...`` -- forwarded upstream as is (status, body,
  ``Content-Type``, ``Retry-After``) within a budget of its own (a local 429
  beyond it);
* ``GET /health`` -- JSON per symbol; HTTP 503 while any symbol is not ready;
* ``GET /metrics`` -- Prometheus text (see :mod:`orderbook.metrics`);
* a WebSocket at ``/`` speaking the venue's ``SUBSCRIBE`` / ``UNSUBSCRIBE``
  protocol for ``depth.<symbol>`` and ``bookTicker.<symbol>``.

Every HTTP response carries ``Connection: close``.

Frame continuity
----------------
A client bootstraps from the mirror exactly as from the venue: subscribe,
buffer, fetch ``/api/v1/depth`` (``lastUpdateId`` = L), apply the frames from
``U <= L+1 <= u`` on.  For that the stream and the REST answer must describe
one history, so the mirror keeps, per symbol, a *published* copy of the book:
the state the frames sent so far lead to.  Each frame is applied to it before
it is sent, and ``/api/v1/depth`` is served from it, never from the live
replica (which runs ahead of the consumer queue by a few frames).

The mirror reads the replicator's conflating update queue.  A delta that
continues the published book (``first_id <= published + 1``) is republished as
``U = published + 1 .. u = last_id`` with its changed levels (absolute
quantities, so a frame that overlaps what was already published is still
exact).  When the replica was rebuilt from a snapshot (after a gap, a
reconnect, an audit...) its update id jumps: the mirror then sends ONE
synthetic frame ``U = published + 1 .. u = replica id`` carrying every level
that differs between the published book and the replica (zero for levels that
vanished), so downstream books follow without a gap and without a resync.  A
frame is never sent out of sequence.  Should the replica's id ever go *below*
the published one (the venue restarted its ids), no frame can express that:
the clients subscribed to that symbol's depth are disconnected with code 1012
and a reason, and the published book restarts from the replica.

Costs: a delta costs one extra :meth:`OrderBook.apply_delta` and one JSON
encoding shared by every subscriber; a synthetic frame is O(book) (once per
resync).  Memory: one published book per symbol plus at most ``queue_size``
messages per WebSocket client.

Slow consumers: each client has a bounded queue (an
:class:`~orderbook.outbox.Outbox`); when it is full the queue is dropped and
the client is closed with code 1008, reason ``"slow consumer"`` (counted in
the metrics), so memory never grows without bound and no client ever receives
a frame out of sequence.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import logging
import math
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .book import Level, OrderBook
from .capture import decimal_str
from .errors import TransportError, UsageError
from .metrics import CONTENT_TYPE, Histogram, MetricsWriter, write_replicator_stats
from .outbox import Outbox
from .policy import TokenBucket
from .replicator import DEPTH_STREAMS, BookUpdate, Replicator, UpdateStream
from .transport import DEFAULT_REST_URL, DEFAULT_WS_URL
from .wire import DepthEvent, Snapshot

__all__ = ["DEFAULT_PORT", "MirrorServer", "MirrorStats", "add_serve_command", "run_mirror"]

log = logging.getLogger("orderbook.mirror")

DEFAULT_PORT = 8765
"""The port ``orderbook serve`` binds unless told otherwise."""
DEPTH_LIMITS = frozenset({5, 10, 20, 50, 100, 500, 1000})
"""The ``limit`` values ``/api/v1/depth`` accepts, as the venue does."""
RESTART_CODE = 1012
"""WebSocket close code for depth clients when the upstream ids went backwards."""
_JSON = "application/json; charset=utf-8"


# ----------------------------------------------------------------------- stats
@dataclass(slots=True)
class MirrorStats:
    """The mirror's own counters (the replicator's are in its ``stats()``).

    ``connections`` WebSocket clients accepted; ``messages_sent`` messages
    written to them; ``slow_consumers`` clients closed for a full queue and
    ``messages_dropped`` the messages discarded with them;
    ``subscribe_errors`` refused requests; ``http`` requests answered by
    ``(endpoint, status)``; ``internal_errors`` bugs caught and logged.
    Histograms (seconds): ``engine_to_publish`` frame ``T`` -> frame queued
    to clients, ``receive_to_publish`` frame read upstream -> queued,
    ``resync`` replica invalidated -> published book current again.
    """

    connections: int = 0
    messages_sent: int = 0
    slow_consumers: int = 0
    messages_dropped: int = 0
    subscribe_errors: int = 0
    internal_errors: int = 0
    http: Counter[tuple[str, int]] = field(default_factory=Counter)
    engine_to_publish: Histogram = field(default_factory=Histogram)
    receive_to_publish: Histogram = field(default_factory=Histogram)
    resync: Histogram = field(default_factory=Histogram)


# --------------------------------------------------------------------- clients
class _Client(Outbox[str]):
    """One WebSocket client: its :class:`Outbox` and the streams it subscribed to.

    On overflow the client is closed with 1008, reason ``"slow consumer"``,
    counted in ``slow_consumers`` and ``messages_dropped``; every message
    sent counts in ``messages_sent``.  :meth:`push` is O(1) and never blocks.
    """

    __slots__ = ("streams",)

    def __init__(self, conn: ServerConnection, limit: int, stats: MirrorStats) -> None:
        def overflowed(dropped: int) -> None:
            stats.slow_consumers += 1
            stats.messages_dropped += dropped
            log.warning("closing slow consumer %s: %d messages queued", conn.remote_address, dropped - 1)

        def sent() -> None:
            stats.messages_sent += 1

        super().__init__(conn, limit, "slow consumer", on_overflow=overflowed, on_sent=sent)
        self.streams: set[str] = set()


# ----------------------------------------------------------------------- feeds
class _Feed:
    """What the mirror has published for one symbol (see the module docstring)."""

    __slots__ = ("symbol", "depth_stream", "ticker_stream", "book", "needs_diff", "depth_clients",
                 "ticker_clients", "touch", "frames", "synthetic", "restarts", "invalidated_at")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.depth_stream = f"depth.{symbol}"
        self.ticker_stream = f"bookTicker.{symbol}"
        self.book: OrderBook | None = None
        """The published book; ``None`` until the replica first synced."""
        self.needs_diff = False
        """True when the next publication must compare whole books (after a
        resync, or when a change could not be republished as it came)."""
        self.depth_clients: dict[_Client, None] = {}
        self.ticker_clients: dict[_Client, None] = {}
        self.touch: tuple[Level | None, Level | None] = (None, None)
        self.frames = 0
        self.synthetic = 0
        self.restarts = 0
        self.invalidated_at: float | None = None


def _now_us() -> int:
    return time.time_ns() // 1000


def _qty(value: Decimal) -> str:
    return decimal_str(value) if value else "0"


def _wire(levels: Iterable[Level]) -> list[list[str]]:
    return [[decimal_str(price), _qty(qty)] for price, qty in levels]


def _copy(book: OrderBook) -> OrderBook:
    """A new book with ``book``'s levels, update id and timestamp.  O(n log n)."""
    assert book.last_update_id is not None
    copy = OrderBook(book.symbol)
    copy.apply_snapshot(Snapshot(
        book.last_update_id, book.timestamp,
        tuple((decimal_str(p), decimal_str(q)) for p, q in book.bids()),
        tuple((decimal_str(p), decimal_str(q)) for p, q in book.asks()),
    ))
    return copy


def _side_diff(old: list[Level], new: list[Level]) -> list[Level]:
    """Levels to send so a side equal to ``old`` becomes ``new`` (zero: removed).  O(n)."""
    before, after = dict(old), dict(new)
    changed = [(price, qty) for price, qty in after.items() if before.get(price) != qty]
    changed += [(price, Decimal(0)) for price in before if price not in after]
    return changed


# ---------------------------------------------------------------------- server
class MirrorServer:
    """Serve the replicas of a started :class:`Replicator` on one HTTP + WebSocket port.

    See the module docstring for the endpoints and the frame-continuity rule.
    Use as an async context manager (or :meth:`start` / :meth:`close`); the
    replicator must be started first and is not closed by the mirror.

    Options: ``host`` / ``port`` to bind (port 0: any free port, see
    :attr:`port`); ``queue_size`` messages per client before it is closed as
    a slow consumer; ``upstream_rest_url`` for forwarded requests and the
    markets cache (default: the replicator's); ``forward_per_minute`` the
    budget of those upstream requests; ``markets_refresh`` seconds between
    markets refreshes; ``ping_interval`` seconds between keep-alive pings
    (``None``: off); ``forward_timeout`` seconds per upstream request;
    ``send_buffer`` the kernel send buffer (``SO_SNDBUF``, bytes) of each
    client socket (``None``: the OS default, which may grow to megabytes):
    a small one bounds the memory a stalled client holds and has it closed
    as a slow consumer sooner.
    """

    def __init__(
        self,
        replicator: Replicator,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        queue_size: int = 1000,
        upstream_rest_url: str | None = None,
        forward_per_minute: float = 300.0,
        markets_refresh: float = 300.0,
        ping_interval: float | None = 20.0,
        forward_timeout: float = 10.0,
        send_buffer: int | None = None,
    ) -> None:
        if queue_size < 1:
            raise UsageError(f"queue_size must be >= 1, got {queue_size}")
        if markets_refresh <= 0:
            raise UsageError(f"markets_refresh must be > 0, got {markets_refresh}")
        self.replicator = replicator
        self.host = host
        self._port = port
        self._queue_size = queue_size
        self._upstream = upstream_rest_url or replicator.rest_url
        self._bucket = TokenBucket.for_budget(forward_per_minute)
        self._markets_refresh = markets_refresh
        self._ping_interval = ping_interval
        self._forward_timeout = forward_timeout
        self._send_buffer = send_buffer
        self.stats = MirrorStats()
        self._feeds: dict[str, _Feed] = {}
        self._clients: dict[_Client, None] = {}
        self._markets: bytes | None = None
        self._server: Server | None = None
        self._http: httpx.AsyncClient | None = None
        self._stream: UpdateStream | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> MirrorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Attach to the replicator, fill the markets cache and listen.

        Symbols already synced are published at once.  Raises
        :class:`UsageError` if the replicator is not started,
        :class:`TransportError` if the address cannot be bound.
        """
        rep = self.replicator
        if not rep.symbols:
            raise UsageError("start the replicator before the mirror")
        if self._server is not None:
            raise UsageError("the mirror is already started")
        for symbol in rep.symbols:
            feed = self._feeds[symbol] = _Feed(symbol)
            if rep.status(symbol) == "synced":
                feed.book = _copy(rep.book(symbol))
        self._stream = rep.updates(policy="conflate")  # no await since the copies: nothing missed
        self._http = httpx.AsyncClient(base_url=self._upstream, timeout=self._forward_timeout)
        try:
            await self._refresh_markets()
            self._server = await serve(
                self._serve_websocket, self.host, self._port,
                process_request=self._process_request,
                ping_interval=self._ping_interval, ping_timeout=self._ping_interval,
                max_size=65_536, max_queue=16, compression=None,
                server_header="orderbook-mirror",
            )
        except OSError as exc:
            await self.close()
            raise TransportError(f"cannot listen on {self.host}:{self._port}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._tasks = [
            asyncio.create_task(self._pump(self._stream), name="orderbook-mirror-pump"),
            asyncio.create_task(self._markets_loop(), name="orderbook-mirror-markets"),
        ]
        log.info("mirror listening on %s (WebSocket %s), %d symbols", self.url, self.ws_url,
                 len(self._feeds))

    async def close(self) -> None:
        """Close every client (1001), stop listening and detach.  Idempotent."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        if self._server is None:
            raise UsageError("the mirror is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """Base URL of the REST API, e.g. ``http://127.0.0.1:8765``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """URL of the WebSocket, e.g. ``ws://127.0.0.1:8765/``."""
        return "ws" + self.url[4:] + "/"

    def ready(self, symbol: str) -> bool:
        """True when ``symbol``'s replica is synced and the published book is current
        (what ``/health`` and ``/api/v1/depth`` require).  O(1)."""
        feed = self._feeds[symbol]
        return (feed.book is not None and not feed.needs_diff
                and self.replicator.status(symbol) == "synced")

    def published_book(self, symbol: str) -> OrderBook | None:
        """The book the frames sent so far lead to (``None`` before the first
        sync).  Read it from the event loop; do not modify it.  O(1)."""
        return self._feeds[symbol].book

    # ---------------------------------------------------------- publication
    async def _pump(self, stream: UpdateStream) -> None:
        async for update in stream:
            try:
                self._on_update(update)
            except Exception:  # a bug: keep publishing and make it loud
                self.stats.internal_errors += 1
                feed = self._feeds.get(update.symbol)
                if feed is not None:
                    feed.needs_diff = True
                log.exception("%s: internal error while publishing an update", update.symbol)

    def _on_update(self, update: BookUpdate) -> None:
        """Turn one (conflated) replica update into at most one frame."""
        feed = self._feeds.get(update.symbol)
        if feed is None:
            return
        rep = self.replicator
        if update.kind != "delta":
            feed.needs_diff = True
            if update.kind == "invalidated" and feed.invalidated_at is None:
                feed.invalidated_at = time.monotonic()
        if rep.status(update.symbol) != "synced":
            feed.needs_diff = True  # whatever this update said, the next one compares books
            return
        live = rep.book(update.symbol)
        published = feed.book
        if published is None:
            feed.book = _copy(live)
            self._current(feed)
            return
        pub_id, live_id = published.last_update_id, live.last_update_id
        assert pub_id is not None and live_id is not None
        if (not feed.needs_diff and update.kind == "delta" and update.first_id is not None
                and update.last_id is not None and update.first_id <= pub_id + 1):
            if update.last_id > pub_id:
                self._publish(feed, pub_id + 1, update.last_id, update.bids, update.asks,
                              update.engine_time, update.received_us)
            return
        if live_id > pub_id:
            bids = _side_diff(published.bids(), live.bids())
            asks = _side_diff(published.asks(), live.asks())
            self._publish(feed, pub_id + 1, live_id, bids, asks, live.timestamp, None)
            feed.synthetic += 1
            self._current(feed)
        elif live_id == pub_id:
            if published.bids() == live.bids() and published.asks() == live.asks():
                self._current(feed)
            # else: no frame can carry a change at an id already sent; the next one will
        else:
            self._restart(feed, live)

    def _current(self, feed: _Feed) -> None:
        """The published book equals the synced replica again."""
        feed.needs_diff = False
        if feed.invalidated_at is not None:
            self.stats.resync.observe(time.monotonic() - feed.invalidated_at)
            feed.invalidated_at = None

    def _publish(self, feed: _Feed, first: int, last: int, bids: Iterable[Level],
                 asks: Iterable[Level], engine_time: int | None, received_us: int | None) -> None:
        """Apply one frame to the published book, then send it (and the touch)."""
        assert feed.book is not None
        now = _now_us()
        wire_bids, wire_asks = _wire(bids), _wire(asks)
        engine = engine_time if engine_time is not None else now
        touched = feed.book.apply_delta(
            DepthEvent(feed.symbol, first, last, now, engine, wire_bids, wire_asks))
        feed.frames += 1
        if feed.depth_clients:
            text = orjson.dumps({"stream": feed.depth_stream, "data": {
                "e": "depth", "E": now, "s": feed.symbol, "a": wire_asks, "b": wire_bids,
                "U": first, "u": last, "T": engine,
            }}).decode()
            for client in feed.depth_clients:
                client.push(text)
        if touched:
            self._send_ticker(feed, only_if_changed=True)
        if engine_time is not None:
            self.stats.engine_to_publish.observe((now - engine_time) / 1e6)
        if received_us is not None:
            self.stats.receive_to_publish.observe((now - received_us) / 1e6)

    def _send_ticker(self, feed: _Feed, *, only_if_changed: bool,
                     to: Iterable[_Client] | None = None) -> None:
        book = feed.book
        if book is None:
            return
        touch = (book.best_bid(), book.best_ask())
        if only_if_changed and touch == feed.touch:
            return
        feed.touch = touch
        clients = feed.ticker_clients if to is None else to
        bid, ask = touch
        if bid is None or ask is None or not clients:
            return
        now = _now_us()
        text = orjson.dumps({"stream": feed.ticker_stream, "data": {
            "e": "bookTicker", "E": now, "s": feed.symbol,
            "a": decimal_str(ask[0]), "A": decimal_str(ask[1]),
            "b": decimal_str(bid[0]), "B": decimal_str(bid[1]),
            "u": str(book.last_update_id), "T": book.timestamp if book.timestamp is not None else now,
        }}).decode()
        for client in clients:
            client.push(text)

    def _restart(self, feed: _Feed, live: OrderBook) -> None:
        """The replica's id went below the published one: no frame can say that."""
        reason = f"depth.{feed.symbol}: upstream update ids restarted; resubscribe"
        log.warning("%s: replica at update %s is behind the published %s; closing %d clients",
                    feed.symbol, live.last_update_id,
                    feed.book.last_update_id if feed.book else None, len(feed.depth_clients))
        for client in list(feed.depth_clients):
            client.close(RESTART_CODE, reason)
        feed.restarts += 1
        feed.book = _copy(live)
        self._current(feed)

    # ------------------------------------------------------------ WebSocket
    async def _serve_websocket(self, conn: ServerConnection) -> None:
        if self._send_buffer is not None:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        client = _Client(conn, self._queue_size, self.stats)
        self._clients[client] = None
        self.stats.connections += 1
        writer = asyncio.create_task(client.run(), name="orderbook-mirror-writer")
        try:
            async for message in conn:
                self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            for name in list(client.streams):
                self._unsubscribe(client, name)
            del self._clients[client]
            client.stop()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    def _on_message(self, client: _Client, message: str | bytes) -> None:
        """Carry out one (UN)SUBSCRIBE request; errors are replied like the venue's."""
        try:
            request = orjson.loads(message)
            method, params = request["method"], request["params"]
            if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
                raise ValueError(method)
        except (ValueError, TypeError, KeyError):
            self._ws_error(client, "INVALID_CLIENT_REQUEST", "Expected SUBSCRIBE or UNSUBSCRIBE")
            return
        for name in params:
            feed = self._stream_feed(name)
            if feed is None:
                self._ws_error(client, "INVALID_STREAM",
                               f"Unknown stream: {name!r}; this mirror serves depth.<symbol> and "
                               f"bookTicker.<symbol> for {', '.join(self._feeds)}", name)
            elif method == "UNSUBSCRIBE":
                self._unsubscribe(client, name)
            elif name not in client.streams:
                client.streams.add(name)
                if name == feed.depth_stream:
                    feed.depth_clients[client] = None
                else:
                    feed.ticker_clients[client] = None
                    self._send_ticker(feed, only_if_changed=False, to=(client,))

    def _stream_feed(self, name: object) -> _Feed | None:
        if not isinstance(name, str):
            return None
        kind, _, symbol = name.partition(".")
        feed = self._feeds.get(symbol)
        return feed if feed is not None and kind in ("depth", "bookTicker") else None

    def _unsubscribe(self, client: _Client, name: str) -> None:
        client.streams.discard(name)
        feed = self._stream_feed(name)
        if feed is not None:
            clients = feed.depth_clients if name == feed.depth_stream else feed.ticker_clients
            clients.pop(client, None)

    def _ws_error(self, client: _Client, code: str, message: str, stream: object = None) -> None:
        self.stats.subscribe_errors += 1
        reply: dict[str, Any] = {"error": {"code": code, "message": message}}
        if stream is not None:
            reply["stream"] = stream
        client.push(orjson.dumps(reply).decode())

    # ----------------------------------------------------------------- HTTP
    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path.rstrip("/") or "/"
        if path == "/":
            return None  # the WebSocket handshake
        query = parse_qs(url.query)
        if path == "/api/v1/depth":
            endpoint, (status, body, headers) = "depth", self._depth(query)
        elif path == "/api/v1/markets" and self._markets is not None:
            endpoint, (status, body, headers) = "markets", (200, self._markets, {})
        elif path.startswith("/api/v1/") and not {".", ".."} & set(path.split("/")):
            endpoint = "markets" if path == "/api/v1/markets" else "forward"
            status, body, headers = await self._forward(request.path)
            if endpoint == "markets" and status == 200:
                self._markets = body
        elif path == "/health":
            endpoint, (status, body, headers) = "health", self._health()
        elif path == "/metrics":
            endpoint, status, headers = "metrics", 200, {"Content-Type": CONTENT_TYPE}
            body = self._metrics().encode()
        else:
            endpoint, (status, body, headers) = "other", _error(404, "NOT_FOUND", "Unknown endpoint")
        self.stats.http[endpoint, status] += 1
        return _response(status, body, headers)

    def _depth(self, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        """The depth body at one update id; nothing here yields to the event loop."""
        symbol = _single(query, "symbol")
        if symbol is None:
            return _error(400, "INVALID_CLIENT_REQUEST", "symbol is required")
        feed = self._feeds.get(symbol)
        if feed is None:
            return _error(400, "INVALID_SYMBOL",
                          f"Invalid symbol: {symbol} is not replicated by this mirror")
        limit_text = _single(query, "limit") or "1000"
        if not limit_text.isdigit() or int(limit_text) not in DEPTH_LIMITS:
            return _error(400, "INVALID_CLIENT_REQUEST", f"limit must be one of {sorted(DEPTH_LIMITS)}")
        if not self.ready(symbol):
            return _error(503, "SERVICE_UNAVAILABLE",
                          f"{symbol} is {self.replicator.status(symbol)} on this mirror; retry shortly")
        book = feed.book
        assert book is not None
        limit = int(limit_text)
        body = orjson.dumps({
            "asks": _wire(book.asks(limit)),
            "bids": _wire(book.bids(limit)),
            "lastUpdateId": str(book.last_update_id),
            "timestamp": book.timestamp if book.timestamp is not None else _now_us(),
        })
        return 200, body, {}

    def _health(self) -> tuple[int, bytes, dict[str, str]]:
        symbols = {}
        for symbol, feed in self._feeds.items():
            symbols[symbol] = {
                "status": self.replicator.status(symbol),
                "ready": self.ready(symbol),
                "last_update_id": self.replicator.book(symbol).last_update_id,
                "published_update_id": feed.book.last_update_id if feed.book else None,
            }
        healthy = all(entry["ready"] for entry in symbols.values())
        body = {"status": "ok" if healthy else "unavailable", "clients": len(self._clients),
                "symbols": symbols}
        return (200 if healthy else 503), orjson.dumps(body), {}

    def _metrics(self) -> str:
        """The exposition: the replicator's families and the mirror's.  O(symbols + samples)."""
        writer = MetricsWriter()
        write_replicator_stats(writer, self.replicator.stats())
        s, feeds = self.stats, self._feeds
        writer.gauge("orderbook_mirror_clients", "WebSocket clients connected to the mirror.",
                     len(self._clients))
        writer.counter("orderbook_mirror_connections_total", "WebSocket clients accepted.",
                       s.connections)
        writer.family("orderbook_mirror_subscriptions", "gauge", "Subscriptions of connected clients.", [
            ({"stream": "depth"}, sum(len(f.depth_clients) for f in feeds.values())),
            ({"stream": "bookTicker"}, sum(len(f.ticker_clients) for f in feeds.values())),
        ])
        writer.family("orderbook_mirror_ready", "gauge",
                      "1 while the symbol is synced and its published book current.",
                      [({"symbol": sym}, int(self.ready(sym))) for sym in feeds])
        writer.family("orderbook_mirror_published_update_id", "gauge",
                      "Update id of the last depth frame published.",
                      [({"symbol": sym}, f.book.last_update_id if f.book else None)
                       for sym, f in feeds.items()])
        writer.family("orderbook_mirror_frames_published_total", "counter",
                      "Depth frames published (each sent once to every subscriber).",
                      [({"symbol": sym}, f.frames) for sym, f in feeds.items()])
        writer.family("orderbook_mirror_resync_frames_total", "counter",
                      "Synthetic frames bridging a replica resync (whole-book differences).",
                      [({"symbol": sym}, f.synthetic) for sym, f in feeds.items()])
        writer.family("orderbook_mirror_stream_restarts_total", "counter",
                      "Times the upstream update ids went backwards and depth clients were closed.",
                      [({"symbol": sym}, f.restarts) for sym, f in feeds.items()])
        writer.counter("orderbook_mirror_messages_sent_total", "WebSocket messages sent to clients.",
                       s.messages_sent)
        writer.counter("orderbook_mirror_slow_consumers_total",
                       "Clients closed (1008) because their queue was full.", s.slow_consumers)
        writer.counter("orderbook_mirror_messages_dropped_total",
                       "Messages discarded with the slow consumers that could not take them.",
                       s.messages_dropped)
        writer.counter("orderbook_mirror_subscribe_errors_total", "Refused WebSocket requests.",
                       s.subscribe_errors)
        writer.counter("orderbook_mirror_internal_errors_total", "Internal errors (bugs) caught and logged.",
                       s.internal_errors)
        writer.family("orderbook_mirror_http_requests_total", "counter",
                      "HTTP requests answered, by endpoint and status.",
                      [({"endpoint": e, "code": str(c)}, n) for (e, c), n in sorted(s.http.items())])
        writer.histogram("orderbook_mirror_engine_to_publish_seconds",
                         "Frame engine time T to frame queued to clients (includes clock offset).",
                         [({}, s.engine_to_publish)])
        writer.histogram("orderbook_mirror_receive_to_publish_seconds",
                         "Frame read from the venue to frame queued to clients.",
                         [({}, s.receive_to_publish)])
        writer.histogram("orderbook_mirror_resync_seconds",
                         "Replica invalidated to published book current again.", [({}, s.resync)])
        return writer.text()

    async def _forward(self, target: str) -> tuple[int, bytes, dict[str, str]]:
        """GET ``target`` (path and query) upstream and relay the answer."""
        assert self._http is not None
        now = time.monotonic()
        if not self._bucket.try_take(now):
            wait = max(1, math.ceil(1.0 / self._bucket.rate))
            status, body, headers = _error(429, "TOO_MANY_REQUESTS",
                                           "the mirror's budget for forwarded requests is spent")
            return status, body, {**headers, "Retry-After": str(wait)}
        try:
            response = await self._http.get(target)
        except httpx.TimeoutException:
            return _error(504, "TIMEOUT", "the upstream API did not answer in time")
        except httpx.TransportError as exc:
            return _error(502, "SERVER_ERROR", f"the upstream API is unreachable: {type(exc).__name__}")
        headers = {"Content-Type": response.headers.get("Content-Type", _JSON)}
        if "Retry-After" in response.headers:
            headers["Retry-After"] = response.headers["Retry-After"]
        return response.status_code, response.content, headers

    async def _refresh_markets(self) -> None:
        status, body, _ = await self._forward("/api/v1/markets")
        if status == 200:
            self._markets = body
        else:
            log.warning("markets cache not refreshed: upstream answered HTTP %d", status)

    async def _markets_loop(self) -> None:
        while True:
            await asyncio.sleep(self._markets_refresh)
            await self._refresh_markets()


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _error(status: int, code: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    return status, orjson.dumps({"code": code, "message": message}), {}


def _response(status: int, body: bytes, headers: dict[str, str]) -> Response:
    all_headers = Headers({
        "Content-Type": _JSON, **headers,
        "Content-Length": str(len(body)), "Connection": "close",
    })
    return Response(status, http.HTTPStatus(status).phrase, all_headers, body)


# ------------------------------------------------------------------------- CLI
async def run_mirror(
    symbols: Sequence[str] | str,
    *,
    stop: asyncio.Event,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    queue_size: int = 1000,
    announce: bool = True,
    **replicator_options: Any,
) -> None:
    """Replicate ``symbols`` (or ``"all"``) and serve the mirror until ``stop`` is set.

    What ``orderbook serve`` runs.  ``replicator_options`` go to
    :class:`Replicator` (``rest_url``, ``ws_url``, ``depth_stream``...).  With
    ``announce`` the listening address is printed on stdout once bound (a
    line ``listening on http://HOST:PORT``).  Setting ``stop`` during startup
    abandons it.  Raises what :meth:`Replicator.start` and
    :meth:`MirrorServer.start` raise.
    """
    replicator = Replicator(symbols, **replicator_options)
    mirror = MirrorServer(replicator, host=host, port=port, queue_size=queue_size)
    try:
        if not await _unless_stopped(stop, replicator.start()):
            return
        if not await _unless_stopped(stop, mirror.start()):
            return
        if host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("the mirror is bound to %s: reachable from other hosts", host)
        if announce:
            print(f"listening on {mirror.url} (WebSocket {mirror.ws_url})", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await mirror.close()
        await replicator.close()


async def _unless_stopped(stop: asyncio.Event, step: Awaitable[None]) -> bool:
    """Run ``step`` unless ``stop`` is set first (then cancel it): True when it completed."""
    task = asyncio.ensure_future(step)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False


async def _serve_until_signalled(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows: Ctrl-C raises KeyboardInterrupt (exit 0 in main)
            break
    symbols: Sequence[str] | str = "all" if args.all else args.symbols
    await run_mirror(symbols, stop=stop, host=args.host, port=args.port, queue_size=args.queue_size,
                     rest_url=args.rest_url, ws_url=args.ws_url, depth_stream=args.depth_stream)


def _cmd_serve(args: argparse.Namespace) -> int:
    if bool(args.symbols) == bool(args.all):
        raise UsageError("give either SYMBOL... or --all")
    asyncio.run(_serve_until_signalled(args))
    return 0


def add_serve_command(commands: Any) -> None:
    """Add the ``serve`` subcommand to ``commands`` (an ``add_subparsers()`` result)."""
    parser = commands.add_parser(
        "serve", help="replicate books and serve them locally with the venue's REST and WebSocket API",
        description=(
            "The standalone replicator: keeps exact replicas and serves GET /api/v1/depth, "
            "/api/v1/markets (cached; other /api/v1/ GETs are forwarded upstream), a WebSocket "
            "at / with depth.<symbol> and bookTicker.<symbol>, GET /health (503 while a symbol "
            "is not synced) and GET /metrics (Prometheus). Stops cleanly on SIGINT/SIGTERM."),
    )
    parser.add_argument("symbols", nargs="*", metavar="SYMBOL", help="markets to replicate")
    parser.add_argument("--all", action="store_true", help="replicate every listed spot and perp market")
    parser.add_argument("--rest-url", default=DEFAULT_REST_URL, help="upstream REST API (default: %(default)s)")
    parser.add_argument("--ws-url", default=DEFAULT_WS_URL, help="upstream WebSocket (default: %(default)s)")
    parser.add_argument("--depth-stream", default="depth", choices=DEPTH_STREAMS,
                        help="upstream depth stream (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to bind, 0 for any free one (default: %(default)s)")
    parser.add_argument("--queue-size", type=int, default=1000, metavar="N",
                        help="messages queued per WebSocket client before it is closed as a slow "
                             "consumer (default: %(default)s)")
    parser.set_defaults(handler=_cmd_serve)
