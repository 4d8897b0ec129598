"""The live terminal view of ``orderbook run`` and ``orderbook demo``.

Two layers:

* :func:`render` is pure: a :class:`ViewState` (plain data) in, the lines
  of one frame out, with ANSI colours when asked.  Per symbol: asks (red)
  above bids (green) with a quantity bar, spread, mid, update rate, status
  and counters; one header with the source, the connection and the
  engine-to-local latency.  Prices and quantities are the exact decimals.
  The frame fits the given size: panels side by side when they fit, fewer
  levels when the terminal is short, lines cut (colours kept balanced) when it
  is narrow.
* :func:`show` reads a running :class:`~orderbook.live.replicator.Replicator`
  into a :class:`ViewState` (:func:`read_state`) and redraws at most 10 times
  a second with plain ANSI escapes (cursor home, clear to end of line; the
  cursor is hidden meanwhile and restored however it ends).  When the output
  is not a terminal it prints a plain frame once a second instead: no
  escapes, no colours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import TextIO

from ..core.ladder import Level
from ..protocol.decimals import decimal_str
from ..live.replicator import Replicator
from ..sync.status import Status

__all__ = [
    "LogTail",
    "RateMeter",
    "SymbolView",
    "ViewState",
    "read_state",
    "render",
    "render_symbol",
    "show",
]

MAX_REDRAWS_PER_SECOND = 10
PLAIN_INTERVAL = 1.0
"""Seconds between frames when the output is not a terminal."""

# SGR codes
_RED, _GREEN, _YELLOW, _CYAN, _DIM, _BOLD, _ALERT = "31", "32", "33", "36", "2", "1", "1;31"
_HIDE_CURSOR, _SHOW_CURSOR, _CLEAR, _HOME = "\x1b[?25l", "\x1b[?25h", "\x1b[2J", "\x1b[H"
_CLEAR_LINE, _CLEAR_BELOW = "\x1b[K", "\x1b[J"

_PANEL_GAP = 4
_REASON = 60  # characters of a not-synced reason shown in a panel
_BAR = 10
_FIXED_ROWS = 5  # title, ids, column header, spread, counters
_Segment = tuple[str, str]  # (text, SGR code or "")
_Line = list[_Segment]


@dataclass(frozen=True, slots=True)
class SymbolView:
    """What the view shows of one symbol.

    ``asks`` and ``bids`` are best first; ``updates_per_s`` is depth frames
    received per second, recently (``None``: not live, not shown); ``reason``
    says why the symbol is not synced (shown in the empty book).
    """

    symbol: str
    status: Status
    last_update_id: int | None
    asks: Sequence[Level]
    bids: Sequence[Level]
    spread: Decimal | None
    mid: Decimal | None
    updates_per_s: float | None
    frames: int
    gaps: int
    resyncs: int
    bad_frames: int
    stale: bool = False
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ViewState:
    """One frame's worth of data: the source, the connection, the
    engine-to-local latency percentiles (ms, ``None`` before any frame), the
    symbols, and the latest log lines to show at the bottom."""

    source: str
    connected: bool
    reconnects: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    symbols: Sequence[SymbolView]
    log_lines: Sequence[str] = ()


class RateMeter:
    """The recent rate of growing counters, one per key.

    :meth:`rate` keeps samples spanning about ``window`` seconds: O(1)
    amortised per call.
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def rate(self, key: str, count: int, now: float) -> float:
        """Record ``count`` at time ``now`` (seconds) and return the increase
        per second since the oldest sample kept (0.0 with a single sample)."""
        samples = self._samples.setdefault(key, deque())
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        then, before = samples[0]
        return (count - before) / (now - then) if now > then else 0.0


class LogTail(logging.Handler):
    """A logging handler keeping the last ``size`` formatted records, for the
    view to show while it owns the terminal."""

    def __init__(self, size: int = 3) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                            "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's first line."""
        try:
            self.lines.append(self.format(record).splitlines()[0])
        except Exception:
            self.handleError(record)


# ------------------------------------------------------------------ rendering
def render(
    state: ViewState,
    *,
    width: int = 120,
    height: int | None = None,
    levels: int = 10,
    color: bool = True,
    unicode: bool = True,
    hint: str | None = None,
) -> list[str]:
    """The lines of one frame of the view (no trailing newlines).

    ``levels`` per side are shown when the ``height`` allows it (at least
    one); no line is wider than ``width`` visible characters; with ``color``
    the lines carry ANSI colour codes, each reset where it ends.  ``hint``
    is a last line (e.g. how to quit).  O(symbols x levels).
    """
    width = max(1, width)
    header: list[_Line] = [_header(state), []]
    footer: list[_Line] = [[]] if state.log_lines or hint else []
    footer += [[(line, _DIM)] for line in state.log_lines]
    if hint:
        footer.append([(hint, _DIM)])
    symbols = list(state.symbols)
    body: list[_Line] = []
    if not symbols:
        body.append([("no symbols", _DIM)])
    else:
        shown = levels
        for _ in range(2):  # the column count depends on the panels' width, which depends on levels
            panels = [_panel(view, max(1, shown), unicode) for view in symbols]
            panel_width = max(_width(line) for panel in panels for line in panel)
            columns = max(1, min(len(panels), (width + _PANEL_GAP) // (panel_width + _PANEL_GAP)))
            rows = -(-len(panels) // columns)
            if height is None:
                break
            room = height - len(header) - len(footer) - (rows - 1)
            fitting = (room // rows - _FIXED_ROWS) // 2
            if fitting >= shown:
                break
            shown = max(1, min(levels, fitting))
        for row in range(rows):
            if row:
                body.append([])
            group = panels[row * columns : (row + 1) * columns]
            for index in range(len(group[0])):
                line: _Line = []
                for number, panel in enumerate(group):
                    if number:
                        line.append((" " * (panel_width + _PANEL_GAP - _width(group[number - 1][index])), ""))
                    line += panel[index]
                body.append(line)
    lines = header + body + footer
    if height is not None:
        lines = lines[: max(1, height)]
    return [_paint(line, width, color) for line in lines]


def render_symbol(view: SymbolView, *, levels: int = 10, color: bool = True,
                  unicode: bool = True) -> list[str]:
    """The lines of one symbol's panel alone (as in :func:`render`, uncut).
    O(levels)."""
    return [_paint(line, 10**6, color) for line in _panel(view, max(1, levels), unicode)]


def _header(state: ViewState) -> _Line:
    line: _Line = [("orderbook", _BOLD), ("  ", ""), (state.source, _CYAN), ("  ", "")]
    line.append(("connected", _GREEN) if state.connected else ("disconnected", _ALERT))
    if state.reconnects:
        line.append((f" (reconnects {state.reconnects})", _YELLOW))
    line += [("   engine->local p50 ", _DIM), (_ms(state.latency_p50_ms), ""),
             (" p99 ", _DIM), (_ms(state.latency_p99_ms), "")]
    return line


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) < 10:
        return f"{value:.2f} ms"
    return f"{value:.1f} ms" if abs(value) < 100 else f"{value:.0f} ms"


def _status_style(status: Status) -> str:
    if status == Status.SYNCED:
        return _GREEN
    return _ALERT if status == Status.ERROR else _YELLOW


def _panel(view: SymbolView, levels: int, unicode: bool) -> list[_Line]:
    """One symbol's lines: 2 x ``levels`` + :data:`_FIXED_ROWS` of them."""
    shown = list(view.asks[:levels]) + list(view.bids[:levels])
    prices = _aligned([decimal_str(p) for p, _ in shown])
    quantities = _aligned([decimal_str(q) for _, q in shown])
    entries = list(zip(prices, quantities, (q for _, q in shown)))
    asks, bids = entries[: min(levels, len(view.asks))], entries[min(levels, len(view.asks)) :]
    price_width = max([len("price")] + [len(p) for p, _, _ in asks + bids])
    qty_width = max([len("quantity")] + [len(q) for _, q, _ in asks + bids])
    largest = max([q for _, _, q in asks + bids], default=Decimal(0))
    block = "\u2588" if unicode else "#"

    def level(entry: tuple[str, str, Decimal], style: str) -> _Line:
        price, qty, amount = entry
        bar = int((amount * _BAR / largest).to_integral_value(ROUND_CEILING)) if largest > 0 else 0
        return [(f"{price:>{price_width}}  {qty:>{qty_width}}", style), (" ", ""),
                (block * min(bar, _BAR), style)]

    blank: _Line = []
    status: _Line = [(view.symbol, _BOLD), ("  ", ""), (view.status, _status_style(view.status))]
    if view.stale:
        status.append((" (stale)", _YELLOW))
    ids: _Line = [("id ", _DIM), (str(view.last_update_id) if view.last_update_id is not None else "-", "")]
    if view.updates_per_s is not None:
        ids += [("  ", ""), (f"{view.updates_per_s:.0f}", ""), (" upd/s", _DIM)]
    columns: _Line = [(f"{'price':>{price_width}}  {'quantity':>{qty_width}}", _DIM)]
    spread: _Line = [("spread ", _DIM), (_decimal(view.spread), _YELLOW),
                     ("  mid ", _DIM), (_decimal(view.mid), _YELLOW)]
    counters: _Line = [(f"frames {view.frames}  gaps {view.gaps}  resyncs {view.resyncs}  "
                        f"bad {view.bad_frames}", _DIM)]
    ask_lines = [level(entry, _RED) for entry in reversed(asks)]
    bid_lines = [level(entry, _GREEN) for entry in bids]
    padding = [blank] * (levels - len(ask_lines))
    if view.reason and padding:
        reason = view.reason if len(view.reason) <= _REASON else view.reason[: _REASON - 3] + "..."
        padding[0] = [(reason, _YELLOW)]
    return ([status, ids, columns]
            + padding + ask_lines
            + [spread]
            + bid_lines + [blank] * (levels - len(bid_lines))
            + [counters])


def _aligned(numbers: list[str]) -> list[str]:
    """Decimal strings padded with spaces so that their points line up (the
    digits are kept exactly as they are)."""
    split = [number.partition(".") for number in numbers]
    whole = max((len(w) for w, _, _ in split), default=0)
    fraction = max((len(point + f) for _, point, f in split), default=0)
    return [f"{w:>{whole}}{point + f:<{fraction}}" for w, point, f in split]


def _decimal(value: Decimal | None) -> str:
    return "-" if value is None else decimal_str(value)


def _width(line: _Line) -> int:
    return sum(len(text) for text, _ in line)


def _paint(line: _Line, width: int, color: bool) -> str:
    """The line as text cut to ``width`` visible characters, coloured if asked."""
    parts: list[str] = []
    room = width
    for text, style in line:
        if room <= 0:
            break
        text = text[:room]
        room -= len(text)
        parts.append(f"\x1b[{style}m{text}\x1b[0m" if color and style and text else text)
    return "".join(parts).rstrip()


# ------------------------------------------------------------------ live loop
def read_state(
    replicator: Replicator,
    *,
    source: str,
    levels: int,
    meter: RateMeter,
    log_lines: Sequence[str] = (),
) -> ViewState:
    """What the view shows of ``replicator`` now (from its books and
    :meth:`~orderbook.live.replicator.Replicator.stats`).  O(symbols x levels + samples)."""
    stats = replicator.stats()
    now = time.monotonic()
    latency = stats.latency.engine_to_receive_ms
    symbols = []
    for name in replicator.symbols:
        figures, book = stats.symbols[name], replicator.book(name)
        symbols.append(SymbolView(
            name, figures.status, book.last_update_id, book.asks(levels), book.bids(levels),
            book.spread(), book.mid(), meter.rate(name, figures.frames, now), figures.frames,
            figures.gaps, figures.resyncs, figures.bad_frames, figures.stale, figures.reason,
        ))
    return ViewState(source, stats.connection.connected, stats.connection.reconnects,
                     latency.p50, latency.p99, symbols, tuple(log_lines))


@contextlib.contextmanager
def _logs_into(tail: LogTail | None) -> Iterator[None]:
    """While the view owns the terminal, log records go to ``tail`` instead
    of the root logger's handlers (they would scroll the frame away)."""
    if tail is None:
        yield
        return
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [tail]
    try:
        yield
    finally:
        root.handlers = saved


async def show(
    replicator: Replicator,
    *,
    source: str,
    levels: int = 10,
    duration: float | None = None,
    out: TextIO | None = None,
    interactive: bool | None = None,
    color: bool | None = None,
) -> None:
    """Show ``replicator``'s books until ``duration`` seconds passed (``None``:
    until cancelled).

    ``interactive`` (default: ``out`` is a terminal) redraws in place at most
    :data:`MAX_REDRAWS_PER_SECOND` times a second, fitted to the terminal's
    size, with the log's last lines at the bottom when stderr is that
    terminal too; otherwise a plain frame is printed every
    :data:`PLAIN_INTERVAL` seconds.  ``color`` defaults to ``interactive``
    unless ``NO_COLOR`` is set.  A last frame is always drawn at the end of
    ``duration``; the cursor is restored however the view ends.  When the
    replicator fails (:attr:`Replicator.failure`) a last frame is drawn and
    the failure raised.
    """
    stream = out if out is not None else sys.stdout
    live = stream.isatty() if interactive is None else interactive
    colored = (live and "NO_COLOR" not in os.environ) if color is None else color
    unicode = (getattr(stream, "encoding", None) or "").lower().replace("-", "") == "utf8"
    tail = LogTail() if live and sys.stderr.isatty() else None
    meter = RateMeter()
    interval = 1 / MAX_REDRAWS_PER_SECOND if live else PLAIN_INTERVAL
    deadline = None if duration is None else time.monotonic() + duration
    with _logs_into(tail):
        if live:
            stream.write(_HIDE_CURSOR + _CLEAR)
        try:
            while True:
                state = read_state(replicator, source=source, levels=levels, meter=meter,
                                   log_lines=tail.lines if tail is not None else ())
                if live:
                    size = shutil.get_terminal_size()
                    lines = render(state, width=size.columns, height=size.lines, levels=levels,
                                   color=colored, unicode=unicode, hint="Ctrl-C to quit")
                    stream.write(_HOME + f"{_CLEAR_LINE}\n".join(lines) + _CLEAR_LINE + _CLEAR_BELOW)
                else:
                    lines = render(state, width=shutil.get_terminal_size((120, 40)).columns,
                                   levels=levels, color=colored, unicode=unicode)
                    stream.write("\n".join(lines) + "\n\n")
                stream.flush()
                if replicator.failure is not None:
                    raise replicator.failure
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                await asyncio.sleep(interval if left is None else min(interval, left))
        finally:
            if live:
                stream.write(_SHOW_CURSOR + "\n")
                stream.flush()
