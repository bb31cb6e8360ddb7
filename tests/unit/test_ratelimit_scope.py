"""Rate-limit scope: one budget per HTTP method, one for all, or found out."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import requests_mock

from singer_delivery.ratelimit import RateLimiter
from target_gladly.target import TargetGladly

BASE = "http://127.0.0.1:9"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake monotonic clock; sleeping advances it instead of waiting."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(time, "sleep", sleep)
    return now


def send(limiter: RateLimiter, clock: list[float], methods: str) -> list[float]:
    """Acquire for each method in turn; the departure times from the start."""
    start = clock[0]
    departures = []
    for method in methods.split():
        limiter.acquire(method)
        departures.append(round(clock[0] - start, 3))
    return departures


def remaining(count: int, limit: int = 10) -> dict[str, str]:
    return {
        "Ratelimit-Remaining-Second": str(count),
        "Ratelimit-Limit-Second": str(limit),
    }


def test_shared_scope_spaces_all_methods_on_one_schedule(clock: list[float]) -> None:
    limiter = RateLimiter(10, scope="shared")
    assert limiter.shared
    assert send(limiter, clock, "GET POST PATCH GET") == [0.0, 0.1, 0.2, 0.3]


def test_per_method_scope_never_shares_whatever_the_server_says(
    clock: list[float],
) -> None:
    limiter = RateLimiter(10, scope="per_method")
    send(limiter, clock, "GET POST GET POST GET POST")
    for _ in range(5):
        limiter.observe("GET", remaining(4))
    assert not limiter.shared
    assert send(limiter, clock, "GET POST") == [0.1, 0.1], "side by side"


def test_a_shared_window_filled_by_all_methods_costs_no_extra_wait(
    clock: list[float],
) -> None:
    """Ten requests of two methods explain a spent shared budget."""
    limiter = RateLimiter(10, scope="shared")
    start = clock[0]
    send(limiter, clock, "GET POST " * 5)
    clock[0] += 0.05
    limiter.observe("POST", remaining(0))
    limiter.acquire("GET")
    assert clock[0] - start == pytest.approx(1.03)


def test_auto_shares_after_three_answers_that_count_every_method(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(10, scope="auto")
    # per method: GET and POST each on their own 0.1 s schedule
    assert send(limiter, clock, "GET POST GET POST GET POST") == [
        0.0,
        0.0,
        0.1,
        0.1,
        0.2,
        0.2,
    ]
    # 3 GETs of our own would leave 7; 6 requests in all leave 4
    with caplog.at_level(logging.INFO, logger="singer_delivery.ratelimit"):
        for _ in range(2):
            limiter.observe("GET", remaining(4))
        assert not limiter.shared
        limiter.observe("POST", remaining(3))
        assert limiter.shared
        limiter.observe("GET", remaining(2))
    [line] = caplog.messages
    assert "one rate budget for all methods" in line
    assert "Ratelimit-Remaining-Second" in line
    # one schedule now, picking up after the latest slot either method had
    assert send(limiter, clock, "GET POST GET") == [0.1, 0.2, 0.3]


def test_auto_is_not_swayed_by_one_noisy_answer(clock: list[float]) -> None:
    limiter = RateLimiter(10, scope="auto")
    send(limiter, clock, "GET POST GET POST GET POST")
    limiter.observe("GET", remaining(4))  # looks shared
    limiter.observe("GET", remaining(4))
    limiter.observe("GET", remaining(7))  # exactly our own GETs: separate budgets
    limiter.observe("GET", remaining(4))
    limiter.observe("POST", remaining(3))
    assert not limiter.shared, "the per-method answer started the count again"
    limiter.observe("POST", remaining(3))
    assert limiter.shared


def test_answers_that_cannot_tell_the_scopes_apart_are_no_evidence(
    clock: list[float],
) -> None:
    limiter = RateLimiter(10, scope="auto")
    send(limiter, clock, "GET " * 10)
    for _ in range(10):  # only one method in use: both predictions agree
        limiter.observe("GET", remaining(0))
    send(limiter, clock, "POST")
    for _ in range(10):  # no limit known or reported
        limiter.observe("POST", {"Ratelimit-Remaining-Second": "0"})
    assert not limiter.shared


def test_a_429_while_our_own_requests_were_clearly_under_the_limit(
    clock: list[float],
) -> None:
    """Two GETs of our own, ten requests in all: a shared budget was spent."""
    limiter = RateLimiter(20, scope="auto")
    send(limiter, clock, "POST " * 8 + "GET GET")
    for _ in range(3):
        limiter.observe("GET", remaining(0))
    assert limiter.shared


def test_auto_keeps_the_learned_limit_when_it_shares(clock: list[float]) -> None:
    """The mirrored window carries over: ten departures in the last second."""
    limiter = RateLimiter(100, scope="auto")
    send(limiter, clock, "POST " * 8 + "GET GET")
    for _ in range(3):
        limiter.observe("GET", remaining(0))
    assert limiter.shared
    # sent from 0.08 on: the window holds ten since the first POST at 0.0
    assert send(limiter, clock, "PATCH") == [pytest.approx(1.03 - 0.08)]


def test_an_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="per_method, shared, auto"):
        RateLimiter(10, scope="global")


def test_target_gladly_passes_rate_limit_scope_to_its_limiter(
    tmp_path: Path,
) -> None:
    schema = TargetGladly.config_jsonschema["properties"]["rate_limit_scope"]
    assert schema["default"] == "auto"
    assert schema["enum"] == ["per_method", "shared", "auto"]
    config = {
        "domain": "example",
        "base_url": BASE,
        "username": "api@example.com",
        "api_token": "token",
        "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    }
    for chosen, expected in ((None, "auto"), ("shared", "shared")):
        with requests_mock.Mocker() as m:
            m.get(f"{BASE}/api/v1/organization", json={"id": "org"})
            target = TargetGladly(
                config={**config, "rate_limit_scope": chosen} if chosen else config
            )
            run = target.start()
        target.finish(error=None, interrupted=False)
        limiter = run.transport.rate_limiter
        assert limiter is not None
        assert limiter.scope == expected
