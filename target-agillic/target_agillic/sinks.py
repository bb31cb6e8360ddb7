"""Agillic sinks: recipients, static target-group audiences, one-to-many rows."""

from __future__ import annotations

import typing as t

import requests
from typing_extensions import override

from singer_delivery import (
    Action,
    Delivered,
    DeliverySink,
    Item,
    Membership,
    Outcome,
    RecordRejected,
    Scope,
)
from singer_delivery.batching import chunked, split_to_fit
from singer_delivery.http import ApiError
from singer_delivery.outcomes import Reason, Settled, each_outcome
from target_agillic import contract
from target_agillic.client import BATCH_CALLS, AgillicClient
from target_agillic.mapping import CompiledMapping, PersonDataMapping

if t.TYPE_CHECKING:
    from singer_delivery import DeliveryRun
    from target_agillic.target import AgillicResources, TargetAgillic

NOT_FOUND_MESSAGE = "not found in Agillic; use upsert to create it"
EXISTS_MESSAGE = "already exists in Agillic"
NO_RECIPIENT_MESSAGE = (
    "recipient {id} not found in Agillic; sync recipients first (deliver the "
    "recipients stream before its one-to-many rows)"
)
#: Bytes of a batch body around its entries, kept free under the body limit.
ENVELOPE = 1024
#: Joins the parts of a composite key (never part of a value in practice): a
#: one-to-many row's recipient ID and row identifier, an event's fields.
KEY_SEPARATOR = "\x1f"
TOO_LARGE = "the request body was refused as too large (HTTP 413)"


def refused_by_api(item: Item, response: requests.Response) -> Outcome:
    """A reject carrying the API's own code and message."""
    code, message = contract.error_of(response)
    return Outcome.refused(
        item, code.lower(), message, http_status=response.status_code
    )


def refused_entry(item: Item, error: contract.EntryError) -> Outcome:
    """A reject carrying a task entry's code and message."""
    return Outcome.refused(item, error.code.lower(), error.message)


def too_large(item: Item) -> Outcome:
    """The API refused a body holding only this item as too large."""
    return Outcome.refused(item, Reason.PAYLOAD_TOO_LARGE, TOO_LARGE, http_status=413)


class BatchTask(t.NamedTuple):
    """The items of one request body and the status its task ended with.

    No status when the API refused a body holding ``items[0]`` alone as too
    large.
    """

    items: list[Item]
    status: contract.TaskStatus | None

    def refused(self) -> list[tuple[Item, contract.EntryError]]:
        """The items the task refused, each with its entry error."""
        return [(self.items[index], error) for index, error in self._errors().items()]

    def applied(self) -> list[Item]:
        """The items the task did not refuse."""
        if not (errors := self._errors()):
            return self.items
        return [item for n, item in enumerate(self.items) if n not in errors]

    def labelled(self) -> list[Delivered]:
        """The applied items, created or updated as the task's totals say.

        A task says how many entries it created and how many it updated, not
        which: the first ``created`` applied entries are labelled created,
        the rest updated, so the report's counts are the task's.
        """
        applied = self.applied()
        created = self.status.created if self.status is not None else 0
        return [
            Delivered(applied[:created], (Action.CREATED,)),
            Delivered(applied[created:], (Action.UPDATED,)),
        ]

    def _errors(self) -> dict[int, contract.EntryError]:
        """Entry errors by the position of their item (``index``)."""
        errors = self.status.errors if self.status is not None else ()
        size = len(self.items)
        return {error.index: error for error in errors if 0 <= error.index < size}


def upsert_body(items: list[Item]) -> bytes:
    """The batch upsert body, built from the encoded payloads."""
    return contract.upsert_body(item.encoded for item in items)


class AgillicSink(DeliverySink):
    """What every Agillic sink shares: its settings, mapping and client."""

    run: DeliveryRun[AgillicResources]

    def __init__(self, target: TargetAgillic, stream_name: str, **kwargs: t.Any):
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.mapping = PersonDataMapping.from_settings(self.settings)
        self.compiled: CompiledMapping = self.mapping.compile(self.schema)
        self.client = AgillicClient(
            self.run.transport,
            self.stats,
            task_timeout=float(self.config["task_timeout"]),
            warn_once=self.run.resources.warn_once,
        )

    @property
    @override
    def max_payload_bytes(self) -> int:
        """One recipient must fit a request body on its own."""
        return contract.MAX_BODY_BYTES - ENVELOPE

    def scope_for(self, object_type: str, object_name: str) -> Scope:
        """A ledger scope on this instance for this stream."""
        return self.run.scope(object_type, object_name, self.stream_name)

    @override
    def key_of_raw(self, record: t.Mapping[str, t.Any]) -> str | None:
        """The recipient ID straight from the record (for a mirror's seen set)."""
        return self.compiled.id_of_raw(record)

    def run_async_batches(
        self, path: str, items: list[Item], encode: t.Callable[[list[Item]], bytes]
    ) -> list[BatchTask]:
        """Submit items in bodies under 20 MB and wait for each task.

        A body the API refuses as too large is halved; a single item it
        refuses comes back with no task status.
        """
        tasks: list[BatchTask] = []
        for chunk, body in split_to_fit(items, encode, contract.MAX_BODY_BYTES):
            try:
                status = self.client.run_batch(path, f"POST {path}", body)
            except ApiError as exc:
                if exc.status != 413:
                    raise
                if len(chunk) == 1:
                    tasks.append(BatchTask(chunk, None))
                    continue
                middle = len(chunk) // 2
                tasks += self.run_async_batches(path, chunk[:middle], encode)
                tasks += self.run_async_batches(path, chunk[middle:], encode)
                continue
            tasks.append(BatchTask(chunk, status))
        return tasks


class RecipientSink(AgillicSink):
    """Writes recipients' Person Data; ``sync_mode`` picks the calls."""

    @property
    @override
    def scope(self) -> Scope:
        """Recipients of one instance, keyed by the recipient ID field."""
        return self.scope_for("recipients", self.mapping.recipient_id_field)

    @override
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """Person Data plus the recipient ID taken from it."""
        person_data = self.compiled.person_data(record)
        return self.compiled.recipient_id(person_data), person_data

    @property
    @override
    def raw_key(self) -> t.Callable[[t.Mapping[str, t.Any]], str | None] | None:
        """The recipient ID as the record holds it, when mapping keeps it so."""
        return self.compiled.id_of_raw if self.compiled.keeps_id_as_is else None

    @override
    def deliver(self, items: list[Item]) -> t.Iterable[Settled]:
        """Upsert in async batches; insert and update one recipient per call."""
        mode = self.settings["sync_mode"]
        if mode == "insert":
            return self.map_concurrently(self._insert, items)
        if mode == "update":
            return self.map_concurrently(self._update, items)
        return self.upsert(items)

    @override
    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Existence checks (read-only) decide create, update or reject."""
        outcomes = self.map_concurrently(self._plan_one, items)
        self.run.resources.planned_recipients.update(
            o.item.key for o in outcomes if Action.CREATED in o.actions
        )
        return outcomes

    @override
    def estimated_calls(self, planned: list[Outcome]) -> int:
        """Upsert: a POST and its polls per batch; insert one call, update two
        (the existence check first), per recipient."""
        writes = sum(1 for outcome in planned if outcome.delivered)
        mode = self.settings["sync_mode"]
        if mode == "insert":
            return writes
        if mode == "update":
            return 2 * writes
        return BATCH_CALLS if writes else 0

    def upsert(self, items: list[Item]) -> list[Settled]:
        """The async batch upsert; per-entry errors become rejects.

        Each task's applied entries settle as two groups, created and
        updated (``BatchTask.labelled``). A task without per-entry results
        is read back (``verify_deliveries``).
        """
        outcomes: list[Settled] = []
        unverified: list[Item] = []
        for task in self.run_async_batches(contract.UPSERT_PATH, items, upsert_body):
            if task.status is None:
                outcomes.append(too_large(task.items[0]))
                continue
            outcomes += [refused_entry(item, error) for item, error in task.refused()]
            if task.status.verified:
                outcomes += task.labelled()
            else:
                unverified += task.applied()
        return outcomes + self.verify(unverified)

    def verify(self, items: list[Item]) -> list[Settled]:
        """Read back entries the API acknowledged without per-entry results.

        ``off``: trusted (unverified). ``sample``: one page is read; if all of
        it holds what was sent, the rest is trusted, else everything is read.
        ``all``: everything is read. What is not found as sent is refused as
        transient, so it is sent again next run.
        """
        mode = self.settings["verify_deliveries"]
        if not items or mode == "off":
            return [Delivered(items, (Action.UPSERTED,), verified=False)]
        if mode == "sample":
            sample, rest = items[: contract.LIST_PAGE], items[contract.LIST_PAGE :]
            checked = self._read_back(sample)
            if all(o.delivered for o in checked):
                return [*checked, Delivered(rest, (Action.UPSERTED,), verified=False)]
            return [*checked, *self._read_back(rest)]
        return list(self._read_back(items))

    def _read_back(self, items: list[Item]) -> list[Outcome]:
        field = self.mapping.recipient_id_field
        outcomes = []
        for page in chunked(items, contract.LIST_PAGE):
            found = self._found(field, [item.key for item in page])
            outcomes += [
                Outcome.done(item, Action.UPSERTED)
                if holds(found.get(item.key), item.payload)
                else Outcome.refused(
                    item,
                    "not_applied",
                    "the batch task completed, but reading the recipient back did "
                    "not show what was sent; it is sent again next run",
                    permanent=False,
                )
                for item in page
            ]
        return outcomes

    def _found(self, field: str, keys: list[str]) -> dict[str, dict[str, t.Any]]:
        listed = self.client.list_recipients(field, keys)
        if listed is None:
            listed = [
                data
                for response in self.map_concurrently(self.client.get_recipient, keys)
                if response.status_code == 200
                and isinstance(data := contract.person_data_of(response), dict)
            ]
        return {str(data.get(field)): data for data in listed}

    def _insert(self, item: Item) -> Outcome:
        response = self.client.create_recipient(item.payload)
        if response.status_code == 409:
            return Outcome.refused(
                item, "already_exists", EXISTS_MESSAGE, http_status=409
            )
        if not response.ok:
            return refused_by_api(item, response)
        return Outcome.done(item, Action.CREATED)

    def _update(self, item: Item) -> Outcome:
        """Check existence first: Agillic's PUT would create a missing recipient."""
        found = self.client.get_recipient(item.key)
        if found.status_code == 404:
            return Outcome.refused(
                item, "not_found", NOT_FOUND_MESSAGE, http_status=404
            )
        if not found.ok:
            return refused_by_api(item, found)
        response = self.client.put_recipient(item.key, item.payload)
        if not response.ok:
            return refused_by_api(item, response)
        if response.status_code == 201:
            self.logger.warning(
                "A recipient was deleted between the existence check and the "
                "update and has been created again"
            )
            return Outcome.done(item, Action.CREATED)
        return Outcome.done(item, Action.UPDATED)

    def _plan_one(self, item: Item) -> Outcome:
        found = self.client.get_recipient(item.key)
        if found.status_code not in (200, 404):
            return refused_by_api(item, found)
        exists = found.status_code == 200
        mode = self.settings["sync_mode"]
        if mode == "insert" and exists:
            return Outcome.refused(
                item, "already_exists", EXISTS_MESSAGE, http_status=409
            )
        if mode == "update" and not exists:
            return Outcome.refused(
                item, "not_found", NOT_FOUND_MESSAGE, http_status=404
            )
        return Outcome.done(item, Action.UPDATED if exists else Action.CREATED)


def holds(found: t.Mapping[str, t.Any] | None, sent: t.Mapping[str, t.Any]) -> bool:
    """Whether a read-back recipient holds every value sent (compared as text)."""
    if found is None:
        return False
    return all(_text(found.get(name)) == _text(value) for name, value in sent.items())


def _text(value: t.Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return ""
    return str(value)


def with_upsert(upserted: Outcome, added: Outcome) -> Outcome:
    """One outcome for an item that was upserted, then added to the group."""
    return Outcome.done(
        added.item, *upserted.actions, *added.actions, verified=upserted.verified
    )


class AudienceSink(RecipientSink):
    """Keeps a static target group in step with a stream (add/remove/mirror).

    Members are remembered in the ledger, because Agillic cannot list a
    group's members: only what this target put there can be taken out again.
    """

    def __init__(self, target: TargetAgillic, stream_name: str, **kwargs: t.Any):
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.group: str = self.settings["target_group_name"]
        self.audience_mode: str = self.settings["audience_mode"]

    @property
    @override
    def scope(self) -> Scope:
        """What change detection compares: removals apart from additions."""
        return self.membership.removals if self.removing else self.membership.members

    @property
    @override
    def membership(self) -> Membership:
        """The group as fed by this stream, and this stream's removal requests."""
        return Membership(
            members=self.scope_for("target_group", self.group),
            removals=self.scope_for("target_group_removal", self.group),
        )

    @property
    def removing(self) -> bool:
        """``audience_mode: remove``: the records name members to take out."""
        return self.audience_mode == "remove"

    @property
    @override
    def mirror(self) -> bool:
        """``audience_mode: mirror``."""
        return self.audience_mode == "mirror"

    @property
    @override
    def mirror_name(self) -> str:
        return f"target group {self.group!r}"

    @override
    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Remove; or upsert, then add those whose upsert completed.

        With ``full_sync`` every member of the snapshot is added again
        (adding a member twice is harmless), which repairs a group edited
        outside this target.
        """
        if self.removing:
            return self.change_members("remove", items)
        upserted = each_outcome(self.upsert(items))
        refused = [o for o in upserted if not o.delivered]
        done = [o for o in upserted if o.delivered]
        known = (
            set()
            if self.config["full_sync"]
            else self.run.ledger.known_members(
                self.membership.members.scope_id, [o.item.key for o in done]
            )
        )
        adding = [o for o in done if o.item.key not in known]
        added = self.change_members("add", [o.item for o in adding])
        actions = {id(o.item): o for o in adding}
        merged = [
            with_upsert(actions[id(o.item)], o) if o.delivered else o for o in added
        ]
        kept = [o for o in done if o.item.key in known]
        return [*refused, *merged, *kept]

    @override
    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """The upsert plan, plus a group line for each membership change."""
        if self.removing:
            return [Outcome.done(item, Action.REMOVED) for item in items]
        planned = list(super().plan(items))
        known = (
            set()
            if self.config["full_sync"]
            else self.run.ledger.known_members(
                self.membership.members.scope_id, [item.key for item in items]
            )
        )
        return [
            Outcome.done(o.item, *o.actions, Action.ADDED)
            if o.delivered and o.item.key not in known
            else o
            for o in planned
        ]

    @override
    def estimated_calls(self, planned: list[Outcome]) -> int:
        """The upserts, plus one group call per 100 members added or removed."""
        changes = sum(
            1
            for outcome in planned
            if {Action.ADDED, Action.REMOVED} & set(outcome.actions)
        )
        upserted = [o for o in planned if Action.REMOVED not in o.actions]
        return super().estimated_calls(upserted) + -(-changes // contract.MAX_GROUP_IDS)

    @override
    def remove(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Mirror removals: members the complete snapshot did not hold."""
        return self.change_members("remove", items)

    def change_members(self, operation: str, items: list[Item]) -> list[Outcome]:
        """Group requests of at most 100 IDs, several at once."""
        chunks = [list(chunk) for chunk in chunked(items, contract.MAX_GROUP_IDS)]
        results = self.map_concurrently(
            lambda chunk: self._change_chunk(operation, chunk), chunks
        )
        return [outcome for chunk_outcomes in results for outcome in chunk_outcomes]

    def _change_chunk(self, operation: str, items: list[Item]) -> list[Outcome]:
        errors = self.client.change_group(operation, self.group, [i.key for i in items])
        action = Action.ADDED if operation == "add" else Action.REMOVED
        return [
            Outcome.refused(item, errors[item.key][0].lower(), errors[item.key][1])
            if item.key in errors
            else Outcome.done(item, action)
            for item in items
        ]


class OneToManySink(AgillicSink):
    """Upserts rows of a one-to-many table, grouped by recipient.

    Delivered after the recipient sinks, so rows of recipients created in
    the same run find them. Rows whose recipient is still missing (the tap
    sent them before their recipients) are deferred: retried at each
    checkpoint, holding STATE back meanwhile, and rejected only at the end
    of input.
    """

    drain_priority = 1

    def __init__(self, target: TargetAgillic, stream_name: str, **kwargs: t.Any):
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.table_name: str = self.settings["one_to_many_table_id"]
        self.table = self.run.resources.one_to_many_tables[self.table_name]

    @property
    @override
    def scope(self) -> Scope:
        """Rows of one table, keyed by recipient and row identifier."""
        return self.scope_for("one_to_many", self.table_name)

    @override
    def owner_of(self, key: str) -> str | None:
        """The recipient: Agillic deletes a recipient's rows with it."""
        return key.split(KEY_SEPARATOR, 1)[0]

    @property
    @override
    def raw_key(self) -> t.Callable[[t.Mapping[str, t.Any]], str | None] | None:
        """Recipient ID and row identifier as the record holds them, when
        mapping keeps both so (a text or integer identifier)."""
        identifier = self.table.identifier
        source = self.compiled.source_kept_as_is(identifier) if identifier else None
        if source is None or not self.compiled.keeps_id_as_is:
            return None
        recipient_of = self.compiled.id_of_raw

        def key(record: t.Mapping[str, t.Any]) -> str | None:
            recipient, value = recipient_of(record), record.get(source)
            plain = (isinstance(value, str) and value != "") or (
                isinstance(value, int) and not isinstance(value, bool)
            )
            return f"{recipient}{KEY_SEPARATOR}{value}" if recipient and plain else None

        return key

    @override
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """The recipient ID and the row; the key joins both."""
        data = self.compiled.person_data(record)
        recipient_id = self.compiled.recipient_id(data)
        row = {k: v for k, v in data.items() if k != self.mapping.recipient_id_field}
        identifier = self.table.identifier
        if identifier is None or row.get(identifier) in (None, ""):
            msg = (
                f"the row has no value for {self.table_name}'s identifier field "
                f"{identifier}"
            )
            raise RecordRejected(
                "missing_row_identifier", msg, fields=(str(identifier),)
            )
        return f"{recipient_id}{KEY_SEPARATOR}{row[identifier]}", {
            "recipientId": recipient_id,
            "row": row,
        }

    def body(self, items: list[Item]) -> bytes:
        """Rows grouped by recipient, in the order the errors' indexes count."""
        grouped: dict[str, list[dict[str, t.Any]]] = {}
        for item in items:
            payload = item.payload
            grouped.setdefault(payload["recipientId"], []).append(payload["row"])
        return contract.otm_upsert_body(self.table_name, grouped)

    def ordered(self, items: list[Item]) -> list[Item]:
        """Items in the order ``body`` writes them (grouped by recipient)."""
        order = {
            r: n
            for n, r in enumerate(
                dict.fromkeys(i.payload["recipientId"] for i in items)
            )
        }
        return sorted(items, key=lambda i: order[i.payload["recipientId"]])

    @override
    def deliver(self, items: list[Item]) -> t.Iterable[Settled]:
        """Async OTM upsert; rows of unknown recipients are deferred."""
        outcomes: list[Settled] = []
        for task in self.run_async_batches(
            contract.OTM_UPSERT_PATH, self.ordered(items), self.body
        ):
            if task.status is None:
                outcomes.append(too_large(task.items[0]))
                continue
            for item, error in task.refused():
                if error.code == "NOT_FOUND":
                    message = NO_RECIPIENT_MESSAGE.format(
                        id=item.payload["recipientId"]
                    )
                    outcomes.append(Outcome.later(item, "recipient_not_found", message))
                else:
                    outcomes.append(refused_entry(item, error))
            if task.status.verified:
                outcomes += task.labelled()
            else:
                applied = task.applied()
                outcomes.append(Delivered(applied, (Action.UPSERTED,), verified=False))
        return outcomes

    @override
    def estimated_calls(self, planned: list[Outcome]) -> int:
        """A POST and its polls per batch of rows."""
        return BATCH_CALLS if any(o.delivered for o in planned) else 0

    @override
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
        planned = self.run.resources.planned_recipients
        identifier = str(self.table.identifier)
        outcomes = []
        for item in items:
            recipient = item.payload["recipientId"]
            existing = rows[recipient]
            if existing is None and recipient not in planned:
                message = NO_RECIPIENT_MESSAGE.format(id=recipient)
                outcomes.append(
                    Outcome.refused(
                        item, "recipient_not_found", message, permanent=False
                    )
                )
                continue
            exists = item.payload["row"][identifier] in (existing or set())
            outcomes.append(
                Outcome.done(item, Action.UPDATED if exists else Action.CREATED)
            )
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
