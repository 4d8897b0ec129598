"""A plain model book (dicts of Decimal) vs OrderBook under random operations,
with check_integrity() and every view compared after each step."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from orderbook import CrossedBook, MalformedMessage, OrderBook, SequenceGap, UsageError
from orderbook.protocol.wire import DepthEvent
from orderbook.protocol.decimals import MAX_DECIMALS

SYMBOL = "SOL_USDC"
PIVOT = Decimal(100)  # bids below, asks at or above: the generated book never crosses
ZEROS = ("0", "0.000", "0.00000", "0.", "00")

decimals = st.one_of(st.integers(0, 4), st.integers(5, 12), st.just(MAX_DECIMALS))


@st.composite
def prices(draw: Any, side: str) -> Decimal:
    """Bids in (0, PIVOT), asks in [PIVOT, 2 * PIVOT), with 0..18 decimals (the value bound), exact
    (built from integers: Decimal arithmetic would round at 28 digits)."""
    places = draw(decimals)
    pivot_steps = int(PIVOT) * 10**places
    if side == "b":
        steps = draw(st.integers(1, pivot_steps - 1))
    else:
        steps = draw(st.integers(pivot_steps, 2 * pivot_steps - 1))
    return Decimal(f"{steps}E-{places}")


positive_quantities = st.builds(
    lambda units, places: Decimal(f"{units}E-{places}"), st.integers(1, 10**9), st.integers(0, 8)
)


def spell(value: Decimal, extra_zeros: int) -> str:
    """An exact plain spelling of ``value``: ``extra_zeros`` < 0 strips trailing
    zeros, > 0 appends that many."""
    text = format(value, "f")
    if extra_zeros < 0 and "." in text:
        text = text.rstrip("0").rstrip(".")
    elif extra_zeros > 0:
        decimals = len(text.partition(".")[2])
        extra_zeros = min(extra_zeros, MAX_DECIMALS - decimals)  # stay within the value bound
        if extra_zeros > 0:
            text += ("" if "." in text else ".") + "0" * extra_zeros
    return text


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = OrderBook(SYMBOL)
        self.model: dict[str, dict[Decimal, Decimal]] = {"b": {}, "a": {}}
        self.last: int | None = None
        self.bridged = False
        self.timestamp: int | None = None
        self.bounds: tuple[Decimal | None, Decimal | None] = (None, None)

    # ----------------------------------------------------------------- helpers
    def levels(self, data: Any, count: int, *, allow_zero: bool) -> dict[str, list[list[str]]]:
        """Random changes for both sides: updates of existing prices, new prices,
        deletes (zero in any spelling), some of existing or absent prices."""
        out: dict[str, list[list[str]]] = {"b": [], "a": []}
        for _ in range(count):
            side = data.draw(st.sampled_from("ba"))
            existing = sorted(self.model[side])
            if existing and data.draw(st.booleans()):
                price = data.draw(st.sampled_from(existing))
            else:
                price = data.draw(prices(side))
            if allow_zero and data.draw(st.integers(0, 3)) == 0:
                qty = data.draw(st.sampled_from(ZEROS))
            else:
                qty = spell(data.draw(positive_quantities), data.draw(st.integers(0, 2)))
            out[side].append([spell(price, data.draw(st.integers(-1, 3))), qty])
        return out

    def apply_to_model(self, changes: dict[str, list[list[str]]]) -> None:
        for side in "ba":
            for price, qty in changes[side]:
                if Decimal(qty):
                    self.model[side][Decimal(price)] = Decimal(qty)
                else:
                    self.model[side].pop(Decimal(price), None)

    def observed(self) -> tuple[Any, ...]:
        book = self.book
        return (book.bids(), book.asks(), book.last_update_id, book.timestamp, book.bridged, book.complete_to())

    # ------------------------------------------------------------------- rules
    @initialize(data=st.data())
    def first_snapshot(self, data: Any) -> None:
        self.snapshot(data)

    @rule(data=st.data())
    def snapshot(self, data: Any) -> None:
        bid_prices = data.draw(st.lists(prices("b"), max_size=8, unique=True))
        ask_prices = data.draw(st.lists(prices("a"), max_size=8, unique=True))
        # distinct spellings of one price would be duplicates: keep one per value
        bid_prices = sorted({p: None for p in bid_prices}, reverse=True)
        ask_prices = sorted({p: None for p in ask_prices})
        bids = [[spell(p, data.draw(st.integers(0, 2))), spell(data.draw(positive_quantities), 0)] for p in bid_prices]
        asks = [[spell(p, data.draw(st.integers(0, 2))), spell(data.draw(positive_quantities), 0)] for p in ask_prices]
        last_update_id = data.draw(st.integers(0, 2**63 - 100))
        timestamp = data.draw(st.none() | st.integers(0, 2**62))
        limit = data.draw(st.none() | st.integers(1, 10))
        body: dict[str, Any] = {
            "lastUpdateId": data.draw(st.sampled_from([str, int]))(last_update_id),
            "bids": bids,
            "asks": asks,
        }
        if timestamp is not None:
            body["timestamp"] = timestamp
        self.book.apply_snapshot(body, limit=limit)
        self.model = {"b": dict(zip(bid_prices, (Decimal(q) for _, q in bids))),
                      "a": dict(zip(ask_prices, (Decimal(q) for _, q in asks)))}
        self.last, self.bridged, self.timestamp = last_update_id, False, timestamp
        if limit is None:
            self.bounds = (None, None)
        else:
            self.bounds = (
                bid_prices[-1] if len(bid_prices) >= limit else None,
                ask_prices[-1] if len(ask_prices) >= limit else None,
            )

    @precondition(lambda self: self.last is not None)
    @rule(data=st.data())
    def delta(self, data: Any) -> None:
        assert self.last is not None
        changes = self.levels(data, data.draw(st.integers(0, 8)), allow_zero=True)
        span = data.draw(st.integers(0, 5))
        if self.bridged:
            first = self.last + 1
        else:  # the first frame after a snapshot may straddle it
            first = self.last + 1 - data.draw(st.integers(0, span))
        engine_time = data.draw(st.integers(0, 2**62))
        event = DepthEvent(SYMBOL, first, first + span, engine_time, engine_time, changes["b"], changes["a"])
        self.book.apply_delta(event)
        self.apply_to_model(changes)
        self.last, self.bridged, self.timestamp = first + span, True, engine_time

    @precondition(lambda self: self.last is not None)
    @rule(data=st.data())
    def out_of_sequence_delta_changes_nothing(self, data: Any) -> None:
        assert self.last is not None
        changes = self.levels(data, data.draw(st.integers(1, 4)), allow_zero=True)
        if self.bridged:
            wrong = [i for i in range(max(0, self.last - 5), self.last + 8) if i != self.last + 1]
            first = data.draw(st.sampled_from(wrong))
            last = first + data.draw(st.integers(0, 3))
        else:
            first = data.draw(st.integers(self.last + 2, self.last + 50))
            last = first + data.draw(st.integers(0, 3))
        before = self.observed()
        try:
            self.book.apply_delta(DepthEvent(SYMBOL, first, last, 0, 0, changes["b"], changes["a"]))
        except SequenceGap as gap:
            assert gap.expected == self.last + 1
        else:
            raise AssertionError(f"frame {first}..{last} applied on a book at {self.last}")
        assert self.observed() == before

    @precondition(lambda self: self.last is not None)
    @rule(data=st.data())
    def malformed_delta_changes_nothing(self, data: Any) -> None:
        assert self.last is not None
        changes = self.levels(data, data.draw(st.integers(0, 5)), allow_zero=True)
        bad = data.draw(
            st.sampled_from(
                [["-1", "1"], ["0", "1"], ["0.000", "1"], ["abc", "1"], ["1", "-1"], ["1", "NaN"],
                 ["1", "1e5"], ["1", " 1"], [1.5, "1"], ["1", 2], ["1"], ["1", "2", "3"], "12", None]
            )
        )
        side = data.draw(st.sampled_from("ba"))
        changes[side].insert(data.draw(st.integers(0, len(changes[side]))), bad)
        first = self.last + 1
        before = self.observed()
        try:
            self.book.apply_delta(DepthEvent(SYMBOL, first, first, 0, 0, changes["b"], changes["a"]))
        except MalformedMessage:
            pass
        else:
            raise AssertionError(f"malformed level {bad!r} was applied")
        assert self.observed() == before

    @precondition(lambda self: self.last is not None and bool(self.model["a"]))
    @rule(data=st.data())
    def crossing_delta_is_detected(self, data: Any) -> None:
        assert self.last is not None
        best_ask = min(self.model["a"])
        with localcontext(prec=100):  # exact for any generated price
            price = best_ask + data.draw(st.sampled_from([Decimal(0), Decimal("0.001"), Decimal(5)]))
        first = self.last + 1
        self.book.apply_delta(DepthEvent(SYMBOL, first, first, 0, 0, [[spell(price, 0), "1"]], []))
        assert self.book.is_crossed()
        try:
            self.book.check_integrity()
        except CrossedBook as crossed:
            assert crossed.bid == price and crossed.ask == best_ask and crossed.update_id == first
        else:
            raise AssertionError("check_integrity accepted a crossed book")
        # what SymbolSync does next: throw the book away
        self.clear()

    @rule()
    def clear(self) -> None:
        self.book.clear()
        self.model = {"b": {}, "a": {}}
        self.last, self.bridged, self.timestamp, self.bounds = None, False, None, (None, None)

    @rule(data=st.data())
    def read_views(self, data: Any) -> None:
        book, bids, asks = self.book, self.model_bids(), self.model_asks()
        n = data.draw(st.integers(0, 12))
        assert book.bids(n) == bids[:n]
        assert book.asks(n) == asks[:n]
        bid_array, ask_array = book.to_numpy(n)
        for array, levels in ((bid_array, bids[:n]), (ask_array, asks[:n])):
            assert array.shape == (n, 2) and array.dtype == np.float64
            expected = np.full((n, 2), np.nan)
            if levels:
                expected[: len(levels)] = [(float(p), float(q)) for p, q in levels]
            np.testing.assert_array_equal(array, expected)
        side = data.draw(st.sampled_from(["bid", "ask"]))
        limit = data.draw(prices("b" if data.draw(st.booleans()) else "a"))
        if side == "bid":
            expected_qty = sum((Fraction(q) for p, q in bids if p >= limit), Fraction(0))
            assert book.is_complete(limit, "bid") == (self.bounds[0] is None or limit >= self.bounds[0])
        else:
            expected_qty = sum((Fraction(q) for p, q in asks if p <= limit), Fraction(0))
            assert book.is_complete(limit, "ask") == (self.bounds[1] is None or limit <= self.bounds[1])
        assert Fraction(book.cumulative_quantity(side, limit)) == expected_qty
        wanted = data.draw(positive_quantities)
        direction = data.draw(st.sampled_from(["buy", "sell"]))
        ladder = asks if direction == "buy" else bids
        remaining, notional = Fraction(wanted), Fraction(0)
        for price, qty in ladder:
            take = min(Fraction(qty), remaining)
            notional += take * Fraction(price)
            remaining -= take
            if not remaining:
                break
        got = book.impact_price(wanted, direction)
        if remaining:
            assert got is None
        else:
            exact = notional / Fraction(wanted)
            assert got is not None
            assert abs(Fraction(got) - exact) <= exact / 10**59  # exact up to 60 digits
            if exact.denominator == 1 or 10**60 % exact.denominator == 0:
                assert Fraction(got) == exact or len(got.as_tuple().digits) >= 60
        try:
            book.bids(-1)
        except UsageError:
            pass
        else:
            raise AssertionError("bids(-1) accepted")

    # -------------------------------------------------------------- invariants
    def model_bids(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.model["b"].items(), reverse=True)

    def model_asks(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.model["a"].items())

    @invariant()
    def integrity(self) -> None:
        self.book.check_integrity()

    @invariant()
    def views_match_the_model(self) -> None:
        book, bids, asks = self.book, self.model_bids(), self.model_asks()
        assert book.bids() == bids
        assert book.asks() == asks
        assert book.depth() == (len(bids), len(asks))
        assert book.best_bid() == (bids[0] if bids else None)
        assert book.best_ask() == (asks[0] if asks else None)
        if bids and asks:
            spread, mid = book.spread(), book.mid()
            assert spread is not None and mid is not None
            assert Fraction(spread) == Fraction(asks[0][0]) - Fraction(bids[0][0])
            assert Fraction(mid) == (Fraction(bids[0][0]) + Fraction(asks[0][0])) / 2
            assert not book.is_crossed()
        else:
            assert book.spread() is None and book.mid() is None
        assert book.last_update_id == self.last
        assert book.bridged == self.bridged
        assert book.timestamp == self.timestamp
        assert book.complete_to() == self.bounds


BookMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=30,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestOrderBookAgainstModel = BookMachine.TestCase
