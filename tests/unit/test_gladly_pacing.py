"""Per-method pacing as Gladly uses it, and the per-profile write locks."""

from __future__ import annotations

import threading
import time

import pytest

from singer_delivery.ratelimit import RateLimiter
from target_gladly.sinks import ProfileLocks


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake monotonic clock; sleeping advances it instead of waiting."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(time, "sleep", sleep)
    return now


def test_each_method_is_spaced_on_its_own_schedule(clock: list[float]) -> None:
    limiter = RateLimiter(10)
    start = clock[0]
    sent = []
    for method in ["GET", "POST", "GET", "POST", "GET"]:
        limiter.acquire(method)
        sent.append((method, round(clock[0] - start, 3)))
    assert sent == [
        ("GET", 0.0),
        ("POST", 0.0),
        ("GET", 0.1),
        ("POST", 0.1),
        ("GET", 0.2),
    ]


def spent(limit: str = "10") -> dict[str, str]:
    return {"Ratelimit-Remaining-Second": "0", "Ratelimit-Limit-Second": limit}


def test_a_budget_spent_by_another_client_slows_the_method_down(
    clock: list[float],
) -> None:
    limiter = RateLimiter(10)
    limiter.acquire("GET")
    clock[0] += 0.5  # our schedule would allow the next GET now
    limiter.observe("GET", spent())
    before = clock[0]
    limiter.acquire("GET")
    assert clock[0] - before == pytest.approx(0.1)
    limiter.acquire("POST")
    assert clock[0] - before == pytest.approx(0.1), "other methods are not held up"


@pytest.mark.parametrize(
    ("headers", "next_send"),
    [
        # our own ten requests explain the spent budget: only the mirrored
        # window (a second plus its margin after the first) holds the next
        (spent(), 1.03),
        ({"Ratelimit-Remaining-Second": "3", "Ratelimit-Limit-Second": "10"}, 1.03),
        # an unknown limit, or one our ten cannot fill: someone else spends it
        ({"Ratelimit-Remaining-Second": "0"}, 1.05),
        (spent("20"), 1.05),
    ],
)
def test_a_window_our_own_pacing_filled_costs_no_extra_wait(
    clock: list[float], headers: dict[str, str], next_send: float
) -> None:
    limiter = RateLimiter(10)
    start = clock[0]
    for _ in range(10):
        limiter.acquire("GET")
    clock[0] += 0.05  # the last answer arrives
    limiter.observe("GET", headers)
    limiter.acquire("GET")
    assert clock[0] - start == pytest.approx(next_send)


@pytest.mark.parametrize(
    ("limit", "margins"),
    [
        # our own full window was refused: requests arrive late, so the
        # margin doubles with each such 429, up to its ceiling
        ("10", [0.06, 0.12, 0.24, 0.24]),
        # a window our ten requests cannot fill was refused: someone else
        # spends the budget, which is no reason to widen the margin
        ("20", [0.03, 0.03, 0.03, 0.03]),
    ],
)
def test_a_429_at_the_edge_of_a_full_window_widens_the_margin(
    clock: list[float], limit: str, margins: list[float]
) -> None:
    limiter = RateLimiter(10)
    seen = []
    for _ in margins:
        for _ in range(10):
            limiter.acquire("GET")
        limiter.observe("GET", spent(limit), 429)
        seen.append(limiter.window_margin)
    assert seen == pytest.approx(margins)
    start = clock[0]
    limiter.acquire("GET")
    limiter.observe("GET", spent(limit), 200)
    assert limiter.window_margin == pytest.approx(margins[-1]), "only 429s teach"
    assert clock[0] >= start


def learn_limit(limiter: RateLimiter, method: str, limit: int) -> None:
    limiter.observe(
        method,
        {"Ratelimit-Limit-Second": str(limit), "Ratelimit-Remaining-Second": "1"},
    )


def test_a_rate_above_the_servers_limit_is_held_to_the_limit(
    clock: list[float],
) -> None:
    limiter = RateLimiter(100)
    learn_limit(limiter, "GET", 3)
    start = clock[0]
    departures = []
    for _ in range(5):
        limiter.acquire("GET")
        departures.append(round(clock[0] - start, 3))
    assert departures == [0.0, 0.01, 0.02, 1.03, 1.04]


def test_a_request_that_left_late_pushes_back_the_one_a_limit_later(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy CPU woke the second request 0.2 s late; the server saw it then."""
    limiter = RateLimiter(10)
    learn_limit(limiter, "GET", 3)
    oversleep = [0.2]

    def late_sleep(seconds: float) -> None:
        clock[0] += (seconds + oversleep.pop()) if oversleep else seconds

    monkeypatch.setattr(time, "sleep", late_sleep)
    start = clock[0]
    departures = []
    for _ in range(5):
        limiter.acquire("GET")
        departures.append(round(clock[0] - start, 3))
    # without the mirror the fifth would leave at 1.03, within a second of
    # the two that left together at 0.3, and be refused
    assert departures == [0.0, 0.3, 0.3, 1.03, 1.33]


def test_profile_locks_report_writes_made_after_a_read_began() -> None:
    locks = ProfileLocks()
    mark = locks.mark()
    with locks.hold("p1") as stripe:
        assert not locks.stale_since(stripe, mark)
        locks.wrote(stripe)
    with locks.hold("p1") as stripe:
        assert locks.stale_since(stripe, mark)
        assert not locks.stale_since(stripe, locks.mark())


def test_profile_locks_make_writers_of_one_profile_take_turns() -> None:
    locks = ProfileLocks()
    inside, overlaps = [0], [0]
    guard = threading.Lock()

    def write() -> None:
        with locks.hold("same"):
            with guard:
                inside[0] += 1
                overlaps[0] = max(overlaps[0], inside[0])
            time.sleep(0.01)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=write) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps[0] == 1
