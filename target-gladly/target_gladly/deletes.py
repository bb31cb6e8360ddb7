"""``sync_mode: delete``: each record names a customer profile to delete.

A record names its profile by email (found with Gladly's find call) or by a
Gladly id mapped to ``id``; with both, the id is deleted and the email is
the key, so the upsert history of that email is forgotten with it. The
shared ``DeleteSink`` holds every delete until the end of input, checks
``max_deletes`` and lists each one in a dry run.

What each answer means:

* 204, a 404 and an email nobody has: deleted (already gone counts).
* several profiles with the email: ``ambiguous_email``, nothing deleted.
* 400 ``invalid_state`` (open conversations): ``open_conversations``,
  tried again on the next run once they are closed.
* 403: the API user lacks the Compliance Admin role; every delete would
  fail the same way, so the run stops (``contract.credential_failure``).
"""

from __future__ import annotations

import typing as t

from typing_extensions import override

from singer_delivery import Action, DeleteSink, Item, Outcome, RecordRejected, Scope
from target_gladly import contract
from target_gladly.client import GladlyClient, ProfileRefused
from target_gladly.customers import Contact, Customers
from target_gladly.mapping import ProfileMapping, checked_id, contact_values, text

if t.TYPE_CHECKING:
    from target_gladly.target import TargetGladly

MISSING_TARGET = (
    "a delete names its profile by email or by Gladly id (mapped to id), and "
    "this record has neither"
)


class ProfileDeleteSink(DeleteSink):
    """Deletes the customer profiles its records name; irreversible."""

    def __init__(self, target: TargetGladly, stream_name: str, **kwargs: t.Any) -> None:
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.mapping = ProfileMapping(field_mapping=self.settings.get("field_mapping"))
        self.client = GladlyClient(self.run.transport, self.stats)
        self.customers = Customers(self.client)

    @property
    @override
    def scope(self) -> Scope:
        """Deletes of one organization's profiles, keyed by email or id."""
        return self.run.scope("customer-profiles", "delete", self.stream_name)

    @override
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """The profile's email (else its id) as key; both, when given, as payload."""
        named = self.named(record)
        key = named.get("email") or named.get("id")
        if not key:
            raise RecordRejected("missing_key", MISSING_TARGET, fields=("email", "id"))
        return key, named

    def named(self, record: t.Mapping[str, t.Any]) -> dict[str, str]:
        """The record's email and id (other mapped fields mean nothing here)."""
        named: dict[str, str] = {}
        for _, name, value in self.mapping.fields(record):
            if value is None:
                continue
            if name == "email" and "email" not in named:
                if emails := contact_values(name, value):
                    named["email"] = contract.normalize_email(emails[0])
            elif name == "id" and (profile_id := text(name, value).strip()):
                named["id"] = checked_id(profile_id)
        return named

    @override
    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """One DELETE per record (after a find when it names an email)."""
        return self.map_concurrently(self._delete_one, items)

    @override
    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Every delete, found read-only: an ambiguous email shows as a reject."""
        return self.map_concurrently(self._plan_one, items)

    def _delete_one(self, item: Item) -> Outcome:
        try:
            if profile_id := self._profile_id(item):
                self.client.delete(profile_id)
        except ProfileRefused as exc:
            return exc.outcome(item)
        return Outcome.done(item, Action.DELETED)

    def _plan_one(self, item: Item) -> Outcome:
        try:
            self._profile_id(item)
        except ProfileRefused as exc:
            return exc.outcome(item)
        return Outcome.done(item, Action.DELETED)

    def _profile_id(self, item: Item) -> str | None:
        """The id to delete: mapped, or found by email (None: nobody has it)."""
        if profile_id := item.payload.get("id"):
            return str(profile_id)
        profile = self.customers.find(Contact("email", item.payload["email"]))
        return None if profile is None else str(profile["id"])
