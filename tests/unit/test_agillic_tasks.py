"""A batch task's answer, turned into what became of each of its items."""

from __future__ import annotations

from singer_delivery.outcomes import Action, Delivered, Item
from target_agillic.contract import EntryError, TaskStatus
from target_agillic.sinks import BatchTask


def items(count: int) -> list[Item]:
    return [Item(f"r{n}", b"{}", f"f{n}", f"h{n}", n) for n in range(count)]


def keys(group: Delivered) -> list[str]:
    return [item.key for item in group.items]


def test_applied_items_are_labelled_created_then_updated_as_the_totals_say() -> None:
    task = BatchTask(items(5), TaskStatus("completed", created=2, updated=3))
    created, updated = task.labelled()
    assert (keys(created), created.actions) == (["r0", "r1"], (Action.CREATED,))
    assert (keys(updated), updated.actions) == (["r2", "r3", "r4"], (Action.UPDATED,))
    assert task.refused() == []


def test_refused_entries_are_left_out_of_the_applied_ones() -> None:
    errors = (
        EntryError(1, "INVALID_EMAIL", "bad"),
        EntryError(3, "INVALID_EMAIL", "bad"),
    )
    task = BatchTask(
        items(5), TaskStatus("completed", created=1, updated=2, errors=errors)
    )
    created, updated = task.labelled()
    assert (keys(created), keys(updated)) == (["r0"], ["r2", "r4"])
    assert [(item.key, error.index) for item, error in task.refused()] == [
        ("r1", 1),
        ("r3", 3),
    ]


def test_an_entry_error_outside_the_body_settles_nothing() -> None:
    errors = (EntryError(7, "X", "?"), EntryError(-1, "X", "?"))
    task = BatchTask(items(2), TaskStatus("completed", created=5, errors=errors))
    created, updated = task.labelled()
    assert (keys(created), keys(updated)) == (["r0", "r1"], [])
    assert task.refused() == []
