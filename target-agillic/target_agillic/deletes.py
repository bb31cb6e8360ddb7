"""Agillic recipient deletes: ``sync_mode: delete``.

The guard (``allow_deletes``, ``max_deletes``, deletes held until the end of
input, dry runs listing every one) and forgetting a deleted recipient in
every other scope are ``DeleteSink``'s; this module adds the call.
"""

from __future__ import annotations

import typing as t

from typing_extensions import override

from singer_delivery import Action, DeleteSink, Item, Outcome, Scope
from target_agillic.sinks import AgillicSink, refused_by_api


class RecipientDeleteSink(AgillicSink, DeleteSink):
    """Deletes the recipient each record names (``DELETE /recipients/{id}``).

    The recipient ID comes from ``recipient_id_field`` through
    ``field_mapping``; other fields are not sent. The payload is the ID
    alone, so a recipient already deleted is not deleted again because some
    other column of its row changed. A 404 counts as deleted: the recipient
    is gone either way.
    """

    @property
    @override
    def scope(self) -> Scope:
        """Apart from the recipients scope, whose history a delete erases."""
        return self.scope_for("recipient_deletes", self.mapping.recipient_id_field)

    @override
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        """The recipient ID, as key (the recipients scope's key) and payload."""
        recipient_id = self.compiled.recipient_id(self.compiled.person_data(record))
        return recipient_id, {"recipientId": recipient_id}

    @override
    def deliver(self, items: list[Item]) -> t.Iterable[Outcome]:
        """One call per recipient, several at once."""
        return self.map_concurrently(self._delete, items)

    def _delete(self, item: Item) -> Outcome:
        response = self.client.delete_recipient(item.key)
        if response.ok or response.status_code == 404:
            return Outcome.done(item, Action.DELETED)
        return refused_by_api(item, response)
