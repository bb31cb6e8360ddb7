"""Agillic sinks: recipients, static target-group audiences, one-to-many rows."""

from __future__ import annotations

import typing as t
import urllib.parse

import requests

from singer_delivery.batching import chunked, split_to_fit
from singer_delivery.ledger import Scope
from singer_delivery.outputs import Reject
from singer_delivery.serialization import dumps, key_hash
from singer_delivery.sink import DeliverySink, Item, Outcome, RecordRejected
from singer_delivery.snapshot import removals
from target_agillic import contract
from target_agillic.client import AgillicClient
from target_agillic.mapping import PersonDataMapping

if t.TYPE_CHECKING:
    from target_agillic.target import TargetAgillic

NOT_FOUND_MESSAGE = "not found in Agillic; use upsert to create it"
EXISTS_MESSAGE = "already exists in Agillic"
NO_RECIPIENT_MESSAGE = (
    "recipient {id} not found in Agillic; sync recipients first (deliver the "
    "recipients stream before its one-to-many rows)"
)


def api_reject(item: Item, response: requests.Response) -> Reject:
    """A reject carrying the API's own code and message."""
    code, message = contract.error_of(response)
    return Reject(item.key, code.lower(), message, http_status=response.status_code)


def upsert_body(items: list[Item]) -> bytes:
    """``{"recipients": [{"personData": ...}, ...]}`` for the async upsert."""
    return dumps({"recipients": [{"personData": item.payload} for item in items]})


class AgillicSink(DeliverySink):
    """What every Agillic sink shares: its settings, mapping and client."""

    target: TargetAgillic

    def __init__(
        self, target: TargetAgillic, stream_name: str, **kwargs: t.Any
    ) -> None:
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.settings = target.stream_settings(stream_name)
        self.mapping = PersonDataMapping.from_settings(self.settings)
        self.client = AgillicClient(
            target.transport,
            self.stats,
            task_timeout=float(self.config.get("task_timeout", 600)),
        )

    @property
    def batches_in_flight(self) -> int:
        """Batches spend most of their time waiting for their task, not holding
        a connection (the transport caps those at ``max_concurrency``), so
        more of them than connections keep the reader from stalling."""
        return 3 * int(self.config.get("max_concurrency", 10))

    @property
    def request_concurrency(self) -> int:
        """Per-record calls use every allowed connection."""
        return int(self.config.get("max_concurrency", 10))

    def scope_for(self, object_type: str, object_name: str) -> Scope:
        """A ledger scope on this instance for this stream."""
        return Scope(
            target=self.target.name,
            instance=urllib.parse.urlsplit(self.config["api_endpoint"]).netloc,
            object_type=object_type,
            object_name=object_name,
            stream=self.stream_name,
        )

    def run_async_batches(
        self, path: str, items: list[Item], encode: t.Callable[[list[Item]], bytes]
    ) -> t.Iterator[tuple[Item, contract.EntryError | None]]:
        """Submit items in bodies under 20 MB, wait for each task, and pair every
        item with its entry error (``index`` counts items in body order)."""
        for chunk, body in split_to_fit(items, encode, contract.MAX_BODY_BYTES):
            status = self.client.run_batch(path, f"POST {path}", body)
            self.stats.add(created=status.created, updated=status.updated)
            errors = {error.index: error for error in status.errors}
            for index, item in enumerate(chunk):
                yield item, errors.get(index)


def entry_reject(item: Item, error: contract.EntryError) -> Reject:
    """A reject carrying a task entry's code and message."""
    return Reject(item.key, error.code.lower(), error.message)


class RecipientSink(AgillicSink):
    """Writes recipients' Person Data; ``sync_mode`` picks the calls."""

    def __init__(
        self, target: TargetAgillic, stream_name: str, **kwargs: t.Any
    ) -> None:
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.sync_mode: str = self.settings.get("sync_mode") or "upsert"

    @property
    def scope(self) -> Scope:
        """Recipients of one instance, keyed by the recipient ID field."""
        return self.scope_for("recipients", self.mapping.recipient_id_field)

    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """Person Data plus the recipient ID taken from it."""
        person_data = self.mapping.person_data(record)
        return self.mapping.recipient_id(person_data), person_data

    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Upsert in async batches; insert and update one recipient per call."""
        if self.sync_mode == "insert":
            return self.map_concurrently(self._insert, items)
        if self.sync_mode == "update":
            return self.map_concurrently(self._update, items)
        return self.upsert(items)

    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Existence checks (read-only) decide create, update or reject."""
        outcomes = self.map_concurrently(self._plan_one, items)
        self.target.planned_recipients.update(
            o.item.key for o in outcomes if o.action == "create"
        )
        return outcomes

    def upsert(self, items: list[Item]) -> list[Outcome]:
        """The async batch upsert; per-entry errors become rejects."""
        return [
            Outcome(item, entry_reject(item, error) if error else None)
            for item, error in self.run_async_batches(
                contract.UPSERT_PATH, items, upsert_body
            )
        ]

    def _insert(self, item: Item) -> Outcome:
        response = self.client.create_recipient(item.payload)
        if response.status_code == 409:
            return Outcome(
                item, Reject(item.key, "already_exists", EXISTS_MESSAGE, 409)
            )
        if not response.ok:
            return Outcome(item, api_reject(item, response))
        self.stats.add(created=1)
        return Outcome(item)

    def _update(self, item: Item) -> Outcome:
        """Check existence first: Agillic's PUT would create a missing recipient."""
        found = self.client.get_recipient(item.key)
        if found.status_code == 404:
            return Outcome(item, Reject(item.key, "not_found", NOT_FOUND_MESSAGE, 404))
        if not found.ok:
            return Outcome(item, api_reject(item, found))
        response = self.client.put_recipient(item.key, item.payload)
        if not response.ok:
            return Outcome(item, api_reject(item, response))
        if response.status_code == 201:
            self.logger.warning(
                "A recipient was deleted between the existence check and the "
                "update and has been created again"
            )
            self.stats.add(created=1)
        else:
            self.stats.add(updated=1)
        return Outcome(item)

    def _plan_one(self, item: Item) -> Outcome:
        found = self.client.get_recipient(item.key)
        if found.status_code not in (200, 404):
            return Outcome(item, api_reject(item, found))
        exists = found.status_code == 200
        if self.sync_mode == "insert" and exists:
            return Outcome(
                item, Reject(item.key, "already_exists", EXISTS_MESSAGE, 409)
            )
        if self.sync_mode == "update" and not exists:
            return Outcome(item, Reject(item.key, "not_found", NOT_FOUND_MESSAGE, 404))
        return Outcome(item, action="update" if exists else "create")


class AudienceSink(RecipientSink):
    """Keeps a static target group in step with a stream (add/remove/mirror).

    Members are remembered in the ledger, because Agillic cannot list a
    group's members: only what this target put there can be taken out again.
    """

    def __init__(
        self, target: TargetAgillic, stream_name: str, **kwargs: t.Any
    ) -> None:
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.group: str = self.settings["target_group_name"]
        self.audience_mode: str = self.settings["audience_mode"]

    @property
    def scope(self) -> Scope:
        """What change detection compares: removals apart from additions."""
        if self.audience_mode == "remove":
            return self.removal_scope
        return self.membership_scope

    @property
    def membership_scope(self) -> Scope:
        """The group as fed by this stream: members added, and their payloads."""
        return self.scope_for("target_group", self.group)

    @property
    def removal_scope(self) -> Scope:
        """Removals requested by this stream, so unchanged ones are not repeated."""
        return self.scope_for("target_group_removal", self.group)

    def observe_batch(self, items: list[Item]) -> None:
        """Mirror: every member of the snapshot counts as seen, changed or not."""
        if self.audience_mode == "mirror":
            self.run.seen_set(self.scope.scope_id).add(item.key for item in items)

    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Remove; or upsert, then add those whose upsert completed."""
        if self.audience_mode == "remove":
            return self.change_members("remove", items)
        upserted = self.upsert(items)
        rejected = [o for o in upserted if o.reject is not None]
        done = [o.item for o in upserted if o.reject is None]
        members = self.run.ledger.known_members(
            self.membership_scope.scope_id, [item.key for item in done]
        )
        added = self.change_members("add", [i for i in done if i.key not in members])
        # a changed member only needed its Person Data upserted
        kept = [Outcome(item) for item in done if item.key in members]
        return [*rejected, *added, *kept]

    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """The upsert plan, plus a group line for each membership change."""
        operation = "remove" if self.audience_mode == "remove" else "add"
        outcomes = (
            [Outcome(item, action="group_remove") for item in items]
            if operation == "remove"
            else list(super().plan(items))
        )
        if operation == "add":
            known = self.run.ledger.known_members(
                self.membership_scope.scope_id, [item.key for item in items]
            )
            assert self.run.plan is not None
            for outcome in outcomes:
                if outcome.reject is None and outcome.item.key not in known:
                    self.stats.plan("group_add")
                    self.run.plan.write(self.stream_name, outcome.item.key, "group_add")
        return outcomes

    def change_members(self, operation: str, items: list[Item]) -> list[Outcome]:
        """Group requests of at most 100 IDs, several at once."""
        chunks = [list(chunk) for chunk in chunked(items, contract.MAX_GROUP_IDS)]
        results = self.map_concurrently(
            lambda chunk: self._change_chunk(operation, chunk), chunks
        )
        return [outcome for chunk_outcomes in results for outcome in chunk_outcomes]

    def _change_chunk(self, operation: str, items: list[Item]) -> list[Outcome]:
        errors = self.client.change_group(operation, self.group, [i.key for i in items])
        done = [item.key for item in items if item.key not in errors]
        self.remember(operation, done)
        return [
            Outcome(
                item, Reject(item.key, errors[item.key][0].lower(), errors[item.key][1])
            )
            if item.key in errors
            else Outcome(item)
            for item in items
        ]

    def remember(self, operation: str, member_ids: list[str]) -> None:
        """Update the ledger's membership for changes the API acknowledged."""
        members = self.membership_scope.scope_id
        hashes = [key_hash(m) for m in member_ids]
        if operation == "add":
            self.run.ledger.add_members(members, member_ids)
            self.run.ledger.forget_deliveries(self.removal_scope.scope_id, hashes)
            self.stats.add(group_added=len(member_ids))
        else:
            # forgetting the payload makes the same record add the member again
            self.run.ledger.remove_members(members, member_ids)
            self.run.ledger.forget_deliveries(members, hashes)
            self.stats.add(group_removed=len(member_ids))

    def finish_snapshot(self) -> None:
        """Mirror: remove remembered members the complete snapshot did not hold."""
        if self.audience_mode != "mirror":
            return
        if not self.snapshot_complete:
            self.logger.warning(
                "Mirror of target group %r: the tap sent ACTIVATE_VERSION before "
                "stream %s but none after it, so the snapshot cannot be known "
                "complete and no member was removed. Turn off the tap's "
                "emit_activate_version_messages (a clean end of input then "
                "completes the snapshot) or set "
                "process_activate_version_messages to false.",
                self.group,
                self.stream_name,
            )
            return
        scope_id = self.scope.scope_id
        seen = self.run.seen_set(scope_id)
        remembered = self.run.ledger.member_count(scope_id)
        count = sum(len(page) for page in removals(self.run.ledger, scope_id, seen))
        ratio = float(self.settings.get("max_removal_ratio", 0.5))
        if remembered and count > ratio * remembered:
            self.run.fail(
                f"mirror of target group {self.group!r} (stream {self.stream_name}) "
                f"would remove {count} of the {remembered} members it remembers "
                f"({count / remembered:.0%}), more than max_removal_ratio={ratio:g}; "
                "nothing was removed. An empty or partial snapshot is the usual "
                "cause; if the audience really shrank, raise max_removal_ratio "
                "for one run."
            )
            return
        for page in removals(self.run.ledger, scope_id, seen):
            self._remove_page(page)

    def _remove_page(self, member_ids: list[str]) -> None:
        if self.run.plan is not None:
            for member in member_ids:
                self.stats.plan("group_remove")
                self.run.plan.write(self.stream_name, member, "group_remove")
            return
        items = [Item(m, None, "", key_hash(m)) for m in member_ids]
        for outcome in self.change_members("remove", items):
            if outcome.reject is not None:
                self.reject(outcome.reject)


class OneToManySink(AgillicSink):
    """Upserts rows of a one-to-many table, grouped by recipient.

    Drains after the recipient sinks, so rows of recipients created in the
    same run find them. Rows whose recipient is still missing (the tap sent
    them before their recipients) are retried at each checkpoint, holding
    STATE back meanwhile, and rejected only at the end of input.
    """

    drain_priority = 1

    def __init__(
        self, target: TargetAgillic, stream_name: str, **kwargs: t.Any
    ) -> None:
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.table_name: str = self.settings["one_to_many_table_id"]
        self.table = target.one_to_many_tables[self.table_name]
        self._deferred: list[Item] = []

    @property
    def scope(self) -> Scope:
        """Rows of one table, keyed by recipient and row identifier."""
        return self.scope_for("one_to_many", self.table_name)

    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """The recipient ID and the row; the key joins both."""
        data = self.mapping.person_data(record)
        recipient_id = self.mapping.recipient_id(data)
        row = {k: v for k, v in data.items() if k != self.mapping.recipient_id_field}
        identifier = self.table.identifier
        if identifier is None or row.get(identifier) in (None, ""):
            msg = f"the row has no value for {self.table_name}'s identifier field {identifier}"
            raise RecordRejected(
                "missing_row_identifier", msg, fields=(str(identifier),)
            )
        return f"{recipient_id}\x1f{row[identifier]}", {
            "recipientId": recipient_id,
            "row": row,
        }

    def process_batch(self, context: dict) -> None:
        """Recipients read so far go first."""
        self.target.flush_before(self)
        super().process_batch(context)

    def body(self, items: list[Item]) -> bytes:
        """Rows grouped by recipient, in the order the errors' indexes count."""
        grouped: dict[str, list[dict[str, t.Any]]] = {}
        for item in items:
            grouped.setdefault(item.payload["recipientId"], []).append(
                item.payload["row"]
            )
        recipients = [
            {"recipientId": r, "records": rows} for r, rows in grouped.items()
        ]
        return dumps({"oneToManyTableId": self.table_name, "recipients": recipients})

    def ordered(self, items: list[Item]) -> list[Item]:
        """Items in the order ``body`` writes them (grouped by recipient)."""
        order = {
            r: n
            for n, r in enumerate(
                dict.fromkeys(i.payload["recipientId"] for i in items)
            )
        }
        return sorted(items, key=lambda i: order[i.payload["recipientId"]])

    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Async OTM upsert; unknown recipients wait for the next checkpoint."""
        outcomes, deferred = self._upsert_rows(items, final=False)
        self._deferred.extend(deferred)
        return outcomes

    def _upsert_rows(
        self, items: list[Item], *, final: bool
    ) -> tuple[list[Outcome], list[Item]]:
        outcomes: list[Outcome] = []
        deferred: list[Item] = []
        for item, error in self.run_async_batches(
            contract.OTM_UPSERT_PATH, self.ordered(items), self.body
        ):
            if error is None:
                outcomes.append(Outcome(item))
            elif error.code == "NOT_FOUND" and not final:
                deferred.append(item)
            elif error.code == "NOT_FOUND":
                message = NO_RECIPIENT_MESSAGE.format(id=item.payload["recipientId"])
                reject = Reject(item.key, "recipient_not_found", message)
                outcomes.append(Outcome(item, reject))
            else:
                outcomes.append(Outcome(item, entry_reject(item, error)))
        return outcomes, deferred

    def wait_for_deliveries(self) -> None:
        """Then retry rows whose recipient was missing, now that it may exist.

        Rows still missing their recipient wait for the next checkpoint, and
        are rejected only at the end of input, when no recipient can follow.
        """
        super().wait_for_deliveries()
        if self._deferred:
            items, self._deferred = self._deferred, []
            self.target.flush_before(self)
            outcomes, self._deferred = self._upsert_rows(
                items, final=self.target.input_complete
            )
            self.settle(outcomes)

    @property
    def holds_back_state(self) -> bool:
        """Rows waiting for their recipient are neither delivered nor rejected."""
        return bool(self._deferred)

    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Create or update per row; recipients neither present nor planned are rejected."""
        recipients = list(dict.fromkeys(i.payload["recipientId"] for i in items))
        rows = dict(
            zip(
                recipients,
                self.map_concurrently(self._existing_rows, recipients),
                strict=True,
            )
        )
        outcomes = []
        identifier = str(self.table.identifier)
        for item in items:
            recipient = item.payload["recipientId"]
            existing = rows[recipient]
            if existing is None and recipient not in self.target.planned_recipients:
                message = NO_RECIPIENT_MESSAGE.format(id=recipient)
                outcomes.append(
                    Outcome(item, Reject(item.key, "recipient_not_found", message))
                )
                continue
            action = (
                "update"
                if item.payload["row"][identifier] in (existing or set())
                else "create"
            )
            outcomes.append(Outcome(item, action=action))
        return outcomes

    def _existing_rows(self, recipient_id: str) -> set[t.Any] | None:
        response = self.client.one_to_many_rows(recipient_id, self.table_name)
        if response.status_code == 404:
            return None
        self.client.raise_for_status(response, "reading one-to-many rows")
        body = response.json() if response.content else {}
        identifier = str(self.table.identifier)
        return {
            row.get(identifier)
            for row in body.get("recordList") or []
            if isinstance(row, dict)
        }
