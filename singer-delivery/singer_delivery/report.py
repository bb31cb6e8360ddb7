"""Per-stream counts, the run report table, METRIC lines and progress lines."""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from collections import Counter

from singer_sdk import metrics

logger = logging.getLogger(__name__)

#: Every count of a stream, in report order. Each record read ends as
#: exactly one of invalid, unchanged, quarantined, rejected or delivered
#: (a dry run plans instead of delivering); ``duplicates`` were superseded
#: by a later record with the same key in the same batch. ``unchanged_at_source``
#: counts the unchanged records found so by their source fingerprint, without
#: being validated or mapped.
COUNT_FIELDS = (
    "received",
    "invalid",
    "unchanged",
    "unchanged_at_source",
    "quarantined",
    "sent",
    "delivered",
    "created",
    "updated",
    "unverified",
    "duplicates",
    "group_added",
    "group_removed",
    "deleted",
    "fired",
)

#: The report table's columns: (count, header).
COLUMNS = (
    ("received", "received"),
    ("invalid", "invalid"),
    ("unchanged", "unchanged"),
    ("sent", "sent"),
    ("created", "created"),
    ("updated", "updated"),
    ("rejected", "rejected"),
    ("quarantined", "quarant."),
    ("group_added", "grp+"),
    ("group_removed", "grp-"),
    ("deleted", "deleted"),
    ("fired", "fired"),
    ("api_calls", "calls"),
    ("retries", "retries"),
)


class StreamStats:
    """Counts for one stream, updated a batch at a time under one lock.

    Only ``received`` changes per record, on the reading thread alone, so
    it needs no lock.
    """

    def __init__(self, stream: str, clock: t.Callable[[], float] = time.monotonic):
        self.stream = stream
        self.received = 0
        self._counts: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._quarantined: Counter[str] = Counter()
        self._planned: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._clock = clock
        self.started = clock()
        self.finished: float | None = None

    def add(self, **counts: int) -> None:
        """Add to named counts in one locked step."""
        with self._lock:
            self._counts.update(counts)

    def reject(self, reason: str, count: int = 1) -> None:
        """Count rejected records under their reason."""
        with self._lock:
            self._rejected[reason] += count

    def quarantine(self, reasons: t.Iterable[str]) -> None:
        """Count records not sent because the same payload was refused before."""
        with self._lock:
            for reason in reasons:
                self._counts["quarantined"] += 1
                self._quarantined[reason] += 1

    def plan(self, action: str, count: int = 1) -> None:
        """Count a dry-run action."""
        with self._lock:
            self._planned[action] += count

    def on_request(self, route: str, status: int | None) -> None:
        """Every attempt is an API call against the quota."""
        self.add(api_calls=1)

    def on_retry(self, route: str, reason: str) -> None:
        """Repeats are counted apart, so they show in the report."""
        self.add(retries=1)

    def __getitem__(self, name: str) -> int:
        if name == "received":
            return self.received
        if name == "rejected":
            return self.rejected_total
        with self._lock:
            return self._counts[name]

    @property
    def rejected_total(self) -> int:
        """All rejects, whatever their reason (invalid records included)."""
        with self._lock:
            return sum(self._rejected.values())

    @property
    def failed_total(self) -> int:
        """Records that did not reach the destination: rejected or quarantined."""
        return self.rejected_total + self["quarantined"]

    @property
    def settled(self) -> int:
        """Records with a final outcome so far."""
        with self._lock:
            counts = self._counts
            done = counts["delivered"] + counts["unchanged"] + counts["quarantined"]
            return done + sum(self._rejected.values())

    @property
    def duration(self) -> float:
        """Seconds from the first record to the end of delivery."""
        return (self.finished or self._clock()) - self.started

    def to_dict(self) -> dict[str, t.Any]:
        """The JSON form used in the report file and the ledger's runs table."""
        with self._lock:
            data: dict[str, t.Any] = {name: self._counts[name] for name in COUNT_FIELDS}
            data["received"] = self.received
            data["rejected"] = sum(self._rejected.values())
            data["rejected_by_reason"] = dict(sorted(self._rejected.items()))
            if self._quarantined:
                data["quarantined_by_reason"] = dict(sorted(self._quarantined.items()))
            if self._planned:
                data["planned"] = dict(sorted(self._planned.items()))
            data["api_calls"] = self._counts["api_calls"]
            data["retries"] = self._counts["retries"]
            data["duration_seconds"] = round(self.duration, 3)
        return data

    def outcome_counts(self) -> dict[str, int]:
        """Non-zero counts by outcome name, for the ledger's runs table."""
        data = self.to_dict()
        counts = {name: data[name] for name in (*COUNT_FIELDS, "rejected")}
        counts |= {f"rejected:{k}": v for k, v in data["rejected_by_reason"].items()}
        counts |= {f"planned:{k}": v for k, v in data.get("planned", {}).items()}
        counts["api_calls"] = data["api_calls"]
        counts["retries"] = data["retries"]
        return {name: count for name, count in counts.items() if count}


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
        for label, key in (
            ("rejected", "rejected_by_reason"),
            ("quarantined", "quarantined_by_reason"),
            ("planned", "planned"),
        ):
            if row.get(key):
                detail = ", ".join(f"{k}={v}" for k, v in row[key].items())
                lines.append(f"  {label}: {detail}")
    return "\n".join(lines)


def summary_line(stats: StreamStats) -> str:
    """One line naming every non-zero count, e.g. for Meltano's own log view."""
    data = stats.to_dict()
    parts = [f"{name}={data[name]}" for name in COUNT_FIELDS if data[name]]
    if data["rejected"]:
        reasons = ",".join(f"{k}:{v}" for k, v in data["rejected_by_reason"].items())
        parts.append(f"rejected={data['rejected']} ({reasons})")
    parts.append(f"api_calls={data['api_calls']}")
    return f"stream {stats.stream}: " + " ".join(parts)


def emit_metrics(stats: StreamStats) -> None:
    """Singer METRIC lines, one per outcome, the outcome in the metric's tags."""
    metrics_logger = metrics.get_metrics_logger()
    data = stats.to_dict()
    for outcome in ("received", "unchanged", "quarantined", "delivered", "rejected"):
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
        done = stats.settled
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
            stats["sent"],
            stats["delivered"],
            stats["unchanged"],
            stats.rejected_total,
            rate,
        )
