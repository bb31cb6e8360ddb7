"""Request pacing, shared by every thread of a target.

APIs such as Gladly count requests per HTTP method, so each method gets its
own schedule: finds (GET) and writes (POST/PATCH) use their budgets at the
same time instead of queueing behind each other.
"""

from __future__ import annotations

import threading
import time
import typing as t
from collections import deque

WINDOW = 1.0
#: Extra time a mirrored window waits: a request can take this much longer
#: to reach the server than the one a second after it without a 429.
WINDOW_MARGIN = 0.03


class RateLimiter:
    """Spaces requests of each HTTP method evenly at ``rate`` per second.

    Even spacing (a token bucket holding one token) keeps every one-second
    window at or under the limit, so 429s stay the exception rather than the
    pacing mechanism. ``observe`` slows a method down when the server reports
    its budget spent, e.g. because another client shares it.

    Once the server has reported its limit (``Ratelimit-Limit-Second``), the
    limiter also mirrors the server's rolling one-second window, on the times
    requests really left plus ``window_margin``: a request that left late (a
    busy CPU woke its thread late) pushes back the one a limit's worth after
    it, instead of both landing in the same server window. This also keeps a
    ``rate`` set above the server's limit from causing 429s.
    """

    remaining_header = "Ratelimit-Remaining-Second"
    limit_header = "Ratelimit-Limit-Second"

    def __init__(self, rate: float, window_margin: float = WINDOW_MARGIN) -> None:
        self.interval = 1.0 / rate
        self.window_margin = window_margin
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}
        self._departed: dict[str, deque[float]] = {}
        self._limit: dict[str, int] = {}

    def acquire(self, method: str) -> None:
        """Block until ``method`` may send its next request."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot.get(method, now))
            self._next_slot[method] = slot + self.interval
        if slot > now:
            time.sleep(slot - now)
        while (wait := self._depart(method)) > 0:
            time.sleep(wait)

    def _depart(self, method: str) -> float:
        """Record a departure now, or return how long the window needs first."""
        with self._lock:
            now = time.monotonic()
            departed = self._departed.setdefault(method, deque())
            _forget_before(departed, now - WINDOW - self.window_margin)
            limit = self._limit.get(method)
            if limit and len(departed) >= limit:
                wait = departed[-limit] + WINDOW + self.window_margin - now
                if wait > 0:
                    return wait
            departed.append(now)
            return 0.0

    def observe(
        self, method: str, headers: t.Mapping[str, str], status: int | None = None
    ) -> None:
        """Back off for a full interval when the server says nothing is left.

        Pacing at the server's limit leaves its window full after every
        request, so when the server also reports the limit, a spent budget
        that this limiter's own requests explain needs no extra wait (the
        schedule already waits for the window to move on): only a budget
        spent by someone else sharing it slows this method down.
        """
        limit = _count(headers.get(self.limit_header))
        remaining = _count(headers.get(self.remaining_header))
        with self._lock:
            if limit:
                self._limit[method] = limit
            if remaining != 0:
                return
            now = time.monotonic()
            if limit and self._own_requests(method, now) >= limit - 1:
                return
            self._next_slot[method] = max(
                self._next_slot.get(method, now), now + self.interval
            )

    def _own_requests(self, method: str, now: float) -> int:
        """Requests of ``method`` this limiter let out in the last second."""
        departed = self._departed.get(method, deque())
        return sum(1 for moment in departed if moment > now - WINDOW)


def _count(value: str | None) -> int | None:
    """A non-negative integer header, or None when absent or garbled."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _forget_before(moments: deque[float], horizon: float) -> None:
    while moments and moments[0] <= horizon:
        moments.popleft()
