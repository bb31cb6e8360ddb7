"""Guarded deletes: the shared half of ``sync_mode: delete``.

Each record names one destination record to delete. Deletes are
irreversible, so they are held until the end of input: a run whose input
asks for more than ``max_deletes`` deletes none and exits non-zero, and a
dry run lists every one. A delete already done (the same key and payload)
is not repeated; once a key is deleted, every other stream of the instance
forgets it, so a record that comes back is written again.
"""

from __future__ import annotations

import typing as t

from typing_extensions import override

from singer_delivery.outcomes import Action, Item, Outcome
from singer_delivery.sink import DeliverySink


class DeleteSink(DeliverySink):
    """A sink whose records name what to delete; destinations add the calls."""

    @property
    @override
    def held_until_end(self) -> bool:
        return True

    @property
    @override
    def held_cap(self) -> int:
        """One more than allowed: enough to know the guard is passed."""
        return int(self.config["max_deletes"]) + 1

    @override
    def refuse_held(self, count: int) -> str | None:
        """More deletes than ``max_deletes``: none at all."""
        limit = int(self.config["max_deletes"])
        if count <= limit:
            return None
        return (
            f"stream {self.stream_name} asks for {count} deletes, more than "
            f"max_deletes={limit}; nothing was deleted. Check the source first; "
            "if the erasure is intended, raise max_deletes for one run."
        )

    @override
    def plan(self, items: list[Item]) -> t.Iterable[Outcome]:
        """Every delete is listed: deletes are irreversible."""
        return [Outcome.done(item, Action.DELETED) for item in items]
