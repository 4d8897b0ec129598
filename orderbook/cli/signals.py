"""How a long-running command stops: SIGINT (Ctrl-C) and SIGTERM.

Both stop the command cleanly (every ``async with`` unwinds: terminal
restored, files closed, connections shut).  The exit status says which:
130 after Ctrl-C (128 + SIGINT, what shells report for an interrupted
command), 0 after SIGTERM (a supervisor asked for a stop and got it).  A
second signal during the cleanup gets the default behaviour (stop at once).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

__all__ = ["INTERRUPTED", "StopSignals"]

INTERRUPTED = 128 + signal.SIGINT
"""The exit status of a command stopped by Ctrl-C (130)."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT/SIGTERM handlers calling ``on_stop`` once, remembering which came."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        """The signal that stopped the command, ``None`` before one."""

    def install(self, on_stop: Callable[[], object]) -> None:
        """Call ``on_stop()`` at the first SIGINT or SIGTERM (then restore the
        default handlers).  Needs the running loop; a no-op where the loop
        cannot handle signals (Windows: Ctrl-C raises KeyboardInterrupt)."""
        loop = asyncio.get_running_loop()

        def received(signum: signal.Signals) -> None:
            self.received = signum
            for each in _SIGNALS:
                loop.remove_signal_handler(each)
            on_stop()

        for signum in _SIGNALS:
            try:
                loop.add_signal_handler(signum, received, signum)
            except NotImplementedError:
                return

    @property
    def exit_status(self) -> int:
        """130 after SIGINT, else 0."""
        return INTERRUPTED if self.received is signal.SIGINT else 0
