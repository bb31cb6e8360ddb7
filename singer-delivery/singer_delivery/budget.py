"""A daily call budget per destination instance, kept in the ledger.

Some APIs cap calls per day (Agillic: 5 × active recipients in production,
5,000 on staging), and every runner of the same instance spends the same
quota. The count lives in the ledger, per instance and UTC day, so runners
sharing a PostgreSQL ledger share it too. Calls are reserved in small blocks
(one ledger write per block, not per call); what a run reserved but did not
use is given back at its end.
"""

from __future__ import annotations

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
        self.used_by_run = 0

    def acquire(self) -> None:
        """Account for one call; raise ``BudgetSpent`` rather than overrun."""
        with self._lock:
            if (day := self._today()) != self._day:
                self._give_back()
                self._day = day
            if self._reserved == 0:
                cap = self.budget if self.budget is not None else 2**62
                self._reserved = self._ledger.reserve_calls(
                    self._instance, self._day, BLOCK, cap
                )
                if self._reserved == 0:
                    raise BudgetSpent(self._spent_message())
            self._reserved -= 1
            self.used_by_run += 1

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
