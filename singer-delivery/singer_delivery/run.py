"""One run of a target: what its sinks share, and how it ends.

A :class:`DeliveryRun` is made once per run (by ``DeliveryTarget.start``)
and handed to every sink: the ledger, the recorder, the checkpoints, the
transport, the delivery threads, the destination's own resources (discovery
results...) and the counts. Sinks take what they need from it and never
reach back into the target.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import sys
import threading
import typing as t
from concurrent.futures import Future
from pathlib import Path

from singer_delivery import settings as settings_module
from singer_delivery.errors import OperationalError
from singer_delivery.ledger import Ledger, RunRow, Scope
from singer_delivery.outputs import PlanFile, RejectsFile, write_json
from singer_delivery.report import StreamStats, emit_metrics, render_table, summary_line
from singer_delivery.snapshot import Snapshot

if t.TYPE_CHECKING:
    from singer_delivery.budget import CallBudget
    from singer_delivery.checkpoints import Checkpoints
    from singer_delivery.http import Transport
    from singer_delivery.recorder import Recorder
    from singer_delivery.sink import DeliverySink
    from singer_delivery.workers import WorkerPool

logger = logging.getLogger(__name__)

R = t.TypeVar("R")
#: The pseudo-stream that counts input lines that were not Singer messages.
INPUT_STREAM = "(input)"


class RunFailed(OperationalError):
    """The run delivered what it could but must exit non-zero."""


@dataclasses.dataclass
class Outputs:
    """Where a run's files go."""

    rejects: RejectsFile
    plan: PlanFile | None
    report_path: Path | None


class DeliveryRun(t.Generic[R]):
    """Everything the sinks of one run share (thread-safe where it must be)."""

    def __init__(
        self,
        *,
        target_name: str,
        instance: str,
        run_id: str,
        config: t.Mapping[str, t.Any],
        report_settings: t.Mapping[str, t.Any],
        ledger: Ledger,
        recorder: Recorder,
        outputs: Outputs,
        checkpoints: Checkpoints,
        transport: Transport,
        budget: CallBudget | None,
        resources: R,
        batch_pool: WorkerPool,
        request_pool: WorkerPool,
        batch_slots: int,
        waiting: t.Callable[[], t.ContextManager[None]],
    ) -> None:
        self.target_name = target_name
        self.instance = instance
        self.run_id = run_id
        self.config = config
        self.report_settings = report_settings
        self.ledger = ledger
        self.recorder = recorder
        self.rejects = outputs.rejects
        self.outputs = outputs
        self.checkpoints = checkpoints
        self.transport = transport
        self.budget = budget
        self.resources = resources
        self.batch_pool = batch_pool
        self.request_pool = request_pool
        self.started_at = datetime.datetime.now(datetime.UTC)
        self.input_complete = False
        #: Set when the run stops starting batches (a signal, a fatal error).
        self.closing = threading.Event()
        self.streams: dict[str, StreamStats] = {}
        self.sinks: list[DeliverySink] = []
        self.refusals: list[str] = []
        self._snapshots: dict[str, Snapshot] = {}
        self._failure: BaseException | None = None
        self._estimated_calls = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(batch_slots)
        self._waiting = waiting

    # --- what sinks use -------------------------------------------------------

    def scope(self, object_type: str, object_name: str, stream: str) -> Scope:
        """A ledger scope on this run's destination instance."""
        return Scope(self.target_name, self.instance, object_type, object_name, stream)

    def settings_for(self, stream: str) -> dict[str, t.Any]:
        """The settings that apply to one stream (top level plus its overrides)."""
        return settings_module.for_stream(self.config, stream)

    def stats_for(self, stream: str) -> StreamStats:
        """The counts of a stream, created on first use."""
        with self._lock:
            if stream not in self.streams:
                self.streams[stream] = StreamStats(stream)
            return self.streams[stream]

    def snapshot_for(self, stream: str) -> Snapshot:
        """The stream's snapshot evidence, shared by its sinks."""
        with self._lock:
            if stream not in self._snapshots:
                self._snapshots[stream] = Snapshot()
            return self._snapshots[stream]

    def register(self, sink: DeliverySink) -> None:
        """Every sink of the run, in creation order (a replaced one included)."""
        with self._lock:
            self.sinks.append(sink)

    @property
    def stopping(self) -> bool:
        """Whether the run stopped starting work (a signal, a fatal error)."""
        return self.closing.is_set()

    def note_state(self) -> None:
        """A STATE was read: every stream's tap vouches for what came before."""
        position = self.checkpoints.records_read
        with self._lock:
            snapshots = list(self._snapshots.values())
        for snapshot in snapshots:
            snapshot.state(position)

    # --- delivery threads -----------------------------------------------------

    def take_slot(self) -> None:
        """Wait for room for one more batch in flight (bounded memory)."""
        with self._waiting():
            self._slots.acquire()
        self.raise_failure()

    def give_slot(self) -> None:
        """A batch left flight."""
        self._slots.release()

    def wait(self, future: Future[t.Any]) -> None:
        """Wait for a batch, interruptibly; surface a delivery failure."""
        with self._waiting():
            future.exception()
        self.raise_failure()

    def fail(self, exc: BaseException) -> None:
        """A delivery thread hit an error that stops the run (the first wins)."""
        with self._lock:
            if self._failure is None:
                self._failure = exc

    def raise_failure(self) -> None:
        """Re-raise a delivery thread's fatal error on the reading thread."""
        if self._failure is not None:
            raise self._failure

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped delivery, if any."""
        return self._failure

    def estimate_calls(self, count: int) -> None:
        """Add a dry run's estimate of the calls a real run would make."""
        with self._lock:
            self._estimated_calls += count

    def budget_fit(self) -> dict[str, t.Any] | None:
        """A dry run against ``daily_call_budget``: would a real run fit today?"""
        budget = self.config.get("daily_call_budget")
        if not self.recorder.dry_run or budget is None:
            return None
        from singer_delivery.budget import utc_day

        used = self.ledger.calls_today(self.instance, utc_day())
        return {
            "estimated_for_a_real_run": self._estimated_calls,
            "used_today": used,
            "daily_call_budget": budget,
            "fits": used + self._estimated_calls <= budget,
        }

    def refuse(self, message: str) -> None:
        """Record a reason to exit non-zero once the run has been reported."""
        with self._lock:
            self.refusals.append(message)

    # --- ordering between sinks -------------------------------------------------

    def deliver_dependencies_of(self, sink: DeliverySink) -> None:
        """Deliver what ``sink`` depends on: every sink drained before it."""
        if sink.drain_priority == 0:
            return
        earlier = [
            s for s in list(self.sinks) if s.drain_priority < sink.drain_priority
        ]
        for other in earlier:
            other.submit_pending()
        for other in earlier:
            other.wait_idle()

    def submit_all(self) -> None:
        """Send every pending batch, in drain order (a checkpoint)."""
        for sink in sorted(self.sinks, key=lambda s: s.drain_priority):
            sink.submit_pending()

    def retry_deferred(self, *, final: bool) -> None:
        """Give deferred records another chance (rejecting them when ``final``)."""
        for sink in sorted(self.sinks, key=lambda s: s.drain_priority):
            if sink.has_deferred:
                sink.retry_deferred(final=final)
                sink.wait_idle()

    def drain(self) -> None:
        """Deliver everything read so far, in order, and wait for it."""
        for priority in sorted({s.drain_priority for s in self.sinks}):
            group = [s for s in list(self.sinks) if s.drain_priority == priority]
            for sink in group:
                sink.submit_pending()
            for sink in group:
                sink.wait_idle()

    # --- the end ------------------------------------------------------------------

    def report(
        self, *, error: BaseException | None, interrupted: bool
    ) -> dict[str, t.Any]:
        """The run report as JSON-ready data."""
        data: dict[str, t.Any] = {
            "target": self.target_name,
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "dry_run": self.recorder.dry_run,
            "interrupted": interrupted,
            "rejects_path": str(self.rejects.path),
            "plan_path": str(self.outputs.plan.path) if self.outputs.plan else None,
            "settings": dict(self.report_settings),
            "streams": {name: s.to_dict() for name, s in sorted(self.streams.items())},
        }
        if self.budget is not None:
            data["calls"] = {
                "used_by_run": self.budget.used_by_run,
                "used_today": self.budget.used_today(),
                "daily_call_budget": self.budget.budget,
            }
        elif fit := self.budget_fit():
            data["calls"] = fit
        if error is not None:
            data["error"] = str(error)
        if self.refusals:
            data["refused"] = list(self.refusals)
        return data

    def publish(self, *, error: BaseException | None, interrupted: bool) -> None:
        """Print, write and log the report (every exit path calls this once)."""
        for stats in self.streams.values():
            if stats.finished is None:
                stats.finished = stats.started + stats.duration
            emit_metrics(stats)
            logger.info("%s", summary_line(stats))
        report = self.report(error=error, interrupted=interrupted)
        title = f"{self.target_name} run {self.run_id}"
        if self.recorder.dry_run:
            title += " (dry run: nothing was written)"
        if interrupted:
            title += " INTERRUPTED: delivered work is kept; run again to go on"
        elif error is not None:
            title += f" FAILED: {error}"
        print(render_table(title, list(self.streams.values())), file=sys.stderr)
        if self.outputs.report_path:
            write_json(self.outputs.report_path, report)
        if self.outputs.plan:
            totals: dict[str, int] = {}
            for stats in self.streams.values():
                for action, count in stats.to_dict().get("planned", {}).items():
                    totals[action] = totals.get(action, 0) + count
            self.outputs.plan.write_totals(totals)
            logger.info("dry-run plan written to %s", self.outputs.plan.path)
        if fit := self.budget_fit():
            left = fit["daily_call_budget"] - fit["used_today"]
            logger.log(
                logging.INFO if fit["fits"] else logging.WARNING,
                "a real run would need about %d API calls; %d of "
                "daily_call_budget=%d are left today: it %s",
                fit["estimated_for_a_real_run"],
                max(left, 0),
                fit["daily_call_budget"],
                "fits" if fit["fits"] else "does not fit",
            )
        self.rejects.close()

    def verdict(self) -> list[str]:
        """Why the run must exit non-zero although nothing stopped it."""
        problems = list(self.refusals)
        if problem := self._reject_ratio_problem():
            problems.append(problem)
        return problems

    def _reject_ratio_problem(self) -> str | None:
        received = sum(s.received for s in self.streams.values())
        failed = sum(s.failed_total for s in self.streams.values())
        if not received or self.recorder.dry_run:
            return None
        ratio = failed / received
        ceiling = float(self.config["max_reject_ratio"])
        if ratio <= ceiling:
            return None
        quarantined = sum(s["quarantined"] for s in self.streams.values())
        counted = f" (of them {quarantined} quarantined)" if quarantined else ""
        return (
            f"{failed} of {received} records were rejected ({ratio:.1%}){counted}, "
            f"more than max_reject_ratio={ceiling:g}; the reasons are in "
            f"{self.rejects.path}"
        )

    def start_row(self) -> RunRow:
        """The row of this run in the ledger's runs table."""
        return RunRow(self.run_id, self.target_name, [], self.started_at)

    def scope_descriptions(self) -> list[str]:
        """What the run wrote to, for the runs table."""
        return sorted({sink.scope.description for sink in self.sinks})

    def close_snapshots(self) -> None:
        """Drop the seen sets (their temporary files go with them)."""
        for snapshot in self._snapshots.values():
            snapshot.seen.close()
