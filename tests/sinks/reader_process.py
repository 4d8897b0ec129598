"""A reader in a process of its own, for the acceptance tests.

    python reader_process.py redis redis://127.0.0.1:6379/0 SOL_USDC SPCX.US_USDC
    python reader_process.py nats nats://127.0.0.1:4222 SOL_USDC

Follows each symbol with :func:`orderbook.sinks.redis_book` or
:func:`orderbook.sinks.nats_book`.  Prints ``ready`` once started; then, for
each line ``dump`` on stdin, one JSON line: per symbol ``synced``, ``id``
(the book's update id), ``bids``/``asks`` as ``[price, qty]`` strings and the
follower's stats.  Exits at end of input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import orjson

from orderbook.sinks import BookFollower, nats_book, redis_book


def dump(followers: dict[str, BookFollower]) -> str:
    state = {}
    for symbol, follower in followers.items():
        book = follower.book
        state[symbol] = {
            "synced": follower.synced, "id": book.last_update_id,
            "bids": [[str(p), str(q)] for p, q in book.bids()],
            "asks": [[str(p), str(q)] for p, q in book.asks()],
            "stats": dataclasses.asdict(follower.stats),
        }
    return orjson.dumps(state).decode()


async def main(kind: str, url: str, symbols: list[str]) -> None:
    make = redis_book if kind == "redis" else nats_book
    followers: dict[str, BookFollower] = {s: make(url, s) for s in symbols}
    for follower in followers.values():
        await follower.start()
    print("ready", flush=True)
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "dump":
                print(dump(followers), flush=True)
    finally:
        for follower in followers.values():
            await follower.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
