"""orderbook.cli.view: the pure renderer, and the live loop against the simulated venue."""

from __future__ import annotations

import asyncio
import io
import re
import socket
from decimal import Decimal

import pytest

from orderbook.sync.status import Status
from orderbook.live.config import Connection
from orderbook.errors import VenueUnavailable

from orderbook.live.replicator import Replicator
from orderbook.testing.venue import OrderFlow, SimulatedVenue
from orderbook.cli.view import RateMeter, SymbolView, ViewState, render, render_symbol, show

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
D = Decimal


def plain(line: str) -> str:
    return ANSI.sub("", line)


def sol(**changes: object) -> SymbolView:
    fields: dict[str, object] = dict(
        symbol="SOL_USDC", status="synced", last_update_id=1_684_026_955_123,
        asks=[(D("21.905"), D("2")), (D("22.00"), D("7.25")), (D("22.10"), D("0.00000001"))],
        bids=[(D("21.850"), D("0.5")), (D("21.80"), D("10")), (D("21.70"), D("123456.789"))],
        spread=D("0.055"), mid=D("21.8775"), updates_per_s=42.4, frames=1000, gaps=2,
        resyncs=3, bad_frames=1,
    )
    fields.update(changes)
    return SymbolView(**fields)  # type: ignore[arg-type]


def state(*symbols: SymbolView, **changes: object) -> ViewState:
    fields: dict[str, object] = dict(
        source="wss://ws.backpack.exchange", connected=True, reconnects=0,
        latency_p50_ms=0.84, latency_p99_ms=12.5, symbols=symbols or (sol(),),
    )
    fields.update(changes)
    return ViewState(**fields)  # type: ignore[arg-type]


def test_exact_prices_quantities_spread_mid_status_and_counters() -> None:
    text = "\n".join(plain(line) for line in render(state(), color=False))
    for number in ("21.905", "22.00", "22.10", "0.00000001", "21.850", "21.80", "21.70",
                   "123456.789", "7.25", "0.055", "21.8775", "1684026955123"):
        assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d.])", text), number
    assert "SOL_USDC" in text and "synced" in text
    assert "42 upd/s" in text
    assert "frames 1000" in text and "gaps 2" in text and "resyncs 3" in text and "bad 1" in text
    assert "p50 0.84 ms" in text and "p99 12.5 ms" in text
    assert "connected" in text and "wss://ws.backpack.exchange" in text


def test_asks_above_bids_worst_ask_on_top_best_bid_first() -> None:
    lines = [plain(line) for line in render(state(), color=False)]
    order = ["22.10", "22.00", "21.905", "spread", "21.850", "21.80", "21.70"]
    rows = [next(i for i, line in enumerate(lines) if re.search(rf"(^|\s){re.escape(word)}\s", line))
            for word in order]
    assert rows == sorted(rows)


def test_decimal_points_line_up() -> None:
    lines = [plain(line) for line in render(state(), color=False)]
    priced = [line for line in lines if re.match(r"\s*\d+\.\d+\s+\d", line)]
    assert len(priced) == 6
    assert len({line.index(".") for line in priced}) == 1


def test_colours_asks_red_bids_green_status_and_resets() -> None:
    lines = render(state(), color=True)
    ask = next(line for line in lines if "21.905" in line)
    bid = next(line for line in lines if "21.850" in line)
    assert "\x1b[31m" in ask and "\x1b[32m" not in ask
    assert "\x1b[32m" in bid and "\x1b[31m" not in bid
    assert any("\x1b[32msynced" in line for line in lines)
    for line in lines:  # every colour is reset where it ends
        assert line.count("\x1b[0m") * 2 == len(ANSI.findall(line))
    assert not any("\x1b[" in line for line in render(state(), color=False))
    error = render(state(sol(status=Status.ERROR, reason="gave up: 5 stale snapshots", asks=[],
                             bids=[])), color=True)
    assert any("\x1b[1;31merror" in line for line in error)
    assert any("gave up: 5 stale snapshots" in line for line in error)


def test_empty_book_and_unknown_latency() -> None:
    empty = sol(status="waiting", last_update_id=None, asks=[], bids=[], spread=None, mid=None,
                updates_per_s=0.0)
    text = "\n".join(render(state(empty, latency_p50_ms=None, latency_p99_ms=None,
                                  connected=False), color=False))
    assert "waiting" in text and "spread -  mid -" in text and "id -" in text
    assert "p50 - p99 -" in text and "disconnected" in text


def test_a_book_not_synced_shows_why() -> None:
    reason = "connection to ws://127.0.0.1:9/ lost (connect failed: ConnectionRefusedError); reconnecting"
    empty = sol(status="resyncing", last_update_id=None, asks=[], bids=[], spread=None, mid=None,
                reason=reason)
    lines = [plain(line) for line in render(state(empty), color=False, levels=3)]
    header = next(i for i, line in enumerate(lines) if "price  quantity" in line)
    assert lines[header + 1].strip() == reason[:57] + "..."  # under the column header, cut to fit
    assert len(lines) == len(render(state(sol()), color=False, levels=3))  # same height
    assert not any("connection to" in line for line in render(state(sol(reason=None)), color=False))


def test_show_draws_a_last_frame_and_raises_when_the_replicator_fails() -> None:
    async def main() -> str:
        with socket.socket() as refusing:
            refusing.bind(("127.0.0.1", 0))
            url = f"ws://127.0.0.1:{refusing.getsockname()[1]}/"
            async with SimulatedVenue(OrderFlow(seed=3), rate=50.0) as venue:
                async with Replicator(["SPCX.US_USDC"], rest_url=venue.rest_url, ws_url=url,
                                      connection=Connection(connect_timeout=0.5)) as rep:
                    out = io.StringIO()
                    with pytest.raises(VenueUnavailable, match=f"could not connect to {url}"):
                        await show(rep, source=url, levels=2, duration=30, out=out,
                                   interactive=False)
                    return out.getvalue()

    printed = asyncio.run(asyncio.wait_for(main(), 30))
    last = printed.split("orderbook  ")[-1]
    assert "SPCX.US_USDC  error" in last and "disconnected" in last
    assert "could not connect to ws://127.0.0.1:" in last


def test_panels_side_by_side_when_wide_stacked_when_narrow() -> None:
    two = state(sol(), sol(symbol="BTC_USDC_PERP"))
    wide = render(two, width=160, color=False)
    assert any("SOL_USDC" in line and "BTC_USDC_PERP" in line for line in wide)
    narrow = render(two, width=50, color=False)
    assert not any("SOL_USDC" in line and "BTC_USDC_PERP" in line for line in narrow)
    assert len(narrow) > len(wide)


def test_a_narrow_terminal_cuts_lines_and_keeps_colours_balanced() -> None:
    for width in (1, 12, 30):
        lines = render(state(sol(), sol(symbol="BTC_USDC_PERP")), width=width, color=True)
        assert all(len(plain(line)) <= width for line in lines)
        for line in lines:
            assert line.count("\x1b[0m") == len(ANSI.findall(line)) // 2


def test_a_short_terminal_shows_fewer_levels_but_the_touch() -> None:
    lines = render(state(), height=12, levels=10, color=False, hint="Ctrl-C to quit")
    assert len(lines) <= 12
    text = "\n".join(lines)
    assert "21.905" in text and "21.850" in text  # best ask and best bid stay
    assert "22.10" not in text and "Ctrl-C to quit" in text
    tiny = render(state(), height=3, color=False)
    assert len(tiny) == 3


def test_log_lines_and_hint_at_the_bottom() -> None:
    lines = render(state(log_lines=["12:00:00 WARNING orderbook.live.replicator: gap"]),
                   color=False, hint="Ctrl-C to quit")
    assert lines[-1] == "Ctrl-C to quit"
    assert lines[-2] == "12:00:00 WARNING orderbook.live.replicator: gap"


def test_render_symbol_without_a_rate_and_ascii_bars() -> None:
    lines = render_symbol(sol(updates_per_s=None), levels=2, color=False, unicode=False)
    text = "\n".join(lines)
    assert "upd/s" not in text and "22.10" not in text and "22.00" in text
    assert "#" in text and "\u2588" not in text


def test_rate_meter() -> None:
    meter = RateMeter(window=2.0)
    assert meter.rate("a", 0, 10.0) == 0.0
    assert meter.rate("a", 50, 10.5) == 100.0
    assert meter.rate("a", 100, 11.0) == 100.0
    for step in range(1, 11):
        rate = meter.rate("a", 100 + 10 * step, 11.0 + step)
    assert rate == 10.0  # old samples left the window
    assert meter.rate("b", 7, 11.0) == 0.0


def test_show_redraws_at_most_ten_times_a_second_and_restores_the_cursor() -> None:
    async def main() -> tuple[str, str]:
        flow = OrderFlow(["SOL_USDC", "BTC_USDC_PERP"], seed=3)
        async with SimulatedVenue(flow, rate=200.0) as venue:
            async with Replicator(flow.symbols, rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                await rep.wait_synced(timeout=10)
                live, printed = io.StringIO(), io.StringIO()
                await show(rep, source="test", levels=3, duration=1.0, out=live, interactive=True)
                await show(rep, source="test", levels=3, duration=1.0, out=printed,
                           interactive=False)
                return live.getvalue(), printed.getvalue()

    live, printed = asyncio.run(asyncio.wait_for(main(), 30))
    frames = live.count("\x1b[H")
    assert 5 <= frames <= 12  # 10/s for 1 s, plus the last frame
    assert live.startswith("\x1b[?25l") and live.rstrip("\n").endswith("\x1b[?25h")
    assert "synced" in live and "\x1b[31m" in live and "Ctrl-C to quit" in live
    assert "\x1b[" not in printed  # plain frames: no escapes, no colours
    assert printed.count("orderbook  test") == 2  # at 0 s and at the end (1 s)
    assert re.search(r"\d+\.\d{3,4}\s+\d", printed) and "synced" in printed
