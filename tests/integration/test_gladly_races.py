"""Races an upsert must survive, staged in-process against the emulator.

Another writer creating the profile between our find and our create, a
merge between our find and our PATCH, and two records of one profile being
patched at once: the CLI cannot time these, so the tests drive the sink.
"""

from __future__ import annotations

import threading
import typing as t

import pytest

from delivery_emulators import GladlyEmulator
from singer_delivery import Action, Item
from singer_delivery.serialization import canonical_json
from target_gladly.sinks import CustomerProfileSink
from target_gladly.target import TargetGladly

Config = dict[str, t.Any]
SCHEMA = {"type": "object", "properties": {}}


@pytest.fixture
def sink(gladly_config: Config) -> t.Iterator[CustomerProfileSink]:
    """A profile sink of an in-process target, cleaned up after the test."""
    config = {**gladly_config, "phone_type": "HOME", "field_mapping": None}
    target = TargetGladly(config={k: v for k, v in config.items() if v is not None})
    profile_sink = target.get_sink("customers", schema=SCHEMA, key_properties=[])
    assert isinstance(profile_sink, CustomerProfileSink)
    yield profile_sink
    target.finish(error=None, interrupted=False)


def item(sink: CustomerProfileSink, **record: t.Any) -> Item:
    key, payload = sink.map_record(record)
    return Item(key, canonical_json(payload), "-", key, seq=0)


def test_a_profile_created_between_find_and_create_is_found_again_and_patched(
    sink: CustomerProfileSink,
    gladly_emulator: GladlyEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    find = sink.client.find_by_email

    def find_after_someone_else_created_it(email: str) -> list[dict[str, t.Any]]:
        found = find(email)
        if not found and not gladly_emulator.profiles:
            gladly_emulator.add_profile(
                {"id": "quicker", "emails": [{"original": email}], "name": "Q"}
            )
        return found

    monkeypatch.setattr(
        sink.client, "find_by_email", find_after_someone_else_created_it
    )
    [outcome] = sink.deliver([item(sink, email="ada@x.com", tier="gold")])

    assert outcome.reject is None
    assert list(gladly_emulator.profiles) == ["quicker"]
    assert gladly_emulator.profiles["quicker"]["customAttributes"] == {"tier": "gold"}
    assert gladly_emulator.profiles["quicker"]["name"] == "Q"
    assert outcome.actions == (Action.UPDATED,)


def test_a_profile_merged_away_before_the_patch_is_found_again_under_its_survivor(
    sink: CustomerProfileSink,
    gladly_emulator: GladlyEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gladly_emulator.add_profile({"id": "old", "emails": [{"original": "ada@x.com"}]})
    gladly_emulator.add_profile({"id": "keep", "emails": [{"original": "a2@x.com"}]})
    patch = sink.client.patch

    def patch_after_a_merge(profile_id: str, changes: dict[str, t.Any]) -> bool:
        if profile_id == "old":
            gladly_emulator.merge("old", "keep")
        return patch(profile_id, changes)

    monkeypatch.setattr(sink.client, "patch", patch_after_a_merge)
    [outcome] = sink.deliver([item(sink, email="ADA@x.com", tier="gold")])

    assert outcome.reject is None
    assert gladly_emulator.profiles["keep"]["customAttributes"] == {"tier": "gold"}
    assert [e["original"] for e in gladly_emulator.profiles["keep"]["emails"]] == [
        "a2@x.com",
        "ada@x.com",
    ]


def test_two_records_of_one_profile_patched_at_once_both_keep_their_phone(
    sink: CustomerProfileSink,
    gladly_emulator: GladlyEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PATCH replaces the phones array: the second writer must read again."""
    gladly_emulator.add_profile(
        {
            "id": "p",
            "emails": [{"original": "a@x.com"}, {"original": "b@x.com"}],
            "phones": [{"original": "+4511111111", "type": "HOME"}],
        }
    )
    both_found = threading.Barrier(2, timeout=10)
    find = sink.client.find_by_email

    def find_together(email: str) -> list[dict[str, t.Any]]:
        found = find(email)
        both_found.wait()  # both records read the profile before either writes
        return found

    monkeypatch.setattr(sink.client, "find_by_email", find_together)
    outcomes = sink.deliver(
        [
            item(sink, email="a@x.com", phone="+4522222222"),
            item(sink, email="b@x.com", phone="+4533333333"),
        ]
    )

    assert [o.reject for o in outcomes] == [None, None]
    assert sorted(p["original"] for p in gladly_emulator.profiles["p"]["phones"]) == [
        "+4511111111",
        "+4522222222",
        "+4533333333",
    ]
    assert gladly_emulator.calls["GET /api/v1/customer-profiles/{id}"] == 1
