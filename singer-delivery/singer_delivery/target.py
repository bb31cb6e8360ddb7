"""The target side of the delivery pipeline: checkpoints, lock and report.

singer-sdk writes STATE only from ``drain_all`` and knows nothing of batches
still being delivered on worker threads. This base class drains on STATE
(throttled), waits for every delivery before a STATE goes out, holds the
ledger lock for the run and ends it with the report.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import sys
import time
import typing as t

from singer_sdk import Target
from singer_sdk.configuration._dict_config import merge_missing_config_jsonschema
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import (
    ACTIVATE_VERSION_CONFIG,
    TARGET_BATCH_SIZE_ROWS_CONFIG,
    TARGET_VALIDATE_RECORDS_CONFIG,
    CapabilitiesEnum,
    PluginCapabilities,
    TargetCapabilities,
)

from singer_delivery.report import ProgressLogger
from singer_delivery.run import DeliveryRun, RunFailed
from singer_delivery.settings import check_delivery_settings
from singer_delivery.sink import MAX_BATCH_ROWS, DeliverySink

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink

logger = logging.getLogger(__name__)


def _priority(sink: Sink) -> int:
    return sink.drain_priority if isinstance(sink, DeliverySink) else 0


class DeliveryTarget(Target, abc.ABC):
    """A Singer target that delivers records to an API, at least once."""

    message_reader_class = MsgSpecReader

    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        TargetCapabilities.VALIDATE_RECORDS,
    ]

    #: Seconds between STATE-triggered drains; the first STATE drains at once.
    state_drain_interval: t.ClassVar[float] = 10.0

    #: Seconds between progress lines.
    progress_interval: t.ClassVar[float] = 15.0

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.input_complete = False
        self._finished = False
        self._last_state_drain = 0.0
        self.run = DeliveryRun.from_config(self.name, self.config)
        self._exit_stack = contextlib.ExitStack()
        self._exit_stack.enter_context(
            self.run.ledger.run_lock(
                self.lock_name, float(self.config.get("ledger_lock_timeout", 60))
            )
        )
        self.preflight()
        self._progress = ProgressLogger(
            lambda: self.run.streams.values(), self.progress_interval
        )
        self._progress.start()

    # --- hooks for destinations -------------------------------------------

    @property
    @abc.abstractmethod
    def lock_name(self) -> str:
        """Names the destination instance: one run at a time writes to it."""

    def check_settings(self) -> list[str]:
        """Problems with the config beyond its JSON schema (override and extend)."""
        errors = check_delivery_settings(self.config)
        batch_size = self.config.get("batch_size_rows")
        if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_ROWS:
            errors.append(
                f"batch_size_rows must be between 1 and {MAX_BATCH_ROWS} "
                f"(got {batch_size}); the API takes at most {MAX_BATCH_ROWS} "
                "entries per request"
            )
        return errors

    def preflight(self) -> None:
        """Read-only checks against the API before any input is read."""

    # --- config -------------------------------------------------------------

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """Only the SDK built-ins that mean something for an API target.

        ``load_method`` and ``add_record_metadata`` are left out: ``sync_mode``
        decides how records are written, and metadata columns have no place
        in a destination's payload.
        """
        merge_missing_config_jsonschema(
            TARGET_BATCH_SIZE_ROWS_CONFIG, config_jsonschema
        )
        if TargetCapabilities.VALIDATE_RECORDS in cls.capabilities:
            merge_missing_config_jsonschema(
                TARGET_VALIDATE_RECORDS_CONFIG, config_jsonschema
            )
        if PluginCapabilities.ACTIVATE_VERSION in cls.capabilities:
            merge_missing_config_jsonschema(ACTIVATE_VERSION_CONFIG, config_jsonschema)
        super(Target, cls).append_builtin_config(config_jsonschema)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Add the cross-setting checks to the SDK's JSON-schema validation."""
        errors = super()._validate_config(raise_errors=raise_errors)
        errors += self.check_settings()
        if errors and raise_errors:
            raise ConfigValidationError(
                "Config validation failed", errors=errors, schema=self.config_jsonschema
            )
        return errors

    # --- checkpoints --------------------------------------------------------

    def _process_state_message(self, message_dict: dict) -> None:
        """Drain on STATE so checkpoints follow delivery, not the 5-minute timer."""
        super()._process_state_message(message_dict)
        if time.monotonic() - self._last_state_drain >= self.state_drain_interval:
            self.drain_all()
            self._last_state_drain = time.monotonic()

    def _write_state_message(self, state: dict) -> None:
        """Only once every record read so far was delivered or rejected.

        A sink still holding records (rows waiting for their recipient) holds
        the checkpoint back; a later drain writes the newest STATE instead.
        """
        self.wait_for_deliveries()
        if any(sink.holds_back_state for sink in self._delivery_sinks()):
            self.logger.debug("STATE held back until pending records settle")
            return
        super()._write_state_message(state)

    def _delivery_sinks(self) -> list[DeliverySink]:
        sinks = [*self._sinks_active.values(), *self._sinks_to_clear]
        return [s for s in sinks if isinstance(s, DeliverySink)]

    def wait_for_deliveries(self) -> None:
        """Block until no batch is in flight; re-raise a worker's fatal error."""
        for sink in self._delivery_sinks():
            sink.wait_for_deliveries()

    # --- end of run ---------------------------------------------------------

    def process_endofpipe(self) -> None:
        """A clean end of input: snapshots may complete; drain, report, judge.

        A SIGTERM or SIGINT drains through the SDK's handler instead, which
        never sets ``input_complete``, so no mirror removal happens then.
        """
        self.input_complete = True
        super().process_endofpipe()
        self.finish()

    def _process_activate_version_message(self, message_dict: dict) -> None:
        """Tell each sink of the stream; only they know what a version means."""
        if not self.config.get("process_activate_version_messages", True):
            return
        for stream_map in self.mapper.stream_maps[message_dict["stream"]]:
            sink = self.get_sink(stream_map.stream_alias)
            sink.activate_version(message_dict["version"])

    # --- ordering between sinks ---------------------------------------------

    def _drain_all(self, sink_list: t.Iterable[Sink], parallelism: int) -> None:
        """Drain sinks others depend on first (recipients before their rows)."""
        sinks = list(sink_list)
        for priority in sorted({_priority(s) for s in sinks}):
            group = [s for s in sinks if _priority(s) == priority]
            super()._drain_all(group, parallelism)
            for sink in group:
                if isinstance(sink, DeliverySink):
                    sink.wait_for_deliveries()

    def flush_before(self, sink: DeliverySink) -> None:
        """Deliver everything pending in sinks that ``sink`` depends on."""
        for other in self._delivery_sinks():
            if other.drain_priority < sink.drain_priority:
                self.drain_one(other)
                other.wait_for_deliveries()

    def finish(self, error: BaseException | None = None) -> None:
        """Print the report (once); exit non-zero when the run must fail.

        With ``error`` (delivery stopped for good) the report still goes out
        and the caller re-raises the error.
        """
        if self._finished:
            return
        self._finished = True
        self._progress.stop()
        self._exit_stack.close()
        try:
            self.run.finish(error)
        except RunFailed as exc:
            for line in str(exc).splitlines():
                self.logger.error("%s", line)
            sys.exit(1)
