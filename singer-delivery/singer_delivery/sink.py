"""The delivery pipeline every destination sink shares.

A record goes: validation → ``map_record`` (destination shape and key) →
fingerprint → ledger comparison → ``deliver`` (or ``plan`` in a dry run) →
ledger commit for acknowledged records, rejects file for the others.

Batches are delivered on worker threads while the reader goes on, because
async APIs spend most of a batch's time waiting for a task to finish. The
target waits for every batch in flight before it emits STATE.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import threading
import time
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import fastjsonschema
from singer_sdk.helpers._typing import get_datelike_property_type
from singer_sdk.sinks import BatchSink

from singer_delivery.ledger import Scope
from singer_delivery.outputs import Reject
from singer_delivery.serialization import fingerprint, key_hash

if t.TYPE_CHECKING:
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from singer_delivery.report import StreamStats
    from singer_delivery.target import DeliveryTarget

MAX_BATCH_ROWS = 1000
DATE_PARSERS: dict[str, t.Callable[[str], t.Any]] = {
    "date-time": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
}
_A = t.TypeVar("_A")
_T = t.TypeVar("_T")


class RecordRejected(Exception):
    """Raised by ``map_record`` for a record that must not be sent."""

    def __init__(self, reason: str, message: str, *, fields: t.Sequence[str] = ()):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.fields = tuple(fields)


@dataclass(slots=True)
class Item:
    """One mapped record on its way to the destination."""

    key: str
    payload: t.Any
    fingerprint: str
    key_hash: str
    record: t.Mapping[str, t.Any] | None = None


@dataclass(slots=True)
class Outcome:
    """What became of one item: delivered (``reject`` is None) or rejected.

    In a dry run, ``action`` names what a real run would do with the item.
    """

    item: Item
    reject: Reject | None = None
    action: str | None = None


class DeliverySink(BatchSink, abc.ABC):
    """A sink that sends only what changed and records what was acknowledged."""

    MAX_SIZE_DEFAULT = MAX_BATCH_ROWS

    #: Sinks with a lower priority are drained (and delivered) first.
    drain_priority: t.ClassVar[int] = 0

    def __init__(
        self,
        target: DeliveryTarget,
        stream_name: str,
        schema: dict,
        key_properties: t.Sequence[str] | None,
    ) -> None:
        self.target = target
        self.run = target.run
        self.stats: StreamStats = target.run.stats_for(stream_name)
        self._invalid: Reject | None = None
        super().__init__(target, stream_name, schema, key_properties)
        self._fast_validator = self._compile_validator()
        self._date_parsers = self._find_date_fields()
        self._inflight: dict[Future[None], frozenset[str]] = {}
        self._inflight_lock = threading.Lock()
        self._batch_slots = threading.BoundedSemaphore(self.batches_in_flight)
        self._workers = ThreadPoolExecutor(
            self.batches_in_flight, thread_name_prefix=f"deliver-{stream_name}"
        )
        self._request_pool: ThreadPoolExecutor | None = None
        self._failure: BaseException | None = None
        self._activations: list[int] = []
        self._records_since_activation = 0
        self.snapshot_closed = False

    # --- hooks for destinations -------------------------------------------

    @property
    def batches_in_flight(self) -> int:
        """How many batches may be delivering at once for this stream."""
        return 4

    @property
    @abc.abstractmethod
    def scope(self) -> Scope:
        """The destination object this sink writes to."""

    @abc.abstractmethod
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """Return (key, payload) or raise ``RecordRejected``."""

    @abc.abstractmethod
    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Write the items; yield one outcome per item."""

    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Dry run: say what ``deliver`` would do, using read-only calls only.

        Return an outcome per item: a reject, or ``action`` set to what a real
        run would do (create, update, ...).
        """
        return (Outcome(item, action="send") for item in items)

    def observe_batch(self, items: list[Item]) -> None:
        """Called with every mapped item, changed or not (e.g. mirror's seen set)."""

    def finish_snapshot(self) -> None:
        """Called at a clean end of input; check ``snapshot_complete`` first."""

    @property
    def holds_back_state(self) -> bool:
        """True while records read are neither delivered nor rejected yet."""
        return False

    @property
    def request_concurrency(self) -> int:
        """Threads for one-request-per-record APIs; the transport caps the total."""
        return 10

    def map_concurrently(
        self, call: t.Callable[[_A], _T], values: t.Sequence[_A]
    ) -> list[_T]:
        """Run a per-value request for every value, several at once, in order."""
        if self._request_pool is None:
            with self._inflight_lock:
                if self._request_pool is None:
                    self._request_pool = ThreadPoolExecutor(
                        self.request_concurrency,
                        thread_name_prefix=f"request-{self.stream_name}",
                    )
        return list(self._request_pool.map(call, values))

    # --- validation ---------------------------------------------------------

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """Off: ``_validate_and_parse`` rejects invalid records instead of failing."""
        return None

    def _compile_validator(self) -> t.Callable[[t.Any], t.Any] | None:
        if not self.validate_schema:
            return None
        try:
            return fastjsonschema.compile(self.schema, use_formats=False)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            self.logger.warning(
                "Stream %s has a schema that cannot be compiled (%s); records are "
                "not validated",
                self.stream_name,
                exc,
            )
            return None

    def _find_date_fields(self) -> dict[str, t.Callable[[str], t.Any]]:
        """Parsers for the schema's date fields, worked out once per schema.

        The SDK works this out again for every field of every record, which
        was the largest single cost per record.
        """
        return {
            name: DATE_PARSERS[kind]
            for name, prop in self.schema.get("properties", {}).items()
            if (kind := get_datelike_property_type(prop)) in DATE_PARSERS
        }

    def _validate_and_parse(self, record: dict) -> dict:
        """Mark an invalid record for rejection instead of stopping the run.

        The SDK would either raise (stopping every good record too) or pass
        the record on silently; a reverse-ETL run must reject it with a reason.
        """
        self._invalid = None
        if self._fast_validator is not None:
            try:
                self._fast_validator(record)
            except fastjsonschema.JsonSchemaValueException as exc:
                field = ".".join(str(p) for p in exc.path[1:2])
                self._invalid = Reject(
                    key=None,
                    reason="invalid_record",
                    message=f"does not match the stream schema: {exc.message}",
                    fields=(field,) if field else (),
                )
                return record
        for name, parse in self._date_parsers.items():
            value = record.get(name)
            if isinstance(value, str):
                try:
                    record[name] = parse(value)
                except ValueError:
                    self._invalid = Reject(
                        key=None,
                        reason="invalid_record",
                        message=f"{name} is not a valid ISO 8601 date or date-time",
                        fields=(name,),
                    )
                    break
        return record

    # --- record path --------------------------------------------------------

    def _after_process_record(self, context: dict) -> None:
        """Nothing: the SDK logs the whole pending batch here at DEBUG level,
        which would put every record's personal data into the logs."""

    def process_record(self, record: dict, context: dict) -> None:
        """Map and fingerprint one record into the pending batch."""
        self.stats.add(received=1)
        self._records_since_activation += 1
        if self._invalid is not None:
            self.stats.add(invalid=1)
            self.reject(
                dataclasses.replace(self._invalid, key=self.source_key(record)), record
            )
            return
        try:
            key, payload = self.map_record(record)
        except RecordRejected as exc:
            reject = Reject(
                key=self.source_key(record),
                reason=exc.reason,
                message=exc.message,
                fields=exc.fields,
            )
            self.reject(reject, record)
            return
        item = Item(
            key=key,
            payload=payload,
            fingerprint=fingerprint(payload),
            key_hash=key_hash(key),
            record=record if self.run.rejects.include_record else None,
        )
        items: dict[str, Item] = context.setdefault("items", {})
        if item.key_hash in items:
            self.stats.add(duplicates=1)
            self.tally_duplicate_merged()
        items[item.key_hash] = item

    def source_key(self, record: t.Mapping[str, t.Any]) -> str | None:
        """The record's key in the source (its stream's key properties).

        Used for records rejected before they have a destination key, so the
        rejects file still says which row to fix.
        """
        if not self.key_properties:
            return None
        return ",".join(f"{k}={record.get(k)}" for k in self.key_properties)

    def reject(
        self, reject: Reject, record: t.Mapping[str, t.Any] | None = None
    ) -> None:
        """Count a reject and write it to the rejects file (or the dry-run plan)."""
        self.stats.reject(reject.reason)
        if self.run.plan is not None:
            self.stats.plan("reject")
            self.run.plan.write(
                self.stream_name,
                reject.key,
                "reject",
                reason=reject.reason,
                message=reject.message,
            )
            return
        if record is not None and self.run.rejects.include_record:
            reject = dataclasses.replace(reject, record=record)
        self.run.rejects.write(self.stream_name, reject)

    # --- batch path ---------------------------------------------------------

    def process_batch(self, context: dict) -> None:
        """Hand the batch to a worker; the reader goes on meanwhile."""
        batch: dict[str, Item] = context.get("items", {})
        self.raise_failure()
        if not batch:
            return
        keys = frozenset(batch)
        self._wait_for_keys(keys)
        self._batch_slots.acquire()
        future = self._workers.submit(self._run_batch, list(batch.values()))
        with self._inflight_lock:
            self._inflight[future] = keys
        future.add_done_callback(self._batch_done)

    def _wait_for_keys(self, keys: frozenset[str]) -> None:
        """A key still in flight must land before its newer version is sent."""
        with self._inflight_lock:
            pending = [
                f for f, sent in self._inflight.items() if not keys.isdisjoint(sent)
            ]
        for future in pending:
            future.exception()

    def _batch_done(self, future: Future[None]) -> None:
        with self._inflight_lock:
            del self._inflight[future]
        if (exc := future.exception()) is not None and self._failure is None:
            self._failure = exc
        self._batch_slots.release()

    def raise_failure(self) -> None:
        """Surface a worker's fatal error on the reading thread, after the report."""
        if self._failure is not None:
            self.target.finish(error=self._failure)
            raise self._failure

    def wait_for_deliveries(self) -> None:
        """Block until every batch in flight has finished (or failed)."""
        for _ in range(self.batches_in_flight):
            self._batch_slots.acquire()
        for _ in range(self.batches_in_flight):
            self._batch_slots.release()
        self.raise_failure()
        self.run.ledger.flush()

    def _run_batch(self, items: list[Item]) -> None:
        if self._failure is not None:
            return
        self.observe_batch(items)
        to_send = self._changed(items)
        if not to_send:
            return
        if self.run.plan is not None:
            for outcome in self.plan(to_send):
                if outcome.reject is not None:
                    self.reject(outcome.reject)
                    continue
                action = outcome.action or "send"
                self.stats.plan(action)
                self.run.plan.write(self.stream_name, outcome.item.key, action)
            return
        self.stats.add(sent=len(to_send))
        self.settle(self.deliver(to_send))

    def settle(self, outcomes: t.Iterable[Outcome]) -> None:
        """Commit what the API acknowledged; reject the rest."""
        delivered: list[Item] = []
        for outcome in outcomes:
            if outcome.reject is None:
                delivered.append(outcome.item)
            else:
                self.reject(outcome.reject, outcome.item.record)
        self.run.ledger.record_deliveries(
            self.scope.scope_id, [(i.key_hash, i.fingerprint) for i in delivered]
        )
        self.stats.add(delivered=len(delivered))

    def _changed(self, items: list[Item]) -> list[Item]:
        """Drop items whose payload the ledger says was already delivered."""
        if self.run.full_sync or not self.run.skip_unchanged:
            return items
        known = self.run.ledger.fingerprints(
            self.scope.scope_id, [i.key_hash for i in items]
        )
        changed = [i for i in items if known.get(i.key_hash) != i.fingerprint]
        unchanged = len(items) - len(changed)
        if unchanged:
            self.stats.add(unchanged=unchanged)
            if self.run.plan is not None:
                self.stats.plan("unchanged", unchanged)
                for item in items:
                    if known.get(item.key_hash) == item.fingerprint:
                        self.run.plan.write(self.stream_name, item.key, "unchanged")
        return changed

    # --- snapshots --------------------------------------------------------

    def activate_version(self, new_version: int) -> None:
        """Note a full-table snapshot boundary.

        Taps send ACTIVATE_VERSION before a full-table sync and again after
        it. The closing one follows records of the stream, or repeats the
        version it opened with (an empty table).
        """
        closing = self._records_since_activation > 0 or new_version in self._activations
        self._activations.append(new_version)
        self._records_since_activation = 0
        if closing:
            self.snapshot_closed = True

    @property
    def is_active(self) -> bool:
        """False for a sink replaced after a schema change.

        The replacement shares the stream's snapshot, so only it finishes it.
        """
        return (
            self.target.sink_exists(self.stream_name)
            and self.target.get_sink(self.stream_name) is self
        )

    @property
    def snapshot_complete(self) -> bool:
        """The whole snapshot was read: never after SIGTERM/SIGINT or an error.

        With ACTIVATE_VERSION messages the closing one is required; a tap
        that sends none completes its snapshot with a clean end of input.
        """
        if not self.target.input_complete:
            return False
        return self.snapshot_closed or not self.activation_opened

    @property
    def activation_opened(self) -> bool:
        """The tap announced a full-table version for this stream."""
        return bool(self._activations)

    def setup(self) -> None:
        """Register the scope so the ledger says what its ids stand for."""
        self.run.ledger.register(self.scope)

    def clean_up(self) -> None:
        """Finish in-flight work before the SDK reports the stream done."""
        try:
            self.wait_for_deliveries()
            if self.target.input_complete and self.is_active:
                self.finish_snapshot()
        finally:
            self._workers.shutdown(wait=True)
            if self._request_pool is not None:
                self._request_pool.shutdown(wait=True)
            self.stats.finished = time.monotonic()
            super().clean_up()
