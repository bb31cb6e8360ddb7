"""Per-stream counts, the run report, METRIC lines and progress lines."""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from collections import Counter
from dataclasses import dataclass, field

from singer_sdk import metrics

logger = logging.getLogger(__name__)

COUNT_FIELDS = (
    "received",
    "invalid",
    "unchanged",
    "sent",
    "delivered",
    "created",
    "updated",
    "duplicates",
    "group_added",
    "group_removed",
)


@dataclass
class StreamStats:
    """Counts for one stream; safe to update from delivery threads.

    ``received`` counts records read; each ends as exactly one of invalid,
    unchanged, rejected or delivered (a dry run plans instead of delivering).
    ``created``/``updated`` are what the API reported; ``duplicates`` are
    records superseded by a later one with the same key in the same batch.
    """

    stream: str
    received: int = 0
    invalid: int = 0
    unchanged: int = 0
    sent: int = 0
    delivered: int = 0
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    group_added: int = 0
    group_removed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    planned: Counter[str] = field(default_factory=Counter)
    api_calls: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to named counters in one locked step."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def reject(self, reason: str, count: int = 1) -> None:
        """Count a rejected record under its reason code."""
        with self._lock:
            self.rejected[reason] += count

    def plan(self, action: str, count: int = 1) -> None:
        """Count a dry-run action."""
        with self._lock:
            self.planned[action] += count

    def on_request(self, route: str, status: int | None) -> None:
        """CallObserver: every attempt is an API call against the quota."""
        self.add(api_calls=1)

    def on_retry(self, route: str, reason: str) -> None:
        """CallObserver: count repeats separately so they show in the report."""
        self.add(retries=1)

    @property
    def rejected_total(self) -> int:
        """All rejects, whatever their reason (invalid records included)."""
        return sum(self.rejected.values())

    @property
    def duration(self) -> float:
        """Seconds from the first record to the end of delivery."""
        return (self.finished or time.monotonic()) - self.started

    def to_dict(self) -> dict[str, t.Any]:
        """The JSON form used in the report file."""
        with self._lock:
            data: dict[str, t.Any] = {
                name: getattr(self, name) for name in COUNT_FIELDS
            }
            data["rejected"] = self.rejected_total
            data["rejected_by_reason"] = dict(sorted(self.rejected.items()))
            if self.planned:
                data["planned"] = dict(sorted(self.planned.items()))
            data["api_calls"] = self.api_calls
            data["retries"] = self.retries
            data["duration_seconds"] = round(self.duration, 3)
        return data


COLUMNS = (
    ("received", "received"),
    ("invalid", "invalid"),
    ("unchanged", "unchanged"),
    ("sent", "sent"),
    ("created", "created"),
    ("updated", "updated"),
    ("rejected", "rejected"),
    ("group_added", "grp+"),
    ("group_removed", "grp-"),
    ("api_calls", "calls"),
    ("retries", "retries"),
)


def render_table(title: str, streams: t.Sequence[StreamStats]) -> str:
    """A compact fixed-width table: one row per stream, reasons beneath."""
    rows = [s.to_dict() for s in streams]
    names = [s.stream for s in streams]
    width = max([len("stream"), *map(len, names)])
    header = (
        "stream".ljust(width)
        + "".join(f" {label:>9}" for _, label in COLUMNS)
        + f" {'duration':>9}"
    )
    lines = [title, header]
    for name, row in zip(names, rows, strict=True):
        lines.append(
            name.ljust(width)
            + "".join(f" {row[key]:>9}" for key, _ in COLUMNS)
            + f" {row['duration_seconds']:>8.1f}s"
        )
        if row["rejected_by_reason"]:
            reasons = ", ".join(
                f"{k}={v}" for k, v in row["rejected_by_reason"].items()
            )
            lines.append(f"  rejected: {reasons}")
        if "planned" in row:
            planned = ", ".join(f"{k}={v}" for k, v in row["planned"].items())
            lines.append(f"  planned: {planned}")
    return "\n".join(lines)


def emit_metrics(stats: StreamStats) -> None:
    """Singer METRIC lines, so Meltano users see the counts in their logs."""
    metrics_logger = metrics.get_metrics_logger()
    data = stats.to_dict()
    for outcome in (
        "received",
        "invalid",
        "unchanged",
        "sent",
        "delivered",
        "rejected",
    ):
        metrics.log(
            metrics_logger,
            metrics.Point(
                "counter",
                metrics.Metric.RECORD_COUNT,
                data[outcome],
                tags={"stream": stats.stream, "delivery_outcome": outcome},
            ),
        )
    metrics.log(
        metrics_logger,
        metrics.Point(
            "counter",
            metrics.Metric.HTTP_REQUEST_COUNT,
            data["api_calls"],
            tags={"stream": stats.stream, "retries": data["retries"]},
        ),
    )


class ProgressLogger:
    """Logs one line per active stream at most every ``interval`` seconds.

    A timer thread rather than a check in the record loop, so a run blocked
    in delivery (long task polls, backoff) still shows it is alive.
    """

    def __init__(
        self, streams: t.Callable[[], t.Iterable[StreamStats]], interval: float = 15.0
    ) -> None:
        self._streams = streams
        self._interval = interval
        self._stop = threading.Event()
        self._seen: dict[str, tuple[int, int, float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True, name="progress")

    def start(self) -> None:
        """Begin logging in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for stats in list(self._streams()):
                self._log(stats)

    def _log(self, stats: StreamStats) -> None:
        now = time.monotonic()
        done = stats.delivered + stats.rejected_total + stats.unchanged
        received, previous_done, since = self._seen.get(
            stats.stream, (0, 0, stats.started)
        )
        if (received, previous_done) == (stats.received, done):
            return
        self._seen[stats.stream] = (stats.received, done, now)
        rate = (done - previous_done) / max(now - since, 1e-9)
        logger.info(
            "progress %s: received %d, sent %d, delivered %d, unchanged %d, "
            "rejected %d, %.0f records/s",
            stats.stream,
            stats.received,
            stats.sent,
            stats.delivered,
            stats.unchanged,
            stats.rejected_total,
            rate,
        )
