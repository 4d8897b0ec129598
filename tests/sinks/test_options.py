"""``--publish`` URLs, options, and the error naming the extra when a client library is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orderbook.errors import UsageError
from orderbook.sinks import NatsSink, PublishOptions, RedisSink, sink_from_url
from paths import REPO


def test_urls_become_sinks_with_their_options() -> None:
    sink = sink_from_url("redis://:secret@127.0.0.1:6390/2?snapshot_interval=50&maxlen=500&queue=64"
                         "&batch=8&linger=0.02&timeout=1.5&prefix=books")
    assert isinstance(sink, RedisSink)
    assert sink.name == "redis://127.0.0.1:6390/2"  # no credentials in logs and metrics
    assert sink.url == "redis://:secret@127.0.0.1:6390/2"
    assert sink.maxlen == 500
    assert sink.options == PublishOptions(snapshot_interval=50, queue_size=64, batch_size=8, linger=0.02,
                                          write_timeout=1.5, prefix="books")
    default = sink_from_url("redis://127.0.0.1:6379/0")
    assert isinstance(default, RedisSink) and default.maxlen == 100_000
    assert default.options.snapshot_interval == 1000
    nats_sink = sink_from_url("nats://127.0.0.1:4222?snapshot_interval=none&prefix=a.b")
    assert isinstance(nats_sink, NatsSink) and nats_sink.name == "nats://127.0.0.1:4222"
    assert nats_sink.options.snapshot_interval is None and nats_sink.options.prefix == "a.b"
    assert sink_from_url("nats://127.0.0.1:4222?snapshot_interval=10").options.snapshot_interval == 10


@pytest.mark.parametrize("url, message", [
    ("kafka://h:1", "unsupported scheme"),
    ("redis://h:1/0?nope=1", "unknown option nope"),
    ("nats://h:1?maxlen=5", "unknown option maxlen"),
    ("redis://h:1/0?queue=many", "whole number"),
    ("redis://h:1/0?linger=soon", "number of seconds"),
    ("redis://h:1/0?linger=5", "linger"),
    ("redis://h:1/0?queue=1", "queue_size"),
    ("redis://h:1/0?snapshot_interval=none", "needs a snapshot_interval"),
    ("redis://h:1/0?queue=2&queue=3", "given twice"),
    ("redis:///0", "redis://host:port/db"),
    ("nats://?x", "malformed options"),
    ("nats://?prefix=x", "nats://host:port"),
])
def test_bad_urls_and_options_are_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        sink_from_url(url)


@pytest.mark.parametrize("module, extra, code", [
    ("redis", "redis", "from orderbook.sinks import RedisSink; RedisSink('redis://127.0.0.1:1/0')"),
    ("redis", "redis", "from orderbook.sinks import redis_book; redis_book('redis://127.0.0.1:1/0', 'X')"),
    ("nats", "nats", "from orderbook.sinks import nats_book; nats_book('nats://127.0.0.1:1', 'X')"),
])
def test_a_missing_client_library_names_its_extra(module: str, extra: str, code: str) -> None:
    """The library hidden from the import system: the package still imports, and
    creating the sink or reader says which extra to install."""
    hide = f"import sys; sys.modules[{module!r}] = None; "
    check = (f"from orderbook.sinks import MissingExtra\ntry:\n    {code}\nexcept MissingExtra as e:\n"
             f"    print(e)\nelse:\n    print('no error')")
    done = subprocess.run([sys.executable, "-c", hide + "\n" + check], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"pip install 'orderbook[{extra}]'" in done.stdout, done.stdout


def test_the_nats_sink_needs_no_client_library() -> None:
    """The NATS publisher speaks the protocol itself: nats-py hidden, it is made."""
    code = ("import sys; sys.modules['nats'] = None\n"
            "from orderbook.sinks import sink_from_url\n"
            "print(type(sink_from_url('nats://127.0.0.1:1')).__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "NatsSink", done


def test_serve_without_the_extra_exits_2_naming_it() -> None:
    code = ("import sys; sys.modules['redis'] = None; from orderbook.cli import main; "
            "sys.exit(main(['serve', 'SOL_USDC', '--publish', 'redis://127.0.0.1:1/0']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "orderbook[redis]" in done.stderr, done
