"""Customer activity through the real CLI: timeline items, once each."""

from __future__ import annotations

import datetime
import json
import os
import signal
import threading
import time
import typing as t
from collections import Counter
from pathlib import Path

import pytest

from delivery_emulators import GladlyEmulator
from target_gladly.contract import derived_id, item_id
from tests.cli import messages, run_ok, run_target, start_target

Config = dict[str, t.Any]
STREAM = "activities"
SCHEMA: dict[str, t.Any] = {
    "type": "object",
    "properties": {
        "activity_id": {"type": "integer"},
        "customer_email": {"type": ["string", "null"]},
        "subject": {"type": ["string", "null"]},
        "details": {"type": ["string", "null"]},
        "kind": {"type": ["string", "null"]},
        "url": {"type": ["string", "null"]},
        "happened_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
MAPPING = {
    "customer_email": "email",
    "subject": "title",
    "details": "body",
    "kind": "activityType",
    "url": "link",
    "happened_at": "occurredAt",
}
CUSTOMERS = 50
KNOWN = 40  # customers 0..39 have a profile before the run; 40..49 are new
NOW = datetime.datetime.now(datetime.UTC)


def email(customer: int) -> str:
    return f"shopper{customer:03d}@example.com"


def activity(n: int, **changes: t.Any) -> dict[str, t.Any]:
    """Activity ``n`` of customer ``n % 50``, a few hours old."""
    row = {
        "activity_id": n,
        "customer_email": email(n % CUSTOMERS),
        "subject": f"Order {n} shipped",
        "details": f"Parcel {n} left the warehouse.",
        "kind": ["email", "SMS", "Issue", "OTHER"][n % 4],
        "url": f"https://shop.example.com/orders/{n}",
        "happened_at": (NOW - datetime.timedelta(hours=n)).isoformat(),
    }
    row.update(changes)
    return row


def activity_messages(rows: list[dict[str, t.Any]], **kwargs: t.Any) -> list[str]:
    return messages(
        rows, stream=STREAM, schema=SCHEMA, key_properties=("activity_id",), **kwargs
    )


def activity_config(gladly_config: Config) -> Config:
    return {
        **gladly_config,
        "object_type": "customer_activity",
        "field_mapping": MAPPING,
    }


def seed_known_customers(emulator: GladlyEmulator) -> dict[int, str]:
    return {
        i: emulator.add_profile(
            {"name": f"Shopper {i}", "emails": [{"original": email(i).upper()}]}
        )
        for i in range(KNOWN)
    }


def expected_ids(numbers: t.Iterable[int]) -> set[str]:
    return {item_id(STREAM, f"activity_id={n}") for n in numbers}


def report(tmp_path: Path) -> dict[str, t.Any]:
    streams = json.loads((tmp_path / "report.json").read_text())["streams"]
    return t.cast(dict[str, t.Any], streams[STREAM])


def rejects(tmp_path: Path) -> list[dict[str, t.Any]]:
    path = tmp_path / "rejects.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


def profile_of(emulator: GladlyEmulator, address: str) -> str:
    [profile] = [
        p
        for p in emulator.profiles.values()
        if address in {e["original"].lower() for e in p.get("emails") or []}
    ]
    return str(profile["id"])


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_200_activities_of_50_customers_land_once_and_create_the_10_new_ones(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    known = seed_known_customers(gladly_emulator)
    rows = [activity(n) for n in range(200)]
    config = activity_config(gladly_config)
    result = run_ok("target-gladly", config, activity_messages(rows), tmp_path)

    items = gladly_emulator.conversation_items()
    assert len(items) == 200
    assert {i["id"] for i in items} == expected_ids(range(200))
    assert len(gladly_emulator.profiles) == CUSTOMERS
    created = set(gladly_emulator.profiles) - set(known.values())
    assert created == {derived_id(email(i)) for i in range(KNOWN, CUSTOMERS)}
    assert gladly_emulator.profiles_created_by_items == []
    by_id = {i["id"]: i for i in items}
    for n in (0, 41, 199):
        item = by_id[item_id(STREAM, f"activity_id={n}")]
        assert item["customerId"] == profile_of(gladly_emulator, email(n % CUSTOMERS))
        assert item["content"] == {
            "type": "CUSTOMER_ACTIVITY",
            "title": f"Order {n} shipped",
            "body": f"Parcel {n} left the warehouse.",
            "activityType": ["EMAIL", "SMS", "ISSUE", "OTHER"][n % 4],
            "link": {"url": f"https://shop.example.com/orders/{n}"},
        }
    assert by_id[item_id(STREAM, "activity_id=0")]["occurredAt"] == (
        NOW.isoformat().replace("+00:00", "Z")
    )
    counts = report(tmp_path)
    assert (counts["created"], counts["rejected"]) == (200, 0)
    assert "10 customers had no Gladly profile" in result.stderr

    writes = gladly_emulator.write_calls()
    again = run_ok("target-gladly", config, activity_messages(rows), tmp_path)
    assert gladly_emulator.write_calls() == writes
    assert (report(tmp_path)["created"], report(tmp_path)["unchanged"]) == (0, 200)
    assert len(gladly_emulator.conversation_items()) == 200
    assert again.states


@pytest.mark.slow
def test_a_run_killed_part_way_and_resumed_from_its_state_adds_each_item_once(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    seed_known_customers(gladly_emulator)
    rows = [activity(n) for n in range(200)]
    lines = activity_messages(rows, state_every=20)
    config = {
        **activity_config(gladly_config),
        "batch_size_rows": 20,
        "max_requests_per_second": 25,
    }
    proc = start_target("target-gladly", config, tmp_path)
    assert proc.stdin is not None
    assert proc.stdout is not None

    def feed() -> None:
        try:
            proc.stdin.write("\n".join(lines) + "\n")  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    last_state = json.loads(proc.stdout.readline())
    offset = last_state["bookmarks"][STREAM]["offset"]
    deadline = time.monotonic() + 30
    while (
        len(gladly_emulator.conversation_items()) < offset + 10
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)  # let items past the STATE land: the rerun sends them again
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    stored_at_kill = len(gladly_emulator.conversation_items())
    assert offset < stored_at_kill < 200, "the kill must land mid-run"

    resumed = run_ok(
        "target-gladly", config, activity_messages(rows[offset:]), tmp_path
    )
    items = gladly_emulator.conversation_items()
    assert Counter(i["id"] for i in items) == Counter(expected_ids(range(200)))
    counts = report(tmp_path)
    assert counts["created"] == 200 - stored_at_kill
    assert counts["delivered"] == 200 - offset, "items already there count as sent"
    assert "were already in Gladly" in resumed.stderr
    assert len(gladly_emulator.profiles) == CUSTOMERS


def test_activities_over_gladlys_limits_are_rejected_with_their_reasons(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    two_years_ago = (NOW - datetime.timedelta(days=730)).isoformat()
    rows = [
        activity(0),
        activity(1, subject="x" * 101),
        activity(2, happened_at=two_years_ago),
        activity(3, happened_at="next tuesday"),
        activity(4, details="y" * 25_001),
        activity(5, kind="PIGEON"),
        activity(6, customer_email=None),
        activity(7, subject="   "),
        activity(8, kind=None),
        activity(9, subject="x" * 100, details="y" * 25_000),
    ]
    config = {**activity_config(gladly_config), "max_reject_ratio": 1}
    run_ok("target-gladly", config, activity_messages(rows), tmp_path)

    assert {i["id"] for i in gladly_emulator.conversation_items()} == expected_ids(
        [0, 9]
    )
    reasons = {r["key"]: (r["reason"], r["message"]) for r in rejects(tmp_path)}
    assert reasons.keys() == {f"activity_id={n}" for n in range(1, 9)}
    reason, message = reasons["activity_id=1"]
    assert reason == "title_too_long"
    assert "101 characters" in message
    assert "at most 100" in message
    reason, message = reasons["activity_id=2"]
    assert reason == "occurred_at_too_old"
    assert "older than a year" in message
    assert reasons["activity_id=3"][0] == "invalid_occurred_at"
    assert reasons["activity_id=4"][0] == "body_too_long"
    reason, message = reasons["activity_id=5"]
    assert reason == "invalid_activity_type"
    assert "'PIGEON'" in message
    assert "EMAIL" in message
    assert reasons["activity_id=6"][0] == "missing_customer"
    assert reasons["activity_id=7"][0] == "missing_title"
    assert reasons["activity_id=8"][0] == "missing_activity_type"
    assert len(gladly_emulator.profiles) == 2, "no profile for a rejected activity"


def test_activity_type_setting_is_the_default_and_phone_names_a_customer(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    holder = gladly_emulator.add_profile(
        {"phones": [{"original": "+4512345678", "type": "HOME"}]}
    )
    mapping = {**MAPPING, "phone": "phone"}
    schema_rows = [
        activity(0, customer_email=None, phone="12 34 56 78", kind=None),
        activity(1, customer_email=None, phone="+45 87654321", kind="voice"),
    ]
    config = {
        **activity_config(gladly_config),
        "field_mapping": mapping,
        "activity_type": "SURVEY",
        "default_phone_region": "DK",
        "phone_type": "MOBILE",
    }
    schema = {
        **SCHEMA,
        "properties": {**SCHEMA["properties"], "phone": {"type": ["string", "null"]}},
    }
    lines = messages(
        schema_rows, stream=STREAM, schema=schema, key_properties=("activity_id",)
    )
    run_ok("target-gladly", config, lines, tmp_path)

    items = {i["id"]: i for i in gladly_emulator.conversation_items()}
    first = items[item_id(STREAM, "activity_id=0")]
    assert (first["customerId"], first["content"]["activityType"]) == (
        holder,
        "SURVEY",
    )
    second = items[item_id(STREAM, "activity_id=1")]
    assert second["content"]["activityType"] == "VOICE"
    created = gladly_emulator.profiles[second["customerId"]]
    assert created["phones"] == [{"original": "+4587654321", "type": "MOBILE"}]


def test_a_changed_activity_is_not_duplicated_and_keeps_its_first_content(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    config = activity_config(gladly_config)
    run_ok("target-gladly", config, activity_messages([activity(0)]), tmp_path)
    changed = activity(0, subject="Order 0 delivered")
    result = run_ok("target-gladly", config, activity_messages([changed]), tmp_path)

    [item] = gladly_emulator.conversation_items()
    assert item["content"]["title"] == "Order 0 shipped"
    counts = report(tmp_path)
    assert (counts["sent"], counts["delivered"], counts["created"]) == (1, 1, 0)
    assert "a changed activity needs a new key" in result.stderr
    assert gladly_emulator.status_counts[409] == 1


def test_dry_run_plans_a_create_per_item_with_reads_only(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    seed_known_customers(gladly_emulator)
    gladly_emulator.add_profile({"emails": [{"original": email(3)}]})  # a second one
    rows = [activity(n) for n in range(10)] + [activity(10, subject="x" * 101)]
    config = {**activity_config(gladly_config), "dry_run": True}
    run_ok("target-gladly", config, activity_messages(rows), tmp_path)

    assert gladly_emulator.write_calls() == 0
    assert gladly_emulator.conversation_items() == []
    lines = (tmp_path / "report.plan.jsonl").read_text().splitlines()
    plan = {p["key"]: p for p in map(json.loads, lines) if "key" in p}
    assert {k for k, p in plan.items() if p["action"] == "create"} == {
        f"activity_id={n}" for n in range(10) if n != 3
    }
    assert plan["activity_id=3"]["reason"] == "ambiguous_email"
    assert plan["activity_id=10"]["reason"] == "title_too_long"


def test_a_stream_without_key_properties_is_refused_before_any_item(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    lines = messages([activity(0)], stream=STREAM, schema=SCHEMA, key_properties=())
    result = run_target(
        "target-gladly", activity_config(gladly_config), lines, tmp_path
    )

    assert result.returncode != 0
    assert f"stream {STREAM} has no key properties" in result.stderr
    assert gladly_emulator.write_calls() == 0
