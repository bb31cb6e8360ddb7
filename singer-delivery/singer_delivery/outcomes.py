"""What a destination says about each record it was given.

A destination's ``deliver`` (or, in a dry run, ``plan``) returns exactly one
:class:`Outcome` per :class:`Item`: delivered with the actions taken, refused
with a :class:`Reject`, or deferred until a later checkpoint. ``deliver`` may
also settle many items at once with :class:`Delivered` (items the API
acknowledged alike). Everything that follows from an outcome (ledger
commits, the rejects file, quarantine, counts, the dry-run plan) is the
recorder's business, never the destination's.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass

from singer_delivery.serialization import decode_json


class Action(enum.StrEnum):
    """What a destination did (or, in a dry run, would do) with an item."""

    CREATED = "created"
    UPDATED = "updated"
    #: Written by an upsert that does not say whether it created or updated.
    UPSERTED = "upserted"
    ADDED = "added"
    REMOVED = "removed"
    DELETED = "deleted"
    FIRED = "fired"

    @property
    def verb(self) -> str:
        """The dry-run plan's word for the action (``create``, ``group_add``...)."""
        return _PLAN_VERBS[self]


_PLAN_VERBS = {
    Action.CREATED: "create",
    Action.UPDATED: "update",
    Action.UPSERTED: "upsert",
    Action.ADDED: "group_add",
    Action.REMOVED: "group_remove",
    Action.DELETED: "delete",
    Action.FIRED: "fire",
}


class Reason(enum.StrEnum):
    """Reject reasons the shared machinery itself gives.

    Destinations add their own (often the API's error code, lower-cased).
    """

    INVALID_RECORD = "invalid_record"
    UNREADABLE_LINE = "unreadable_line"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_VALUE = "unsupported_value"


@dataclass(frozen=True, slots=True)
class Reject:
    """Why one record was not delivered, in terms a person can act on.

    ``permanent`` says whether sending the same payload again would be
    refused again (a malformed field, an insert of an existing record): such
    rejects are quarantined until the payload changes. Transient ones (a
    task that failed as a whole, a row waiting for its recipient) are sent
    again on the next run.
    """

    key: str | None
    reason: str
    message: str
    http_status: int | None = None
    fields: tuple[str, ...] = ()
    permanent: bool = True
    record: t.Mapping[str, t.Any] | None = None


@dataclass(slots=True, eq=False)
class Item:
    """One mapped record on its way to the destination.

    Only the payload's canonical JSON is kept (``encoded``): the fingerprint
    is its hash, request bodies are built from it, and ``payload`` decodes
    it again on the rare paths that need the values. A batch in flight then
    holds one compact bytes object per record. ``seq`` is the record's
    position in the input, which decides when a STATE after it may go out.
    ``source`` is the source record's fingerprint (see
    ``SourceFingerprints``), committed with the payload's when the sink
    uses them.
    """

    key: str
    encoded: bytes
    fingerprint: str
    key_hash: str
    seq: int
    record: t.Mapping[str, t.Any] | None = None
    source: str | None = None

    @property
    def payload(self) -> t.Any:
        """The mapped payload (decimals as ``Decimal``, as mapped)."""
        return decode_json(self.encoded)


class Outcome(t.NamedTuple):
    """What became of one item.

    Exactly one of three: delivered (``actions`` says what was done, possibly
    nothing when the destination was already up to date), rejected
    (``reject``), or deferred (``deferred``: not yet possible, retried at the
    next checkpoint and rejected with that reason at the end of input).
    ``verified`` is False when the API acknowledged the write without
    evidence for this entry (an async task without per-entry results).

    A named tuple rather than a frozen dataclass: one is made per record
    delivered, and it is built in half the time.
    """

    item: Item
    actions: tuple[Action, ...] = ()
    reject: Reject | None = None
    deferred: Reject | None = None
    verified: bool = True

    @classmethod
    def done(cls, item: Item, *actions: Action, verified: bool = True) -> Outcome:
        """Delivered: the API acknowledged the item."""
        return cls(item, actions=actions, verified=verified)

    @classmethod
    def refused(
        cls,
        item: Item,
        reason: str,
        message: str,
        *,
        http_status: int | None = None,
        fields: t.Sequence[str] = (),
        permanent: bool = True,
    ) -> Outcome:
        """Rejected: the API (or the destination's own check) refused it."""
        reject = Reject(
            item.key, reason, message, http_status, tuple(fields), permanent
        )
        return cls(item, reject=reject)

    @classmethod
    def later(cls, item: Item, reason: str, message: str) -> Outcome:
        """Deferred: retried at the next checkpoint, rejected at end of input."""
        return cls(item, deferred=Reject(item.key, reason, message, permanent=False))

    @property
    def delivered(self) -> bool:
        """Neither rejected nor deferred."""
        return self.reject is None and self.deferred is None


class Delivered(t.NamedTuple):
    """Items the API acknowledged alike: what ``Outcome.done`` says of each.

    A batch of a thousand acknowledged without an entry error settles as one
    object rather than a thousand: the per-item outcomes, and the passes over
    them to count and commit, cost about a tenth of a first run's time.
    """

    items: t.Sequence[Item]
    actions: tuple[Action, ...] = ()
    verified: bool = True

    def each(self) -> list[Outcome]:
        """The same, one outcome per item."""
        return [
            Outcome(item, self.actions, verified=self.verified) for item in self.items
        ]


#: What ``deliver`` returns for each item, or for many at once.
Settled: t.TypeAlias = Outcome | Delivered


def each_outcome(settled: t.Iterable[Settled]) -> list[Outcome]:
    """One outcome per item, for code that looks at items one by one."""
    outcomes: list[Outcome] = []
    for entry in settled:
        if isinstance(entry, Delivered):
            outcomes += entry.each()
        else:
            outcomes.append(entry)
    return outcomes


class RecordRejected(Exception):
    """Raised by a mapping for a record that must not be sent."""

    def __init__(
        self, reason: str, message: str, *, fields: t.Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.fields = tuple(fields)
