"""Per-stream routing (``streams``): several Gladly objects in one run."""

from __future__ import annotations

import datetime
import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import GladlyEmulator
from target_gladly.contract import item_id
from tests.cli import messages, run_ok, run_target

Config = dict[str, t.Any]
CUSTOMER_SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": ["string", "null"]},
        "first_name": {"type": ["string", "null"]},
        "tier": {"type": ["string", "null"]},
    },
}
ACTIVITY_SCHEMA = {
    "type": "object",
    "properties": {
        "ticket": {"type": "string"},
        "requester": {"type": ["string", "null"]},
        "summary": {"type": ["string", "null"]},
    },
}
ERASURE_SCHEMA = {"type": "object", "properties": {"email": {"type": "string"}}}
ACTIVITY_ROUTE = {
    "object_type": "customer_activity",
    "field_mapping": {"requester": "email", "summary": "title"},
    "activity_type": "ISSUE",
}


def email(i: int) -> str:
    return f"member{i:03d}@example.com"


def test_profiles_activities_and_deletes_in_one_run(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    leaver = gladly_emulator.add_profile({"emails": [{"original": "gone@example.com"}]})
    customers = [
        {"email": email(i), "first_name": f"Member {i}", "tier": "gold"}
        for i in range(10)
    ]
    tickets = [
        {"ticket": f"T-{n}", "requester": email(n % 10), "summary": f"Ticket {n}"}
        for n in range(30)
    ]
    lines = [
        *messages(customers, stream="customers", schema=CUSTOMER_SCHEMA),
        *messages(
            tickets,
            stream="tickets",
            schema=ACTIVITY_SCHEMA,
            key_properties=("ticket",),
        ),
        *messages(
            [{"email": "gone@example.com"}],
            stream="erasures",
            schema=ERASURE_SCHEMA,
        ),
    ]
    config = {
        **gladly_config,
        "field_mapping": {"email": "email", "first_name": "name", "tier": "tier"},
        "allow_deletes": True,
        "streams": {
            "tickets": ACTIVITY_ROUTE,
            "erasures": {"sync_mode": "delete", "field_mapping": {"email": "email"}},
        },
    }
    run_ok("target-gladly", config, lines, tmp_path)

    profiles = gladly_emulator.profiles
    assert leaver not in profiles
    assert len(profiles) == 10
    by_email = {p["emails"][0]["original"]: p for p in profiles.values()}
    assert by_email[email(3)]["name"] == "Member 3"
    assert by_email[email(3)]["customAttributes"] == {"tier": "gold"}
    items = {i["id"]: i for i in gladly_emulator.conversation_items()}
    assert set(items) == {item_id("tickets", f"ticket=T-{n}") for n in range(30)}
    ticket = items[item_id("tickets", "ticket=T-13")]
    assert ticket["customerId"] == by_email[email(3)]["id"]
    assert ticket["content"]["activityType"] == "ISSUE"
    report = json.loads((tmp_path / "report.json").read_text())["streams"]
    assert report["customers"]["created"] == 10
    assert report["tickets"]["created"] == 30
    assert report["erasures"]["deleted"] == 1


def test_activity_at_the_top_level_and_profiles_for_one_stream(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    occurred = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    tickets = [{"ticket": "T-1", "requester": email(1), "summary": "Hello"}]
    lines = [
        *messages(
            tickets,
            stream="tickets",
            schema=ACTIVITY_SCHEMA,
            key_properties=("ticket",),
        ),
        *messages(
            [{"email": email(2), "first_name": "Two"}],
            stream="customers",
            schema=CUSTOMER_SCHEMA,
        ),
    ]
    config = {
        **gladly_config,
        **ACTIVITY_ROUTE,
        "streams": {
            "customers": {
                "object_type": "customer_profiles",
                "field_mapping": {"email": "email", "first_name": "name"},
            }
        },
    }
    run_ok("target-gladly", config, lines, tmp_path)

    [item] = gladly_emulator.conversation_items()
    assert item["content"]["title"] == "Hello"
    # No occurredAt was sent: Gladly stamps the item when it arrives.
    assert datetime.datetime.fromisoformat(item["occurredAt"]) >= occurred
    names = sorted(str(p.get("name")) for p in gladly_emulator.profiles.values())
    assert names == ["None", "Two"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"streams": {"tickets": {**ACTIVITY_ROUTE, "sync_mode": "insert"}}},
            (
                "streams.tickets: object_type customer_activity cannot be combined "
                "with sync_mode insert"
            ),
        ),
        (
            {"object_type": "customer_activity", "sync_mode": "update"},
            "object_type customer_activity cannot be combined with sync_mode update",
        ),
        (
            {
                "streams": {
                    "tickets": {
                        **ACTIVITY_ROUTE,
                        "field_mapping": {"requester": "email", "summary": "name"},
                    }
                }
            },
            (
                "streams.tickets: field_mapping maps 'summary' to 'name', which "
                "customer activity does not have"
            ),
        ),
        (
            {
                "streams": {
                    "tickets": {
                        "object_type": "customer_activity",
                        "field_mapping": {"summary": "title"},
                    }
                }
            },
            "streams.tickets: field_mapping maps no field to email or phone",
        ),
        (
            {
                "streams": {
                    "tickets": {
                        "object_type": "customer_activity",
                        "field_mapping": {"requester": "email", "summary": "title"},
                    }
                }
            },
            (
                "streams.tickets: field_mapping maps no field to activityType and "
                "activity_type is unset"
            ),
        ),
        (
            {"streams": {"tickets": {"object_type": "orders"}}},
            (
                "streams.tickets.object_type must be one of customer_profiles, "
                "customer_activity"
            ),
        ),
        (
            {"streams": {"tickets": {"activity_type": "PIGEON"}}},
            "streams.tickets.activity_type must be one of CHAT, EMAIL",
        ),
        (
            {"streams": {"tickets": {"audience_mode": "add"}}},
            "streams.tickets has unknown setting(s) audience_mode",
        ),
        (
            {"streams": {"erasures": {"sync_mode": "delete"}}},
            "allow_deletes must be true for sync_mode delete (streams.erasures)",
        ),
        (
            {
                "allow_deletes": True,
                "streams": {
                    "erasures": {
                        "sync_mode": "delete",
                        "field_mapping": {"first_name": "name"},
                    }
                },
            },
            (
                "streams.erasures: sync_mode delete names each profile by email or "
                "Gladly id"
            ),
        ),
        (
            {"streams": {"customers": {"default_phone_region": "XX"}}},
            "streams.customers: default_phone_region 'XX' is not a known region",
        ),
        (
            {"streams": {"customers": {"field_mapping": {"mail": "emails"}}}},
            "streams.customers: field_mapping maps 'mail' to 'emails'",
        ),
    ],
)
def test_invalid_routes_are_refused_at_startup_naming_the_stream(
    gladly_emulator: GladlyEmulator,
    gladly_config: Config,
    tmp_path: Path,
    change: Config,
    named: str,
) -> None:
    config = {**gladly_config, **change}
    lines = messages([{"email": email(1)}], schema=CUSTOMER_SCHEMA)
    result = run_target("target-gladly", config, lines, tmp_path)

    assert result.returncode != 0
    assert named in result.stderr
    assert sum(gladly_emulator.calls.values()) == 0
    assert result.states == []


def test_a_top_level_problem_is_named_once_not_again_for_each_stream(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    config = {
        **gladly_config,
        "field_mapping": {"mail": "emails"},
        "streams": {"a": {"phone_type": "HOME"}, "b": {"phone_type": "MOBILE"}},
    }
    lines = messages([{"email": email(1)}], schema=CUSTOMER_SCHEMA)
    result = run_target("target-gladly", config, lines, tmp_path)

    assert result.returncode != 0
    assert result.stderr.count("field_mapping maps 'mail' to 'emails'") == 1
    assert "streams.a:" not in result.stderr
