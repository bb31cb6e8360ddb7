"""The delivery pipeline every destination sink shares.

On the reading thread, a record is validated, mapped by the destination
(``map_record``: its key and payload), encoded once and hashed, and gathered
into a batch. A full batch is checked against the ledger in one query; only
new or changed items go to a delivery thread, where the destination's
``deliver`` (or, in a dry run, ``plan``) returns one outcome per item, and
the run's recorder settles them.

A destination that can read a record's key before mapping it (``raw_key``)
gets the cheaper path: records are gathered as they are, the batch is looked
up by those keys, and a record identical to the one last delivered (same
source fingerprint) is unchanged without being validated or mapped.

A destination implements ``scope``, ``map_record`` and ``deliver`` (and
``plan`` for dry runs); see ``docs/adding-a-destination.md``.
"""

from __future__ import annotations

import abc
import threading
import typing as t
from concurrent.futures import Future
from importlib.metadata import version

import fastjsonschema
from singer_sdk.sinks import BatchSink
from typing_extensions import override

from singer_delivery.errors import Abandoned
from singer_delivery.ledger import NOTHING_KNOWN, Known
from singer_delivery.outcomes import (
    Action,
    Delivered,
    Item,
    Outcome,
    Reason,
    RecordRejected,
    Reject,
    Settled,
)
from singer_delivery.serialization import (
    SourceFingerprints,
    canonical_json,
    fingerprint_of,
    key_hash,
)
from singer_delivery.settings import payload_settings
from singer_delivery.snapshot import removals

if t.TYPE_CHECKING:
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from singer_delivery.ledger import Scope
    from singer_delivery.recorder import Membership
    from singer_delivery.run import DeliveryRun
    from singer_delivery.target import DeliveryTarget

_A = t.TypeVar("_A")
_T = t.TypeVar("_T")


class DeliveryContractError(RuntimeError):
    """A destination broke the one-outcome-per-item contract (a bug)."""


class _Batch:
    """Items on their way, and the claim that holds back STATE behind them."""

    __slots__ = ("claim", "final", "items", "keys")

    def __init__(self, items: list[Item], claim: int, *, final: bool = False):
        self.items = items
        self.claim = claim
        self.final = final
        self.keys = frozenset(item.key_hash for item in items)


class DeliverySink(BatchSink, abc.ABC):
    """A sink that sends only what changed and records what was acknowledged."""

    #: Sinks with a lower priority are delivered first (recipients before
    #: the rows and events that need them).
    drain_priority: t.ClassVar[int] = 0

    def __init__(
        self,
        target: DeliveryTarget[t.Any],
        stream_name: str,
        schema: dict[str, t.Any],
        key_properties: t.Sequence[str] | None,
    ) -> None:
        self.run: DeliveryRun[t.Any] = target.delivery_run
        self.stats = self.run.stats_for(stream_name)
        self.snapshot = self.run.snapshot_for(stream_name)
        super().__init__(target, stream_name, schema, key_properties)
        self.settings = self.run.settings_for(stream_name)
        self._fast_validator = self._compile_validator()
        self._identity = _identity(target, self.settings, schema, key_properties)
        self._sources: SourceFingerprints | None = None
        #: Whether records wait unmapped for their batch's lookup: while most
        #: of a batch is unchanged at the source (see ``_map_raw``).
        self._gather = True
        self._raw: list[tuple[dict[str, t.Any], int]] = []
        self._pending: dict[str, Item] = {}
        self._pending_claim: int | None = None
        self._inflight: dict[Future[None], _Batch] = {}
        self._inflight_lock = threading.Lock()
        self._deferred: list[Item] = []
        self._deferred_claim: int | None = None
        self._batch_size = self.batch_size
        self._max_payload = self.max_payload_bytes
        self._include_record = self.run.rejects.include_record
        self._held: list[Item] = []
        self._held_claims: list[int] = []
        self.held_count = 0
        self.run.register(self)

    # --- hooks for destinations -------------------------------------------

    @property
    @abc.abstractmethod
    def scope(self) -> Scope:
        """The destination object this sink writes to (its ledger history)."""

    @abc.abstractmethod
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """Return (key, payload) or raise ``RecordRejected``."""

    @abc.abstractmethod
    def deliver(self, items: list[Item]) -> t.Iterable[Settled]:
        """Write the items; return exactly one outcome per item.

        Items acknowledged alike may share one ``Delivered``. Runs on a
        delivery thread. Writes must be safe to repeat: a crash between the
        API's answer and the ledger commit sends them again.
        """

    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Dry run: what ``deliver`` would do, found with read-only calls only.

        By default every changed item would be written (``upsert``); a
        destination that can tell create from update says so here.
        """
        return [Outcome.done(item, Action.UPSERTED) for item in items]

    @property
    def membership(self) -> Membership | None:
        """The group scopes when this sink changes a set's members."""
        return None

    @property
    def max_payload_bytes(self) -> int | None:
        """The largest payload one request can carry; larger ones are rejected."""
        return None

    def estimated_calls(self, planned: list[Outcome]) -> int:
        """API calls a real run would make for these planned outcomes.

        For a dry run's estimate against ``daily_call_budget``; one call per
        write by default, destinations with batch calls say better.
        """
        return sum(1 for outcome in planned if outcome.delivered)

    @property
    def resend_changed(self) -> bool:
        """Whether a new payload for a key already delivered is sent again.

        False for writes that must happen once per key (an event fired):
        neither ``full_sync`` nor ``skip_unchanged: false`` sends them again.
        """
        return True

    @property
    def held_until_end(self) -> bool:
        """True for guarded writes (deletes): nothing goes out before the end
        of input, when ``refuse_held`` sees how many there are in all."""
        return False

    @property
    def held_cap(self) -> int:
        """Held items kept in memory; beyond it they are only counted (a run
        over its guard delivers none of them anyway)."""
        return self.batch_size

    def refuse_held(self, count: int) -> str | None:
        """Why ``count`` held writes must not go out (then none does), or None."""
        return None

    def owner_of(self, key: str) -> str | None:
        """The key of the record this one belongs to, if the destination
        deletes it with that record (a one-to-many row with its recipient).

        Deleting the owner then forgets the row, so it is sent again if it
        comes back.
        """
        return None

    @property
    def raw_key(self) -> t.Callable[[t.Mapping[str, t.Any]], str | None] | None:
        """How to read a record's key before mapping it, if the destination can.

        The callable must return exactly the key ``map_record`` would give a
        record it accepts (None when it cannot tell). Records are then looked
        up by that key first, and one whose source fingerprint matches the
        last delivered record's is unchanged without validation or mapping.
        """
        return None

    def key_of_raw(self, record: t.Mapping[str, t.Any]) -> str | None:
        """The destination key of a record that cannot be mapped, if it shows.

        A mirror counts a row with a usable member ID as seen even when the
        row is rejected for another field: a bad value must never turn into
        a removal. Mirror sinks implement it.
        """
        return None

    @property
    def mirror(self) -> bool:
        """True when this sink makes a set equal to the stream's snapshot.

        A mirror sink has a ``membership``, implements ``remove``, and names
        its set in ``mirror_name``; at the end of a complete snapshot the
        members it remembers but did not see are removed.
        """
        return False

    @property
    def mirror_name(self) -> str:
        """How messages name the mirrored set (e.g. ``target group 'VIP'``)."""
        return self.stream_name

    def remove(self, items: list[Item]) -> t.Iterable[Settled]:
        """Mirror sinks: take these members out of the set (``Action.REMOVED``)."""
        raise NotImplementedError

    # --- helpers for destinations --------------------------------------------

    @property
    def scope_id(self) -> str:
        """The ledger id of ``scope``."""
        return self.scope.scope_id

    def map_concurrently(
        self, call: t.Callable[[_A], _T], values: t.Sequence[_A]
    ) -> list[_T]:
        """Run a per-value request for every value, several at once, in order.

        Once the run is stopping, a request not yet started is not started:
        the batch is abandoned at once (its records stay unsettled) rather
        than spending the shutdown grace on calls whose batch could no longer
        be committed as a whole.
        """

        def unless_stopping(value: _A) -> _T:
            if self.run.stopping:
                raise Abandoned
            return call(value)

        return self.run.request_pool.map(unless_stopping, values)

    # --- validation -----------------------------------------------------------

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """Off: ``accept`` rejects invalid records instead of failing the run."""
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

    # --- the reading thread -------------------------------------------------

    def accept(self, record: dict[str, t.Any], seq: int) -> None:
        """Map one record into the pending batch, or reject it with a reason.

        With source fingerprints, while most records are unchanged, the
        record joins the batch as it is and is mapped (if it changed) when the
        batch is looked up; otherwise it is mapped at once, its source
        fingerprint kept for the next run.
        """
        self.stats.received += 1
        self.snapshot.last_record = seq
        sources = self._sources
        if sources is not None and self._gather:
            if not self._raw and not self._pending:
                self._pending_claim = self.run.checkpoints.claim(seq)
            self._raw.append((record, seq))
            if len(self._raw) >= self._batch_size:
                self.submit_pending()
            return
        source = sources.of(record) if sources is not None else None
        if (item := self._map(record, seq, source)) is None:
            return
        self._add_pending(item, seq)
        if len(self._pending) >= self._batch_size:
            self.submit_pending()

    def _add_pending(self, item: Item, seq: int) -> None:
        """Into the batch; a later record of the same key supersedes an earlier."""
        pending = self._pending
        if not pending and self._pending_claim is None:
            self._pending_claim = self.run.checkpoints.claim(seq)
        elif item.key_hash in pending:
            self.stats.add(duplicates=1)
        pending[item.key_hash] = item

    def _map(
        self, record: dict[str, t.Any], seq: int, source: str | None = None
    ) -> Item | None:
        """Validate, map and encode one record; None when it was rejected."""
        if self._fast_validator is not None:
            try:
                self._fast_validator(record)
            except fastjsonschema.JsonSchemaValueException as exc:
                field = ".".join(str(p) for p in exc.path[1:2])
                message = f"does not match the stream schema: {exc.message}"
                reject = Reject(
                    self.source_key(record),
                    Reason.INVALID_RECORD,
                    message,
                    fields=(field,) if field else (),
                )
                self._observe_raw(record)
                self.run.recorder.unmapped(
                    self, self._with_record(reject, record), invalid=True
                )
                return None
        try:
            key, payload = self.map_record(record)
        except RecordRejected as exc:
            self._observe_raw(record)
            reject = Reject(
                self.source_key(record), exc.reason, exc.message, fields=exc.fields
            )
            self.run.recorder.unmapped(self, self._with_record(reject, record))
            return None
        encoded = canonical_json(payload)
        if (limit := self._max_payload) is not None and len(encoded) > limit:
            message = (
                f"the mapped record is {len(encoded):,} bytes, more than the "
                f"{limit:,} bytes one request may carry"
            )
            reject = Reject(key, Reason.PAYLOAD_TOO_LARGE, message)
            self.observe((key,))
            self.run.recorder.unmapped(self, self._with_record(reject, record))
            return None
        return Item(
            key,
            encoded,
            fingerprint_of(encoded),
            key_hash(key),
            seq,
            record if self._include_record else None,
            source,
        )

    @property
    def batch_size(self) -> int:
        """Records per batch (``batch_size_rows``)."""
        return int(self.config["batch_size_rows"])

    def source_key(self, record: t.Mapping[str, t.Any]) -> str | None:
        """The record's key in the source (its stream's key properties).

        Used for records rejected before they have a destination key, so the
        rejects file still says which row to fix.
        """
        if not self.key_properties:
            return None
        return ",".join(f"{k}={record.get(k)}" for k in self.key_properties)

    def _observe_raw(self, record: t.Mapping[str, t.Any]) -> None:
        if self.mirror and (key := self.key_of_raw(record)) is not None:
            self.observe((key,))

    def _with_record(self, reject: Reject, record: dict[str, t.Any]) -> Reject:
        if not self.run.rejects.include_record:
            return reject
        return Reject(
            reject.key,
            reject.reason,
            reject.message,
            reject.http_status,
            reject.fields,
            reject.permanent,
            record,
        )

    def submit_pending(self) -> None:
        """Check the pending batch against the ledger; deliver what changed."""
        if not self._pending and not self._raw:
            return
        self.run.deliver_dependencies_of(self)
        gathered = bool(self._raw)
        if gathered:
            known = self._map_raw()  # waits for its keys in flight itself
        else:
            known = {}
            self._wait_for_keys(frozenset(self._pending))
        claim = t.cast(int, self._pending_claim)
        if not self._pending:  # every record was unchanged or rejected
            self._pending_claim = None
            self.run.checkpoints.release(claim)
            return
        items = list(self._pending.values())
        self._pending, self._pending_claim = {}, None
        self.observe(item.key for item in items)
        changed, matched = self._changed(items, known)
        if not gathered:
            self._gather = 2 * matched >= len(items)
        if changed and self.held_until_end:
            self._hold(changed, claim)
        elif changed:
            self._start(_Batch(changed, claim))
        else:
            self.run.checkpoints.release(claim)

    def _wait_for_keys(self, keys: frozenset[str]) -> None:
        """A key still in flight must land before its newer version is sent."""
        with self._inflight_lock:
            pending = [
                f for f, b in self._inflight.items() if not keys.isdisjoint(b.keys)
            ]
        for future in pending:
            self.run.wait(future)

    def _map_raw(self) -> dict[str, Known]:
        """Settle the gathered records unchanged at the source; map the others.

        Looks the batch up by the keys read before mapping (waiting first
        for any of them still in flight), and returns what the ledger knows,
        so ``_changed`` does not ask again. Records are taken in input order:
        a later one of the same key supersedes an earlier, whichever way
        each went.
        """
        raw, self._raw = self._raw, []
        sources = t.cast(SourceFingerprints, self._sources)
        read_key = t.cast(t.Callable[[t.Mapping[str, t.Any]], str | None], self.raw_key)
        gathered: list[
            tuple[dict[str, t.Any], int, str | None, str | None, str | None]
        ] = []
        for record, seq in raw:
            if (key := read_key(record)) is None:
                gathered.append((record, seq, None, None, None))
            else:
                gathered.append((record, seq, key, key_hash(key), sources.of(record)))
        hashes = [entry[3] for entry in gathered if entry[3] is not None]
        self._wait_for_keys(frozenset(hashes))
        known = self._lookup(hashes)
        for looked_up in hashes:  # ``_changed`` must not ask again
            known.setdefault(looked_up, NOTHING_KNOWN)
        unchanged: dict[str, Item] = {}
        for record, seq, key, hashed, source in gathered:
            state = known.get(hashed) if hashed is not None else None
            if key and hashed and source and state and state.source == source:
                found = t.cast(str, state.fingerprint)  # a delivery's, never None
                item, same = Item(key, b"", found, hashed, seq), True
            elif (mapped := self._map(record, seq, source)) is not None:
                item, same = mapped, False
            else:
                continue  # rejected: an earlier record of its key still counts
            earlier = unchanged.pop(item.key_hash, None) or self._pending.pop(
                item.key_hash, None
            )
            if earlier is not None:
                self.stats.add(duplicates=1)
            if same:
                unchanged[item.key_hash] = item
            else:
                self._add_pending(item, seq)
        if unchanged:
            self.stats.add(unchanged_at_source=len(unchanged))
            self.run.recorder.unchanged(self, list(unchanged.values()))
        self._gather = 2 * len(unchanged) >= len(raw)
        return known

    def _lookup(self, key_hashes: list[str]) -> dict[str, Known]:
        return self.run.ledger.lookup(
            self.scope_id,
            key_hashes,
            quarantine=self.config["retry_rejected"] == "changed",
        )

    def _changed(
        self, items: list[Item], known: dict[str, Known]
    ) -> tuple[list[Item], int]:
        """Settle unchanged and quarantined items; return those to send, and
        how many items matched their stored source fingerprint.

        ``known`` is what ``_map_raw`` already read; the rest is looked up.
        """
        config = self.config
        if self.resend_changed and (
            config["full_sync"] or not config["skip_unchanged"]
        ):
            return items, 0
        if unknown := [item.key_hash for item in items if item.key_hash not in known]:
            known = {**known, **self._lookup(unknown)}
        changed: list[Item] = []
        unchanged: list[Item] = []
        stale: list[Item] = []
        quarantined: list[Item] = []
        reasons: list[str] = []
        matched = 0
        for item in items:
            state = known.get(item.key_hash)
            if state is None:
                changed.append(item)
            elif state.fingerprint == item.fingerprint or (
                state.fingerprint is not None and not self.resend_changed
            ):
                unchanged.append(item)
                if item.source is None:
                    continue
                if item.source == state.source:
                    matched += 1
                elif self._stale(state.source):
                    stale.append(item)
            elif state.refused_fingerprint == item.fingerprint:
                quarantined.append(item)
                reasons.append(t.cast(str, state.refused_reason))
            else:
                changed.append(item)
        if unchanged:
            self.run.recorder.unchanged(self, unchanged)
        if stale:
            self.run.recorder.renew_sources(self, stale)
        if quarantined:
            self.run.recorder.quarantined(self, quarantined, reasons)
        return changed, matched

    def _stale(self, stored: str | None) -> bool:
        """Whether a stored source fingerprint is worth renewing (see
        ``SourceFingerprints``): missing, or made under another identity."""
        return self._sources is not None and self._sources.is_stale(stored)

    def _start(self, batch: _Batch) -> None:
        """Hand a batch to a delivery thread (waiting for a free slot)."""
        self.run.take_slot()
        future = self.run.batch_pool.submit(lambda: self._run_batch(batch))
        with self._inflight_lock:
            self._inflight[future] = batch
        future.add_done_callback(self._batch_done)

    def _batch_done(self, future: Future[None]) -> None:
        with self._inflight_lock:
            self._inflight.pop(future, None)
        self.run.give_slot()

    # --- delivery threads ---------------------------------------------------

    def _run_batch(self, batch: _Batch) -> None:
        """Deliver (or plan) one batch and settle it; a failure stops the run."""
        if self.run.stopping:
            return  # abandoned: its claim stays, so no STATE passes it
        self.stats.add(sent=len(batch.items))
        try:
            if self.run.recorder.dry_run:
                planned = list(self.plan(batch.items))
                self._check_outcomes(batch.items, planned)
                self.run.estimate_calls(self.estimated_calls(planned))
                outcomes: t.Sequence[Settled] = planned
            else:
                outcomes = list(self.deliver(batch.items))
                self._check_outcomes(batch.items, outcomes)
            if deferred := self.run.recorder.settle(self, outcomes, final=batch.final):
                self._defer(deferred)
            self.run.checkpoints.release(batch.claim)
        except Abandoned:
            return
        except BaseException as exc:  # noqa: BLE001 - the run fails with it
            self.run.fail(exc)

    def _check_outcomes(self, items: list[Item], outcomes: t.Sequence[Settled]) -> None:
        """Exactly one outcome per item: anything else is a destination bug."""
        given: list[int] = []
        for outcome in outcomes:
            if isinstance(outcome, Delivered):
                given += map(id, outcome.items)
            else:
                given.append(id(outcome.item))
        if len(given) != len(items) or set(given) != {id(item) for item in items}:
            msg = (
                f"{type(self).__name__}.{'plan' if self.run.recorder.dry_run else 'deliver'} "
                f"returned {len(given)} outcomes for {len(items)} items; a "
                "destination must return exactly one outcome per item"
            )
            raise DeliveryContractError(msg)

    def _defer(self, items: list[Item]) -> None:
        """Hold items for the next checkpoint, and the STATE after them."""
        with self._inflight_lock:
            if not self._deferred:
                self._deferred_claim = self.run.checkpoints.claim(
                    min(item.seq for item in items)
                )
            self._deferred.extend(items)

    # --- checkpoints and the end of input -----------------------------------

    @property
    def has_deferred(self) -> bool:
        """Whether records wait for a later checkpoint."""
        with self._inflight_lock:
            return bool(self._deferred)

    def retry_deferred(self, *, final: bool) -> None:
        """Try deferred items again, now that what they wait for may be there.

        ``final`` (the end of input): what is still not possible is rejected.
        """
        with self._inflight_lock:
            items, claim = self._deferred, self._deferred_claim
            self._deferred, self._deferred_claim = [], None
        if not items:
            return
        self.run.deliver_dependencies_of(self)
        self._start(_Batch(items, t.cast(int, claim), final=final))

    def _hold(self, items: list[Item], claim: int) -> None:
        """Keep guarded writes for the end of input (a dry run plans them now)."""
        self.held_count += len(items)
        if self.run.recorder.dry_run:
            self._start(_Batch(items, claim))
            return
        room = max(0, self.held_cap - len(self._held))
        self._held.extend(items[:room])
        self._held_claims.append(claim)

    def release_held(self) -> None:
        """At a clean end of input: deliver the held writes, or refuse them all.

        A refused lot stays unsettled, so no STATE passes it and a rerun with
        the guard raised reads it again.
        """
        if not self.held_count:
            return
        if problem := self.refuse_held(self.held_count):
            self.run.refuse(problem)
            return
        claims, self._held_claims = self._held_claims, []
        held, self._held = self._held, []
        for start in range(0, len(held), self.batch_size):
            chunk = held[start : start + self.batch_size]
            claim = self.run.checkpoints.claim(min(item.seq for item in chunk))
            self._start(_Batch(chunk, claim))
        for claim in claims:
            self.run.checkpoints.release(claim)

    def wait_idle(self) -> None:
        """Block until no batch of this sink is in flight (interruptibly)."""
        while True:
            with self._inflight_lock:
                futures = list(self._inflight)
            if not futures:
                return
            for future in futures:
                self.run.wait(future)

    def inflight_futures(self) -> list[Future[None]]:
        """The batches being delivered right now."""
        with self._inflight_lock:
            return list(self._inflight)

    # --- mirror -------------------------------------------------------------

    def observe(self, keys: t.Iterable[str]) -> None:
        """Every usable key read counts as seen by a mirror, whatever its fate."""
        if self.mirror:
            self.snapshot.seen.add(keys)

    def finish_mirror(self) -> None:
        """Remove the remembered members a complete snapshot did not hold.

        Never from a snapshot not known complete, and never more than
        ``max_removal_ratio`` of the remembered members: then nothing is
        removed and the run fails, saying why.
        """
        if not self.snapshot.complete(self.run.input_complete):
            cause, fix = self.snapshot.why_incomplete(self.stream_name)
            self.logger.warning(
                "Mirror of %s: %s, so the snapshot cannot be known complete and "
                "no member was removed. %s",
                self.mirror_name,
                cause,
                fix,
            )
            return
        members = t.cast("Membership", self.membership).members.scope_id
        ledger, seen = self.run.ledger, self.snapshot.seen
        remembered = ledger.member_count(members)
        count = sum(len(page) for page in removals(ledger.iter_members(members), seen))
        ratio = float(self.settings["max_removal_ratio"])
        if remembered and count > ratio * remembered:
            self.run.refuse(
                f"mirror of {self.mirror_name} (stream {self.stream_name}) would "
                f"remove {count} of the {remembered} members it remembers "
                f"({count / remembered:.0%}), more than max_removal_ratio="
                f"{ratio:g}; nothing was removed. An empty or partial snapshot is "
                "the usual cause; if the audience really shrank, raise "
                "max_removal_ratio for one run."
            )
            return
        for page in removals(ledger.iter_members(members), seen):
            if self.run.stopping:
                return
            self._remove_page(page)

    def _remove_page(self, member_ids: list[str]) -> None:
        seq = self.run.checkpoints.records_read
        items = [Item(m, b"null", "", key_hash(m), seq) for m in member_ids]
        write = self.plan_remove if self.run.recorder.dry_run else self.remove
        outcomes: list[Settled] = list(write(items))
        self._check_outcomes(items, outcomes)
        self.run.recorder.settle(self, outcomes, final=True)

    def plan_remove(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Dry run of ``remove``: every member would be removed."""
        return [Outcome.done(item, Action.REMOVED) for item in items]

    # --- singer-sdk hooks -----------------------------------------------------

    @override
    def process_batch(self, context: dict[str, t.Any]) -> None:
        """Unused: batches are formed and delivered by ``accept``."""

    @override
    def setup(self) -> None:
        """Register the scope so the ledger says what its ids stand for, and
        choose the path records take (see ``raw_key``)."""
        self.run.ledger.register(self.scope)
        if self._uses_source_fingerprints():
            self._sources = SourceFingerprints(self._identity)
        if (membership := self.membership) is not None:
            for scope in (membership.members, membership.removals):
                self.run.ledger.register(scope)

    def _uses_source_fingerprints(self) -> bool:
        """Only where an unchanged record needs nothing at all.

        Not for mirrors or group memberships (each row must be seen or
        counted), guarded or once-per-key writes, or when every record is
        sent anyway (``full_sync``, ``skip_unchanged: false``).
        """
        config = self.config
        return (
            self.raw_key is not None
            and self.resend_changed
            and not self.mirror
            and self.membership is None
            and not self.held_until_end
            and not config["full_sync"]
            and bool(config["skip_unchanged"])
        )

    @override
    def activate_version(self, new_version: int) -> None:
        """The stream's snapshot boundaries (see ``Snapshot``)."""
        self.snapshot.activate_version(new_version, self.run.checkpoints.records_read)


def _identity(
    target: DeliveryTarget[t.Any],
    settings: t.Mapping[str, t.Any],
    schema: dict[str, t.Any],
    key_properties: t.Sequence[str] | None,
) -> bytes:
    """Everything besides the record that decides its payload.

    The versions (a release may map differently), the stream's schema and
    key, and its settings that may change a payload (``payload_settings``):
    a change to any of them makes every source fingerprint stale, and
    records are mapped again (the payload's own fingerprint still decides
    whether one is sent).
    """
    return canonical_json(
        {
            "target": [target.name, target.plugin_version],
            "delivery": version("singer-delivery"),
            "schema": schema,
            "key_properties": list(key_properties or ()),
            "settings": payload_settings(settings, target.config_jsonschema),
        }
    )
