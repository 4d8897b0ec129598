"""The contenders of the one-book benchmark: the same raw frames kept as a book
by this package, the reference style, ccxt and the JSON floor; and the exactness checks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

import orjson
from sortedcontainers import SortedDict

from ..core.book import OrderBook
from ..core.ladder import Level
from ..sync.symbol import SymbolSync, SyncState
from ..protocol.wire import parse_frame, parse_snapshot
from .workload import Workload

__all__ = ["CcxtSides", "Contender", "JsonFloor", "OursBook", "OursSync", "ReferenceStyle", "check_exactness", "ccxt_sides", "check_final", "contenders", "reference_apply"]

# --------------------------------------------------------------- contenders
class Contender(Protocol):
    """One way of keeping a book from the raw frames.

    ``setup`` builds a fresh book from the workload's snapshot (untimed);
    ``run`` feeds frames and reads the touch after each (timed);
    ``trace`` does the same with a per-frame timer and records the touch;
    ``sides`` returns the final book, best first, for the exactness check.
    """

    name: str
    exact: bool

    def setup(self, workload: Workload) -> None: ...

    def run(self, frames: Sequence[bytes]) -> None: ...

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]: ...

    def sides(self) -> tuple[list[Any], list[Any]] | None: ...


class OursSync:
    """This package end to end: ``parse_frame`` -> ``SymbolSync.receive_frame``
    -> ``book.best_bid()`` / ``book.best_ask()``."""

    name = "ours: parse_frame + SymbolSync"
    exact = True

    def setup(self, workload: Workload) -> None:
        sync = SymbolSync(workload.symbol)
        sync.start()
        sync.receive_snapshot(parse_snapshot(workload.snapshot_raw, workload.symbol), limit=1000)
        assert sync.state is SyncState.SYNCED
        self.sync = sync
        self.fed = 0

    def run(self, frames: Sequence[bytes]) -> None:
        receive = self.sync.receive_frame
        book = self.sync.book
        best_bid, best_ask = book.best_bid, book.best_ask
        parse = parse_frame
        for raw in frames:
            receive(parse(raw, validate_levels=False))  # type: ignore[arg-type]
            bid = best_bid()
            ask = best_ask()
        self._check_applied(len(frames))

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        receive = self.sync.receive_frame
        book = self.sync.book
        best_bid, best_ask = book.best_bid, book.best_ask
        parse = parse_frame
        clock = time.perf_counter_ns
        latencies: list[int] = []
        touches: list[Any] = []
        for raw in frames:
            start = clock()
            receive(parse(raw, validate_levels=False))  # type: ignore[arg-type]
            bid = best_bid()
            ask = best_ask()
            latencies.append(clock() - start)
            touches.append((bid, ask))
        self._check_applied(len(frames))
        return latencies, touches

    def _check_applied(self, n: int) -> None:
        self.fed += n
        counters = self.sync.counters
        if self.sync.state is not SyncState.SYNCED or counters.frames_applied != self.fed:
            raise AssertionError(f"{self.name}: not every frame applied: {counters}")

    def sides(self) -> tuple[list[Any], list[Any]]:
        return self.sync.book.bids(), self.sync.book.asks()


class OursBook:
    """This package without the state machine: ``parse_frame`` ->
    ``OrderBook.apply_delta`` -> best bid/ask."""

    name = "ours: parse_frame + OrderBook.apply_delta"
    exact = True

    def setup(self, workload: Workload) -> None:
        self.book = OrderBook(workload.symbol)
        self.book.apply_snapshot(workload.snapshot_raw, limit=1000)

    def run(self, frames: Sequence[bytes]) -> None:
        book = self.book
        apply, best_bid, best_ask = book.apply_delta, book.best_bid, book.best_ask
        parse = parse_frame
        for raw in frames:
            apply(parse(raw, validate_levels=False))  # type: ignore[arg-type]
            bid = best_bid()
            ask = best_ask()

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        book = self.book
        apply, best_bid, best_ask = book.apply_delta, book.best_bid, book.best_ask
        parse = parse_frame
        clock = time.perf_counter_ns
        latencies: list[int] = []
        touches: list[Any] = []
        for raw in frames:
            start = clock()
            apply(parse(raw, validate_levels=False))  # type: ignore[arg-type]
            bid = best_bid()
            ask = best_ask()
            latencies.append(clock() - start)
            touches.append((bid, ask))
        return latencies, touches

    def sides(self) -> tuple[list[Any], list[Any]]:
        return self.book.bids(), self.book.asks()


class _Gap(Exception):
    pass


def reference_apply(bids: SortedDict, asks: SortedDict, data: dict[str, Any], last: int) -> int:
    """The reference style's step: check ``U == last + 1``, apply each level
    as a ``Decimal`` (zero pops it) and return the new ``u``."""
    if data["U"] != last + 1:
        raise _Gap(data["U"], last)
    D = Decimal
    for p, q in data["b"]:
        price, qty = D(p), D(q)
        if qty:
            bids[price] = qty
        else:
            bids.pop(price, None)
    for p, q in data["a"]:
        price, qty = D(p), D(q)
        if qty:
            asks[price] = qty
        else:
            asks.pop(price, None)
    return int(data["u"])


class ReferenceStyle:
    """The design of the venue's reference book in Python: ``orjson.loads``,
    ``Decimal`` price and quantity, one ``SortedDict`` per side keyed by the
    ``Decimal`` price, zero -> pop, ``U == last u + 1`` checked, touch read
    with ``peekitem`` after every frame."""

    name = "reference style: orjson + SortedDict[Decimal]"
    exact = True

    def setup(self, workload: Workload) -> None:
        body = orjson.loads(workload.snapshot_raw)
        self.bids = SortedDict({Decimal(p): Decimal(q) for p, q in body["bids"] if Decimal(q)})
        self.asks = SortedDict({Decimal(p): Decimal(q) for p, q in body["asks"] if Decimal(q)})
        self.last = int(body["lastUpdateId"])

    def run(self, frames: Sequence[bytes]) -> None:
        loads = orjson.loads
        bids, asks = self.bids, self.asks
        last = self.last
        D = Decimal
        for raw in frames:  # inline, as a reference implementation would be written
            data = loads(raw)["data"]
            if data["U"] != last + 1:
                raise _Gap(data["U"], last)
            for p, q in data["b"]:
                price, qty = D(p), D(q)
                if qty:
                    bids[price] = qty
                else:
                    bids.pop(price, None)
            for p, q in data["a"]:
                price, qty = D(p), D(q)
                if qty:
                    asks[price] = qty
                else:
                    asks.pop(price, None)
            last = data["u"]
            bids.peekitem(-1) if bids else None
            asks.peekitem(0) if asks else None
        self.last = last

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        loads = orjson.loads
        bids, asks = self.bids, self.asks
        last = self.last
        clock = time.perf_counter_ns
        latencies: list[int] = []
        touches: list[Any] = []
        for raw in frames:
            start = clock()
            last = reference_apply(bids, asks, loads(raw)["data"], last)
            bid = bids.peekitem(-1) if bids else None
            ask = asks.peekitem(0) if asks else None
            latencies.append(clock() - start)
            touches.append((bid, ask))
        self.last = last
        return latencies, touches

    def sides(self) -> tuple[list[Any], list[Any]]:
        return list(reversed(self.bids.items())), list(self.asks.items())


def ccxt_sides() -> tuple[Any, Any] | None:
    try:
        from ccxt.async_support.base.ws.order_book_side import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
            Asks,
            Bids,
        )
    except ImportError:
        return None
    return Bids, Asks


class CcxtSides:
    """ccxt's order book sides fed the way its Backpack adapter feeds them
    (``storeArray([float(price), float(qty)])`` per level), without the
    exchange object around them, plus the ``U == last u + 1`` check ccxt
    itself does not make.  Floats: not exact."""

    name = "ccxt OrderBookSide.storeArray (float)"
    exact = False

    def setup(self, workload: Workload) -> None:
        classes = ccxt_sides()
        assert classes is not None
        bids_class, asks_class = classes
        body = orjson.loads(workload.snapshot_raw)
        self.bids = bids_class([[float(p), float(q)] for p, q in body["bids"]])
        self.asks = asks_class([[float(p), float(q)] for p, q in body["asks"]])
        self.nonce = int(body["lastUpdateId"])

    def run(self, frames: Sequence[bytes]) -> None:
        loads = orjson.loads
        bids, asks = self.bids, self.asks
        store_bid, store_ask = bids.storeArray, asks.storeArray
        nonce = self.nonce
        for raw in frames:
            data = loads(raw)["data"]
            if data["U"] != nonce + 1:
                raise _Gap(data["U"], nonce)
            for p, q in data["b"]:
                store_bid([float(p), float(q)])
            for p, q in data["a"]:
                store_ask([float(p), float(q)])
            nonce = data["u"]
            bid = bids[0] if bids else None
            ask = asks[0] if asks else None
        self.nonce = nonce

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        loads = orjson.loads
        bids, asks = self.bids, self.asks
        store_bid, store_ask = bids.storeArray, asks.storeArray
        nonce = self.nonce
        clock = time.perf_counter_ns
        latencies: list[int] = []
        touches: list[Any] = []
        for raw in frames:
            start = clock()
            data = loads(raw)["data"]
            if data["U"] != nonce + 1:
                raise _Gap(data["U"], nonce)
            for p, q in data["b"]:
                store_bid([float(p), float(q)])
            for p, q in data["a"]:
                store_ask([float(p), float(q)])
            nonce = data["u"]
            bid = bids[0] if bids else None
            ask = asks[0] if asks else None
            latencies.append(clock() - start)
            # ccxt levels are mutable lists updated in place: copy for the record
            touches.append((tuple(bid) if bid else None, tuple(ask) if ask else None))
        self.nonce = nonce
        return latencies, touches

    def sides(self) -> tuple[list[Any], list[Any]]:
        return [tuple(level) for level in self.bids], [tuple(level) for level in self.asks]


class JsonFloor:
    """``orjson.loads`` of every frame and nothing else: the floor."""

    name = "floor: orjson.loads alone"
    exact = False

    def setup(self, workload: Workload) -> None:
        pass

    def run(self, frames: Sequence[bytes]) -> None:
        loads = orjson.loads
        for raw in frames:
            loads(raw)

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        loads = orjson.loads
        clock = time.perf_counter_ns
        latencies: list[int] = []
        for raw in frames:
            start = clock()
            loads(raw)
            latencies.append(clock() - start)
        return latencies, []

    def sides(self) -> None:
        return None


def contenders(include_ccxt: bool = True) -> list[Contender]:
    """The contenders, ours first; ccxt only when the package is installed."""
    found: list[Contender] = [OursSync(), OursBook(), ReferenceStyle()]
    if include_ccxt and ccxt_sides() is not None:
        found.append(CcxtSides())
    found.append(JsonFloor())
    return found


# ------------------------------------------------------------ exactness
def _float_level(level: Level | None) -> tuple[float, float] | None:
    return None if level is None else (float(level[0]), float(level[1]))


def check_exactness(contender: Contender, workload: Workload, touches: list[Any]) -> str:
    """Compare a traced run with the model: every frame's touch and the final book.

    Returns a short verdict; raises ``AssertionError`` when a contender that
    claims exactness deviates.
    """
    sides = contender.sides()
    if sides is None:
        return "n/a"
    if contender.exact:
        bad = next((i for i, (got, want) in enumerate(zip(touches, workload.touches)) if got != want), None)
        if bad is not None:
            raise AssertionError(f"{contender.name}: touch after frame {bad} is {touches[bad]}, expected {workload.touches[bad]}")
        if sides != (workload.final_bids, workload.final_asks):
            raise AssertionError(f"{contender.name}: final book differs from the model")
        return "exact"
    want_touches = [(_float_level(b), _float_level(a)) for b, a in workload.touches]
    want_sides = (
        [_float_level(level) for level in workload.final_bids],
        [_float_level(level) for level in workload.final_asks],
    )
    same = touches == want_touches and sides == want_sides
    return "float (= float(truth))" if same else "float, DIFFERS"


def check_final(contender: Contender, workload: Workload) -> None:
    """After a timed run: the final book of an exact contender must equal the model."""
    if contender.exact and contender.sides() != (workload.final_bids, workload.final_asks):
        raise AssertionError(f"{contender.name}: final book differs from the model")
