"""The forwarding rules as pure functions: origin form, normalization, allowlist, budgets."""

from __future__ import annotations

import pytest

from orderbook.serve.forward import (
    FORWARDED_PATHS,
    ApiError,
    ForwardBudget,
    Target,
    parse_target,
    query_value,
    relayed_status,
    safe_content_type,
)


@pytest.mark.parametrize("raw", [
    "http://evil.example/api/v1/tickers",       # absolute form (curl -x)
    "http://user:pw@127.0.0.1:1/api/v1/tickers",  # userinfo
    "evil.example:443",                         # authority form
    "*",                                        # asterisk form
    "",
    "/api/v1/tickers#frag",
    "/api/v1/%zz",                              # bad escape
    "/api/v1/tick%",
    "/api/v1/%C0%AF",                           # not UTF-8
    "/api/v1/%00tickers",                       # NUL, TAB, CR encoded
    "/api/v1/tickers%09",
    "/api/v1/tickers%0d%0aX-Injected:1",
    "/api/v1/..%2f..%2fetc/passwd",             # encoded slash
    "/api/v1/..%5c..%5cetc",                    # encoded backslash
    "/api/v1/tickers?symbol=%00",
    "/api/v1/tickers?sym%20bol=x",              # key not an identifier
    "/api/v1/depth?limit=%C2%B2",               # valid UTF-8 but ... (checked by the endpoint)
])
def test_targets_that_are_refused_or_cannot_be_forwarded(raw: str) -> None:
    target = parse_target(raw)
    if isinstance(target, Target):
        # only the superscript-two limit decodes; it is not a forwardable path
        assert target.path == "/api/v1/depth" and not target.forwardable
        assert query_value(target, "limit") == "\u00b2"
    else:
        assert isinstance(target, ApiError) and target.status == 400
        assert target.body().startswith(b'{"code":"INVALID_CLIENT_REQUEST"')


@pytest.mark.parametrize(("raw", "path", "forwardable"), [
    ("/api/v1/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd", False),
    ("/api/v1/../../../../etc/passwd", "/etc/passwd", False),
    ("/api/v1/tickers/", "/api/v1/tickers", True),
    ("//api//v1//tickers", "/api/v1/tickers", True),
    ("/api/v1/./markets/../market", "/api/v1/market", True),
    ("/api/v1/%74ickers", "/api/v1/tickers", True),
    ("/api/v1/order", "/api/v1/order", False),
    ("/api/v1/capital", "/api/v1/capital", False),
    ("/wapi/v1/history/orders", "/wapi/v1/history/orders", False),
    ("/", "/", False),
])
def test_paths_are_normalized_before_the_allowlist(raw: str, path: str, forwardable: bool) -> None:
    target = parse_target(raw)
    assert isinstance(target, Target)
    assert (target.path, target.forwardable) == (path, forwardable)


def test_the_query_is_reencoded_from_its_decoded_pairs() -> None:
    target = parse_target("/api/v1/klines?symbol=SPCX.US_USDC&interval=1m&startTime=1+2&x=%41%2F&&e=")
    assert isinstance(target, Target)
    assert target.query == "symbol=SPCX.US_USDC&interval=1m&startTime=1%202&x=A%2F&e="
    assert query_value(target, "symbol") == "SPCX.US_USDC"
    assert query_value(target, "x") == "A/"
    assert query_value(target, "missing") is None
    too_many = parse_target("/api/v1/tickers?" + "&".join(f"k{i}=1" for i in range(33)))
    assert isinstance(too_many, ApiError) and too_many.status == 400


def test_the_allowlist_is_public_market_data_only() -> None:
    assert "/api/v1/depth" not in FORWARDED_PATHS  # served locally
    assert all(p.startswith("/api/v1/") for p in FORWARDED_PATHS)
    for private in ("/api/v1/order", "/api/v1/orders", "/api/v1/capital", "/api/v1/account"):
        assert private not in FORWARDED_PATHS


def test_unknown_upstream_statuses_become_502_and_content_types_are_sanitized() -> None:
    assert [relayed_status(s) for s in (200, 400, 404, 429, 503, 504)] == [200, 400, 404, 429, 503, 504]
    assert [relayed_status(s) for s in (301, 302, 418, 520, 522, 999)] == [502] * 6
    assert safe_content_type("application/json; charset=utf-8") == "application/json; charset=utf-8"
    assert safe_content_type("text/html\r\nSet-Cookie: x") == "application/json; charset=utf-8"
    assert safe_content_type(None) == "application/json; charset=utf-8"


def test_one_client_cannot_spend_the_total_budget() -> None:
    budget = ForwardBudget(total_per_minute=100, client_per_minute=10)
    now = 1000.0
    first = [budget.take("127.0.0.2", now) for _ in range(10)]
    assert first[:5] == [None] * 5  # the client's burst (half its budget)
    refused = [r for r in first if r is not None]
    assert refused and all(r.status == 429 and r.retry_after for r in refused)
    assert b"your budget" in refused[0].body()
    assert budget.take("127.0.0.3", now) is None  # another client still gets through
    # the total bounds everyone together
    spent = [budget.take(f"127.0.1.{i}", now) for i in range(200)]
    assert any(r is not None and b"the mirror's budget" in r.body() for r in spent)
    assert budget.take(None, now) is not None  # the mirror itself: total only, spent too


def test_forgotten_clients_are_bounded() -> None:
    budget = ForwardBudget(total_per_minute=10_000, client_per_minute=4, max_clients=3)
    for i in range(10):
        assert budget.take(f"10.0.0.{i}", 0.0) is None
    assert len(budget._clients) == 3  # noqa: SLF001 -- the bound itself
