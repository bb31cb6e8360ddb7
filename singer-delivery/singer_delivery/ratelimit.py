"""Request pacing, shared by every thread of a target.

APIs such as Gladly count requests per HTTP method, so each method gets its
own schedule: finds (GET) and writes (POST/PATCH) use their budgets at the
same time instead of queueing behind each other.
"""

from __future__ import annotations

import threading
import time
import typing as t


class RateLimiter:
    """Spaces requests of each HTTP method evenly at ``rate`` per second.

    Even spacing (a token bucket holding one token) keeps every one-second
    window at or under the limit, so 429s stay the exception rather than the
    pacing mechanism. ``observe`` slows a method down when the server reports
    its budget spent, e.g. because another client shares it.
    """

    remaining_header = "Ratelimit-Remaining-Second"

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}

    def acquire(self, method: str) -> None:
        """Block until ``method`` may send its next request."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot.get(method, now))
            self._next_slot[method] = slot + self.interval
        if slot > now:
            time.sleep(slot - now)

    def observe(self, method: str, headers: t.Mapping[str, str]) -> None:
        """Back off for a full window when the server says nothing is left."""
        remaining = headers.get(self.remaining_header)
        if remaining is None or not remaining.strip().isdigit():
            return
        if int(remaining) == 0:
            with self._lock:
                now = time.monotonic()
                self._next_slot[method] = max(
                    self._next_slot.get(method, now), now + self.interval
                )
