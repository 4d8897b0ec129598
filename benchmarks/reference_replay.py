"""A reference-style replay of a capture: the yardstick of ``benchmarks/replay.py``.

    .venv/bin/python benchmarks/reference_replay.py CAPTURE.jsonl

The design of the venue's own reference book, in Python, as a research
script would write it: each line decoded with ``orjson`` (and, in a
version 2 file, the frame's ``raw`` text decoded again), one ``SortedDict``
per side keyed by the ``Decimal`` price, zero -> pop, the snapshot bridged
by the buffered frames (``U <= L+1 <= u``), every later frame checked to
continue the book (``U == last u + 1``), the touch read after every frame.
It prints the final books as one JSON document shaped like ``orderbook
replay --json``'s (levels and update id), so that the whole job is the same
work.  It imports nothing of this package: what it costs is what a user of
the reference design pays.  Plain ``.jsonl`` only.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import orjson
from sortedcontainers import SortedDict


class Gap(Exception):
    """A frame that does not continue the book."""


def apply(book: list[Any], data: dict[str, Any]) -> None:
    """Apply one frame's levels to ``book`` = [bids, asks, last update id]."""
    dec = Decimal
    bids, asks = book[0], book[1]
    for price, qty in data["b"]:
        p, q = dec(price), dec(qty)
        if q:
            bids[p] = q
        else:
            bids.pop(p, None)
    for price, qty in data["a"]:
        p, q = dec(price), dec(qty)
        if q:
            asks[p] = q
        else:
            asks.pop(p, None)
    book[2] = int(data["u"])
    if bids:
        bids.peekitem(-1)
    if asks:
        asks.peekitem(0)


def replay(path: str) -> dict[str, list[Any]]:
    """Final books per symbol: [bids, asks, last update id]."""
    loads, dec = orjson.loads, Decimal
    books: dict[str, list[Any]] = {}
    buffered: dict[str, list[dict[str, Any]]] = {}
    with open(path, "rb") as source:
        for line in source:
            event = loads(line)
            kind = event.get("kind")
            if kind == "ws":
                message = loads(event["raw"]) if "raw" in event else event["frame"]
                stream = message.get("stream", "")
                if not stream.startswith("depth."):
                    continue
                data = message["data"]
                symbol = data["s"]
                book = books.get(symbol)
                if book is None:
                    buffered.setdefault(symbol, []).append(data)
                    continue
                if int(data["u"]) <= book[2]:
                    continue
                if int(data["U"]) != book[2] + 1:
                    raise Gap(symbol, data["U"], book[2])
                apply(book, data)
            elif kind == "rest" and event.get("status") == 200:
                symbol = event["query"]["symbol"]
                body = event["body"]
                last = int(body["lastUpdateId"])
                book = [SortedDict({dec(p): dec(q) for p, q in body["bids"] if dec(q)}),
                        SortedDict({dec(p): dec(q) for p, q in body["asks"] if dec(q)}), last]
                books[symbol] = book
                for data in buffered.pop(symbol, []):
                    if int(data["u"]) > book[2] and int(data["U"]) <= book[2] + 1:
                        apply(book, data)
    return books


def main(argv: list[str]) -> int:
    books = replay(argv[0])
    document = {"symbols": {
        symbol: {"last_update_id": book[2],
                 "bids": [[format(p, "f"), format(q, "f")] for p, q in reversed(book[0].items())],
                 "asks": [[format(p, "f"), format(q, "f")] for p, q in book[1].items()]}
        for symbol, book in sorted(books.items())}}
    sys.stdout.write(orjson.dumps(document).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
