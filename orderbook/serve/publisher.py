"""What the mirror publishes per symbol: a pure state machine (no asyncio, no sockets, no clock).

Frame continuity
----------------
A client bootstraps from the mirror exactly as from the venue: subscribe,
buffer, fetch ``/api/v1/depth`` (``lastUpdateId`` = L), apply the frames from
``U <= L+1 <= u`` on.  For that the stream and the REST answer must describe
one history, so the :class:`Publisher` keeps, per symbol, a *published* copy
of the book: the state the frames sent so far lead to.  Each frame is applied
to it before it is sent, and the depth body is built from it, never from the
live replica (which runs ahead of the consumer queue by a few frames).

The publisher reads the replicator's conflating updates.  A delta that
continues the published book (``first_id <= published + 1``) is republished
as ``U = published + 1 .. u = last_id`` with its changed levels (absolute
quantities, so a frame that overlaps what was already published is still
exact).  When the replica was rebuilt from a snapshot (after a gap, a
reconnect, an audit...) its update id jumps: the publisher then emits ONE
synthetic frame ``U = published + 1 .. u = replica id`` carrying every level
that differs between the published book and the replica (zero for levels that
vanished), so downstream books follow without a gap and without a resync.  A
frame is never emitted out of sequence.  Should the replica's id ever go
*below* the published one (the venue restarted its ids), no frame can express
that: the publisher returns a :class:`Restart` for the symbol's depth stream
(its clients must be closed with 1012 and resubscribe) and restarts the
published book from the replica.

Interface: :meth:`Publisher.update` takes one replica update, the live book,
whether the replica is synced, the wall clock ``now_us`` and the set of
streams anyone listens to, and RETURNS what to send (:class:`Frame`: encoded
text for one stream) and whom to restart (:class:`Restart`).  It touches no
client.  Costs: a delta costs one :meth:`OrderBook.apply_delta` and one JSON
encoding shared by every subscriber; a synthetic frame is O(book) (once per
resync); :meth:`depth_body` is O(limit) once per (limit, update id) and O(1)
from its cache after that.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from ..core.book import OrderBook
from ..core.ladder import Level
from ..protocol.decimals import decimal_str
from .histogram import Histogram
from ..protocol.streams import depth_stream, ticker_stream
from ..sync.updates import BookUpdate
from ..protocol.wire import DepthEvent, Snapshot

__all__ = ["RESTART_CODE", "Frame", "Publisher", "PublishTimes", "Restart"]

RESTART_CODE = 1012
"""WebSocket close code for depth clients when the upstream ids went backwards."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One message to send to every subscriber of ``stream``: ``text`` is the
    encoded JSON (UTF-8 bytes, sent as a text frame)."""

    stream: str
    text: bytes


@dataclass(frozen=True, slots=True)
class Restart:
    """Close every subscriber of ``stream`` with ``code`` and ``reason``."""

    stream: str
    code: int
    reason: str


@dataclass(slots=True)
class PublishTimes:
    """Histograms (seconds) the publisher observes: ``engine_to_publish`` frame
    ``T`` -> frame emitted, ``receive_to_publish`` frame read upstream ->
    emitted, ``resync`` replica invalidated -> published book current again."""

    engine_to_publish: Histogram = field(default_factory=Histogram)
    receive_to_publish: Histogram = field(default_factory=Histogram)
    resync: Histogram = field(default_factory=Histogram)


class _Feed:
    """What has been published for one symbol."""

    __slots__ = ("symbol", "depth_stream", "ticker_stream", "book", "needs_diff", "touch",
                 "frames", "synthetic", "restarts", "invalidated_us", "bodies")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.depth_stream = depth_stream(symbol)
        self.ticker_stream = ticker_stream(symbol)
        self.book: OrderBook | None = None
        """The published book; ``None`` until the replica first synced."""
        self.needs_diff = False
        """True when the next publication must compare whole books (after a
        resync, or when a change could not be republished as it came)."""
        self.touch: tuple[Level | None, Level | None] = (None, None)
        self.frames = 0
        self.synthetic = 0
        self.restarts = 0
        self.invalidated_us: int | None = None
        self.bodies: dict[int, bytes] = {}
        """Encoded depth bodies by limit, valid for the published update id."""


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


class Publisher:
    """The published books of ``symbols`` and the frames that keep clients on them.

    Call :meth:`start` for each symbol with the live book once (if synced),
    then :meth:`update` for every replica update, in order.  Read
    :meth:`book`, :meth:`ready`, :meth:`depth_body` and :meth:`ticker` between
    updates.  Not thread-safe; pure (every time is passed in).
    """

    def __init__(self, symbols: Iterable[str], times: PublishTimes | None = None) -> None:
        self._feeds = {symbol: _Feed(symbol) for symbol in symbols}
        self.times = times if times is not None else PublishTimes()

    # ------------------------------------------------------------- reading
    @property
    def symbols(self) -> list[str]:
        """The symbols published, in order."""
        return list(self._feeds)

    def knows(self, symbol: str) -> bool:
        """Whether ``symbol`` is published here.  O(1)."""
        return symbol in self._feeds

    def book(self, symbol: str) -> OrderBook | None:
        """The book the frames sent so far lead to (``None`` before the first
        sync).  Do not modify it.  O(1)."""
        return self._feeds[symbol].book

    def ready(self, symbol: str, synced: bool) -> bool:
        """True when the replica is ``synced`` and the published book is current.  O(1)."""
        feed = self._feeds[symbol]
        return synced and feed.book is not None and not feed.needs_diff

    def counters(self, symbol: str) -> tuple[int, int, int]:
        """``(frames, synthetic frames, restarts)`` published for ``symbol``."""
        feed = self._feeds[symbol]
        return feed.frames, feed.synthetic, feed.restarts

    def depth_body(self, symbol: str, limit: int, now_us: int) -> bytes:
        """The ``/api/v1/depth`` body of the published book (``limit`` levels a
        side), at one update id.  Check :meth:`ready` first.  O(limit) once per
        (limit, update id), then O(1)."""
        feed = self._feeds[symbol]
        body = feed.bodies.get(limit)
        if body is None:
            book = feed.book
            assert book is not None
            body = feed.bodies[limit] = orjson.dumps({
                "asks": _wire(book.asks(limit)),
                "bids": _wire(book.bids(limit)),
                "lastUpdateId": str(book.last_update_id),
                "timestamp": book.timestamp if book.timestamp is not None else now_us,
            })
        return body

    def ticker(self, symbol: str, now_us: int) -> bytes | None:
        """The bookTicker message of the published touch (``None`` while a side is empty)."""
        feed = self._feeds[symbol]
        book = feed.book
        if book is None:
            return None
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return None
        return orjson.dumps({"stream": feed.ticker_stream, "data": {
            "e": "bookTicker", "E": now_us, "s": feed.symbol,
            "a": decimal_str(ask[0]), "A": decimal_str(ask[1]),
            "b": decimal_str(bid[0]), "B": decimal_str(bid[1]),
            "u": str(book.last_update_id),
            "T": book.timestamp if book.timestamp is not None else now_us,
        }})

    # ------------------------------------------------------------- writing
    def start(self, symbol: str, live: OrderBook) -> None:
        """Publish ``live`` (a synced replica) as the first state of ``symbol``."""
        feed = self._feeds[symbol]
        feed.book = _copy(live)
        feed.bodies.clear()

    def invalidate(self, symbol: str) -> None:
        """Compare whole books at the next update (after an error while publishing)."""
        feed = self._feeds.get(symbol)
        if feed is not None:
            feed.needs_diff = True

    def update(self, update: BookUpdate, live: OrderBook, synced: bool, now_us: int,
               audience: Collection[str]) -> list[Frame | Restart]:
        """Turn one (conflated) replica update into at most one depth frame (and
        a bookTicker frame if the touch moved).  ``live`` is the replica's book
        now, ``synced`` its status, ``audience`` the streams with subscribers
        (frames for others are not encoded).  O(changed levels), O(book) for
        a synthetic frame."""
        feed = self._feeds.get(update.symbol)
        if feed is None:
            return []
        if update.kind != "delta":
            feed.needs_diff = True
            if update.kind == "invalidated" and feed.invalidated_us is None:
                feed.invalidated_us = now_us
        if not synced:
            feed.needs_diff = True  # whatever this update said, the next one compares books
            return []
        published = feed.book
        if published is None:
            self.start(feed.symbol, live)
            self._current(feed, now_us)
            return []
        pub_id, live_id = published.last_update_id, live.last_update_id
        assert pub_id is not None and live_id is not None
        out: list[Frame | Restart] = []
        if (not feed.needs_diff and update.kind == "delta" and update.first_id is not None
                and update.last_id is not None and update.first_id <= pub_id + 1):
            if update.last_id > pub_id:
                self._publish(feed, out, audience, pub_id + 1, update.last_id, update.bids,
                              update.asks, update.engine_time, update.received_us, now_us)
            return out
        if live_id > pub_id:
            bids = _side_diff(published.bids(), live.bids())
            asks = _side_diff(published.asks(), live.asks())
            self._publish(feed, out, audience, pub_id + 1, live_id, bids, asks, live.timestamp,
                          None, now_us)
            feed.synthetic += 1
            self._current(feed, now_us)
        elif live_id == pub_id:
            if published.bids() == live.bids() and published.asks() == live.asks():
                self._current(feed, now_us)
            # else: no frame can carry a change at an id already sent; the next one will
        else:
            out.append(Restart(feed.depth_stream, RESTART_CODE,
                               f"{feed.depth_stream}: upstream update ids restarted; resubscribe"))
            feed.restarts += 1
            self.start(feed.symbol, live)
            self._current(feed, now_us)
        return out

    def _current(self, feed: _Feed, now_us: int) -> None:
        """The published book equals the synced replica again."""
        feed.needs_diff = False
        if feed.invalidated_us is not None:
            self.times.resync.observe((now_us - feed.invalidated_us) / 1e6)
            feed.invalidated_us = None

    def _publish(self, feed: _Feed, out: list[Frame | Restart], audience: Collection[str],
                 first: int, last: int, bids: Iterable[Level], asks: Iterable[Level],
                 engine_time: int | None, received_us: int | None, now: int) -> None:
        """Apply one frame to the published book, then emit it (and the touch)."""
        book = feed.book
        assert book is not None
        wire_bids, wire_asks = _wire(bids), _wire(asks)
        engine = engine_time if engine_time is not None else now
        touched = book.apply_delta(
            DepthEvent(feed.symbol, first, last, now, engine, wire_bids, wire_asks))
        feed.bodies.clear()
        feed.frames += 1
        if feed.depth_stream in audience:
            out.append(Frame(feed.depth_stream, orjson.dumps({"stream": feed.depth_stream, "data": {
                "e": "depth", "E": now, "s": feed.symbol, "a": wire_asks, "b": wire_bids,
                "U": first, "u": last, "T": engine,
            }})))
        if touched:
            touch = (book.best_bid(), book.best_ask())
            if touch != feed.touch:
                feed.touch = touch
                if feed.ticker_stream in audience:
                    text = self.ticker(feed.symbol, now)
                    if text is not None:
                        out.append(Frame(feed.ticker_stream, text))
        if engine_time is not None:
            self.times.engine_to_publish.observe((now - engine_time) / 1e6)
        if received_us is not None:
            self.times.receive_to_publish.observe((now - received_us) / 1e6)
