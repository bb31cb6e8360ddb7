"""Guarded profile deletes through the real CLI (``sync_mode: delete``)."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import GladlyEmulator
from tests.cli import messages, run_ok, run_target

Config = dict[str, t.Any]
STREAM = "erasures"
SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": ["string", "null"]},
        "gladly_id": {"type": ["string", "null"]},
    },
}
PROFILES = "/api/v1/customer-profiles"


def email(i: int) -> str:
    return f"leaver{i:04d}@example.com"


def seed(emulator: GladlyEmulator, count: int) -> dict[str, str]:
    """{email: profile id} of ``count`` profiles."""
    return {
        email(i): emulator.add_profile({"emails": [{"original": email(i)}]})
        for i in range(count)
    }


def erasures(rows: list[dict[str, t.Any]]) -> list[str]:
    return messages(rows, stream=STREAM, schema=SCHEMA, key_properties=("email",))


def delete_config(gladly_config: Config, **changes: t.Any) -> Config:
    return {
        **gladly_config,
        "sync_mode": "delete",
        "allow_deletes": True,
        "field_mapping": {"email": "email", "gladly_id": "id"},
        **changes,
    }


def report(tmp_path: Path) -> dict[str, t.Any]:
    streams = json.loads((tmp_path / "report.json").read_text())["streams"]
    return t.cast(dict[str, t.Any], streams[STREAM])


def rejects(tmp_path: Path) -> list[dict[str, t.Any]]:
    path = tmp_path / "rejects.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_twenty_deletes_are_planned_by_a_dry_run_then_done(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    profiles = seed(gladly_emulator, 30)
    rows = [{"email": email(i).upper()} for i in range(20)]
    dry = delete_config(gladly_config, dry_run=True)
    run_ok("target-gladly", dry, erasures(rows), tmp_path)

    assert gladly_emulator.write_calls() == 0
    assert len(gladly_emulator.profiles) == 30
    lines = (tmp_path / "report.plan.jsonl").read_text().splitlines()
    plan = [json.loads(line) for line in lines]
    planned = {p["key"] for p in plan if p.get("action") == "delete"}
    assert planned == {email(i) for i in range(20)}
    assert plan[-1]["totals"] == {"delete": 20}

    run_ok("target-gladly", delete_config(gladly_config), erasures(rows), tmp_path)
    assert set(gladly_emulator.profiles) == {profiles[email(i)] for i in range(20, 30)}
    assert gladly_emulator.calls[f"DELETE {PROFILES}/{{id}}"] == 20
    assert report(tmp_path)["deleted"] == 20


def test_more_deletes_than_max_deletes_delete_nothing_and_fail(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    seed(gladly_emulator, 150)
    rows = [{"email": email(i)} for i in range(150)]
    config = delete_config(gladly_config, max_deletes=100)
    result = run_target("target-gladly", config, erasures(rows), tmp_path)

    assert result.returncode != 0
    assert "asks for 150 deletes, more than max_deletes=100" in result.stderr
    assert len(gladly_emulator.profiles) == 150
    assert gladly_emulator.write_calls() == 0
    assert result.states == [], "a refused lot is read again by the next run"


def test_an_open_conversation_blocks_one_delete_until_it_is_closed(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    profiles = seed(gladly_emulator, 3)
    busy = profiles[email(1)]
    gladly_emulator.open_conversation(busy)
    rows = [{"email": email(i)} for i in range(3)]
    config = delete_config(gladly_config, max_reject_ratio=1)
    run_ok("target-gladly", config, erasures(rows), tmp_path)

    assert set(gladly_emulator.profiles) == {busy}
    [reject] = rejects(tmp_path)
    assert (reject["key"], reject["reason"]) == (email(1), "open_conversations")
    assert "close the customer's conversations in Gladly first" in reject["message"]
    assert reject["permanent"] is False

    gladly_emulator.open_conversations.discard(busy)
    run_ok("target-gladly", config, erasures(rows), tmp_path)
    assert gladly_emulator.profiles == {}, "not quarantined: tried again"
    counts = report(tmp_path)
    assert (counts["deleted"], counts["unchanged"]) == (1, 2)


def test_without_allow_deletes_the_config_is_refused_before_any_call(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    seed(gladly_emulator, 2)
    config = delete_config(gladly_config, allow_deletes=False)
    rows = [{"email": email(0)}]
    result = run_target("target-gladly", config, erasures(rows), tmp_path)

    assert result.returncode != 0
    assert "allow_deletes must be true for sync_mode delete" in result.stderr
    assert sum(gladly_emulator.calls.values()) == 0
    assert len(gladly_emulator.profiles) == 2


def test_without_the_compliance_admin_role_the_run_stops_naming_it(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    seed(gladly_emulator, 5)
    gladly_emulator.configure(compliance_admin=False)
    rows = [{"email": email(i)} for i in range(5)]
    result = run_target(
        "target-gladly", delete_config(gladly_config), erasures(rows), tmp_path
    )

    assert result.returncode != 0
    assert "Compliance Admin role" in result.stderr
    assert len(gladly_emulator.profiles) == 5
    assert gladly_emulator.status_counts[403] <= 5, "403 is not retried"
    assert result.states == []


def test_ids_unknown_and_ambiguous_emails(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    profiles = seed(gladly_emulator, 3)
    twin = gladly_emulator.add_profile({"emails": [{"original": email(2)}]})
    rows: list[dict[str, t.Any]] = [
        {"email": None, "gladly_id": profiles[email(0)]},
        {"email": "nobody@example.com"},
        {"email": email(2)},
        {"email": None, "gladly_id": "no-such-profile"},
        {"email": None, "gladly_id": None},
    ]
    config = delete_config(gladly_config, max_reject_ratio=1)
    run_ok("target-gladly", config, erasures(rows), tmp_path)

    assert set(gladly_emulator.profiles) == {
        profiles[email(1)],
        profiles[email(2)],
        twin,
    }
    reasons = {r["reason"] for r in rejects(tmp_path)}
    assert reasons == {"ambiguous_email", "missing_key"}
    assert report(tmp_path)["deleted"] == 3, "gone already counts as deleted"


def test_a_deleted_customer_is_created_again_by_a_later_upsert(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    """The delete forgets the email in the upsert stream's history."""
    upsert = {**gladly_config, "field_mapping": {"email": "email"}}
    customers = messages(
        [{"email": email(0)}], stream="customers", schema=SCHEMA, key_properties=()
    )
    run_ok("target-gladly", upsert, customers, tmp_path)
    run_ok(
        "target-gladly",
        delete_config(gladly_config),
        erasures([{"email": email(0)}]),
        tmp_path,
    )
    assert gladly_emulator.profiles == {}

    run_ok("target-gladly", upsert, customers, tmp_path)
    assert len(gladly_emulator.profiles) == 1
