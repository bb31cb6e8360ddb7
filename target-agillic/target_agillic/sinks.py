"""Agillic sinks: recipients in upsert, insert or update mode."""

from __future__ import annotations

import typing as t
import urllib.parse

import requests

from singer_delivery.ledger import Scope
from singer_delivery.outputs import Reject
from singer_delivery.serialization import dumps
from singer_delivery.sink import DeliverySink, Item, Outcome
from target_agillic import contract
from target_agillic.client import AgillicClient
from target_agillic.mapping import PersonDataMapping

if t.TYPE_CHECKING:
    from target_agillic.target import TargetAgillic

NOT_FOUND_MESSAGE = "not found in Agillic; use upsert to create it"
EXISTS_MESSAGE = "already exists in Agillic"


def api_reject(item: Item, response: requests.Response) -> Reject:
    """A reject carrying the API's own code and message."""
    code, message = contract.error_of(response)
    return Reject(item.key, code.lower(), message, http_status=response.status_code)


def size_batches(
    items: list[Item], limit: int = contract.MAX_BODY_BYTES
) -> t.Iterator[tuple[list[Item], bytes]]:
    """Split items into upsert bodies under the request size limit.

    Entries are encoded once and joined, so the size is exact, not estimated.
    """
    head, tail = b'{"recipients":[', b"]}"
    chunk: list[Item] = []
    parts: list[bytes] = []
    size = len(head) + len(tail)
    for item in items:
        part = dumps({"personData": item.payload})
        if chunk and size + len(part) + 1 > limit:
            yield chunk, head + b",".join(parts) + tail
            chunk, parts, size = [], [], len(head) + len(tail)
        chunk.append(item)
        parts.append(part)
        size += len(part) + 1
    if chunk:
        yield chunk, head + b",".join(parts) + tail


class RecipientSink(DeliverySink):
    """Writes recipients' Person Data; ``sync_mode`` picks the calls."""

    target: TargetAgillic

    def __init__(
        self, target: TargetAgillic, stream_name: str, **kwargs: t.Any
    ) -> None:
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.settings = target.stream_settings(stream_name)
        self.sync_mode: str = self.settings.get("sync_mode") or "upsert"
        self.mapping = PersonDataMapping.from_settings(self.settings)
        self.client = AgillicClient(
            target.transport,
            self.stats,
            task_timeout=float(self.config.get("task_timeout", 600)),
        )

    @property
    def batches_in_flight(self) -> int:
        """Enough batches to keep every allowed connection busy while tasks run."""
        return int(self.config.get("max_concurrency", 10))

    @property
    def request_concurrency(self) -> int:
        """Per-record modes use every allowed connection."""
        return int(self.config.get("max_concurrency", 10))

    @property
    def scope(self) -> Scope:
        """Recipients of one instance, keyed by the recipient ID field."""
        return Scope(
            target=self.target.name,
            instance=urllib.parse.urlsplit(self.config["api_endpoint"]).netloc,
            object_type="recipients",
            object_name=self.mapping.recipient_id_field,
            stream=self.stream_name,
        )

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
        return self._upsert(items)

    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Existence checks (read-only) decide create, update or reject."""
        return self.map_concurrently(self._plan_one, items)

    def _upsert(self, items: list[Item]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for chunk, body in size_batches(items):
            status = self.client.run_batch(
                contract.UPSERT_PATH, "POST /recipients/v2/:upsert", body
            )
            self.stats.add(created=status.created, updated=status.updated)
            errors = {error.index: error for error in status.errors}
            for index, item in enumerate(chunk):
                error = errors.get(index)
                reject = (
                    Reject(item.key, error.code.lower(), error.message)
                    if error
                    else None
                )
                outcomes.append(Outcome(item, reject))
        return outcomes

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
