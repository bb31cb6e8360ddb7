"""Request pacing, shared by every thread of a target.

APIs such as Gladly count requests per HTTP method, so each method can get
its own schedule: finds (GET) and writes (POST/PATCH) use their budgets at
the same time instead of queueing behind each other. Whether the budgets
really are separate is not always documented (Gladly's is not), so the
limiter can also pace every method on one budget, or tell from the server's
answers which of the two it faces.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from collections import deque

logger = logging.getLogger(__name__)

WINDOW = 1.0
#: Extra time a mirrored window waits: a request can take this much longer
#: to reach the server than the one a second after it without a 429.
WINDOW_MARGIN = 0.03
#: The widest margin that 429s at the edge of the window can teach it: each
#: doubles it, because the requests reach the server later than it assumed.
MAX_WINDOW_MARGIN = 0.24
TOO_MANY_REQUESTS = 429

PER_METHOD = "per_method"
SHARED = "shared"
AUTO = "auto"
#: Whose requests one budget counts (see ``RateLimiter``).
SCOPES = (PER_METHOD, SHARED, AUTO)

#: The schedule every method uses once the budget is shared.
ALL_METHODS = "*"
#: Answers pointing to one shared budget that ``auto`` needs before it shares.
SHARED_EVIDENCE_NEEDED = 3
#: How far a reported remaining budget may be from a prediction and still
#: match it: requests in flight and the edges of the server's window blur
#: the count by about one.
COUNT_TOLERANCE = 1
#: How far apart the two predictions must be for an answer to tell them apart.
DISTINCT_COUNTS = 3


class RateLimiter:
    """Spaces requests evenly at ``rate`` per second, per method or shared.

    Even spacing (a token bucket holding one token) keeps every one-second
    window at or under the limit, so 429s stay the exception rather than the
    pacing mechanism. ``observe`` slows a schedule down when the server
    reports its budget spent, e.g. because another client shares it.

    Once the server has reported its limit (``Ratelimit-Limit-Second``), the
    limiter also mirrors the server's rolling one-second window, on the times
    requests really left plus ``window_margin``: a request that left late (a
    busy CPU woke its thread late) pushes back the one a limit's worth after
    it, instead of both landing in the same server window. This also keeps a
    ``rate`` set above the server's limit from causing 429s. A 429 that this
    limiter's own full window explains means requests take longer than the
    margin to arrive (a busy host, a jittery network): the margin doubles,
    up to ``MAX_WINDOW_MARGIN``, so the next window is not refused too.

    ``scope`` says whose requests one budget counts. ``"per_method"``: each
    HTTP method has its own schedule and window. ``"shared"``: all methods
    together have one, so ``rate`` is for all of them. ``"auto"``: per method
    until the server's answers show one budget, then shared for the rest of
    the run (logged once at INFO).

    The rule ``auto`` follows: an answer with ``Ratelimit-Remaining-Second``
    (and a known limit) is set against two predictions, never below zero:
    the limit minus the method's own requests of the last second (separate
    budgets), and the limit minus all methods' requests of the last second
    (one budget). Only an answer whose predictions are at least
    ``DISTINCT_COUNTS`` apart counts. It points to one budget when its value
    is within ``COUNT_TOLERANCE`` of the shared prediction, and to separate
    budgets when within it of the per-method one. A 429 (remaining 0) for a
    method whose own requests were clearly under the limit while all methods'
    together were at it is such an answer. ``SHARED_EVIDENCE_NEEDED``
    answers pointing to one budget, with none pointing to separate budgets
    in between, make the switch, so one noisy answer never does. Another
    client spending a budget only lowers what remains: at worst the limiter
    shares too early, which is slower but never causes 429s.
    """

    remaining_header = "Ratelimit-Remaining-Second"
    limit_header = "Ratelimit-Limit-Second"

    def __init__(
        self,
        rate: float,
        window_margin: float = WINDOW_MARGIN,
        scope: str = PER_METHOD,
    ) -> None:
        if scope not in SCOPES:
            msg = f"scope must be one of {', '.join(SCOPES)} (got {scope!r})"
            raise ValueError(msg)
        self.interval = 1.0 / rate
        self.window_margin = window_margin
        self.scope = scope
        self._shared = scope == SHARED
        self._evidence = 0
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}
        self._departed: dict[str, deque[float]] = {}
        self._limit: dict[str, int] = {}

    @property
    def shared(self) -> bool:
        """Whether all methods are paced on one budget now."""
        return self._shared

    def acquire(self, method: str) -> None:
        """Block until ``method`` may send its next request."""
        with self._lock:
            key = self._key(method)
            now = time.monotonic()
            slot = max(now, self._next_slot.get(key, now))
            self._next_slot[key] = slot + self.interval
        if slot > now:
            time.sleep(slot - now)
        while (wait := self._depart(method)) > 0:
            time.sleep(wait)

    def _key(self, method: str) -> str:
        """The schedule that counts ``method``'s requests (call under the lock)."""
        return ALL_METHODS if self._shared else method

    def _depart(self, method: str) -> float:
        """Record a departure now, or return how long the window needs first."""
        with self._lock:
            key = self._key(method)
            now = time.monotonic()
            departed = self._departed.setdefault(key, deque())
            _forget_before(departed, now - WINDOW - self.window_margin)
            limit = self._limit.get(key)
            if limit and len(departed) >= limit:
                wait = departed[-limit] + WINDOW + self.window_margin - now
                if wait > 0:
                    return wait
            departed.append(now)
            return 0.0

    def observe(
        self, method: str, headers: t.Mapping[str, str], status: int | None = None
    ) -> None:
        """Learn the limit, weigh the scope, and back off when nothing is left."""
        limit = _count(headers.get(self.limit_header))
        remaining = _count(headers.get(self.remaining_header))
        with self._lock:
            now = time.monotonic()
            switched = self._weigh_scope(method, limit, remaining, now)
            key = self._key(method)
            widened = status == TOO_MANY_REQUESTS and self._widen_margin(
                key, limit, now
            )
            self._back_off(key, limit, remaining, now)
        if widened:
            logger.info(
                "%s answered 429 with this run's own requests at the limit: "
                "requests arrive later than they leave, so the pacing keeps "
                "%.0f ms more between windows now",
                method,
                self.window_margin * 1000,
            )
        if switched:
            logger.info(
                "Ratelimit-Remaining-Second followed the requests of all HTTP "
                "methods together, not each method's own (%s answers): the "
                "server has one rate budget for all methods, so they now share "
                "one schedule of %g requests per second",
                SHARED_EVIDENCE_NEEDED,
                1.0 / self.interval,
            )

    def _widen_margin(self, key: str, limit: int | None, now: float) -> bool:
        """Double the margin after a 429 at the window's edge; True if it grew."""
        limit = limit or self._limit.get(key)
        if not limit or self._requests(key, now) < limit - 1:
            return False  # someone else spent the budget: ``_back_off`` slows down
        if self.window_margin >= MAX_WINDOW_MARGIN:
            return False
        self.window_margin = min(MAX_WINDOW_MARGIN, self.window_margin * 2)
        return True

    def _back_off(
        self, key: str, limit: int | None, remaining: int | None, now: float
    ) -> None:
        """Wait a full interval when the server says nothing is left.

        Pacing at the server's limit leaves its window full after every
        request, so when the server also reports the limit, a spent budget
        that this limiter's own requests explain needs no extra wait (the
        schedule already waits for the window to move on): only a budget
        spent by someone else sharing it slows the schedule down.
        """
        if limit:
            self._limit[key] = limit
        if remaining != 0:
            return
        if limit and self._requests(key, now) >= limit - 1:
            return
        self._next_slot[key] = max(self._next_slot.get(key, now), now + self.interval)

    def _weigh_scope(
        self, method: str, limit: int | None, remaining: int | None, now: float
    ) -> bool:
        """Count one answer as evidence (class docstring); True when it shares."""
        if self.scope != AUTO or self._shared:
            return False
        limit = limit or self._limit.get(method)
        if not limit or remaining is None:
            return False
        separate = max(0, limit - self._requests(method, now))
        shared = max(0, limit - sum(self._requests(m, now) for m in self._departed))
        if separate - shared < DISTINCT_COUNTS:
            return False
        if abs(remaining - shared) <= COUNT_TOLERANCE:
            self._evidence += 1
        elif abs(remaining - separate) <= COUNT_TOLERANCE:
            self._evidence = 0
        if self._evidence < SHARED_EVIDENCE_NEEDED:
            return False
        self._share_budget()
        return True

    def _share_budget(self) -> None:
        """Put every method on one schedule that keeps what each has seen."""
        self._shared = True
        departed = sorted(moment for d in self._departed.values() for moment in d)
        self._departed = {ALL_METHODS: deque(departed)}
        if self._next_slot:
            self._next_slot = {ALL_METHODS: max(self._next_slot.values())}
        if self._limit:
            self._limit = {ALL_METHODS: min(self._limit.values())}

    def _requests(self, key: str, now: float) -> int:
        """Requests this limiter let out on ``key``'s schedule in the last second."""
        departed = self._departed.get(key, deque())
        return sum(1 for moment in departed if moment > now - WINDOW)


def _count(value: str | None) -> int | None:
    """A non-negative integer header, or None when absent or garbled."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _forget_before(moments: deque[float], horizon: float) -> None:
    while moments and moments[0] <= horizon:
        moments.popleft()
