"""One run of a target: its ledger, output files, counts and final verdict."""

from __future__ import annotations

import datetime
import logging
import os
import sys
import threading
import typing as t
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from singer_delivery.ledger import Ledger, default_ledger_url
from singer_delivery.outputs import PlanFile, RejectsFile, write_json
from singer_delivery.report import StreamStats, emit_metrics, render_table
from singer_delivery.snapshot import SeenSet

logger = logging.getLogger(__name__)


class RunFailed(RuntimeError):
    """The run delivered what it could but must exit non-zero."""


def default_output_dir(environ: t.Mapping[str, str] = os.environ) -> Path:
    """Where files go when no path is configured: next to the default ledger."""
    root = environ.get("MELTANO_PROJECT_ROOT")
    return Path(root) / ".meltano" if root else Path.cwd()


def plan_path_for(report_path: Path | None, target_name: str) -> Path:
    """The dry-run plan sits next to the report: report.json → report.plan.jsonl."""
    if report_path is not None:
        return report_path.with_name(f"{report_path.stem}.plan.jsonl")
    return default_output_dir() / f"{target_name}-plan.jsonl"


@dataclass
class DeliveryRun:
    """Everything the sinks of one run share besides the API client."""

    target_name: str
    ledger: Ledger
    rejects: RejectsFile
    plan: PlanFile | None
    skip_unchanged: bool
    full_sync: bool
    max_reject_ratio: float
    report_path: Path | None
    run_id: str
    started_at: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"
        )
    )
    streams: dict[str, StreamStats] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _seen: dict[str, SeenSet] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(
        cls, target_name: str, config: t.Mapping[str, t.Any]
    ) -> DeliveryRun:
        """Open the ledger and name the output files from the shared settings."""
        run_id = uuid.uuid4().hex[:12]
        report_path = Path(config["report_path"]) if config.get("report_path") else None
        rejects_path = Path(
            config.get("rejects_path")
            or default_output_dir() / f"{target_name}-rejects.jsonl"
        )
        dry_run = bool(config.get("dry_run", False))
        return cls(
            target_name=target_name,
            run_id=run_id,
            ledger=Ledger(config.get("ledger_url") or default_ledger_url()),
            rejects=RejectsFile(
                rejects_path,
                run_id,
                include_record=bool(config.get("rejects_include_record", False)),
            ),
            plan=PlanFile(plan_path_for(report_path, target_name), run_id)
            if dry_run
            else None,
            skip_unchanged=bool(config.get("skip_unchanged", True)),
            full_sync=bool(config.get("full_sync", False)),
            max_reject_ratio=float(config.get("max_reject_ratio", 0.1)),
            report_path=report_path,
        )

    @property
    def dry_run(self) -> bool:
        """A dry run writes a plan instead of delivering."""
        return self.plan is not None

    def seen_set(self, scope_id: str) -> SeenSet:
        """The IDs a snapshot stream saw this run, shared by its sink instances."""
        with self._lock:
            if scope_id not in self._seen:
                self._seen[scope_id] = SeenSet()
            return self._seen[scope_id]

    def stats_for(self, stream: str) -> StreamStats:
        """The counters of a stream, created on first use."""
        with self._lock:
            if stream not in self.streams:
                self.streams[stream] = StreamStats(stream)
            return self.streams[stream]

    def report(self) -> dict[str, t.Any]:
        """The run report as JSON-ready data."""
        return {
            "target": self.target_name,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "dry_run": self.dry_run,
            "rejects_path": str(self.rejects.path),
            "plan_path": str(self.plan.path) if self.plan else None,
            "streams": {name: s.to_dict() for name, s in sorted(self.streams.items())},
        }

    def finish(self, error: BaseException | None = None) -> None:
        """Report the run everywhere, then fail it if rejects passed the threshold.

        ``error`` is the exception that stopped a failed run: the report still
        goes out (with what was delivered before it), and the caller re-raises.
        """
        self.ledger.flush()
        for stats in self.streams.values():
            emit_metrics(stats)
        report = self.report()
        if error is not None:
            report["error"] = str(error)
        title = f"{self.target_name} run {self.run_id}"
        if self.dry_run:
            title += " (dry run: nothing was written)"
        if error is not None:
            title += f" FAILED: {error}"
        print(render_table(title, list(self.streams.values())), file=sys.stderr)
        if self.report_path:
            write_json(self.report_path, report)
        if self.plan:
            totals: dict[str, int] = {}
            for stats in self.streams.values():
                for action, count in stats.planned.items():
                    totals[action] = totals.get(action, 0) + count
            self.plan.write_totals(totals)
            logger.info("dry-run plan written to %s", self.plan.path)
        self.rejects.close()
        for seen in self._seen.values():
            seen.close()
        if error is not None:
            return
        if problem := self._reject_ratio_problem():
            self.failures.append(problem)
        if self.failures:
            raise RunFailed("\n".join(self.failures))

    def fail(self, message: str) -> None:
        """Record a reason to exit non-zero once the run has been reported."""
        with self._lock:
            self.failures.append(message)

    def _reject_ratio_problem(self) -> str | None:
        received = sum(s.received for s in self.streams.values())
        rejected = sum(s.rejected_total for s in self.streams.values())
        if not received or self.dry_run:
            return None
        ratio = rejected / received
        if ratio <= self.max_reject_ratio:
            return None
        return (
            f"{rejected} of {received} records were rejected ({ratio:.1%}), "
            f"more than max_reject_ratio={self.max_reject_ratio:g}; the reasons "
            f"are in {self.rejects.path}"
        )
