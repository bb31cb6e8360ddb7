"""A daily call budget per destination instance, kept in the ledger.

Some APIs cap calls per day (Agillic: 5 times the active recipients in production,
5,000 on staging), and every runner of the same instance spends the same
quota. The count lives in the ledger, per instance and UTC day, so runners
sharing a PostgreSQL ledger share it too. Calls are reserved in small blocks
(one ledger write per block, not per call); what a run reserved but did not
use is given back at its end.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import typing as t

from singer_delivery.errors import OperationalError

if t.TYPE_CHECKING:
    from singer_delivery.ledger import Ledger

#: Calls reserved per ledger write.
BLOCK = 25


class BudgetSpent(OperationalError):
    """The next call would pass ``daily_call_budget``."""


def utc_day(now: datetime.datetime | None = None) -> str:
    """The UTC day a call counts against, ``YYYY-MM-DD``."""
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d")


class CallBudget:
    """Counts calls against the day's budget (None: count without a cap)."""

    def __init__(
        self,
        ledger: Ledger,
        instance: str,
        budget: int | None,
        *,
        today: t.Callable[[], str] = utc_day,
    ) -> None:
        self._ledger = ledger
        self._instance = instance
        self.budget = budget
        self._today = today
        self._lock = threading.Lock()
        self._day = today()
        self._reserved = 0
        self._local = threading.local()
        self.used_by_run = 0

    def acquire(self) -> None:
        """Account for one call; raise ``BudgetSpent`` rather than overrun.

        A call made inside ``set_aside`` uses what was set aside for it first.
        """
        allowance = getattr(self._local, "allowance", 0)
        with self._lock:
            if allowance > 0:
                self._local.allowance = allowance - 1
            else:
                self._take(1)
            self.used_by_run += 1

    @contextlib.contextmanager
    def set_aside(self, calls: int) -> t.Iterator[None]:
        """Keep ``calls`` for work that must not stop half way (a batch task
        that must be polled to its end), or refuse to start it.

        Raises ``BudgetSpent`` up front when fewer calls are left; what the
        work did not use returns to the budget.
        """
        with self._lock:
            self._take(calls)
        self._local.allowance = getattr(self._local, "allowance", 0) + calls
        try:
            yield
        finally:
            unused, self._local.allowance = self._local.allowance, 0
            with self._lock:
                self._reserved += unused

    def _take(self, calls: int) -> None:
        """Move ``calls`` from the ledger's count of the day into this run."""
        if (day := self._today()) != self._day:
            self._give_back()
            self._day = day
        if self._reserved < calls:
            cap = self.budget if self.budget is not None else 2**62
            self._reserved += self._ledger.reserve_calls(
                self._instance, self._day, max(BLOCK, calls - self._reserved), cap
            )
        if self._reserved < calls:
            raise BudgetSpent(self._spent_message())
        self._reserved -= calls

    def _spent_message(self) -> str:
        return (
            f"daily_call_budget={self.budget} is spent for {self._instance} today "
            f"({self._day}, UTC; counted across every run sharing this ledger). "
            "The run stopped cleanly: what was delivered is committed and its "
            "STATE written. Run again after midnight UTC or raise daily_call_budget."
        )

    def used_today(self) -> int:
        """Calls counted today for the instance, by every runner."""
        with self._lock:
            return self._ledger.calls_today(self._instance, self._day) - self._reserved

    def close(self) -> None:
        """Give back what was reserved and not used."""
        with self._lock:
            self._give_back()

    def _give_back(self) -> None:
        self._ledger.return_calls(self._instance, self._day, self._reserved)
        self._reserved = 0
