"""The target side of the delivery pipeline: one run, from config to report.

``DeliveryTarget`` keeps singer-sdk's message handling where it fits (SCHEMA
messages, stream maps, flattening, ``--about``) and takes over where a
reverse-ETL run needs more: settings read and checked before anything else,
a run lifecycle with one ``finally`` (lock, preflight, report, lock release),
STATE written only behind delivered records, unreadable lines rejected,
and SIGTERM answered in bounded time without draining inside the handler.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import gc
import json
import logging
import signal
import sys
import threading
import time
import typing as t
import uuid
from pathlib import Path

from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError, RecordsWithoutSchemaException
from singer_sdk.helpers.capabilities import (
    CapabilitiesEnum,
    PluginCapabilities,
    TargetCapabilities,
)
from singer_sdk.mapper import SameRecordTransform
from typing_extensions import override

from singer_delivery import settings
from singer_delivery.budget import CallBudget
from singer_delivery.checkpoints import Checkpoints
from singer_delivery.errors import Interrupted, OperationalError
from singer_delivery.ledger import Ledger, default_ledger_url
from singer_delivery.outcomes import Reason, Reject
from singer_delivery.outputs import PlanFile, RejectsFile
from singer_delivery.reader import DeliveryReader
from singer_delivery.recorder import CommitRecorder, PlanRecorder, Recorder
from singer_delivery.report import ProgressLogger
from singer_delivery.run import INPUT_STREAM, DeliveryRun, Outputs, RunFailed
from singer_delivery.sink import DeliverySink
from singer_delivery.workers import WorkerPool

if t.TYPE_CHECKING:
    from types import FrameType

    from singer_sdk.sinks import Sink

    from singer_delivery.http import Transport

logger = logging.getLogger(__name__)

R = t.TypeVar("R")


class DeliveryTarget(Target, abc.ABC, t.Generic[R]):
    """A Singer target that delivers records to an API, at least once.

    ``R`` is what the destination's ``preflight`` returns (discovery results,
    shared locks...), handed to every sink as ``run.resources``.
    """

    message_reader_class = DeliveryReader

    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        TargetCapabilities.VALIDATE_RECORDS,
    ]

    #: Seconds between checkpoints (partial batches sent, a STATE written).
    state_interval: t.ClassVar[float] = 10.0
    #: Seconds between progress lines.
    progress_interval: t.ClassVar[float] = 15.0

    def __init__(
        self,
        *,
        config: dict[str, t.Any] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: DeliveryReader | None = None,
    ) -> None:
        config = self.read_config(config or {}, parse_env=parse_env_config)
        self._run: DeliveryRun[R] | None = None
        self._resources = contextlib.ExitStack()
        self._last_checkpoint = -float("inf")
        self._exit_code: int | None = None
        self._progress: ProgressLogger | None = None
        self._stdout_lock = threading.Lock()
        #: The sink of each stream that needs no stream map (None: it does).
        self._direct: dict[str, DeliverySink | None] = {}
        super().__init__(
            config=config,
            parse_env_config=False,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            message_reader=message_reader,
        )
        self.reader.on_unreadable = self._unreadable_line
        self.gate = self.reader.gate

    # --- hooks for destinations -------------------------------------------

    @property
    @abc.abstractmethod
    def api_url(self) -> str:
        """The base URL of the destination's API (it names the instance)."""

    @abc.abstractmethod
    def create_transport(self, *, budget: CallBudget | None) -> Transport:
        """The connection pool, limits and credentials every sink shares."""

    @abc.abstractmethod
    def preflight(self, transport: Transport) -> R:
        """Read-only checks before any input; returns what sinks need.

        Raise ``ConfigValidationError`` with every problem found.
        """

    def check_settings(self) -> list[str]:
        """Problems beyond the JSON schema (override and extend)."""
        errors = settings.check_ledger_url(self.config)
        if "allow_deletes" in self.config_jsonschema.get("properties", {}):
            errors += settings.check_delete_guard(self.config)
        return errors

    @property
    def shutdown_grace(self) -> float:
        """Seconds batches in flight get to settle after SIGTERM or SIGINT."""
        return float(self.config["shutdown_grace"])

    @property
    def uses_call_budget(self) -> bool:
        """Whether the destination counts calls against a daily budget."""
        return "daily_call_budget" in self.config_jsonschema.get("properties", {})

    @property
    def request_concurrency(self) -> int:
        """Threads for per-record requests (APIs without a bulk call)."""
        return 10

    def delivery_threads(self, transport: Transport) -> int:
        """Batches delivered at once: as many as connections can serve, plus
        two, so the reader never waits on a batch that only waits on a task."""
        return transport.max_concurrency + 2

    # --- config -----------------------------------------------------------------

    @classmethod
    def read_config(
        cls, config: t.Mapping[str, t.Any], *, parse_env: bool
    ) -> dict[str, t.Any]:
        """The config as the run uses it: environment, types, then defaults.

        Values from the environment (``--config ENV``, Meltano) arrive as
        text; they are converted by each setting's declared type here,
        before validation, so ``TARGET_AGILLIC_REQUEST_TIMEOUT=45`` is 45.
        """
        schema = cls.config_jsonschema
        merged = dict(config)
        if parse_env:
            prefix = settings.env_prefix(cls.name)
            merged.update(settings.from_environment(schema, prefix))
        return settings.with_defaults(settings.coerce(merged, schema), schema)

    @classmethod
    @override
    def append_builtin_config(cls, config_jsonschema: dict[str, t.Any]) -> None:
        """singer-sdk's built-in settings that mean something for an API target.

        ``load_method`` and ``add_record_metadata`` are left out: ``sync_mode``
        decides how records are written, and metadata columns have no place
        in a destination's payload.
        """
        super().append_builtin_config(config_jsonschema)
        for unused in ("load_method", "add_record_metadata"):
            config_jsonschema["properties"].pop(unused, None)

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Every problem at once, each naming the setting, its variable and the fix."""
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        prefix = settings.env_prefix(self.name)
        errors = settings.schema_problems(self.config, schema, prefix)
        try:
            checked = self.check_settings()
        except (TypeError, AttributeError, KeyError, ValueError):
            checked = []  # a value of the wrong type, already named above
        # a destination's own message about a setting replaces the generic one
        named = {message.split(" ", 1)[0].rstrip(":") for message in checked}
        errors = [e for e in errors if e.split(" ", 1)[0] not in named] + checked
        for warning in settings.unknown_settings(self.config, schema):
            self.logger.warning("%s", warning)
        if errors and raise_errors:
            raise ConfigValidationError(
                "Config validation failed", errors=errors, schema=schema
            )
        return errors

    # --- the run ------------------------------------------------------------------

    @property
    def instance(self) -> str:
        """The destination instance (lower-case host, default port dropped)."""
        return settings.instance_of(self.api_url)

    @property
    def lock_name(self) -> str:
        """One run at a time per destination instance and ledger."""
        return f"{self.name} {self.instance}"

    @property
    def delivery_run(self) -> DeliveryRun[R]:
        """The run, started on first use (lock, preflight)."""
        return self._run or self.start()

    def start(self) -> DeliveryRun[R]:
        """Open the ledger, take the lock, check the API: before any input."""
        if self._run is not None:
            return self._run
        config = self.config
        dry_run = bool(config["dry_run"])
        ledger = Ledger.open(config.get("ledger_url") or default_ledger_url())
        self._resources.callback(ledger.close)
        self._resources.enter_context(
            ledger.run_lock(
                self.lock_name,
                float(config["ledger_lock_timeout"]),
                wait=self._sleep_interruptibly,
            )
        )
        budget = (
            CallBudget(ledger, self.instance, config.get("daily_call_budget"))
            if self.uses_call_budget and not dry_run
            else None
        )
        transport = self.create_transport(budget=budget)
        resources = self.preflight(transport)
        run_id = uuid.uuid4().hex[:12]
        outputs = self._outputs(run_id, dry_run)
        recorder: Recorder = (
            PlanRecorder(outputs.rejects, t.cast(PlanFile, outputs.plan))
            if dry_run
            else CommitRecorder(
                outputs.rejects,
                ledger,
                store_reject_keys=bool(config["store_reject_keys"]),
            )
        )
        threads = self.delivery_threads(transport)
        self._run = DeliveryRun(
            target_name=self.name,
            instance=self.instance,
            run_id=run_id,
            config=config,
            report_settings=self._report_settings(),
            ledger=ledger,
            recorder=recorder,
            outputs=outputs,
            checkpoints=Checkpoints(
                self._write_state, ledger.flush, self.state_interval
            ),
            transport=transport,
            budget=budget,
            resources=resources,
            batch_pool=WorkerPool(threads, "deliver"),
            request_pool=WorkerPool(self.request_concurrency, "request"),
            batch_slots=threads,
            waiting=self.gate.wait,
        )
        if not dry_run:
            ledger.start_run(self._run.start_row())
        self._progress = ProgressLogger(
            lambda: list(self._run.streams.values()) if self._run else [],
            self.progress_interval,
        )
        self._progress.start()
        return self._run

    def _outputs(self, run_id: str, dry_run: bool) -> Outputs:
        config = self.config
        folder = default_output_dir()
        report_path = Path(config["report_path"]) if config.get("report_path") else None
        rejects_path = Path(
            config.get("rejects_path") or folder / f"{self.name}-rejects.jsonl"
        )
        plan_path = (
            report_path.with_name(f"{report_path.stem}.plan.jsonl")
            if report_path
            else folder / f"{self.name}-plan.jsonl"
        )
        return Outputs(
            rejects=RejectsFile(
                rejects_path,
                run_id,
                include_record=bool(config["rejects_include_record"]),
            ),
            plan=PlanFile(plan_path, run_id) if dry_run else None,
            report_path=report_path,
        )

    def _report_settings(self) -> dict[str, t.Any]:
        """The tuning settings in effect, for the report: numbers, switches and
        choices; never a secret, a URL, a name or a path."""
        properties = self.config_jsonschema.get("properties", {})
        return {
            name: value
            for name, value in sorted(self.config.items())
            if not properties.get(name, {}).get("secret")
            and (
                isinstance(value, bool | int | float)
                or (isinstance(value, str) and "enum" in properties.get(name, {}))
            )
        }

    # --- the command line -------------------------------------------------------

    @classmethod
    @override
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        file_input: t.IO[str] | None = None,
    ) -> None:
        """Run the target as the CLI does: one exit code for every ending."""
        if about:
            cls.print_about(about_format)
            sys.exit(0)
        cls.print_version(print_fn=cls.logger.info)
        target = cls(
            config=getattr(config, "config", None) or {},
            validate_config=True,
            parse_env_config=bool(getattr(config, "parse_env", False)),
        )
        sys.exit(target.run_to_end(file_input))

    def run_to_end(self, file_input: t.IO[str] | None = None) -> int:
        """Read all input and end the run, whatever happens; the exit code.

        The only place a run ends: the report is written, the lock released
        after the last ledger write, and the temporary files removed, on a
        clean end, an error or a signal alike.
        """
        error: BaseException | None = None
        interrupted = False
        try:
            with self.gate.wait():
                self.start()
            _collect_less()
            self.listen(file_input)
        except Interrupted:
            interrupted = True
        except ConfigValidationError:
            self.finish(error=None, interrupted=False)
            raise
        except BaseException as exc:  # noqa: BLE001 - finish() reports it
            error = exc
        return self.finish(error=error, interrupted=interrupted)

    # --- messages -----------------------------------------------------------------

    @override
    def _process_record_message(self, message_dict: dict[str, t.Any]) -> None:
        """Hand the record to its sink(s); stream maps only when configured."""
        run = self.delivery_run
        stream, record = message_dict.get("stream"), message_dict.get("record")
        if not isinstance(stream, str) or not isinstance(record, dict):
            self._unreadable_line(
                self.reader.line_number, "a RECORD without a stream or a record object"
            )
            return
        seq = run.checkpoints.next_seq()
        if (sink := self._direct_sink(stream)) is not None:
            sink.accept(record, seq)
            return
        for stream_map in self.mapper.stream_maps[stream]:
            transformed = stream_map.transform(copy.copy(record))
            if transformed is None:
                continue
            mapped = self.get_sink(stream_map.stream_alias, record=transformed)
            t.cast(DeliverySink, mapped).accept(transformed, seq)

    def _direct_sink(self, stream: str) -> DeliverySink | None:
        """The stream's sink when records go to it as they are (no stream map,
        no flattening): the common case skips singer-sdk's mapper."""
        if stream in self._direct:
            return self._direct[stream]
        if stream not in self.mapper.stream_maps:
            msg = (
                f"a RECORD of stream {stream!r} came before its SCHEMA (input line "
                f"{self.reader.line_number}); the tap does not follow the Singer "
                "spec, so the rest of the input cannot be trusted"
            )
            raise RecordsWithoutSchemaException(msg)
        maps = self.mapper.stream_maps[stream]
        plain = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
            and maps[0].stream_alias == stream
        )
        direct = t.cast(DeliverySink, self.get_sink(stream)) if plain else None
        self._direct[stream] = direct
        return direct

    @override
    def _process_schema_message(self, message_dict: dict[str, t.Any]) -> None:
        """singer-sdk registers the stream maps and makes the sink."""
        self._direct.clear()
        super()._process_schema_message(message_dict)

    @override
    def _process_state_message(self, message_dict: dict[str, t.Any]) -> None:
        """A STATE goes out once every record before it settled (a checkpoint)."""
        run = self.delivery_run
        if "value" not in message_dict:
            self._unreadable_line(self.reader.line_number, "a STATE without a value")
            return
        run.note_state()
        run.checkpoints.state_arrived(message_dict["value"])
        if time.monotonic() - self._last_checkpoint >= self.state_interval:
            self._last_checkpoint = time.monotonic()
            run.submit_all()
            run.retry_deferred(final=False)
            run.raise_failure()

    @override
    def _process_activate_version_message(self, message_dict: dict[str, t.Any]) -> None:
        """Snapshot boundaries, for mirrors (unless turned off)."""
        run = self.delivery_run
        if not self.config.get("process_activate_version_messages", True):
            return
        stream = str(message_dict.get("stream"))
        for stream_map in self.mapper.stream_maps.get(stream, []):
            run.snapshot_for(stream_map.stream_alias).activate_version(
                int(message_dict["version"]), run.checkpoints.records_read
            )

    @override
    def get_sink(
        self,
        stream_name: str,
        *,
        record: dict[str, t.Any] | None = None,
        schema: dict[str, t.Any] | None = None,
        key_properties: t.Sequence[str] | None = None,
    ) -> Sink:
        """A schema change replaces a sink: what the old one holds goes first."""
        old = (
            super().get_sink(stream_name)
            if schema is not None and self.sink_exists(stream_name)
            else None
        )
        sink = super().get_sink(
            stream_name, record=record, schema=schema, key_properties=key_properties
        )
        if isinstance(old, DeliverySink) and old is not sink:
            old.submit_pending()
            old.wait_idle()
        return sink

    def _unreadable_line(self, line_number: int, reason: str) -> None:
        """A line that is not a Singer message: rejected by number, never shown."""
        run = self.delivery_run
        message = f"input line {line_number} is not a Singer message: {reason}"
        reject = Reject(None, Reason.UNREADABLE_LINE, message)
        stats = run.stats_for(INPUT_STREAM)
        stats.received += 1
        run.recorder.unreadable(stats, reject, line_number)

    @property
    def reader(self) -> DeliveryReader:
        """The message reader (it knows the current line number)."""
        return t.cast(DeliveryReader, self.message_reader)

    # --- the end of input and of the run ----------------------------------------

    @override
    def process_endofpipe(self) -> None:
        """A clean end of input: deliver the rest, complete snapshots, report."""
        run = self.delivery_run
        run.input_complete = True
        run.drain()
        run.retry_deferred(final=True)
        run.raise_failure()
        for sink in list(run.sinks):
            sink.release_held()
            sink.wait_idle()
        run.raise_failure()
        for sink in self._active_mirrors():
            sink.finish_mirror()
            sink.wait_idle()
        run.raise_failure()
        if code := self.finish(error=None, interrupted=False):
            raise RunFailed(f"{self.name} run {run.run_id} ended with exit code {code}")

    def _active_mirrors(self) -> list[DeliverySink]:
        """The current sink of each mirrored stream (not those a schema replaced)."""
        run = self.delivery_run
        latest: dict[str, DeliverySink] = {}
        for sink in run.sinks:
            latest[sink.stream_name] = sink
        return [sink for sink in latest.values() if sink.mirror]

    def finish(self, *, error: BaseException | None, interrupted: bool) -> int:
        """End the run once: settle or abandon deliveries, report, unlock.

        Returns the exit code: 0, 1 for a failed run, 128 + the signal for
        an interrupted one.
        """
        if self._exit_code is not None:
            return self._exit_code
        run = self._run
        problems: list[str] = []
        try:
            if run is not None:
                if self._progress is not None:
                    self._progress.stop()
                error = error or run.failure
                if error is not None or interrupted:
                    self._stop_deliveries(run)
                error = self._final_checkpoint(run, error)
                run.publish(error=error, interrupted=interrupted)
                if error is None and not interrupted:
                    problems = run.verdict()
                self._record_run(run, error, interrupted, problems)
        finally:
            if run is not None:
                run.close_snapshots()
                run.batch_pool.shutdown()
                run.request_pool.shutdown()
            self._resources.close()
        self._exit_code = self._exit_code_for(error, interrupted, problems)
        return self._exit_code

    def _stop_deliveries(self, run: DeliveryRun[R]) -> None:
        """Let batches in flight settle for a while, then abandon the rest."""
        run.closing.set()
        futures = [f for sink in run.sinks for f in sink.inflight_futures()]
        _wait_all(futures, self.shutdown_grace)
        run.transport.stop.set()
        # what is still in flight now is abandoned: never acknowledged, so
        # never committed, and sent again by the next run
        _wait_all(futures, 2)

    def _final_checkpoint(
        self, run: DeliveryRun[R], error: BaseException | None
    ) -> BaseException | None:
        """Write the newest STATE whose records settled (never one past them)."""
        try:
            run.checkpoints.write_ready(force=True)
        except OperationalError as exc:
            return error or exc
        return error

    def _record_run(
        self,
        run: DeliveryRun[R],
        error: BaseException | None,
        interrupted: bool,
        problems: list[str],
    ) -> None:
        if run.recorder.dry_run:
            return
        status = (
            "interrupted"
            if interrupted
            else "failed"
            if error is not None or problems
            else "succeeded"
        )
        message = str(error) if error is not None else "\n".join(problems) or None
        with contextlib.suppress(OperationalError):
            run.ledger.finish_run(
                run.run_id,
                status=status,
                scopes=run.scope_descriptions(),
                counts={n: s.outcome_counts() for n, s in run.streams.items()},
                error=message,
            )
        if run.budget is not None:
            with contextlib.suppress(OperationalError):
                run.budget.close()

    def _exit_code_for(
        self, error: BaseException | None, interrupted: bool, problems: list[str]
    ) -> int:
        if interrupted:
            signum = self.gate.signal or signal.SIGTERM
            self.logger.error(
                "Stopped by %s: delivered work is committed and its STATE "
                "written; nothing was removed. Run again to go on.",
                signal.Signals(signum).name,
            )
            return 128 + signum
        if error is not None:
            self._log_error(error)
            return 1
        for problem in problems:
            for line in problem.splitlines():
                self.logger.error("%s", line)
        return 1 if problems else 0

    def _log_error(self, error: BaseException) -> None:
        """One line for what a person can fix; the traceback only at DEBUG."""
        if isinstance(error, OperationalError | RecordsWithoutSchemaException):
            self.logger.error("%s", error)
            self.logger.debug("details", exc_info=error)
        else:
            self.logger.error("%s", error, exc_info=error)

    # --- STATE and signals --------------------------------------------------------

    def _write_state(self, state: dict[str, t.Any]) -> None:
        with self._stdout_lock:
            sys.stdout.write(json.dumps(state) + "\n")
            sys.stdout.flush()

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Stop reading; never drain here (the interrupted frame may hold what a
        drain needs). Deliveries in flight get ``shutdown_grace`` to settle."""
        if self.gate.signal is None:
            self.gate.signal = signum
            self.logger.info(
                "Received %s: stopping; batches in flight get up to %.0f s to "
                "settle, nothing more is read and nothing is removed",
                signal.Signals(signum).name,
                self.shutdown_grace,
            )
        if self.gate.waiting:
            self.gate.waiting = False
            raise Interrupted(signum)

    def _sleep_interruptibly(self, seconds: float) -> None:
        with self.gate.wait():
            time.sleep(seconds)


def default_output_dir() -> Path:
    """Where files go when no path is configured: next to the default ledger."""
    return Path(default_ledger_url().removeprefix("sqlite:///")).parent


def _wait_all(futures: t.Sequence[t.Any], timeout: float) -> None:
    from concurrent.futures import wait

    if futures:
        wait(futures, timeout=timeout)


#: Allocations (net of frees) between two collections of the youngest
#: generation; Python's default is 700.
YOUNG_COLLECTION_EVERY = 10_000


def _collect_less() -> None:
    """Make garbage collection cheap for the record loop.

    Everything alive once the run has started (modules, settings, sinks, the
    ledger) lives until the process ends: frozen, it is skipped by every
    later collection. Records make many short-lived containers and almost no
    cycles, so the youngest generation is collected every 10,000 allocations
    instead of 700. Measured on 100,000 records: run 2 (nothing changed)
    0.86x and run 1 0.94x the time, the same peak memory.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, older, oldest)
