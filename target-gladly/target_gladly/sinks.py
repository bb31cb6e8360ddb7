"""The customer-profile sink: upsert, insert or update, one profile per call.

Gladly has no bulk endpoint, so every record costs a find or read (GET) and
usually a write (POST or PATCH). Records are worked on several at a time
(``map_concurrently``) so that the GETs of one record overlap the writes of
another: each HTTP method has its own rate budget and both are kept busy.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import typing as t

from typing_extensions import override

from singer_delivery import (
    Action,
    DeliverySink,
    Item,
    Outcome,
    RecordRejected,
    Scope,
)
from singer_delivery.outcomes import Reason
from singer_delivery.values import date_kinds, parse_iso
from target_gladly import contract
from target_gladly.client import Conflict, GladlyClient, ProfileRefused
from target_gladly.customers import Contact, Customers, moved_meanwhile
from target_gladly.mapping import ProfileMapping, first_email, profile_changes

if t.TYPE_CHECKING:
    from singer_delivery import DeliveryRun
    from target_gladly.target import TargetGladly

MISSING_EMAIL = (
    "upsert matches profiles by email and this record has none; map an email "
    "field, or use update with a Gladly customer id"
)
MISSING_KEY = "insert needs an email or a Gladly customer id mapped to id"
MISSING_ID = "update requires a Gladly customer id; use upsert to match by email"
NOT_FOUND = (
    "no Gladly customer profile has this id (deleted, or never created); use "
    "upsert to match by email"
)

#: A record whose profile vanished between read and PATCH is tried this often.
ATTEMPTS = 2


Actions = tuple[Action, ...]


class Written(enum.Enum):
    """What bringing a found profile up to date took."""

    UPDATED = "updated"
    CURRENT = "current"
    GONE = "gone"

    @property
    def actions(self) -> Actions:
        """The actions an outcome reports for it."""
        return (Action.UPDATED,) if self is Written.UPDATED else ()


class ProfileLocks:
    """Serializes read-merge-PATCH of the same profile across threads.

    PATCH replaces whole arrays, so two records for one profile (two of its
    emails, say) patched at once would each drop what the other added. A
    lock per profile makes them take turns, and a write counter tells the
    second that what it read before the first wrote is stale. Locks are
    striped by id, so memory stays constant however many profiles a run
    touches; a collision only costs a wait or one extra read.
    """

    STRIPES = 4096

    def __init__(self) -> None:
        self._locks = [threading.Lock() for _ in range(self.STRIPES)]
        self._written = [0] * self.STRIPES
        self._counter = 0
        self._counter_lock = threading.Lock()

    def mark(self) -> int:
        """Take before reading a profile; pass to ``stale_since`` later."""
        with self._counter_lock:
            return self._counter

    @contextlib.contextmanager
    def hold(self, profile_id: str) -> t.Iterator[int]:
        """Hold the profile's lock; yields its stripe for the other calls."""
        stripe = hash(profile_id) % self.STRIPES
        with self._locks[stripe]:
            yield stripe

    def stale_since(self, stripe: int, mark: int) -> bool:
        """Whether a profile of this stripe was written after ``mark``."""
        return self._written[stripe] > mark

    def wrote(self, stripe: int) -> None:
        """Record a write (call while holding the stripe)."""
        with self._counter_lock:
            self._counter += 1
            self._written[stripe] = self._counter


class CustomerProfileSink(DeliverySink):
    """Writes customer profiles; ``sync_mode`` picks the calls."""

    run: DeliveryRun[ProfileLocks]

    def __init__(self, target: TargetGladly, stream_name: str, **kwargs: t.Any) -> None:
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.sync_mode: str = self.settings["sync_mode"]
        self.mapping = ProfileMapping(
            field_mapping=self.settings.get("field_mapping"),
            phone_type=self.settings.get("phone_type"),
            default_phone_region=self.settings.get("default_phone_region"),
        )
        self.dates = date_kinds(self.schema)
        self.client = GladlyClient(self.run.transport, self.stats)
        self.customers = Customers(self.client)
        self.locks = self.run.resources
        self._write, self._plan = {
            "upsert": (self._upsert, self._plan_upsert),
            "insert": (self._insert, self._plan_insert),
            "update": (self._update_by_id, self._plan_update),
        }[self.sync_mode]

    @property
    @override
    def scope(self) -> Scope:
        """Profiles of one organization, keyed as the sync mode keys them."""
        return self.run.scope("customer-profiles", self.sync_mode, self.stream_name)

    # --- records ------------------------------------------------------------

    @override
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """The profile body and the key its sync mode identifies it by."""
        profile = self.mapping.profile(self._with_dates(record))
        email, profile_id = first_email(profile), profile.get("id")
        if self.sync_mode == "update":
            key, reason, message = profile_id, "missing_id", MISSING_ID
        elif self.sync_mode == "insert":
            key, reason, message = profile_id or email, "missing_key", MISSING_KEY
        else:
            key, reason, message = email, "missing_email", MISSING_EMAIL
        if not key:
            raise RecordRejected(reason, message)
        return key, profile

    def _with_dates(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """Date and timestamp strings parsed, so they are written as Gladly text."""
        parsed = dict(record)
        for name, kind in self.dates.items():
            value = record.get(name)
            if isinstance(value, str) and value:
                try:
                    parsed[name] = parse_iso(kind, value)
                except ValueError:
                    msg = f"{name} is not a valid ISO 8601 {kind}"
                    raise RecordRejected(
                        Reason.INVALID_RECORD, msg, fields=(name,)
                    ) from None
        return parsed

    @override
    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Every record on the shared request threads, several at a time."""
        return self.map_concurrently(self._deliver_one, items)

    @override
    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Read-only finds and reads decide create, update, unchanged or reject."""
        return self.map_concurrently(self._plan_one, items)

    def _deliver_one(self, item: Item) -> Outcome:
        try:
            action = self._write(item)
        except ProfileRefused as exc:
            return exc.outcome(item)
        return Outcome.done(item, *action)

    def _plan_one(self, item: Item) -> Outcome:
        try:
            action = self._plan(item)
        except ProfileRefused as exc:
            return exc.outcome(item)
        return Outcome.done(item, *action)

    # --- upsert -------------------------------------------------------------

    def _upsert(self, item: Item) -> Actions:
        """Find by email; PATCH what differs, or create when nobody has it."""
        for _ in range(ATTEMPTS):
            mark = self.locks.mark()
            profile = self.customers.find_or_create(
                Contact("email", item.key),
                self._create_body(item),
                derived=self._is_derived(item),
            )
            if profile is None:
                return (Action.CREATED,)
            written = self._write_changes(item, profile, mark)
            if written is not Written.GONE:
                return written.actions
        raise moved_meanwhile()

    # --- insert -------------------------------------------------------------

    def _insert(self, item: Item) -> Actions:
        """Create; an existing profile is refused unless this key created it."""
        body = self._create_body(item)
        conflict = self.client.create(body)
        if conflict is not None:
            if not self._created_by_us(item, conflict, body["id"]):
                raise already_exists(conflict)
            mark = self.locks.mark()
            profile = self.client.read(body["id"])
            if (
                profile is None
                or self._write_changes(item, profile, mark) is Written.GONE
            ):
                raise moved_meanwhile(409)
        return (Action.CREATED,)

    def _created_by_us(self, item: Item, conflict: Conflict, sent_id: str) -> bool:
        """A clash with the id derived from this key: an earlier attempt's create.

        Its answer was lost (a crash, a timeout), so the profile is ours and
        is brought up to date (counted as created) instead of being refused.
        A mapped id proves nothing of the kind: it may name anyone's profile.
        """
        clash_on_our_id = conflict.attr == "id" or conflict.holder == sent_id
        return self._is_derived(item) and clash_on_our_id

    # --- update -------------------------------------------------------------

    def _update_by_id(self, item: Item) -> Actions:
        """Read by id (following merges) and PATCH what differs."""
        for _ in range(ATTEMPTS):
            mark = self.locks.mark()
            profile = self.client.read(item.key)
            if profile is None:
                raise ProfileRefused("not_found", NOT_FOUND, 404)
            written = self._write_changes(item, profile, mark)
            if written is not Written.GONE:
                return written.actions
        raise moved_meanwhile()

    # --- shared steps -------------------------------------------------------

    def _write_changes(
        self, item: Item, profile: dict[str, t.Any], mark: int
    ) -> Written:
        """PATCH the fields that differ; nothing when the profile is current.

        ``mark`` was taken before ``profile`` was read: if this run wrote the
        profile since, it is read again so no email or phone added meanwhile
        is dropped by the array-replacing PATCH.
        """
        profile_id = str(profile["id"])
        with self.locks.hold(profile_id) as stripe:
            if self.locks.stale_since(stripe, mark):
                fresh = self.client.read(profile_id)
                if fresh is None:
                    return Written.GONE
                profile = fresh
            changes = profile_changes(profile, item.payload)
            if not changes:
                return Written.CURRENT
            if not self.client.patch(profile_id, changes):
                return Written.GONE
            self.locks.wrote(stripe)
        return Written.UPDATED

    def _create_body(self, item: Item) -> dict[str, t.Any]:
        """The record's profile with the id to create it under."""
        return {"id": contract.derived_id(item.key), **item.payload}

    def _is_derived(self, item: Item) -> bool:
        """Whether creates of this item use the id derived from its key."""
        return "id" not in item.payload

    # --- dry run ------------------------------------------------------------

    def _plan_upsert(self, item: Item) -> Actions:
        profile = self.customers.find(Contact("email", item.key))
        if profile is None:
            return (Action.CREATED,)
        return (Action.UPDATED,) if profile_changes(profile, item.payload) else ()

    def _plan_insert(self, item: Item) -> Actions:
        """Refuse what a create would collide with (mobile clashes aside)."""
        body = self._create_body(item)
        if self.client.read(body["id"]) is not None:
            if self._is_derived(item):
                return (Action.CREATED,)
            raise already_exists(Conflict("id", body["id"], "customer ID exists"))
        for entry in item.payload.get("emails") or []:
            if found := self.client.find_by_email(entry["original"]):
                holder = str(found[0]["id"])
                raise already_exists(Conflict("emails", holder, "email is taken"))
        return (Action.CREATED,)

    def _plan_update(self, item: Item) -> Actions:
        profile = self.client.read(item.key)
        if profile is None:
            raise ProfileRefused("not_found", NOT_FOUND, 404)
        return (Action.UPDATED,) if profile_changes(profile, item.payload) else ()


def already_exists(conflict: Conflict) -> ProfileRefused:
    """Insert never changes an existing profile; say which field clashed."""
    what = {"emails": "its email", "phones": "its MOBILE number", "id": "its id"}
    field = what.get(conflict.attr or "", "it")
    holder = f" (profile {conflict.holder})" if conflict.holder else ""
    message = (
        f"already exists in Gladly: {field} belongs to a customer profile"
        f"{holder}; insert never changes existing profiles, use upsert to update"
    )
    return ProfileRefused("already_exists", message, conflict.status)
