"""Customer profiles through the CLI entry point: upsert, insert and update."""

from __future__ import annotations

import json
import typing as t
from collections import Counter
from pathlib import Path

import pytest

from delivery_emulators import GladlyEmulator
from target_gladly.contract import derived_id
from tests.cli import CUSTOMER_SCHEMA, customer, messages, run_target

Config = dict[str, t.Any]
SCHEMA = {
    "type": "object",
    "properties": {
        **t.cast(dict[str, t.Any], CUSTOMER_SCHEMA["properties"]),
        "phone": {"type": ["string", "null"]},
        "id": {"type": ["string", "null"]},
    },
}
PROFILES = "/api/v1/customer-profiles"


def gladly_messages(rows: list[dict[str, t.Any]], **kwargs: t.Any) -> list[str]:
    return messages(rows, schema=SCHEMA, **kwargs)


def rejects(tmp_path: Path) -> list[dict[str, t.Any]]:
    path = tmp_path / "rejects.jsonl"
    return (
        [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    )


def report(tmp_path: Path) -> dict[str, t.Any]:
    stream = json.loads((tmp_path / "report.json").read_text())["streams"]
    return t.cast(dict[str, t.Any], stream["customers"])


def emails_of(profile: dict[str, t.Any]) -> list[str]:
    return [e["original"].lower() for e in profile.get("emails") or []]


def by_email(emulator: GladlyEmulator) -> dict[str, dict[str, t.Any]]:
    return {email: p for p in emulator.profiles.values() for email in emails_of(p)}


def test_upsert_matches_existing_profiles_by_email_and_keeps_what_they_hold(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    existing = {}
    for i in range(0, 90, 3):  # 30 of the 100 records match a profile
        existing[i] = gladly_emulator.add_profile(
            {
                "name": f"Old {i}",
                "emails": [
                    {"original": customer(i)["email"].upper(), "primary": True},
                    {"original": f"second{i}@example.org"},
                ],
                "phones": [{"original": f"+4520{i:06d}", "type": "HOME"}],
                "customAttributes": {"tier": "old", "legacy": f"keep-{i}"},
            }
        )
    rows = [customer(i, phone=f"+4530{i:06d}") for i in range(100)]
    result = run_target("target-gladly", gladly_config, gladly_messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    profiles = gladly_emulator.profiles
    assert len(profiles) == 100
    every_email = Counter(e for p in profiles.values() for e in emails_of(p))
    assert max(every_email.values()) == 1, "no email is on two profiles"
    stored = by_email(gladly_emulator)
    for i, profile_id in existing.items():
        profile = stored[customer(i)["email"]]
        assert profile["id"] == profile_id
        assert emails_of(profile) == [customer(i)["email"], f"second{i}@example.org"]
        assert profile["emails"][0] == {
            "original": customer(i)["email"].upper(),
            "primary": True,
        }
        assert profile["phones"] == [
            {"original": f"+4520{i:06d}", "type": "HOME"},
            {"original": f"+4530{i:06d}"},
        ]
        assert profile["name"] == f"Name{i}"
        assert profile["customAttributes"] == {
            "tier": customer(i)["tier"],
            "legacy": f"keep-{i}",
            "lifetime_value": str(customer(i)["lifetime_value"]).removesuffix(".0"),
            "birthdate": customer(i)["birthdate"],
        }
    new = stored[customer(1)["email"]]
    assert new["id"] == derived_id(customer(1)["email"])
    assert new["phones"] == [{"original": "+4530000001"}]
    stats = report(tmp_path)
    assert (stats["created"], stats["updated"], stats["rejected"]) == (70, 30, 0)
    assert gladly_emulator.calls[f"PATCH {PROFILES}/{{id}}"] == 30
    assert gladly_emulator.calls[f"POST {PROFILES}"] == 70


def test_upsert_rejects_records_without_email_and_profiles_it_must_not_merge(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    gladly_emulator.add_profile(
        {"id": "holder", "phones": [{"original": "+4599999999", "type": "MOBILE"}]}
    )
    gladly_emulator.add_profile({"id": "taken-id", "name": "Someone Else"})
    untouched = dict(gladly_emulator.profiles["taken-id"])
    config = {
        **gladly_config,
        "phone_type": "MOBILE",
        "field_mapping": {**gladly_config["field_mapping"], "id": "id"},
        "max_reject_ratio": 1,
    }
    rows = [
        customer(1, email=None),
        customer(2, phone="+4599999999"),
        customer(3, id="taken-id"),
        customer(4, email="not-an-email"),
        customer(5, phone="+4555555555"),
    ]
    result = run_target("target-gladly", config, gladly_messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    reasons = {r["key"]: r["reason"] for r in rejects(tmp_path)}
    assert reasons == {
        "email=None": "missing_email",
        customer(2)["email"]: "phone_taken",
        customer(3)["email"]: "id_taken",
        "not-an-email": "invalid",
    }
    messages_by_reason = {r["reason"]: r["message"] for r in rejects(tmp_path)}
    assert "upsert matches profiles by email" in messages_by_reason["missing_email"]
    assert "MOBILE numbers are unique" in messages_by_reason["phone_taken"]
    assert gladly_emulator.profiles["taken-id"] == untouched
    assert set(by_email(gladly_emulator)) == {customer(5)["email"]}
    assert by_email(gladly_emulator)[customer(5)["email"]]["phones"] == [
        {"original": "+4555555555", "type": "MOBILE"}
    ]
    invalid_finds = [
        r for r in gladly_emulator.requests if r.status == 400 and r.method == "GET"
    ]
    assert len(invalid_finds) == 1, "a 400 is never retried"


def test_insert_rejects_an_existing_email_without_touching_that_profile(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    seeded = {
        "id": "existing",
        "name": "Keep Me",
        "emails": [{"original": customer(3)["email"].upper()}],
        "customAttributes": {"tier": "old"},
    }
    gladly_emulator.add_profile(seeded)
    before = dict(gladly_emulator.profiles["existing"])
    config = {**gladly_config, "sync_mode": "insert", "max_reject_ratio": 0.5}
    rows = [customer(i) for i in range(5)]
    result = run_target("target-gladly", config, gladly_messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    assert gladly_emulator.profiles["existing"] == before
    [reject] = rejects(tmp_path)
    assert (reject["key"], reject["reason"], reject["http_status"]) == (
        customer(3)["email"],
        "already_exists",
        409,
    )
    assert "profile existing" in reject["message"]
    assert len(gladly_emulator.profiles) == 5
    assert gladly_emulator.calls[f"PATCH {PROFILES}/{{id}}"] == 0
    assert gladly_emulator.calls[f"GET {PROFILES}"] == 0, "insert does not look up"


def test_insert_completes_a_create_whose_answer_was_lost(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    """A crash after Gladly created the profile: the rerun must not reject it."""
    email = customer(7)["email"]
    gladly_emulator.add_profile(
        {"id": derived_id(email), "emails": [{"original": email}], "name": "Stale"}
    )
    config = {**gladly_config, "sync_mode": "insert"}
    result = run_target(
        "target-gladly", config, gladly_messages([customer(7)]), tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert rejects(tmp_path) == []
    [profile] = gladly_emulator.profiles.values()
    assert profile["name"] == "Name7"
    assert (report(tmp_path)["created"], report(tmp_path)["delivered"]) == (1, 1)


def test_update_without_an_id_creates_nothing(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    config = {**gladly_config, "sync_mode": "update", "max_reject_ratio": 1}
    rows = [customer(i) for i in range(3)]
    result = run_target("target-gladly", config, gladly_messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    assert gladly_emulator.profiles == {}
    assert gladly_emulator.write_calls() == 0
    assert [r["message"] for r in rejects(tmp_path)] == [
        "update requires a Gladly customer id; use upsert to match by email"
    ] * 3


def test_update_follows_merged_profiles_and_rejects_unknown_ids(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    gladly_emulator.add_profile(
        {"id": "old", "emails": [{"original": "old@example.org"}]}
    )
    gladly_emulator.add_profile(
        {
            "id": "survivor",
            "emails": [{"original": "survivor@example.org"}],
            "customAttributes": {"legacy": "x"},
        }
    )
    gladly_emulator.merge("old", "survivor")
    config = {
        **gladly_config,
        "sync_mode": "update",
        "field_mapping": {"id": "id", "tier": "tier", "email": "email"},
        "max_reject_ratio": 1,
    }
    rows = [customer(1, id="old"), customer(2, id="ghost")]
    result = run_target("target-gladly", config, gladly_messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    survivor = gladly_emulator.profiles["survivor"]
    assert survivor["customAttributes"] == {"legacy": "x", "tier": "silver"}
    assert emails_of(survivor) == [
        "survivor@example.org",
        "old@example.org",
        customer(1)["email"],
    ]
    assert [(r["key"], r["reason"]) for r in rejects(tmp_path)] == [
        ("ghost", "not_found")
    ]
    assert set(gladly_emulator.profiles) == {"survivor"}


@pytest.mark.slow
def test_transient_failures_are_retried_up_to_max_retries(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    gladly_emulator.inject(f"POST {PROFILES}", status=503, count=3)
    gladly_emulator.inject(f"GET {PROFILES}", kind="drop", count=1)
    rows = [customer(i) for i in range(3)]
    result = run_target("target-gladly", gladly_config, gladly_messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    assert len(gladly_emulator.profiles) == 3
    assert report(tmp_path)["retries"] == 4

    gladly_emulator.inject(f"POST {PROFILES}", status=503)
    mark = len(gladly_emulator.requests)
    rows = [customer(9)]
    failed = run_target("target-gladly", gladly_config, gladly_messages(rows), tmp_path)
    assert failed.returncode != 0
    assert "still failed after 3 retries" in failed.stderr
    posts = [r for r in gladly_emulator.requests[mark:] if r.method == "POST"]
    assert len(posts) == 4
    assert failed.states == [], "nothing after the failure is checkpointed"
