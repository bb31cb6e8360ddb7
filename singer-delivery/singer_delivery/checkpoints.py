"""When a STATE message may go out: after every record before it settled.

Each record read gets a sequence number. Records are unsettled while they
wait in a sink's batch, are being delivered, or are deferred; every such
group holds a *claim* on the lowest sequence number among its records. A
STATE that arrived after record ``n`` may be written once no claim is at or
below ``n``: everything before it was delivered or rejected. Checking this
costs nothing per record, needs no drain of every sink, and lets a STATE go
out the moment the batch holding it back is acknowledged.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
import typing as t

#: Called with the STATE value to write; ``flush`` runs first, so the ledger
#: holds every commit the STATE relies on (and it raises when the run may no
#: longer write, e.g. after losing its ledger lock).
Writer = t.Callable[[dict[str, t.Any]], None]


class Checkpoints:
    """Pending STATE messages and the claims that hold them back. Thread-safe."""

    def __init__(
        self,
        write: Writer,
        flush: t.Callable[[], None],
        min_interval: float = 10.0,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._flush = flush
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.RLock()
        self._claims: dict[int, int] = {}
        self._tokens = itertools.count()
        self._states: collections.deque[tuple[int, dict[str, t.Any]]] = (
            collections.deque()
        )
        self._ready: dict[str, t.Any] | None = None
        self._last_written: dict[str, t.Any] | None = None
        self._last_write_at = -math.inf
        self.records_read = 0

    def next_seq(self) -> int:
        """Number the next record read (called on the reading thread only)."""
        seq = self.records_read
        self.records_read += 1
        return seq

    def claim(self, seq: int) -> int:
        """Hold back every STATE that follows record ``seq``; returns a token."""
        token = next(self._tokens)
        with self._lock:
            self._claims[token] = seq
        return token

    def release(self, token: int) -> None:
        """The records behind ``token`` settled; maybe write a STATE."""
        with self._lock:
            self._claims.pop(token, None)
        self.write_ready()

    def state_arrived(self, state: dict[str, t.Any]) -> None:
        """A STATE from the tap: it covers every record read so far."""
        with self._lock:
            self._states.append((self.records_read, state))
        self.write_ready()

    def write_ready(self, *, force: bool = False) -> None:
        """Write the newest STATE whose records all settled.

        At most one every ``min_interval`` seconds (each write flushes the
        ledger), except the first and a forced one at the end of the run. A
        STATE equal to the last one written is not repeated.
        """
        with self._lock:
            lowest = min(self._claims.values(), default=math.inf)
            while self._states and self._states[0][0] <= lowest:
                self._ready = self._states.popleft()[1]
            due = self._clock() - self._last_write_at >= self._min_interval
            if self._ready is None or not (force or due):
                return
            state, self._ready = self._ready, None
            if state == self._last_written:
                return
            self._flush()
            self._write(state)
            self._last_written = state
            self._last_write_at = self._clock()

    @property
    def unsettled(self) -> bool:
        """Whether any record read is still waiting to settle."""
        with self._lock:
            return bool(self._claims)
