"""Agillic events: ``object_type: event`` fires one event per source row.

Firing is not idempotent on Agillic's side (a second call runs the flows a
second time), so an event fires at most once per key as far as the ledger
knows: an unchanged row never fires again, and a changed one only with
``refire_on_change``. There is no documented event discovery, so preflight
cannot check ``event_name``: an unknown event shows as a 404 naming it, and
every record is then rejected ``unknown_event``.
"""

from __future__ import annotations

import typing as t

import requests
from typing_extensions import override

from singer_delivery import Action, Item, Outcome, RecordRejected, Scope
from singer_delivery.serialization import canonical_json
from target_agillic import contract
from target_agillic.sinks import KEY_SEPARATOR, AgillicSink, refused_by_api

if t.TYPE_CHECKING:
    from target_agillic.target import TargetAgillic

NO_RECIPIENT_MESSAGE = (
    "recipient {id} not found in Agillic; sync recipients first (deliver the "
    "recipients stream in the same run as, or before, its events)"
)
UNKNOWN_EVENT_MESSAGE = (
    "Agillic has no event {event!r} ({message}); check event_name (names are "
    "case-sensitive) or create the event in Agillic"
)


class EventSink(AgillicSink):
    """Fires ``event_name`` for the recipient each record names.

    The recipient ID comes from ``recipient_id_field`` through
    ``field_mapping``; every other mapped field is a context parameter under
    its mapped name (a null one is left out). Delivered after the recipient
    sinks, so events of recipients created in the same run find them; an
    event whose recipient is still missing is deferred to the next
    checkpoint and rejected ``recipient_not_found`` only at the end of input.
    """

    drain_priority = 1

    def __init__(self, target: TargetAgillic, stream_name: str, **kwargs: t.Any):
        super().__init__(target=target, stream_name=stream_name, **kwargs)
        self.event: str = self.settings["event_name"]

    @property
    @override
    def scope(self) -> Scope:
        """Events of one name, keyed by the stream's key (e.g. an order id)."""
        return self.scope_for("event", self.event)

    @property
    @override
    def resend_changed(self) -> bool:
        """A changed payload fires again only with ``refire_on_change``."""
        return bool(self.settings["refire_on_change"])

    @override
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """The event's key, and its recipient with the context parameters."""
        data = self.compiled.person_data(record)
        recipient_id = self.compiled.recipient_id(data)
        id_field = self.mapping.recipient_id_field
        parameters = {
            name: value
            for name, value in data.items()
            if name != id_field and value is not None
        }
        key = self.event_key(record, recipient_id, parameters)
        return key, {"recipientId": recipient_id, "context_parameters": parameters}

    def event_key(
        self,
        record: t.Mapping[str, t.Any],
        recipient_id: str,
        parameters: t.Mapping[str, t.Any],
    ) -> str:
        """What identifies one event: the stream's key property values.

        A stream without key properties has nothing that tells two events
        apart but their content, so its key is the recipient ID plus the
        whole set of context parameters: the same parameters for the same
        recipient fire once, ever, and any change is a new event (so
        ``refire_on_change`` has no effect there). Give the stream a key
        (an order id) when repeats are real events.
        """
        if not self.key_properties:
            return KEY_SEPARATOR.join(
                (recipient_id, canonical_json(parameters).decode())
            )
        values = []
        for name in self.key_properties:
            value = record.get(name)
            if value is None or value == "":
                msg = (
                    f"key property {name} is empty; the stream's key identifies "
                    "the event, so that it fires only once"
                )
                raise RecordRejected("missing_event_key", msg, fields=(name,))
            values.append(str(value))
        return KEY_SEPARATOR.join(values)

    @override
    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """One call per event, several at once."""
        return self.map_concurrently(self._fire, items)

    def _fire(self, item: Item) -> Outcome:
        recipient_id = item.payload["recipientId"]
        response = self.client.fire_event(
            recipient_id, self.event, item.payload["context_parameters"]
        )
        if response.ok:
            return Outcome.done(item, Action.FIRED)
        if response.status_code != 404:
            return refused_by_api(item, response)
        if contract.names_event(response, self.event):
            return self._unknown_event(item, response)
        message = NO_RECIPIENT_MESSAGE.format(id=recipient_id)
        return Outcome.later(item, "recipient_not_found", message)

    def _unknown_event(self, item: Item, response: requests.Response) -> Outcome:
        _, said = contract.error_of(response)
        message = UNKNOWN_EVENT_MESSAGE.format(event=self.event, message=said)
        return Outcome.refused(item, "unknown_event", message, http_status=404)

    @override
    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """``fire`` for events whose recipient exists or is planned for creation.

        Read-only: one ``GET /recipients/{id}`` per recipient the dry run does
        not plan to create. A missing recipient is deferred as in a real run,
        so recipients planned later in the same dry run still count. The
        event name cannot be checked: Agillic documents no event discovery.
        """
        planned = self.run.resources.planned_recipients
        unplanned = list(
            dict.fromkeys(
                item.payload["recipientId"]
                for item in items
                if item.payload["recipientId"] not in planned
            )
        )
        checks = dict(
            zip(
                unplanned,
                self.map_concurrently(self.client.get_recipient, unplanned),
                strict=True,
            )
        )
        return [
            self._plan_one(item, checks.get(item.payload["recipientId"]))
            for item in items
        ]

    def _plan_one(self, item: Item, check: requests.Response | None) -> Outcome:
        """``check`` is the existence check, None for a planned recipient."""
        if check is None or check.status_code == 200:
            return Outcome.done(item, Action.FIRED)
        if check.status_code == 404:
            message = NO_RECIPIENT_MESSAGE.format(id=item.payload["recipientId"])
            return Outcome.later(item, "recipient_not_found", message)
        return refused_by_api(item, check)
