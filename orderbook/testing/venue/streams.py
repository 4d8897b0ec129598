"""WebSocket fan-out: subscriptions, depth/bookTicker frames, aggregation, client queues.

The generator hands every update to `Fanout.publish`, which encodes each frame once
and pushes it onto the bounded queue of every subscribed `Client`; a writer task per
client drains its queue into the socket, so a slow client never stalls the generator
(it is closed with 1008 when its queue overflows).

Per stream, frames are contiguous: a realtime `depth.<s>` frame covers one update (or
2-5 under the `aggregate` fault), a `depth.<N>ms.<s>` frame covers every update of its
window. Faults that lose frames (drop, malform) are decided per frame and per client.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

# Of `orderbook` the venue imports only the outbox (asyncio only) and
# the protocol's facts (stream names), never the replica's logic.
from ...live.outbox import Outbox
from ...protocol.streams import (
    INTERVALS_MS,
    StreamKind,
    StreamName,
    depth_stream,
    parse_stream,
    ticker_stream,
)
from .faults import FaultInjector, FrameFate
from .flow import OrderFlow, Update, format_decimal
from .stats import VenueStats

__all__ = ["INTERVALS_MS", "Client", "Fanout", "StreamName", "dumps", "parse_stream"]


def _now_us() -> int:
    return time.time_ns() // 1000


def dumps(message: Any) -> str:
    """Compact JSON text of `message`."""
    return orjson.dumps(message).decode()


class Client(Outbox[str]):
    """One WebSocket connection: its `Outbox` and the streams it subscribed to.

    `push` is O(1) and never blocks; `run` is the writer task. On overflow the
    connection is closed with 1008, reason "outgoing queue overflow (<limit> messages)",
    counted in `queue_overflows`; every message sent counts in `frames_sent`.
    """

    __slots__ = ("streams", "ws")

    def __init__(self, conn: ServerConnection, limit: int, stats: VenueStats) -> None:
        def overflowed(dropped: int) -> None:
            stats.queue_overflows += 1

        def sent() -> None:
            stats.frames_sent += 1

        reason = f"outgoing queue overflow ({limit} messages)"
        super().__init__(conn, limit, reason, closed_errors=(ConnectionClosed,),
                         on_overflow=overflowed, on_sent=sent)
        self.streams: set[str] = set()
        self.ws = conn
        """The connection itself (``conn`` typed as the websockets connection it is)."""


class _Pending:
    """Consecutive updates of one symbol merged into one frame; last value wins."""

    __slots__ = ("first_id", "last_id", "timestamp", "count", "bids", "asks")

    def __init__(self, update: Update) -> None:
        self.first_id = update.first_id
        self.count = 0
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.add(update)

    def add(self, update: Update) -> None:
        self.last_id = update.last_id
        self.timestamp = update.timestamp
        self.count += 1
        bids, asks = self.bids, self.asks
        for side, price, quantity in update.changes:
            (bids if side == "bid" else asks)[price] = quantity


class _Feed:
    """Stream names and in-progress aggregates of one symbol."""

    __slots__ = ("symbol", "realtime", "ticker", "windows", "pending", "target", "window", "touch")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.realtime = depth_stream(symbol)
        self.ticker = ticker_stream(symbol)
        self.windows = {interval: depth_stream(symbol, f"depth.{interval}ms")
                        for interval in INTERVALS_MS}
        self.pending: _Pending | None = None  # realtime aggregate (fault)
        self.target = 1
        self.window: dict[int, _Pending] = {}
        self.touch: tuple[Any, ...] | None = None


class Fanout:
    """Routes updates of an `OrderFlow` to subscribed clients as Backpack frames.

    `publish` is O(changes + subscribers of the symbol); flushes are O(symbols).
    """

    def __init__(self, flow: OrderFlow, injector: FaultInjector, stats: VenueStats) -> None:
        self._flow = flow
        self._injector = injector
        self._stats = stats
        self._feeds = {symbol: _Feed(symbol) for symbol in flow.symbols}
        self._subscribers: dict[str, dict[Client, None]] = {}

    def knows(self, symbol: str) -> bool:
        """True if `symbol` is one of the venue's markets."""
        return symbol in self._feeds

    def subscribe(self, client: Client, name: str, key: StreamName) -> None:
        """Start sending stream `name` (already parsed to `key`) to `client`."""
        self._subscribers.setdefault(name, {})[client] = None
        client.streams.add(name)
        if key.kind is StreamKind.BOOK_TICKER:
            self._feeds[key.symbol].touch = None  # resend the touch on next update

    def unsubscribe(self, client: Client, name: str) -> None:
        """Stop sending stream `name` to `client` (no-op if not subscribed)."""
        subscribers = self._subscribers.get(name)
        if subscribers is not None:
            subscribers.pop(client, None)
            if not subscribers:
                del self._subscribers[name]
        client.streams.discard(name)

    def remove(self, client: Client) -> None:
        """Forget a disconnected client."""
        for name in list(client.streams):
            self.unsubscribe(client, name)

    def publish(self, update: Update) -> None:
        """Route one applied update to every stream of its symbol."""
        feed = self._feeds[update.symbol]
        self._publish_realtime(feed, update)
        for interval, name in feed.windows.items():
            if name not in self._subscribers:
                feed.window.pop(interval, None)  # keep aggregates contiguous
            elif interval in feed.window:
                feed.window[interval].add(update)
            else:
                feed.window[interval] = _Pending(update)
        self._publish_ticker(feed, update)

    def flush_window(self, interval: int) -> None:
        """Emit the frames of every symbol's `interval` ms window that just closed."""
        for feed in self._feeds.values():
            pending = feed.window.pop(interval, None)
            if pending is not None:
                self._send_depth(feed.windows[interval], feed.symbol, pending)

    def flush_all(self) -> None:
        """Emit every partial aggregate now (realtime fault merges and windows)."""
        for feed in self._feeds.values():
            if feed.pending is not None:
                self._send_depth(feed.realtime, feed.symbol, feed.pending)
                feed.pending = None
        for interval in INTERVALS_MS:
            self.flush_window(interval)

    def _publish_realtime(self, feed: _Feed, update: Update) -> None:
        if feed.realtime not in self._subscribers:
            feed.pending = None
            return
        aggregate = self._injector.faults.aggregate
        if feed.pending is None:
            feed.pending = _Pending(update)
            feed.target = self._injector.aggregate_size() if aggregate else 1
        else:
            feed.pending.add(update)
        if not aggregate or feed.pending.count >= feed.target:
            self._send_depth(feed.realtime, feed.symbol, feed.pending)
            feed.pending = None

    def _send_depth(self, name: str, symbol: str, pending: _Pending) -> None:
        subscribers = self._subscribers.get(name)
        if not subscribers:
            return
        message = {"stream": name, "data": self._depth_data(symbol, pending)}
        text = dumps(message)
        if not self._injector.frames_at_risk():
            for client in subscribers:
                client.push(text)
            return
        for client in subscribers:
            self._push_at_risk(client, message, text)

    def _push_at_risk(self, client: Client, message: dict[str, Any], text: str) -> None:
        fate = self._injector.frame_fate()
        stats = self._stats
        if fate is FrameFate.DROP:
            stats.frames_dropped += 1
        elif fate is FrameFate.MALFORM:
            stats.frames_malformed += 1
            client.push(self._injector.malformed(message))
        else:
            client.push(text)
            if fate is FrameFate.DUPLICATE:
                stats.frames_duplicated += 1
                client.push(text)

    def _depth_data(self, symbol: str, pending: _Pending) -> dict[str, Any]:
        return {
            "e": "depth",
            "E": self._time(_now_us()),
            "s": symbol,
            "a": self._levels(pending.asks.items()),
            "b": self._levels(pending.bids.items()),
            "U": pending.first_id,
            "u": pending.last_id,
            "T": self._time(pending.timestamp),
        }

    def _levels(self, levels: Iterable[tuple[Decimal, Decimal]]) -> list[list[str]]:
        zero = self._injector.zero
        return [[format_decimal(p), format_decimal(q) if q else zero()] for p, q in levels]

    def _time(self, microseconds: int) -> int | str:
        return str(microseconds) if self._injector.faults.string_times else microseconds

    def _publish_ticker(self, feed: _Feed, update: Update) -> None:
        subscribers = self._subscribers.get(feed.ticker)
        if not subscribers:
            return
        book = self._flow.truth(feed.symbol)
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None or (bid, ask) == feed.touch:
            return
        feed.touch = (bid, ask)
        data = {
            "e": "bookTicker",
            "E": self._time(_now_us()),
            "s": feed.symbol,
            "a": format_decimal(ask[0]),
            "A": format_decimal(ask[1]),
            "b": format_decimal(bid[0]),
            "B": format_decimal(bid[1]),
            "u": str(update.last_id),
            "T": self._time(update.timestamp),
        }
        text = dumps({"stream": feed.ticker, "data": data})
        for client in subscribers:
            client.push(text)
