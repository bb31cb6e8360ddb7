"""Customer activity: each record becomes one item on a customer's timeline.

Record fields go through ``field_mapping`` {record field: activity field}
(when absent, record fields with these names are read as they are):

* ``title`` (required, at most 100 characters), ``body`` (at most 25,000),
  ``sourceName``: text.
* ``activityType``: one of ``contract.ACTIVITY_TYPES``, in any case; when
  no field holds one, the ``activity_type`` setting.
* ``link`` (a URL) and ``linkText`` become ``link: {url, text}``; a text
  without a URL is left out, as Gladly shows no link without one.
* ``occurredAt``: an ISO 8601 timestamp (without a zone: UTC), sent in UTC;
  Gladly refuses one older than a year. Unset, Gladly takes the time the
  item arrives.
* ``email`` (or, when a record has none, ``phone``) names the customer.

The customer is found by email (or phone) and created when nobody has it,
by upsert's rules (``Customers``): a derived profile id makes a repeated
create harmless, several profiles for one email are refused, and the
target knows which profiles it created. (``POST /conversation-items`` with
a contact would also create missing customers, but says neither whether it
did nor which of several profiles it chose.)

Each item's id is derived from the stream and the record's key properties,
so a retry or rerun answers 409, counted as delivered. Gladly items never
change: a record whose activity changed is sent again and answered 409, so
the item keeps its first content. A changed activity needs a new key.
"""

from __future__ import annotations

import datetime
import logging
import threading
import typing as t
from concurrent.futures import Future
from dataclasses import dataclass

import phonenumbers
from typing_extensions import override

from singer_delivery import (
    Action,
    DeliverySink,
    Item,
    OperationalError,
    Outcome,
    RecordRejected,
    Scope,
)
from target_gladly import contract
from target_gladly.client import GladlyClient, ProfileRefused
from target_gladly.customers import Contact, Customers
from target_gladly.mapping import contact_values, phone_number, text

if t.TYPE_CHECKING:
    from target_gladly.target import TargetGladly

logger = logging.getLogger(__name__)

#: The names ``field_mapping`` maps record fields to, for customer activity.
ACTIVITY_FIELDS = (
    "title",
    "body",
    "activityType",
    "sourceName",
    "link",
    "linkText",
    "occurredAt",
    "email",
    "phone",
)
#: The activity fields that name the customer, in order of preference.
CONTACT_FIELDS = ("email", "phone")

Payload = dict[str, t.Any]
_K = t.TypeVar("_K")
_V = t.TypeVar("_V")


def check_activity_mapping(
    mapping: t.Mapping[str, str], activity_type: str | None
) -> list[str]:
    """Problems with a customer-activity ``field_mapping``, each naming the fix."""
    errors = []
    sources: dict[str, list[str]] = {}
    for source, target in mapping.items():
        sources.setdefault(target, []).append(source)
        if target not in ACTIVITY_FIELDS:
            errors.append(
                f"field_mapping maps {source!r} to {target!r}, which customer "
                f"activity does not have; map to {', '.join(ACTIVITY_FIELDS)}"
            )
    for target, names in sources.items():
        if len(names) > 1:
            errors.append(
                f"field_mapping maps {', '.join(map(repr, names))} to {target!r}; "
                "each activity field takes one record field"
            )
    if "title" not in sources:
        errors.append(
            "field_mapping maps no field to title, which every activity item needs"
        )
    if not sources.keys() & set(CONTACT_FIELDS):
        errors.append(
            "field_mapping maps no field to email or phone, which name the "
            "customer of each activity item"
        )
    if "activityType" not in sources and not activity_type:
        errors.append(
            "field_mapping maps no field to activityType and activity_type is "
            "unset; do one of them (activity_type is the stream's default)"
        )
    return errors


@dataclass(frozen=True)
class ActivityMapping:
    """How one stream's records become activity payloads."""

    field_mapping: t.Mapping[str, str] | None = None
    activity_type: str | None = None
    default_phone_region: str | None = None

    def values(self, record: t.Mapping[str, t.Any]) -> dict[str, tuple[str, t.Any]]:
        """{activity field: (record field, value)} for every non-null value."""
        if self.field_mapping is not None:
            pairs = [
                (target, source)
                for source, target in self.field_mapping.items()
                if source in record
            ]
        else:
            pairs = [(name, name) for name in ACTIVITY_FIELDS if name in record]
        return {
            target: (source, record[source])
            for target, source in pairs
            if record[source] is not None
        }

    def payload(self, record: t.Mapping[str, t.Any]) -> Payload:
        """The customer's contact, the item's ``occurredAt`` and its content."""
        values = self.values(record)
        payload: Payload = {"customer": self.customer(values)}
        if "occurredAt" in values:
            payload["occurredAt"] = occurred_at(*values["occurredAt"])
        payload["content"] = self.content(values)
        return payload

    def customer(self, values: dict[str, tuple[str, t.Any]]) -> dict[str, str]:
        """``{"email": ...}`` or ``{"phone": ...}``; the email is preferred."""
        if "email" in values and (emails := contact_values(*values["email"])):
            return {"email": contract.normalize_email(emails[0])}
        if "phone" in values and (phones := contact_values(*values["phone"])):
            source = values["phone"][0]
            number = phone_number(source, phones[0], self.default_phone_region)
            e164 = phonenumbers.PhoneNumberFormat.E164
            return {"phone": phonenumbers.format_number(number, e164)}
        msg = (
            "no email or phone names the customer of this activity; map a "
            "field to email (or phone) that holds one"
        )
        raise RecordRejected("missing_customer", msg, fields=CONTACT_FIELDS)

    def content(self, values: dict[str, tuple[str, t.Any]]) -> Payload:
        """The ``CUSTOMER_ACTIVITY`` content, its limits checked."""
        content: Payload = {
            "type": contract.CUSTOMER_ACTIVITY,
            "title": title(values.get("title")),
            "activityType": self.kind(values.get("activityType")),
        }
        for name in ("body", "sourceName"):
            if value := optional_text(values.get(name)):
                content[name] = value
        if "body" in content and len(content["body"]) > contract.BODY_MAX_CHARS:
            raise too_long("body", values["body"][0], len(content["body"]))
        if url := optional_text(values.get("link")):
            link = {"url": url}
            if link_text := optional_text(values.get("linkText")):
                link["text"] = link_text
            content["link"] = link
        return content

    def kind(self, value: tuple[str, t.Any] | None) -> str:
        """The record's ``activityType`` in upper case, else the stream's default."""
        kind = optional_text(value)
        if kind is None:
            if self.activity_type:
                return self.activity_type
            msg = (
                "this activity has no activityType and activity_type is unset; "
                f"map a field holding one of {', '.join(contract.ACTIVITY_TYPES)} "
                "or set activity_type"
            )
            raise RecordRejected("missing_activity_type", msg, fields=("activityType",))
        normalized = kind.strip().upper()
        if normalized not in contract.ACTIVITY_TYPES:
            source = t.cast(tuple[str, t.Any], value)[0]
            msg = (
                f"field {source} holds activityType {kind!r}, which is not one of "
                f"{', '.join(contract.ACTIVITY_TYPES)}"
            )
            raise RecordRejected("invalid_activity_type", msg, fields=(source,))
        return normalized


def optional_text(value: tuple[str, t.Any] | None) -> str | None:
    """A value as text, or None when it is absent or blank."""
    if value is None:
        return None
    converted = text(*value)
    return converted if converted.strip() else None


def title(value: tuple[str, t.Any] | None) -> str:
    """The title: required, at most ``TITLE_MAX_CHARS``."""
    converted = optional_text(value)
    if converted is None:
        msg = "this activity has no title; every Gladly activity item needs one"
        raise RecordRejected("missing_title", msg, fields=("title",))
    if len(converted) > contract.TITLE_MAX_CHARS:
        raise too_long("title", t.cast(tuple[str, t.Any], value)[0], len(converted))
    return converted


def too_long(name: str, source: str, length: int) -> RecordRejected:
    """A text over Gladly's limit: rejected, never cut (a cut text misleads)."""
    limit = {"title": contract.TITLE_MAX_CHARS, "body": contract.BODY_MAX_CHARS}[name]
    msg = (
        f"field {source} gives a {name} of {length:,} characters; Gladly takes "
        f"at most {limit:,}"
    )
    return RecordRejected(f"{name}_too_long", msg, fields=(source,))


def occurred_at(source: str, value: t.Any) -> str:
    """An ISO 8601 timestamp as UTC text (a timestamp without a zone is UTC)."""
    try:
        moment = datetime.datetime.fromisoformat(str(value).strip())
    except ValueError:
        msg = f"field {source} holds {value!r}, which is not an ISO 8601 timestamp"
        raise RecordRejected("invalid_occurred_at", msg, fields=(source,)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def too_old(payload: Payload, now: datetime.datetime) -> ProfileRefused | None:
    """Why Gladly would refuse the item's ``occurredAt``, if it would.

    Checked when the item is sent, not when it is read: an activity
    delivered in time and unchanged since is never rejected for its age.
    """
    if "occurredAt" not in payload:
        return None
    moment = datetime.datetime.fromisoformat(payload["occurredAt"])
    if moment >= now - contract.ITEM_MAX_AGE:
        return None
    msg = (
        f"occurredAt {payload['occurredAt']} is more than "
        f"{contract.ITEM_MAX_AGE.days} days ago; Gladly takes no activity older "
        "than a year"
    )
    return ProfileRefused("occurred_at_too_old", msg, fields=("occurredAt",))


def contact_of(payload: Payload) -> Contact:
    """The contact the payload names its customer by."""
    ((kind, value),) = payload["customer"].items()
    return Contact(kind, value)


class OncePer(t.Generic[_K, _V]):
    """Runs ``lookup`` once per key however many threads ask at once.

    The items of one customer in a batch share one find (and one create):
    the first thread to ask does it, the others wait for its answer.
    """

    def __init__(self, lookup: t.Callable[[_K], _V]) -> None:
        self._lookup = lookup
        self._lock = threading.Lock()
        self._answers: dict[_K, Future[_V]] = {}

    def __call__(self, key: _K) -> _V:
        """The lookup's answer for ``key`` (its exception re-raised)."""
        with self._lock:
            answer = self._answers.get(key)
            first = answer is None
            if answer is None:
                answer = self._answers[key] = Future()
        if first:
            try:
                answer.set_result(self._lookup(key))
            except BaseException as exc:  # noqa: BLE001 - every waiter gets it
                answer.set_exception(exc)
        return answer.result()

    def answers(self) -> list[_V]:
        """The answers found (lookups that failed left out)."""
        with self._lock:
            done = list(self._answers.values())
        return [a.result() for a in done if a.done() and a.exception() is None]


class ActivitySink(DeliverySink):
    """Adds one item per record to its customer's timeline; never changes one."""

    #: After profile streams: a customer written by a profile stream of the
    #: same run is found with its data, not created bare.
    drain_priority = 1

    def __init__(
        self,
        target: TargetGladly,
        stream_name: str,
        schema: dict[str, t.Any],
        key_properties: t.Sequence[str] | None,
    ) -> None:
        if not key_properties:
            msg = (
                f"stream {stream_name} has no key properties, and customer "
                "activity derives each item's id from them so that a rerun adds "
                "nothing twice; declare them in the tap (or with a stream map's "
                "__key_properties__)"
            )
            raise OperationalError(msg)
        super().__init__(target, stream_name, schema, key_properties)
        self.mapping = ActivityMapping(
            field_mapping=self.settings.get("field_mapping"),
            activity_type=self.settings.get("activity_type"),
            default_phone_region=self.settings.get("default_phone_region"),
        )
        self.phone_type: str | None = self.settings.get("phone_type")
        self.client = GladlyClient(self.run.transport, self.stats)
        self.customers = Customers(self.client)

    @property
    @override
    def scope(self) -> Scope:
        """The stream's items, keyed by the record's key properties."""
        return self.run.scope(
            "conversation-items", "customer_activity", self.stream_name
        )

    @override
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """The record's key (its item id's source) and the activity payload."""
        if missing := [k for k in self.key_properties if record.get(k) is None]:
            msg = (
                f"key property {', '.join(missing)} is empty, and customer "
                "activity derives the item's id from the record's key"
            )
            raise RecordRejected("missing_key", msg, fields=missing)
        return t.cast(str, self.source_key(record)), self.mapping.payload(record)

    @override
    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Each customer found or created once, each item posted once."""
        customers = OncePer(self._customer)
        now = datetime.datetime.now(datetime.UTC)
        outcomes = self.map_concurrently(
            lambda item: self._deliver_one(item, customers, now), items
        )
        self._log(outcomes, created=sum(new for _, new in customers.answers()))
        return outcomes

    @override
    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Every item would be created; finds show which customers are ambiguous."""
        finds = OncePer(self.customers.find)
        now = datetime.datetime.now(datetime.UTC)
        return self.map_concurrently(
            lambda item: self._plan_one(item, finds, now), items
        )

    def _deliver_one(
        self,
        item: Item,
        customers: OncePer[Contact, tuple[str, bool]],
        now: datetime.datetime,
    ) -> Outcome:
        if refused := too_old(item.payload, now):
            return refused.outcome(item)
        try:
            customer_id, _ = customers(contact_of(item.payload))
            created = self.client.create_item(customer_id, self._item_body(item))
        except ProfileRefused as exc:
            return exc.outcome(item)
        return Outcome.done(item, Action.CREATED) if created else Outcome.done(item)

    def _plan_one(
        self,
        item: Item,
        finds: OncePer[Contact, t.Any],
        now: datetime.datetime,
    ) -> Outcome:
        if refused := too_old(item.payload, now):
            return refused.outcome(item)
        try:
            finds(contact_of(item.payload))
        except ProfileRefused as exc:
            return exc.outcome(item)
        return Outcome.done(item, Action.CREATED)

    def _customer(self, contact: Contact) -> tuple[str, bool]:
        """The customer's profile id, and whether it was created for this item."""
        body = Customers.new_profile(contact, self.phone_type)
        profile = self.customers.find_or_create(contact, body, derived=True)
        return (body["id"], True) if profile is None else (str(profile["id"]), False)

    def _item_body(self, item: Item) -> Payload:
        """The item as Gladly takes it, under the id derived from its key."""
        body = {k: v for k, v in item.payload.items() if k != "customer"}
        return {"id": contract.item_id(self.stream_name, item.key), **body}

    def _log(self, outcomes: list[Outcome], *, created: int) -> None:
        """Say what the counts cannot: profiles made, items found already there."""
        if created:
            logger.info(
                "Stream %s: %d customers had no Gladly profile; one was created "
                "for each, holding the email or phone of their activity",
                self.stream_name,
                created,
            )
        existing = sum(1 for o in outcomes if o.delivered and not o.actions)
        if existing:
            logger.info(
                "Stream %s: %d items were already in Gladly (written by an "
                "earlier attempt, or changed since: Gladly items never change, "
                "so a changed activity needs a new key to appear)",
                self.stream_name,
                existing,
            )
