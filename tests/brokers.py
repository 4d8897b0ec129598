"""Real brokers for the networked tests: redis-server and nats-server on free loopback ports.

:class:`Broker` starts the Debian binary in a directory of the test's (no
persistence), waits until it answers, and stops it.  ``restart()`` kills it
and starts a fresh one on the same port (what a broker restart looks like to
its clients: connections reset, and, without persistence, no data);
``pause()``/``resume()`` stop and continue the process (a broker that accepts
nothing: a slow one).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NATS_SERVER = shutil.which("nats-server") or "/usr/bin/nats-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    """One broker process on a fixed loopback port."""

    def __init__(self, name: str, argv: Callable[[int], list[str]], greeting: bytes,
                 probe: bytes, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self._argv = argv
        self._greeting = greeting
        self._probe = probe
        self._workdir = workdir
        self._log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        scheme = "redis" if self.name == "redis" else "nats"
        return f"{scheme}://127.0.0.1:{self.port}" + ("/0" if scheme == "redis" else "")

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None, "already running"
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(self._argv(self.port), cwd=self._workdir, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"{self.name} exited: {self._log.read_text()[-2000:]}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if self._probe:
                        sock.sendall(self._probe)
                    if self._greeting in sock.recv(4096):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{self.name} did not start: {self._log.read_text()}"
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the process (no graceful shutdown: clients see connections reset)."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the process stays, answers nothing (TCP still accepts)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def redis_argv(port: int, *extra: str) -> list[str]:
    return [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", *extra]


def nats_argv(port: int, *extra: str) -> list[str]:
    return [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), *extra]


def redis_broker(workdir: Path, *extra: str) -> Broker:
    """A (not started) redis-server; ``extra`` configuration arguments."""
    return Broker("redis", lambda port: redis_argv(port, *extra), b"+PONG", b"PING\r\n", workdir)


def nats_broker(workdir: Path, *extra: str) -> Broker:
    """A (not started) nats-server; ``extra`` command-line arguments."""
    return Broker("nats", lambda port: nats_argv(port, *extra), b"INFO", b"", workdir)
