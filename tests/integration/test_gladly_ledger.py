"""Change detection and dry runs for Gladly, from the shared machinery (CLI)."""

from __future__ import annotations

import json
import sqlite3
import typing as t
from pathlib import Path

from delivery_emulators import GladlyEmulator
from tests.cli import customer, messages, run_target

Config = dict[str, t.Any]
PROFILES = "/api/v1/customer-profiles"


def profile_calls(emulator: GladlyEmulator) -> int:
    """Calls on customer profiles (the preflight is not one)."""
    return sum(n for route, n in emulator.calls.items() if PROFILES in route)


def written_emails(emulator: GladlyEmulator, since: int) -> dict[str, str]:
    """Email (lower-cased) → method, for writes answered 2xx after ``since``.

    A PATCH body carries the profile's emails only when they change, so the
    profile id is mapped back to its first email.
    """
    first = {
        pid: p["emails"][0]["original"].lower()
        for pid, p in emulator.profiles.items()
        if p.get("emails")
    }
    writes = {}
    for request in emulator.requests[since:]:
        if request.method == "POST" and request.status == 201:
            writes[request.body["emails"][0]["original"].lower()] = "create"
        elif request.method == "PATCH" and request.status == 204:
            writes[first[request.path.rsplit("/", 1)[1]]] = "update"
    return writes


def test_a_second_identical_run_makes_no_call_and_a_change_one_patch(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(40)]
    first = run_target("target-gladly", gladly_config, messages(rows), tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(gladly_emulator.profiles) == 40

    calls, writes = profile_calls(gladly_emulator), gladly_emulator.write_calls()
    second = run_target("target-gladly", gladly_config, messages(rows), tmp_path)
    assert second.returncode == 0, second.stderr
    assert gladly_emulator.write_calls() == writes
    assert profile_calls(gladly_emulator) == calls
    report = json.loads((tmp_path / "report.json").read_text())["streams"]
    assert (report["customers"]["unchanged"], report["customers"]["sent"]) == (40, 0)

    rows[7] = customer(7, tier="platinum")
    mark = len(gladly_emulator.requests)
    third = run_target("target-gladly", gladly_config, messages(rows), tmp_path)
    assert third.returncode == 0, third.stderr
    assert written_emails(gladly_emulator, mark) == {customer(7)["email"]: "update"}
    [patch] = [r for r in gladly_emulator.requests[mark:] if r.method == "PATCH"]
    assert patch.body == {"customAttributes": {"tier": "platinum"}}


def read_plan(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    *records, totals = lines
    return {r["key"]: r["action"] for r in records}, totals["totals"]


def ledger_rows(ledger_file: Path) -> set[tuple[t.Any, ...]]:
    with sqlite3.connect(ledger_file) as conn:
        return set(conn.execute("SELECT * FROM ledger_deliveries"))


def test_dry_run_writes_nothing_and_the_next_real_run_follows_its_plan(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(30)]
    first = run_target("target-gladly", gladly_config, messages(rows), tmp_path)
    assert first.returncode == 0, first.stderr
    for i in range(40, 50):  # in Gladly already, unknown to the ledger
        gladly_emulator.add_profile(
            {"emails": [{"original": customer(i)["email"]}], "name": f"Name{i}"}
        )
    for i in range(50, 55):  # in Gladly and identical to the record
        record = customer(i)
        gladly_emulator.add_profile(
            {
                "emails": [{"original": record["email"]}],
                "name": record["first_name"],
                "customAttributes": {
                    "tier": record["tier"],
                    "lifetime_value": f"{record['lifetime_value']:g}",
                    "birthdate": record["birthdate"],
                },
            }
        )
    rows = [customer(i, tier="changed") if i < 5 else customer(i) for i in range(60)]
    rows.append(customer(999, email=None))
    ledger_file = tmp_path / "ledger.sqlite"
    ledger_before = ledger_rows(ledger_file)
    writes, before = gladly_emulator.write_calls(), json.dumps(gladly_emulator.profiles)

    dry = {**gladly_config, "dry_run": True, "max_reject_ratio": 1}
    result = run_target("target-gladly", dry, messages(rows), tmp_path)
    assert result.returncode == 0, result.stderr
    assert gladly_emulator.write_calls() == writes
    assert json.dumps(gladly_emulator.profiles) == before
    assert ledger_rows(ledger_file) == ledger_before
    plan, totals = read_plan(tmp_path / "report.plan.jsonl")
    # 25 in the ledger; 5 changed and 10 existing are updates; 5 existing are
    # current; 15 new ones are creates; the row without email is rejected
    assert totals == {"unchanged": 30, "update": 15, "create": 15, "reject": 1}

    mark = len(gladly_emulator.requests)
    real = {**gladly_config, "max_reject_ratio": 1}
    result = run_target("target-gladly", real, messages(rows), tmp_path)
    assert result.returncode == 0, result.stderr
    planned_writes = {k: a for k, a in plan.items() if a in ("create", "update")}
    assert written_emails(gladly_emulator, mark) == planned_writes
    report = json.loads((tmp_path / "report.json").read_text())["streams"]
    stream = report["customers"]
    assert (stream["created"], stream["updated"], stream["unchanged"]) == (15, 15, 25)
    assert stream["rejected_by_reason"] == {"missing_email": 1}
