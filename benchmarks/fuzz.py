"""Hostile-input fuzzing of the parser and the sequencing state machine.

Feeds mutated depth frames and REST snapshots, as an adversarial venue would,
through the public entry points -- ``parse_frame`` (strict and with
``validate_levels=False``, as the replicator calls it), ``parse_message``,
``parse_snapshot`` and a :class:`~orderbook.sync.symbol.SymbolSync` driven the way
the replicator drives it (``receive_frame``, ``receive_snapshot``,
``receive_bad_frame``, ``connection_lost``) -- and checks, after every step,
what the package promises on bad input (``docs/RELIABILITY.md``):

* **crashes**: an exception not derived from ``OrderBookError`` escaping a
  public function;
* **wrong accepts**: input accepted against the documented rules
  (``orderbook/wire.py``, ``shared/docs/backpack-protocol.md``): a frame or
  snapshot an independent reference validator (below) calls invalid that a
  parser accepted or a book applied; a synced book crossed; a negative time
  kept; a book that went back in time (a snapshot older than updates already
  applied);
* **wrong refusals**: valid input refused (snapshots in any level order,
  dotted symbols, ...);
* **integrity failures**: ``book.check_integrity()`` failing after a step;
* **wrong books**: a synced book that differs from the truth at its update id
  (checked whenever the truth is known: no value-changing input was accepted);
* **wedges**: a symbol WAITING with no snapshot request outstanding (it would
  never sync again);
* **differences**: the native (C) and pure-Python paths disagreeing on any
  step (parse result or error, actions, state, book) for the same input.

Inputs are built from the real captures (``shared/data/captures/*.jsonl``,
their frames and snapshots, per symbol, with the truth at every update id
rebuilt by an independent dict model) and from synthetic flows of the
simulated venue (:class:`orderbook.testing.venue.OrderFlow`, dotted symbols among
them), then mutated: character-level damage, truncation, field deletions,
type swaps, huge numbers, thousands of decimals, nesting about 1,000 deep in a
level, in ``U``, in ``s`` and elsewhere, negative and fractional ``E``/``T``,
dotted and mismatched symbols, shuffled, ascending, duplicated and crossed
snapshot levels, duplicate JSON keys, and value-preserving respellings (times
and ids as strings, zeros spelled ``0.000``, key order, whitespace).  One
input is one frame or one snapshot fed to the machine; a scenario is a short
sequence of them for one symbol (a fresh machine each time).

Paths: ``both`` (default) runs every scenario twice in one process, with the
C module's native twins (``DepthEvent``, ``Ladder``, the frame reader) and
with their pure-Python twins (``PyDepthEvent``, ``PyLadder``), and compares
the traces; ``native`` runs the C path only; ``python`` runs in
workers started with ``ORDERBOOK_PURE_PYTHON=1`` (the C module never loaded).
Scenarios are spread over worker processes; the totals for a given seed and
count do not depend on the number of workers.

    .venv/bin/python benchmarks/fuzz.py                         # 1,000,000 inputs, both paths
    .venv/bin/python benchmarks/fuzz.py --count 20000 --seed 7  # a quick look
    .venv/bin/python benchmarks/fuzz.py --path python
    .venv/bin/python benchmarks/fuzz.py --replay 1:4242         # one scenario, step by step
    .venv/bin/python benchmarks/fuzz.py --report fuzz.json      # every failure class, smallest examples

Exit status: 0 when every category is 0, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import multiprocessing as mp
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO.parent / "shared" / "data" / "captures"

CATEGORIES = ("crashes", "wrong_accepts", "wrong_refusals", "integrity_failures", "wrong_books",
              "wedges")
MAX_INTEGER_DIGITS = 20
"""The documented bound on prices and quantities (``orderbook/protocol/decimals.py``):
at most this many digits before the point (leading zeros count) ..."""
MAX_DECIMALS = 18
"""... and at most this many after it."""
MAX_ID = 2**63 - 1
"""Ids and times are integers in ``0..MAX_ID`` whatever their JSON type (``orderbook/wire.py``)."""
MAX_ID_DIGITS = len(str(MAX_ID))
"""Longest digit string an id or time may be."""
PREFIXES = ("depth.200ms.", "depth.600ms.", "depth.1000ms.", "depth.", "bookTicker.")
DOTTED = ("SPCX.US_USDC", "TSLA.US_USDC_PERP", "NVDA.US_USDC_PERP", "A.B.C_USDC")


# ====================================================================== oracle
class Verdict(Enum):
    """The reference validator's view of one input."""

    VALID = "valid"
    INVALID = "invalid"
    GRAY = "gray"  # left to a later stage (a crossed snapshot: parser or book may refuse it)
    OTHER = "other"  # not a depth frame of a book stream: only crashes and differences count


@dataclass
class Judgement:
    verdict: Verdict
    rule: str = ""  # the first rule broken (INVALID) or left open (GRAY)
    symbol: str | None = None  # the symbol a depth frame names
    levels_invalid: bool = False  # INVALID because of a level (what apply must refuse)


_RANK = {Verdict.VALID: 0, Verdict.GRAY: 1, Verdict.INVALID: 2}
_OK = (Verdict.VALID, "")


def _worst(a: tuple[Verdict, str], b: tuple[Verdict, str]) -> tuple[Verdict, str]:
    return b if _RANK[b[0]] > _RANK[a[0]] else a


def judge_int(value: object, name: str) -> tuple[Verdict, str]:
    """An id or a time: a JSON integer or a digit string of at most 19
    digits, in ``0..2**63-1``."""
    if type(value) is int:
        if value < 0:
            return Verdict.INVALID, f"{name} negative"
        return _OK if value <= MAX_ID else (Verdict.INVALID, f"{name} beyond 2**63-1")
    if type(value) is str:
        if not value or not value.isascii() or not value.isdigit():
            return Verdict.INVALID, f"{name} not a digit string"
        if len(value) > MAX_ID_DIGITS:
            return Verdict.INVALID, f"{name} of more than {MAX_ID_DIGITS} digits"
        return _OK if int(value) <= MAX_ID else (Verdict.INVALID, f"{name} beyond 2**63-1")
    return Verdict.INVALID, f"{name} of type {type(value).__name__}"


_CLEAR = re.compile(r"[0-9]{0,%d}(?:\.[0-9]{0,%d})?\Z" % (MAX_INTEGER_DIGITS, MAX_DECIMALS))
"""A plain decimal within the bound (or an empty or lone point, refused apart)."""
_PLAIN = re.compile(r"[0-9]*\.?[0-9]*\Z")


def judge_decimal(value: object, name: str, *, positive: bool) -> tuple[Verdict, str]:
    """A price or quantity: a plain decimal string (ASCII digits, at most one
    point, at least one digit), a price > 0, within the bounds."""
    if type(value) is not str:
        return Verdict.INVALID, f"{name} not a string"
    if not value.strip(".") or not _PLAIN.match(value):
        return Verdict.INVALID, f"{name} not a plain decimal"
    if positive and not value.strip("0."):
        return Verdict.INVALID, f"{name} zero"
    if not _CLEAR.match(value):
        return Verdict.INVALID, (f"{name} beyond {MAX_INTEGER_DIGITS} digits before the point or "
                                 f"{MAX_DECIMALS} after")
    return _OK


def judge_levels(levels: object, name: str) -> tuple[Verdict, str]:
    if type(levels) is not list:
        return Verdict.INVALID, f"{name} not a list"
    verdict = _OK
    clear = _CLEAR.match
    for level in levels:
        if type(level) is not list or len(level) != 2:
            return Verdict.INVALID, f"{name} level not a pair"
        price, quantity = level
        if (type(price) is str and type(quantity) is str and clear(price) and clear(quantity)
                and price.strip("0.") and quantity.strip(".")):
            continue  # the common case: both within every bound, the price not zero
        verdict = _worst(verdict, judge_decimal(price, f"{name} price", positive=True))
        verdict = _worst(verdict, judge_decimal(quantity, f"{name} quantity", positive=False))
        if verdict[0] is Verdict.INVALID:
            return verdict
    return verdict


def split_stream(name: object) -> tuple[str, str] | None:
    """(prefix, symbol) of a book stream name, split by its known prefix."""
    if type(name) is not str:
        return None
    for prefix in PREFIXES:
        if name.startswith(prefix):
            return (prefix, name[len(prefix):]) if len(name) > len(prefix) else None
    return None


def judge_frame(message: object) -> Judgement:
    """The rules for one decoded WebSocket message (``orderbook/wire.py``)."""
    if type(message) is not dict:
        return Judgement(Verdict.INVALID, "frame not an object")
    stream = message.get("stream")
    if stream is None:
        return Judgement(Verdict.OTHER, "reply")
    named = split_stream(stream)
    if named is None or named[0] == "bookTicker.":
        if type(stream) is str and stream.partition(".")[0] in ("depth", "bookTicker") and named is None:
            return Judgement(Verdict.INVALID, "stream names no symbol")
        return Judgement(Verdict.OTHER, "not a depth stream")
    symbol = named[1]
    data = message.get("data")
    if type(data) is not dict:
        if "error" in message:
            return Judgement(Verdict.OTHER, "reply", symbol)
        return Judgement(Verdict.INVALID, "data not an object", symbol)
    for key in ("U", "u", "b", "a", "E", "T"):
        if key not in data:
            return Judgement(Verdict.INVALID, f"{key} missing", symbol)
    verdict: tuple[Verdict, str] = (Verdict.VALID, "")
    for key in ("U", "u", "E", "T"):
        verdict = _worst(verdict, judge_int(data[key], key))
        if verdict[0] is Verdict.INVALID:
            return Judgement(Verdict.INVALID, verdict[1], symbol)
    if verdict[0] is Verdict.VALID and int(data["U"]) > int(data["u"]):
        return Judgement(Verdict.INVALID, "U > u", symbol)
    if "s" in data and data["s"] != symbol:
        return Judgement(Verdict.INVALID, "s is not the stream's symbol", symbol)
    levels = _worst(judge_levels(data["b"], "b"), judge_levels(data["a"], "a"))
    verdict = _worst(verdict, levels)
    return Judgement(verdict[0], verdict[1], symbol, levels_invalid=levels[0] is Verdict.INVALID)


def judge_snapshot(body: object) -> Judgement:
    """The rules for one decoded REST depth body: any level order, no price
    twice on a side (a crossed book is the machine's to refuse)."""
    if type(body) is not dict:
        return Judgement(Verdict.INVALID, "snapshot not an object")
    if "lastUpdateId" not in body:
        return Judgement(Verdict.INVALID, "lastUpdateId missing")
    verdict = judge_int(body["lastUpdateId"], "lastUpdateId")
    if body.get("timestamp") is not None:
        verdict = _worst(verdict, judge_int(body["timestamp"], "timestamp"))
    for side in ("bids", "asks"):
        if side not in body or body[side] is None:
            return Judgement(Verdict.INVALID, f"{side} missing")
        verdict = _worst(verdict, judge_levels(body[side], side))
        if verdict[0] is Verdict.INVALID:
            return Judgement(Verdict.INVALID, verdict[1])
        prices = [Decimal(price) for price, _ in body[side]]
        if len(set(prices)) != len(prices):
            return Judgement(Verdict.INVALID, f"{side} price listed twice")
    bids = [Decimal(p) for p, q in body["bids"] if Decimal(q)]
    asks = [Decimal(p) for p, q in body["asks"] if Decimal(q)]
    if bids and asks and max(bids) >= min(asks):  # refused by the parser or by the book: both right
        verdict = _worst(verdict, (Verdict.GRAY, "crossed"))
    return Judgement(verdict[0], verdict[1])


# ==================================================================== material
@dataclass
class Material:
    """One symbol's real or synthetic session: frames in order, snapshot bodies
    at known ids, and the truth (digest) after every update id."""

    symbol: str
    source: str
    frames: list[dict[str, Any]]  # data objects, in receive order
    snapshots: list[dict[str, Any]]  # bodies, lastUpdateId increasing
    truth: dict[int, tuple[Any, ...]]  # update id -> (best bid, best ask, bids, asks, hash)
    string_times: bool = False


def _digest(bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> tuple[Any, ...]:
    b = sorted(bids.items(), reverse=True)
    a = sorted(asks.items())
    return (b[0] if b else None, a[0] if a else None, len(b), len(a), hash((tuple(b), tuple(a))))


def _body(book: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]], update_id: int,
          spell: Callable[[Decimal], str]) -> dict[str, Any]:
    bids, asks = book
    return {"asks": [[spell(p), spell(q)] for p, q in sorted(asks.items())],
            "bids": [[spell(p), spell(q)] for p, q in sorted(bids.items(), reverse=True)],
            "lastUpdateId": str(update_id), "timestamp": 1_633_998_000_000_000}


def capture_materials(folder: Path) -> list[Material]:
    """Per symbol of every capture: its first snapshot, its frames, and the
    truth after each frame that continues it (an independent dict model)."""
    found: list[Material] = []
    for path in sorted(folder.glob("*.jsonl")):
        snapshots: dict[str, dict[str, Any]] = {}
        frames: dict[str, list[dict[str, Any]]] = {}
        with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as lines:
            for line in lines:
                event = json.loads(line)
                if event.get("kind") == "rest" and event.get("status") == 200:
                    snapshots.setdefault(event["query"]["symbol"], event["body"])
                elif event.get("kind") == "ws":
                    frame = event.get("frame") or {}
                    named = split_stream(frame.get("stream"))
                    if named and named[0].startswith("depth"):
                        frames.setdefault(named[1], []).append(frame["data"])
        for symbol, body in snapshots.items():
            book = ({Decimal(p): Decimal(q) for p, q in body["bids"] if Decimal(q)},
                    {Decimal(p): Decimal(q) for p, q in body["asks"] if Decimal(q)})
            last = int(body["lastUpdateId"])
            truth = {last: _digest(*book)}
            bodies = [body]
            started = False
            for index, data in enumerate(frames.get(symbol, [])):
                first, final = int(data["U"]), int(data["u"])
                if final <= last or (not started and not first <= last + 1):
                    continue
                started = True
                for side, key in ((book[0], "b"), (book[1], "a")):
                    for price, quantity in data[key]:
                        if Decimal(quantity):
                            side[Decimal(price)] = Decimal(quantity)
                        else:
                            side.pop(Decimal(price), None)
                last = final
                truth[last] = _digest(*book)
                if index % 7 == 3:
                    bodies.append(_body(book, last, lambda d: format(d, "f")))
            string_times = any(type(d.get("E")) is str for d in frames.get(symbol, []))
            found.append(Material(symbol, f"capture {path.name}", frames.get(symbol, []), bodies,
                                  truth, string_times))
    return found


def flow_materials(seed: int, count: int) -> list[Material]:
    """Synthetic sessions from the simulated venue's order flow (dotted
    symbols among them): frames of 1-4 updates, snapshots along the way."""
    from orderbook.testing.venue import OrderFlow

    rng = random.Random(seed)
    names = ["SOL_USDC", "BTC_USDC_PERP", *DOTTED]
    found = []
    for index in range(count):
        symbol = names[index % len(names)]
        flow = OrderFlow([symbol], seed=rng.randrange(10**6), levels=rng.randint(10, 40), history=0)
        truth_book = flow.truth(symbol)
        string_times = rng.random() < 0.5
        spell = str if string_times else int
        snapshots = [flow.snapshot(symbol)]
        truth = {truth_book.last_update_id: _digest(dict(truth_book.bids()), dict(truth_book.asks()))}
        frames: list[dict[str, Any]] = []
        for _ in range(rng.randint(40, 120)):
            merged: dict[tuple[str, Decimal], Decimal] = {}
            first = truth_book.last_update_id + 1
            for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
                update = flow.next_update()
                for change in update.changes:
                    merged[change.side, change.price] = change.quantity
            levels = {"bid": [], "ask": []}  # type: dict[str, list[list[str]]]
            for (side, price), quantity in merged.items():
                levels[side].append([format(price, "f"), format(quantity, "f") if quantity else "0"])
            frames.append({"e": "depth", "E": spell(update.timestamp + 7), "s": symbol,
                           "a": levels["ask"], "b": levels["bid"], "U": first,
                           "u": truth_book.last_update_id, "T": spell(update.timestamp)})
            truth[truth_book.last_update_id] = _digest(dict(truth_book.bids()), dict(truth_book.asks()))
            if rng.random() < 0.15:
                snapshots.append(flow.snapshot(symbol))
        found.append(Material(symbol, f"flow {index}", frames, snapshots, truth, string_times))
    return found


# ================================================================== mutations
class Nested:
    """``inner`` wrapped in ``depth`` lists: JSON libraries refuse to encode
    that, so :func:`_dumps` writes it out as text."""

    def __init__(self, rng: random.Random, inner: Any) -> None:
        self.depth = rng.choice((900, 990, 998, 1000, 1010, 1020))  # about orjson's 1024
        self.inner = inner

    def value(self) -> Any:
        """The nested Python value itself."""
        value = self.inner
        for _ in range(self.depth):
            value = [value]
        return value


def _nested(rng: random.Random, inner: Any) -> Nested:
    return Nested(rng, inner)


def _dumps(value: Any) -> str:
    """Compact JSON text of ``value``, :class:`Nested` parts written out as text."""
    import orjson

    found: list[Nested] = []

    def mark(item: Any) -> str:
        if isinstance(item, Nested):
            found.append(item)
            return f"\u0000nested{len(found) - 1}\u0000"
        raise TypeError(type(item).__name__)

    try:
        text = orjson.dumps(value, default=mark).decode()
    except (TypeError, orjson.JSONEncodeError):  # an int beyond 64 bits
        found.clear()
        text = json.dumps(value, separators=(",", ":"), default=mark)
    for index, nest in enumerate(found):
        inner = _dumps(nest.inner)
        text = text.replace(f'"\\u0000nested{index}\\u0000"', "[" * nest.depth + inner + "]" * nest.depth, 1)
    return text


def _huge_decimal(rng: random.Random) -> str:
    digits = rng.choice((11, 19, 30, 101, 400, 4300, 4400, 10_000))
    return rng.choice((
        lambda: "0." + "0" * (digits - 1) + "1",       # thousands of decimals
        lambda: "9" * digits,                          # a huge integer part
        lambda: "1" + "0" * digits,
        lambda: "1." + "0" * digits,                   # trailing zeros
        lambda: "5" * digits + "." + "5" * digits,
    ))()


_JUNK_DECIMALS = ("0", "0.000", "-1", "+1", " 1", "1 ", "1e3", "1E-3", "NaN", "Infinity", "", ".",
                  "1.2.3", "\uff11", "\u0661", "1_000", "0x10", "-0", "1,5", "\u00b2", "..1")
_JUNK_VALUES: tuple[Any, ...] = (None, True, False, 0, -1, -(10**15), 1.5, -0.5, 1e300, 2**63, 2**64 - 1,
                                 10**30, "", "abc", "-1", "1.5", "1e6", "\u22121", "\u0661", [], {}, [1],
                                 {"a": 1}, "0x1F", " 7", "007")


def _pick_level(rng: random.Random, data: dict[str, Any]) -> tuple[str, int] | None:
    sides = [k for k in ("a", "b") if type(data.get(k)) is list and data[k]]
    if not sides:
        return None
    side = rng.choice(sides)
    return side, rng.randrange(len(data[side]))


@dataclass
class Input:
    """One frame (text) or snapshot (text or decoded body) to feed, and how it was made."""

    kind: str  # "frame" | "snapshot" | "lost"
    payload: Any = None
    mutation: str = "clean"
    preserving: bool = True  # the mutation keeps the values: the truth stays known
    limit: int | None = None  # snapshot: the limit it was requested with


def mutate_frame(rng: random.Random, message: dict[str, Any]) -> tuple[str, str, bool]:
    """(text, mutation name, value-preserving) of one damaged copy of ``message``."""
    message = {"stream": message["stream"], "data": dict(message["data"])}
    data = message["data"]
    roll = rng.randrange(25)
    if roll == 0:  # character-level damage
        chars = list(_dumps(message))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(chars))
            op = rng.randrange(3)
            if op == 0:
                del chars[at]
            elif op == 1:
                chars.insert(at, rng.choice('{}[]",:.-0123456789eE \\u\x00\xff'))
            else:
                chars[at] = rng.choice('{}[]",:.-0123456789eEnul ')
        return "".join(chars), "char damage", False
    if roll == 1:
        text = _dumps(message)
        return text[: rng.randrange(len(text))], "truncated", False
    if roll == 2:
        key = rng.choice(("U", "u", "E", "T", "a", "b", "s", "e"))
        data.pop(key, None)
        return _dumps(message), f"deleted {key}", key in ("s", "e")
    if roll == 3:
        key = rng.choice(("U", "u", "E", "T", "a", "b", "s"))
        data[key] = rng.choice(_JUNK_VALUES)
        return _dumps(message), f"type swap {key}", False
    if roll == 4:
        picked = _pick_level(rng, data)
        if picked is None:
            data["b"] = [[_huge_decimal(rng), "1"]]
        else:
            side, index = picked
            levels = [list(level) for level in data[side]]
            levels[index][rng.randrange(2)] = _huge_decimal(rng)
            data[side] = levels
        return _dumps(message), "huge decimal", False
    if roll == 5:
        where = rng.choice(("level", "U", "u", "s", "E", "a", "data", "extra"))
        if where == "level":
            side = rng.choice(("a", "b"))
            data[side] = [_nested(rng, ["1.5", "2"])] + list(data.get(side) or [])
        elif where == "data":
            message["data"] = _nested(rng, data)
        elif where == "extra":
            data["x"] = _nested(rng, 1)
        else:
            data[where] = _nested(rng, data.get(where, 1))
        return _dumps(message), f"nested in {where}", where == "extra"
    if roll == 6:
        key = rng.choice(("E", "T"))
        data[key] = rng.choice((-1, -(10**15), -1_633_998_000_000_000, 1.5, 0.5, -2.5,
                                "-1", "1.5", "1e6", "-0", 1e16))
        return _dumps(message), f"bad time {key}", False
    if roll == 7:
        picked = _pick_level(rng, data)
        if picked is None:
            data["a"] = [[rng.choice(_JUNK_DECIMALS), "1"]]
        else:
            side, index = picked
            levels = [list(level) for level in data[side]]
            levels[index][rng.randrange(2)] = rng.choice(_JUNK_DECIMALS)
            data[side] = levels
        return _dumps(message), "junk decimal", False
    if roll == 8:
        picked = _pick_level(rng, data)
        if picked is not None:
            side, index = picked
            levels = list(data[side])
            bad_levels: tuple[Any, ...] = (["1"], ["1", "2", "3"], [], "1,2", 5, {"p": "1"}, [1, 2],
                                           [1.5, 2.0], [None, "1"], ["1", None])
            levels[index] = rng.choice(bad_levels)
            data[side] = levels
        return _dumps(message), "bad level", False
    if roll == 9:
        if type(data.get("U")) is int and type(data.get("u")) is int:
            data["U"], data["u"] = data["u"] + 1, data["U"]
        return _dumps(message), "U > u", False
    if roll == 10:
        key = rng.choice(("U", "u"))
        data[key] = rng.choice((2**63, 2**64 - 1, 10**30, "9" * 19, "9" * 40, "9" * 41, "1" * 5000,
                                str(2**63 - 1), -1, "-1"))
        return _dumps(message), f"huge id {key}", False
    if roll == 11:  # a dotted symbol that does not match
        named = split_stream(message["stream"]) or ("depth.", "X")
        message["stream"] = named[0] + rng.choice(DOTTED)
        return _dumps(message), "dotted mismatch", False
    if roll == 12:
        message["stream"] = rng.choice(("depth.", "depth.200ms.", "depth", "depth.5ms." + str(data.get("s")),
                                        "bookTicker." + str(data.get("s")), "trade." + str(data.get("s")),
                                        5, None, ["depth.X"]))
        return _dumps(message), "bad stream", False
    if roll == 13:
        message["data"] = rng.choice(([], "depth", None, 5, [data]))
        return _dumps(message), "data not an object", False
    if roll == 14:  # duplicate keys: the last one counts for orjson
        key = rng.choice(("U", "u", "E", "s", "a"))
        text = _dumps(message)
        decoy = _dumps(rng.choice((0, -5, "x", [["1", "1"]], 10**20)))
        return text.replace('"data":{', f'"data":{{"{key}":{decoy},', 1), f"duplicate {key}", False
    if roll == 15:
        return json.dumps(message, indent=rng.choice((None, 1)), separators=(", ", ": ")), "whitespace", True
    if roll == 16:
        items = list(data.items())
        rng.shuffle(items)
        message["data"] = dict(items)
        return _dumps(message), "key order", True
    if roll == 17:
        for key in ("E", "T", "U", "u"):
            if type(data.get(key)) is int and rng.random() < 0.7:
                data[key] = str(data[key])
            elif type(data.get(key)) is str and data[key].isdigit() and rng.random() < 0.7:
                data[key] = int(data[key])
        return _dumps(message), "times and ids respelled", True
    if roll == 18:
        for side in ("a", "b"):
            data[side] = [[p, rng.choice(("0.000", "0.00000", "00")) if not Decimal(q) else q]
                          for p, q in data.get(side) or []]
        return _dumps(message), "zeros respelled", True
    if roll == 19:  # a value changed, still valid
        picked = _pick_level(rng, data)
        if picked is not None:
            side, index = picked
            levels = [list(level) for level in data[side]]
            levels[index][1] = str(rng.randint(1, 999))
            data[side] = levels
        return _dumps(message), "quantity changed", False
    if roll == 20:
        data["s"] = rng.choice(_JUNK_VALUES + tuple(DOTTED))
        return _dumps(message), "s changed", False
    if roll == 21:  # an empty or a huge frame
        if rng.random() < 0.5:
            data["a"], data["b"] = [], []
            return _dumps(message), "no levels", False
        data["b"] = [[f"{rng.randint(1, 10**6)}.{rng.randint(0, 99)}", "1"] for _ in range(2000)]
        return _dumps(message), "2000 levels", False
    if roll == 22:  # a synthetic frame from scratch
        first = rng.randint(0, 10**12)
        data = {"e": "depth", "E": rng.randint(0, 2**62), "s": data.get("s"),
                "U": first, "u": first + rng.randint(0, 5), "T": rng.randint(0, 2**62),
                "a": [[f"{rng.randint(1, 10**5)}.{rng.randint(0, 10**rng.randint(0, 12))}",
                       f"{rng.randint(0, 10**4)}"] for _ in range(rng.randint(0, 5))],
                "b": [[f"{rng.randint(1, 10**5)}", f"{rng.randint(0, 10**4)}.{rng.randint(0, 99)}"]
                      for _ in range(rng.randint(0, 5))]}
        message["data"] = data
        return _dumps(message), "synthetic frame", False
    if roll == 23:
        return rng.choice(('{"id":null,"error":{"code":4006,"message":"Invalid stream"}}',
                           '{"result":null,"id":1}', "[]", "null", "", "\x00", "{}", '"depth"',
                           '{"stream":"depth.X"}', '{"data":{}}')), "not a frame", False
    data["x"] = rng.choice(([1, 2], {"deep": [1]}, "extra"))
    return _dumps(message), "extra field", True


def mutate_snapshot(rng: random.Random, body: dict[str, Any]) -> tuple[Any, str, bool, int | None]:
    """(text or decoded body, mutation, value-preserving, limit) of one damaged
    copy of ``body``."""
    body = {**body, "bids": [list(l) for l in body["bids"]], "asks": [list(l) for l in body["asks"]]}
    roll = rng.randrange(20)
    if roll == 0:
        rng.shuffle(body["bids"])
        rng.shuffle(body["asks"])
        return _dumps(body), "shuffled", True, None
    if roll == 1:
        body["bids"].reverse()
        return _dumps(body), "bids ascending (docs order)", True, None
    if roll == 2:
        limit = rng.choice((5, 10, 20, 50, 100))
        body["bids"], body["asks"] = body["bids"][:limit], body["asks"][:limit]
        return _dumps(body), "truncated to a limit", True, limit
    if roll == 3:
        chars = list(_dumps(body))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(chars))
            chars[at] = rng.choice('{}[]",:.-0123456789eE ')
        return "".join(chars), "char damage", False, None
    if roll == 4:
        text = _dumps(body)
        return text[: rng.randrange(len(text))], "truncated text", False, None
    if roll == 5:
        key = rng.choice(("bids", "asks", "lastUpdateId", "timestamp"))
        body.pop(key, None)
        return _dumps(body), f"deleted {key}", key == "timestamp", None
    if roll == 6:
        key = rng.choice(("bids", "asks", "lastUpdateId", "timestamp"))
        body[key] = rng.choice(_JUNK_VALUES)
        return _dumps(body), f"type swap {key}", False, None
    if roll == 7:  # the regression input: a price of ~4,400 decimals
        side = rng.choice(("bids", "asks"))
        if body[side]:
            body[side][rng.randrange(len(body[side]))][rng.randrange(2)] = _huge_decimal(rng)
        else:
            body[side] = [[_huge_decimal(rng), "1"]]
        return _dumps(body), "huge decimal", False, None
    if roll == 8:
        where = rng.choice(("level", "lastUpdateId", "bids"))
        if where == "level":
            body["bids"] = [_nested(rng, ["1.5", "2"]), *body["bids"]]
        else:
            body[where] = _nested(rng, body[where])
        if rng.random() < 0.5:  # a decoded body, as parse_snapshot also takes
            return {k: v.value() if isinstance(v, Nested) else v for k, v in body.items()} | {
                "bids": [v.value() if isinstance(v, Nested) else v for v in body["bids"]]
                if isinstance(body["bids"], list) else body["bids"].value()}, f"nested in {where}", False, None
        return _dumps(body), f"nested in {where}", False, None
    if roll == 9:
        side = rng.choice(("bids", "asks"))
        if body[side]:
            price = body[side][rng.randrange(len(body[side]))][0]
            twin = price + "0" if "." in price else price + ".0"
            body[side].insert(rng.randrange(len(body[side]) + 1), [rng.choice((price, twin)), "3"])
        return _dumps(body), "price listed twice", False, None
    if roll == 10:  # crossed: a bid above the best ask
        if body["asks"]:
            best_ask = min(Decimal(p) for p, _ in body["asks"])
            body["bids"].append([format(best_ask + 1, "f"), "1"])
        return _dumps(body), "crossed", False, None
    if roll == 11:
        side = rng.choice(("bids", "asks"))
        if body[side]:
            body[side][rng.randrange(len(body[side]))][rng.randrange(2)] = rng.choice(_JUNK_DECIMALS)
        return _dumps(body), "junk decimal", False, None
    if roll == 12:
        body["lastUpdateId"] = rng.choice((-1, "-1", 2**63, 10**30, "9" * 41, "1" * 5000, 1.5, "0x10"))
        return _dumps(body), "bad lastUpdateId", False, None
    if roll == 13:
        body["timestamp"] = rng.choice((-1, "-5", 1.5, None, "1633998512000000", 2**64 - 1))
        return _dumps(body), "odd timestamp", body["timestamp"] in (None, "1633998512000000"), None
    if roll == 14:
        last = int(str(body["lastUpdateId"]))
        body["lastUpdateId"] = rng.choice((str(last - rng.randint(1, 50)), last - 1, str(last + 3)))
        return _dumps(body), "lastUpdateId moved", False, None
    if roll == 15:
        return rng.choice(('{"code":"INVALID_MARKET","message":"Invalid market"}', "[]", "null", "",
                           '{"lastUpdateId":"1"}', "{", '{"bids":[],"asks":[],"lastUpdateId":1}')), \
            "not a snapshot", False, None
    if roll == 16:
        for side in ("bids", "asks"):
            for level in body[side]:
                if rng.random() < 0.3 and "." in level[0]:
                    level[0] += "0"  # the same price, spelled longer
        return _dumps(body), "prices respelled", True, None
    if roll == 17:
        body["lastUpdateId"] = int(str(body["lastUpdateId"]))
        return (body if rng.random() < 0.5 else _dumps(body)), "lastUpdateId as int", True, None
    if roll == 18:  # a synthetic snapshot from scratch, any order
        body = {"lastUpdateId": rng.randint(0, 10**12),
                "bids": [[f"{rng.randint(1, 999)}.{rng.randint(0, 10**rng.randint(0, 12))}",
                          str(rng.randint(1, 99))] for _ in range(rng.randint(0, 30))],
                "asks": [[f"{rng.randint(1000, 1999)}.{rng.randint(0, 99)}", str(rng.randint(1, 99))]
                         for _ in range(rng.randint(0, 30))]}
        return _dumps(body), "synthetic snapshot", False, None
    if rng.random() < 0.5:
        body["bids"].reverse()
    rng.shuffle(body["asks"])
    body["x"] = _nested(rng, 0)
    return _dumps(body), "any order, deep extra field", True, None


# ================================================================= scenarios
def build_scenario(rng: random.Random, pool: list[Material],
                   mutation_rate: float | None) -> tuple[str, Material, list[Input]]:
    """A symbol and a short sequence of inputs for it, built up front so that
    both paths get exactly the same ones.  ``mutation_rate`` ``None``: drawn
    per scenario (mostly clean runs that reach the native apply path, or
    mostly hostile ones)."""
    material = rng.choice(pool)
    if mutation_rate is None:
        mutation_rate = rng.choice((0.05, 0.2, 0.4, 0.7))
    symbol = material.symbol
    rename: str | None = None
    if rng.random() < 0.25 and "." not in symbol:  # replay it under a dotted name
        base, _, quote = symbol.partition("_")
        rename = f"{base}.US_{quote}"
    frames = material.frames
    start = rng.randrange(max(1, len(frames) - 4)) if rng.random() < 0.5 else 0
    cursor = start
    inputs: list[Input] = []
    previous: dict[str, Any] | None = None
    for _ in range(rng.randint(4, 40)):
        roll = rng.random()
        if roll < 0.22 or cursor >= len(frames):
            candidates = [b for b in material.snapshots if not frames or cursor >= len(frames)
                          or int(b["lastUpdateId"]) <= int(frames[min(cursor, len(frames) - 1)]["u"])]
            body = rng.choice(candidates or material.snapshots)
            if rng.random() < mutation_rate:
                payload, name, keeps, limit = mutate_snapshot(rng, body)
            else:
                payload, name, keeps, limit = _dumps(body), "clean", True, None
            inputs.append(Input("snapshot", payload, name, keeps, limit))
            continue
        if roll < 0.25:
            inputs.append(Input("lost"))
            continue
        if roll < 0.29:
            cursor += 1  # a frame lost on the way: a gap
            continue
        if roll < 0.32 and previous is not None:
            data = previous  # a duplicate
        else:
            data = frames[cursor]
            cursor += 1
        previous = data
        data = dict(data)
        stream = "depth." + symbol
        if rename is not None:
            stream = "depth." + rename
            data["s"] = rename
        message = {"stream": stream, "data": data}
        if rng.random() < mutation_rate:
            text, name, keeps = mutate_frame(rng, message)
        else:
            text, name, keeps = _dumps(message), "clean", True
        inputs.append(Input("frame", text, name, keeps))
    return rename or symbol, material, inputs


# ===================================================================== play
@dataclass
class Finding:
    category: str
    path: str
    what: str  # class of the failure, e.g. "RecursionError in parse_frame"
    detail: str
    input_size: int
    input_head: str
    where: str  # seed:scenario:step, to replay


@dataclass
class Tally:
    inputs: int = 0
    frames: int = 0
    snapshots: int = 0
    scenarios: int = 0
    per_path: dict[str, Counter[str]] = field(default_factory=dict)
    differences: int = 0
    classes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str, str], list[Finding]] = field(default_factory=dict)
    mutations: Counter[str] = field(default_factory=Counter)

    def add(self, finding: Finding, keep: int) -> None:
        """Count ``finding`` in its class (per-path totals are counted per input
        by :func:`run_scenario`)."""
        key = (finding.category, finding.path, finding.what)
        self.classes[key] += 1
        kept = self.examples.setdefault(key, [])
        kept.append(finding)
        kept.sort(key=lambda f: f.input_size)
        del kept[keep:]

    def merge(self, other: Tally, keep: int) -> None:
        self.inputs += other.inputs
        self.frames += other.frames
        self.snapshots += other.snapshots
        self.scenarios += other.scenarios
        self.differences += other.differences
        self.mutations.update(other.mutations)
        for path, counter in other.per_path.items():
            self.per_path.setdefault(path, Counter()).update(counter)
        self.classes.update(other.classes)
        for key, found in other.examples.items():
            kept = self.examples.setdefault(key, [])
            kept.extend(found)
            kept.sort(key=lambda f: f.input_size)
            del kept[keep:]


def _short(value: object, size: int = 160) -> str:
    """At most ``size`` characters of ``value`` (text as is, JSON values as JSON,
    anything else by ``repr``), never recursing without bound."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (dict, list)):
        try:
            text = _dumps(value)
        except (RecursionError, TypeError, ValueError):
            text = f"<{type(value).__name__} nested too deep to show>"
    else:
        try:
            text = repr(value)
        except RecursionError:
            text = f"<{type(value).__name__} nested too deep to show>"
    return text if len(text) <= size else text[:size] + f"... ({len(text)} chars)"


def _size(value: object) -> int:
    if isinstance(value, (str, bytes)):
        return len(value)
    try:
        return len(_dumps(value))
    except (RecursionError, ValueError, TypeError):
        return 10**6


def _exc(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception as inner:  # noqa: BLE001 - a message that cannot even be made
        text = f"<str() raised {type(inner).__name__}>"
    return f"{type(exc).__name__}: {text[:300]}"


class Paths:
    """Switch between the native twins and the pure-Python ones in this
    process: the C reader of frame text, the event type the parser builds,
    and the ladder type and functions a new book uses (``orderbook.protocol.wire``,
    ``orderbook.core.ladder``, ``orderbook.core.book``).  A book keeps the ladders it
    was made with, so each scenario builds its machine inside :meth:`use`."""

    _NAMES = (("wire", "_native_depth_frame"), ("wire", "DepthEvent"), ("ladder", "Ladder"),
              ("ladder", "apply_levels"), ("ladder", "crossed"), ("book", "Ladder"),
              ("book", "apply_levels"), ("book", "crossed"))

    def __init__(self) -> None:
        import orderbook.core.book as book
        import orderbook.core.ladder as ladder
        import orderbook.protocol.wire as wire

        self.modules: dict[str, Any] = {"wire": wire, "ladder": ladder, "book": book}
        self.native = {(m, n): getattr(self.modules[m], n) for m, n in self._NAMES}
        pure = {"_native_depth_frame": None, "DepthEvent": wire.PyDepthEvent, "Ladder": ladder.PyLadder,
                "apply_levels": ladder.py_apply_levels, "crossed": ladder.py_crossed}
        self.pure = {(m, n): pure[n] for m, n in self._NAMES}

    @property
    def has_native(self) -> bool:
        return self.native[("wire", "_native_depth_frame")] is not None

    @contextlib.contextmanager
    def use(self, path: str) -> Iterator[None]:
        saved = {(m, n): getattr(self.modules[m], n) for m, n in self._NAMES}
        for (module, name), value in (self.pure if path == "python" else self.native).items():
            setattr(self.modules[module], name, value)
        try:
            yield
        finally:
            for (module, name), value in saved.items():
                setattr(self.modules[module], name, value)


def _is_depth(value: Any) -> bool:
    """A depth event of either twin."""
    import orderbook.protocol.wire as wire

    return type(value) in (wire.DepthEvent, wire.PyDepthEvent)


def _event_key(event: Any) -> Any:
    from orderbook.protocol.wire import BookTickerEvent, StreamReply

    if _is_depth(event):
        return ("depth", _short(event.symbol, 300), event.first_id, event.last_id, event.event_time,
                event.engine_time, _short(_plain(event.bids), 100_000), _short(_plain(event.asks), 100_000))
    if type(event) is BookTickerEvent:
        return ("ticker", event.symbol, event.update_id, event.bid_price, event.ask_price)
    if type(event) is StreamReply:
        return ("reply", _short(event.error, 80))
    return ("none", repr(event)[:80])


_COUNTER_FIELDS: tuple[str, ...] = ()


def _plain(levels: Any) -> Any:
    """Levels as JSON-able lists (the C reader may hand tuples)."""
    if isinstance(levels, (list, tuple)):
        return [list(level) if isinstance(level, tuple) else level for level in levels]
    return levels


def play(symbol: str, inputs: list[Input], material: Material, path: str, where: str,
         judgements: list[Judgement | None], verbose: bool = False) -> tuple[list[Any], list[Finding]]:
    """Feed ``inputs`` to a fresh machine on ``path``; return the step trace
    (for the native/pure comparison) and what went wrong."""
    import orjson

    from orderbook.errors import CrossedBook, IntegrityError, MalformedMessage, OrderBookError
    from orderbook.sync.symbol import BookChanged, SymbolSync, SyncState
    from orderbook.protocol.wire import parse_frame, parse_message, parse_snapshot

    global _COUNTER_FIELDS
    findings: list[Finding] = []
    trace: list[Any] = []
    sync = SymbolSync(symbol)
    if not _COUNTER_FIELDS:
        _COUNTER_FIELDS = tuple(f.name for f in fields(sync.counters))
    truth_known = True
    highest: int | None = None
    restarts_seen = 0
    wedged = False

    def found(category: str, what: str, detail: str, item: Input, step: int) -> None:
        findings.append(Finding(category, path, what, detail[:400], _size(item.payload),
                                _short(item.payload), f"{where}:{step}"))

    def call(fn: Callable[..., Any], name: str, item: Input, step: int, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        try:
            return "ok", fn(*args, **kwargs)
        except OrderBookError as exc:
            return "refused", exc
        except Exception as exc:  # noqa: BLE001 - that is what we are looking for
            found("crashes", f"{type(exc).__name__} in {name}", _exc(exc), item, step)
            return "crash", exc

    def outcome(result: tuple[str, Any]) -> Any:
        status, value = result
        if status == "ok":
            return ("ok", _event_key(value) if name_is_event(value) else _short(value, 60))
        return (status, _exc(value))

    def name_is_event(value: Any) -> bool:
        return value is None or _is_depth(value) or type(value).__name__ in ("BookTickerEvent", "StreamReply")

    actions = sync.start()
    for step, item in enumerate(inputs):
        judgement = judgements[step]
        record: list[Any] = [item.kind]
        if item.kind == "lost":
            result = call(sync.connection_lost, "connection_lost", item, step)
            record.append(outcome(result)[0])
        elif item.kind == "frame":
            strict = call(parse_frame, "parse_frame", item, step, item.payload)
            lax = call(parse_frame, "parse_frame(validate_levels=False)", item, step, item.payload,
                       validate_levels=False)
            record += [outcome(strict), outcome(lax)]
            try:
                decoded = orjson.loads(item.payload)
            except orjson.JSONDecodeError:
                decoded = None
            else:
                record.append(outcome(call(parse_message, "parse_message", item, step, decoded)))
            assert judgement is not None
            if judgement.verdict is Verdict.INVALID and strict[0] == "ok" and _is_depth(strict[1]):
                found("wrong_accepts", f"parse_frame accepts: {judgement.rule}", item.mutation, item, step)
            if judgement.verdict is Verdict.VALID and strict[0] == "refused":
                found("wrong_refusals", f"parse_frame refuses: {item.mutation}", _exc(strict[1]), item, step)
            status, value = lax
            if status == "ok" and _is_depth(value) and value.symbol == symbol:
                if not item.preserving:
                    truth_known = False
                result = call(sync.receive_frame, "receive_frame", item, step, value)
                record.append(_actions(result))
                applied = result[0] == "ok" and any(type(a) is BookChanged and a.event is value
                                                      for a in result[1])
                if applied and judgement.verdict is Verdict.INVALID and judgement.levels_invalid:
                    found("wrong_accepts", f"receive_frame applies: {judgement.rule}", item.mutation,
                          item, step)
            elif status == "refused" and isinstance(value, MalformedMessage) and value.symbol == symbol:
                result = call(sync.receive_bad_frame, "receive_bad_frame", item, step, value)
                record.append(_actions(result))
        else:  # a snapshot answering (or not) a request
            parsed = call(parse_snapshot, "parse_snapshot", item, step, item.payload, symbol)
            record.append(outcome(parsed) if parsed[0] != "ok" else ("ok", parsed[1].last_update_id,
                                                                     len(parsed[1].bids), len(parsed[1].asks)))
            assert judgement is not None
            if judgement.verdict is Verdict.INVALID and parsed[0] == "ok":
                found("wrong_accepts", f"parse_snapshot accepts: {judgement.rule}", item.mutation, item, step)
            if judgement.verdict is Verdict.VALID and parsed[0] == "refused":
                found("wrong_refusals", f"parse_snapshot refuses: {item.mutation}", _exc(parsed[1]), item, step)
            if parsed[0] == "ok":
                if not item.preserving and sync.awaiting_snapshot:
                    truth_known = False
                result = call(sync.receive_snapshot, "receive_snapshot", item, step, parsed[1],
                              limit=item.limit)
            elif parsed[0] == "refused" and sync.awaiting_snapshot:
                result = call(sync.bad_snapshot, "bad_snapshot", item, step, parsed[1])
            else:
                result = ("ok", [])
            record.append(_actions(result))

        # ---- after every step: the promises
        book = sync.book
        try:
            book.check_integrity()
        except CrossedBook as exc:
            found("integrity_failures", "crossed book kept", _exc(exc), item, step)
        except IntegrityError as exc:
            found("integrity_failures", "check_integrity", _exc(exc), item, step)
        except Exception as exc:  # noqa: BLE001
            found("crashes", f"{type(exc).__name__} in check_integrity", _exc(exc), item, step)
        if sync.state is SyncState.WAITING and not sync.awaiting_snapshot and not wedged:
            wedged = True
            found("wedges", f"WAITING, no snapshot requested, after {item.kind}: {item.mutation}",
                  f"counters {sync.counters}", item, step)
        synced = sync.state is SyncState.SYNCED
        last = book.last_update_id
        try:
            best = (book.best_bid(), book.best_ask(), book.depth())
        except Exception as exc:  # noqa: BLE001
            found("crashes", f"{type(exc).__name__} in book reads", _exc(exc), item, step)
            best = None
        restarts = getattr(sync.counters, "history_restarts", 0)
        if restarts != restarts_seen:  # the documented exception: the venue's ids went back for good
            restarts_seen, highest = restarts, None
        if synced and last is not None:
            if highest is not None and last < highest:
                found("wrong_accepts", "book went back in time", f"{highest} -> {last} after "
                      f"{item.kind}: {item.mutation}", item, step)
                highest = last  # counted once per step back
            highest = last if highest is None else max(highest, last)
            if book.timestamp is not None and book.timestamp < 0:
                found("wrong_accepts", "negative time kept", f"timestamp {book.timestamp}", item, step)
            if truth_known and best is not None and last in material.truth:
                truth = material.truth[last]
                bids_bound, asks_bound = book.complete_to()
                if ((bids_bound is None and best[0] != truth[0]) or (asks_bound is None and best[1] != truth[1])
                        or (bids_bound is None and asks_bound is None and best[2] != (truth[2], truth[3]))):
                    found("wrong_books", "synced book differs from the truth",
                          f"at {last}: book {best} truth {truth[:4]}", item, step)
                    truth_known = False
        record.append((sync.state.value, sync.awaiting_snapshot, last, book.timestamp,
                       _short(best, 200), tuple(getattr(sync.counters, f) for f in _COUNTER_FIELDS)))
        trace.append(record)
        if verbose:
            print(f"step {step}: {item.kind} [{item.mutation}] {_short(item.payload, 120)}")
            print(f"    judged {judgement.verdict.value if judgement else '-'} {judgement.rule if judgement else ''}")
            for part in record[1:]:
                print(f"    {_short(part, 300)}")
    # the whole book once at the end
    try:
        trace.append((tuple(sync.book.bids()), tuple(sync.book.asks())))
    except Exception as exc:  # noqa: BLE001
        trace.append(_exc(exc))
    return trace, findings


def _actions(result: tuple[str, Any]) -> Any:
    status, value = result
    if status != "ok":
        return (status, _exc(value))
    return [(type(a).__name__, getattr(a, "reason", None) and a.reason[:120]) for a in value]


# ==================================================================== workers
_STATE: dict[str, Any] = {}


def _init(seed: int, captures: str, path: str, mutation_rate: float | None) -> None:
    pool = flow_materials(seed, 60)
    folder = Path(captures)
    if folder.is_dir():
        real = capture_materials(folder)
        pool += real * max(1, len(pool) // max(1, 3 * len(real)))  # about a quarter of the scenarios
    _STATE.update(pool=pool, seed=seed, path=path, rate=mutation_rate, paths=Paths())


def judge(item: Input) -> Judgement | None:
    import orjson

    if item.kind == "lost":
        return None
    try:
        decoded = orjson.loads(item.payload) if isinstance(item.payload, (str, bytes)) else item.payload
    except orjson.JSONDecodeError:
        return Judgement(Verdict.INVALID, "invalid JSON")
    try:
        return judge_frame(decoded) if item.kind == "frame" else judge_snapshot(decoded)
    except (RecursionError, InvalidOperation, ValueError):
        return Judgement(Verdict.GRAY, "the reference validator could not judge it")


def run_scenario(index: int, tally: Tally, keep: int, verbose: bool = False) -> None:
    seed, pool, path, paths = _STATE["seed"], _STATE["pool"], _STATE["path"], _STATE["paths"]
    rng = random.Random(f"{seed}:{index}")
    symbol, material, inputs = build_scenario(rng, pool, _STATE["rate"])
    judgements = [judge(item) for item in inputs]
    where = f"{seed}:{index}"
    tally.scenarios += 1
    for item in inputs:
        if item.kind != "lost":
            tally.inputs += 1
            tally.frames += item.kind == "frame"
            tally.snapshots += item.kind == "snapshot"
            tally.mutations[f"{item.kind}: {item.mutation}"] += 1
    runs = ("native", "python") if path == "both" else (path,)
    traces = []
    for run in runs:
        with paths.use(run) if path == "both" else contextlib.nullcontext():
            if verbose:
                print(f"--- {run} path, symbol {symbol}, {len(inputs)} inputs")
            trace, findings = play(symbol, inputs, material, run, where, judgements, verbose)
        traces.append(trace)
        for finding in findings:
            tally.add(finding, keep)
        counter = tally.per_path.setdefault(run, Counter())
        for category, _ in {(f.category, f.where) for f in findings}:
            counter[category] += 1  # inputs (steps) with at least one such failure
    if len(traces) == 2 and traces[0] != traces[1]:
        tally.differences += 1
        step = next((i for i, (a, b) in enumerate(zip(traces[0], traces[1])) if a != b), len(traces[0]) - 1)
        item = inputs[min(step, len(inputs) - 1)]
        a, b = traces[0][step], traces[1][step]
        detail = next((f"native {_short(x, 180)} / python {_short(y, 180)}"
                       for x, y in zip(a, b) if x != y), f"native {_short(a)} / python {_short(b)}") \
            if isinstance(a, list) and isinstance(b, list) else f"native {_short(a)} / python {_short(b)}"
        tally.add(Finding("differences", "both", f"{item.kind}: {item.mutation}", detail,
                          _size(item.payload), _short(item.payload), f"{where}:{step}"), keep)
        tally.per_path.setdefault("both", Counter())["differences"] += 1


def run_chunk(task: tuple[int, int, int]) -> Tally:
    start, stop, keep = task
    tally = Tally()
    for index in range(start, stop):
        run_scenario(index, tally, keep)
    return tally


# ======================================================================= main
def _table(tally: Tally, paths: tuple[str, ...]) -> str:
    header = "| path | inputs | crashes | wrong accepts | wrong refusals | integrity failures | wrong books | wedges |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path in paths:
        counter = tally.per_path.get(path, Counter())
        lines.append(f"| {path} | {tally.inputs:,} | " + " | ".join(f"{counter[c]:,}" for c in CATEGORIES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs to try (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of everything (default: %(default)s)")
    parser.add_argument("--path", choices=("both", "native", "python"), default="both",
                        help="which hot path: both and compare them (default), or one")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: the CPU count, %(default)s)")
    parser.add_argument("--captures", default=str(CAPTURES), help="folder of real captures (default: %(default)s)")
    parser.add_argument("--mutation-rate", type=float, default=None,
                        help="probability that an input is mutated (default: drawn per scenario "
                             "among 0.05, 0.2, 0.4 and 0.7)")
    parser.add_argument("--examples", type=int, default=3, help="examples kept per failure class")
    parser.add_argument("--report", help="write every failure class and its smallest examples as JSON")
    parser.add_argument("--replay", metavar="SEED:SCENARIO", help="run one scenario, printing every step")
    args = parser.parse_args(argv)

    if args.path == "python":
        os.environ["ORDERBOOK_PURE_PYTHON"] = "1"  # workers import orderbook without the C module
    if args.replay:
        seed, _, index = args.replay.partition(":")
        _init(int(seed), args.captures, args.path, args.mutation_rate)
        tally = Tally()
        run_scenario(int(index), tally, args.examples, verbose=True)
        _print_classes(tally)
        return 0

    started = time.monotonic()
    context = mp.get_context("spawn")
    chunk = 50
    tally = Tally()
    keep = args.examples
    tasks = ((start, start + chunk, keep) for start in range(0, 10**12, chunk))
    with context.Pool(args.workers, _init, (args.seed, args.captures, args.path, args.mutation_rate)) as pool:
        implementation = pool.apply(_implementation)
        if args.path == "native" and implementation != "native":
            print("fuzz: the C module is not in use: nothing to fuzz on the native path", file=sys.stderr)
            return 2
        if args.path == "both" and implementation != "native":
            print("fuzz: the C module is not in use: running the python path only", file=sys.stderr)
        last_report = started
        for result in pool.imap(run_chunk, tasks):
            tally.merge(result, keep)
            now = time.monotonic()
            if now - last_report > 30:
                last_report = now
                rate = tally.inputs / (now - started)
                print(f"fuzz: {tally.inputs:,} inputs, {sum(sum(c.values()) for c in tally.per_path.values()):,} "
                      f"findings, {tally.differences} differences, {rate:,.0f} inputs/s", file=sys.stderr)
            if tally.inputs >= args.count:
                break
        pool.terminate()
    elapsed = time.monotonic() - started
    paths = ("native", "python") if args.path == "both" else (args.path,)
    print(f"fuzz: seed {args.seed}, {tally.inputs:,} inputs ({tally.frames:,} frames, {tally.snapshots:,} "
          f"snapshots) in {tally.scenarios:,} scenarios, {args.workers} workers, {elapsed:.0f} s "
          f"({tally.inputs / elapsed:,.0f} inputs/s); implementation: {implementation}")
    print()
    print(_table(tally, paths))
    if args.path == "both":
        print(f"\nnative/pure differences: {tally.differences:,} scenarios")
    _print_classes(tally)
    if args.report:
        _write_report(Path(args.report), args, tally, elapsed)
    failed = tally.differences or any(sum(c.values()) for c in tally.per_path.values() if c)
    return 1 if failed else 0


def _implementation() -> str:
    from orderbook import implementation

    return implementation()


def _print_classes(tally: Tally) -> None:
    if not tally.classes:
        print("\nno failure of any kind")
        return
    grouped: dict[tuple[str, str], dict[str, int]] = {}
    for (category, path, what), count in tally.classes.items():
        grouped.setdefault((category, what), {})[path] = count
    print("\nfailure classes (occurrences per path; the smallest example, replayable with --replay):")
    for (category, what), counts in sorted(grouped.items(), key=lambda kv: (kv[0][0], -max(kv[1].values()))):
        path = min(counts)
        example = tally.examples[(category, path, what)][0]
        shown = ", ".join(f"{p} {n:,}" for p, n in sorted(counts.items()))
        print(f"- {category}: {what} ({shown})")
        print(f"    at {example.where}: {example.detail[:200]}")
        print(f"    input ({example.input_size:,} chars): {example.input_head}")


def _write_report(path: Path, args: argparse.Namespace, tally: Tally, elapsed: float) -> None:
    document = {
        "command": " ".join(sys.argv), "seed": args.seed, "count": args.count, "path": args.path,
        "inputs": tally.inputs, "frames": tally.frames, "snapshots": tally.snapshots,
        "scenarios": tally.scenarios, "seconds": round(elapsed, 1), "differences": tally.differences,
        "per_path": {p: dict(c) for p, c in tally.per_path.items()},
        "mutations": dict(tally.mutations.most_common()),
        "classes": [
            {"category": c, "path": p, "class": w, "count": n,
             "examples": [vars(f) for f in tally.examples[(c, p, w)]]}
            for (c, p, w), n in tally.classes.most_common()
        ],
    }
    path.write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    sys.exit(main())
