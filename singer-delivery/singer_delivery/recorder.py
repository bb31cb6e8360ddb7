"""What follows from outcomes: one recorder per run, chosen once.

A real run commits (ledger, quarantine, rejects file, counts); a dry run
plans (plan file, counts) and leaves the ledger untouched. Destinations
never branch on the dry run or write the ledger: they return outcomes, and
this module alone decides what each one means.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
import typing as t
from collections import Counter

from typing_extensions import override

from singer_delivery.ledger import DELETES, Ledger, RejectRow, Scope
from singer_delivery.outcomes import Action, Delivered, Item, Reject, Settled
from singer_delivery.serialization import key_hash

if t.TYPE_CHECKING:
    from singer_delivery.outputs import PlanFile, RejectsFile
    from singer_delivery.report import StreamStats

#: Where each action is counted in the report.
ACTION_COUNTS = {
    Action.CREATED: "created",
    Action.UPDATED: "updated",
    Action.UPSERTED: None,
    Action.ADDED: "group_added",
    Action.REMOVED: "group_removed",
    Action.DELETED: "deleted",
    Action.FIRED: "fired",
}


class Destination(t.Protocol):
    """What the recorder needs to know of the sink an outcome came from."""

    stream_name: str
    stats: StreamStats

    @property
    def scope(self) -> Scope: ...

    @property
    def scope_id(self) -> str: ...

    @property
    def membership(self) -> Membership | None: ...

    def owner_of(self, key: str) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class Membership:
    """The ledger scopes of a set the destination keeps (a static group).

    ``members`` remembers who was added (a mirror removes only those);
    ``removals`` holds the payloads of removal requests, so an unchanged
    removal is not repeated. Adding a member forgets its removal, removing
    one forgets its addition, so the same record works again later.
    """

    members: Scope
    removals: Scope


class Recorder(abc.ABC):
    """Settles outcomes; thread-safe (delivery threads call it)."""

    dry_run: t.ClassVar[bool]

    def __init__(self, rejects: RejectsFile) -> None:
        self.rejects = rejects
        self._lock = threading.Lock()

    # --- records that never reach the destination ---------------------------

    def unmapped(
        self, sink: Destination, reject: Reject, *, invalid: bool = False
    ) -> None:
        """A record refused before it had a payload (schema, mapping)."""
        if invalid:
            sink.stats.add(invalid=1)
        self._reject(sink.stream_name, sink.stats, reject)

    def unreadable(self, stats: StreamStats, reject: Reject, line: int) -> None:
        """An input line that is not a Singer message (line number only)."""
        self._reject(None, stats, reject, line=line)

    def unchanged(self, sink: Destination, items: t.Sequence[Item]) -> None:
        """Items whose payload the ledger says was already delivered."""
        sink.stats.add(unchanged=len(items))

    def quarantined(
        self, sink: Destination, items: t.Sequence[Item], reasons: t.Sequence[str]
    ) -> None:
        """Items whose unchanged payload was refused for good before."""
        sink.stats.quarantine(reasons)

    # --- outcomes --------------------------------------------------------------

    def settle(
        self, sink: Destination, outcomes: t.Sequence[Settled], *, final: bool
    ) -> list[Item]:
        """Record every outcome; return the deferred items (none when ``final``,
        when deferral turns into the reject the destination gave)."""
        delivered: list[Delivered] = []
        deferred: list[Item] = []
        rejected: list[tuple[Item, Reject]] = []
        for outcome in outcomes:
            if isinstance(outcome, Delivered):
                delivered.append(outcome)
            elif outcome.reject is not None:
                rejected.append((outcome.item, outcome.reject))
            elif outcome.deferred is None:
                delivered.append(
                    Delivered((outcome.item,), outcome.actions, outcome.verified)
                )
            elif final:
                rejected.append((outcome.item, outcome.deferred))
            else:
                deferred.append(outcome.item)
        self.delivered(sink, [group for group in delivered if group.items])
        for item, reject in rejected:
            self._reject(sink.stream_name, sink.stats, reject, item)
        self.refused(sink, rejected)
        return deferred

    @abc.abstractmethod
    def delivered(self, sink: Destination, groups: t.Sequence[Delivered]) -> None:
        """Items the API acknowledged (or, planning, would write), in groups
        that share their actions."""

    @abc.abstractmethod
    def refused(
        self, sink: Destination, rejects: t.Sequence[tuple[Item, Reject]]
    ) -> None:
        """Items refused: the ledger's part (quarantine) of a reject."""

    @abc.abstractmethod
    def renew_sources(self, sink: Destination, items: t.Sequence[Item]) -> None:
        """Unchanged items whose stored source fingerprint was stale or missing."""

    def _reject(
        self,
        stream: str | None,
        stats: StreamStats,
        reject: Reject,
        item: Item | None = None,
        line: int | None = None,
    ) -> None:
        stats.reject(reject.reason)
        if self.dry_run:
            stats.plan("reject")
        if item is not None and item.record is not None:
            reject = dataclasses.replace(reject, record=item.record)
        self.write_reject(stream, reject, line)

    @abc.abstractmethod
    def write_reject(
        self, stream: str | None, reject: Reject, line: int | None
    ) -> None:
        """The file side of a reject: the rejects file, or the plan."""


def _counts(groups: t.Sequence[Delivered]) -> Counter[str]:
    """The report's counts of delivered items and of each action."""
    counts: Counter[str] = Counter()
    for group in groups:
        size = len(group.items)
        counts["delivered"] += size
        for action in group.actions:
            if name := ACTION_COUNTS[action]:
                counts[name] += size
        if not group.verified:
            counts["unverified"] += size
    return counts


def _items(
    groups: t.Sequence[Delivered], has: t.Callable[[Delivered], bool]
) -> list[Item]:
    """The items of the groups ``has`` picks."""
    return [item for group in groups if has(group) for item in group.items]


class CommitRecorder(Recorder):
    """A real run: the ledger holds exactly what the API acknowledged."""

    dry_run = False

    def __init__(
        self, rejects: RejectsFile, ledger: Ledger, *, store_reject_keys: bool
    ) -> None:
        super().__init__(rejects)
        self.ledger = ledger
        self.store_reject_keys = store_reject_keys

    @override
    def delivered(self, sink: Destination, groups: t.Sequence[Delivered]) -> None:
        """Commit fingerprints; keep the membership of groups in step."""
        if not groups:
            return
        sink.stats.add(**_counts(groups))
        gone: set[Action] = set()
        if membership := sink.membership:
            self._membership(sink.scope_id, membership, groups)
            if sink.scope_id == membership.members.scope_id:
                gone.add(Action.REMOVED)  # a mirror's removal undoes the addition
        kept = _items(groups, lambda group: gone.isdisjoint(group.actions))
        undone = _items(groups, lambda group: not gone.isdisjoint(group.actions))
        owned = [
            (key_hash(owner), i.key_hash)
            for i in kept
            if (owner := sink.owner_of(i.key))
        ]
        if owned:  # before the deliveries: an owner without a delivery is harmless
            self.ledger.record_owners(sink.scope_id, owned)
        self.ledger.record_deliveries(
            sink.scope_id, [(i.key_hash, i.fingerprint, i.source) for i in kept]
        )
        if undone:
            self.ledger.forget_deliveries(sink.scope_id, [i.key_hash for i in undone])
        if deleted := _items(groups, lambda group: Action.DELETED in group.actions):
            self.ledger.forget_everywhere(
                sink.scope, [(i.key_hash, i.key) for i in deleted]
            )
        elif not sink.scope.object_type.endswith(DELETES):
            self.ledger.forget_deletes(sink.scope, [i.key_hash for i in kept])

    def _membership(
        self, scope_id: str, membership: Membership, groups: t.Sequence[Delivered]
    ) -> None:
        added = _items(groups, lambda group: Action.ADDED in group.actions)
        removed = _items(groups, lambda group: Action.REMOVED in group.actions)
        members, removals = membership.members.scope_id, membership.removals.scope_id
        if added:
            self.ledger.add_members(members, [i.key for i in added])
            self.ledger.forget_deliveries(removals, [i.key_hash for i in added])
        if removed:
            # forgetting the payload makes the same record add the member again
            self.ledger.remove_members(members, [i.key for i in removed])
            if scope_id != members:
                self.ledger.forget_deliveries(members, [i.key_hash for i in removed])

    @override
    def refused(
        self, sink: Destination, rejects: t.Sequence[tuple[Item, Reject]]
    ) -> None:
        """Open the ledger's reject rows: permanent ones quarantine the payload."""
        rows = [
            RejectRow(
                key_hash=item.key_hash,
                key=item.key if self.store_reject_keys else None,
                fingerprint=item.fingerprint,
                stream=sink.stream_name,
                reason=reject.reason,
                message=reject.message,
                http_status=reject.http_status,
                permanent=reject.permanent,
            )
            for item, reject in rejects
        ]
        self.ledger.record_rejects(sink.scope_id, rows)

    @override
    def renew_sources(self, sink: Destination, items: t.Sequence[Item]) -> None:
        """Store the new source fingerprints (the payloads stay as delivered)."""
        self.ledger.renew_sources(
            sink.scope_id, [(i.key_hash, i.source) for i in items if i.source]
        )

    @override
    def write_reject(
        self, stream: str | None, reject: Reject, line: int | None
    ) -> None:
        """Append to the rejects file."""
        self.rejects.write(stream, reject, line)


class PlanRecorder(Recorder):
    """A dry run: one plan line per record and action; the ledger untouched."""

    dry_run = True

    def __init__(self, rejects: RejectsFile, plan: PlanFile) -> None:
        super().__init__(rejects)
        self.plan = plan

    @override
    def unchanged(self, sink: Destination, items: t.Sequence[Item]) -> None:
        """Planned as unchanged."""
        super().unchanged(sink, items)
        sink.stats.plan("unchanged", len(items))
        for item in items:
            self.plan.write(sink.stream_name, item.key, "unchanged")

    @override
    def quarantined(
        self, sink: Destination, items: t.Sequence[Item], reasons: t.Sequence[str]
    ) -> None:
        """Planned as quarantined, with the reason it was refused for."""
        super().quarantined(sink, items, reasons)
        sink.stats.plan("quarantined", len(items))
        for item, reason in zip(items, reasons, strict=True):
            self.plan.write(sink.stream_name, item.key, "quarantined", reason=reason)

    @override
    def delivered(self, sink: Destination, groups: t.Sequence[Delivered]) -> None:
        """One plan line per action (an upsert that adds to a group: two)."""
        for group in groups:
            verbs = [action.verb for action in group.actions] or ["unchanged"]
            for item in group.items:
                for verb in verbs:
                    sink.stats.plan(verb)
                    self.plan.write(sink.stream_name, item.key, verb)

    @override
    def refused(
        self, sink: Destination, rejects: t.Sequence[tuple[Item, Reject]]
    ) -> None:
        """Nothing: a dry run quarantines nothing."""

    @override
    def renew_sources(self, sink: Destination, items: t.Sequence[Item]) -> None:
        """Nothing: a dry run leaves the ledger untouched."""

    @override
    def write_reject(
        self, stream: str | None, reject: Reject, line: int | None
    ) -> None:
        """A plan line instead of the rejects file."""
        extra = {"line": line} if line is not None else {}
        self.plan.write(
            stream,
            reject.key,
            "reject",
            reason=reject.reason,
            message=reject.message,
            **extra,
        )
