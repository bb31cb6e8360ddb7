"""A mirror removes only on positive evidence, and full_sync repairs drift (CLI)."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from tests.cli import customer, messages, run_ok

Config = dict[str, t.Any]
REMOVE = "POST /recipients/:removeFromStaticTargetGroup"
SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "first_name": {"type": "string"},
        "score": {"type": "number"},
    },
}


def row(i: int, **changes: t.Any) -> dict[str, t.Any]:
    return {
        "email": customer(i)["email"],
        "first_name": f"Name{i}",
        "score": i,
        **changes,
    }


def snapshot(rows: list[dict[str, t.Any]], **kwargs: t.Any) -> list[str]:
    return messages(rows, stream="vip", schema=SCHEMA, **kwargs)


@pytest.fixture
def mirror(agillic_emulator: AgillicEmulator, agillic_config: Config) -> Config:
    agillic_emulator.add_group("VIP")
    return {
        **agillic_config,
        "streams": {
            "vip": {
                "audience_mode": "mirror",
                "target_group_name": "VIP",
                "field_mapping": {
                    "email": "EMAIL",
                    "first_name": "FIRSTNAME",
                    "score": "LIFETIME_VALUE",
                },
            }
        },
        "max_reject_ratio": 1,
    }


def emails(indexes: t.Iterable[int]) -> set[str]:
    return {customer(i)["email"] for i in indexes}


@pytest.fixture
def thousand(
    agillic_emulator: AgillicEmulator, mirror: Config, tmp_path: Path
) -> AgillicEmulator:
    run_ok("target-agillic", mirror, snapshot([row(i) for i in range(1000)]), tmp_path)
    assert agillic_emulator.members("VIP") == emails(range(1000))
    return agillic_emulator


def test_members_whose_rows_are_rejected_for_another_field_stay(
    thousand: AgillicEmulator, mirror: Config, tmp_path: Path
) -> None:
    rows = [row(i, score="not a number") if i < 100 else row(i) for i in range(1000)]
    result = run_ok("target-agillic", mirror, snapshot(rows), tmp_path)
    assert thousand.calls[REMOVE] == 0
    assert thousand.members("VIP") == emails(range(1000))
    report = json.loads((tmp_path / "report.json").read_text())["streams"]["vip"]
    assert report["rejected_by_reason"] == {"invalid_record": 100}
    assert result.states


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_a_tap_that_dies_part_way_removes_no_one(
    thousand: AgillicEmulator, mirror: Config, tmp_path: Path
) -> None:
    lines = snapshot([row(i) for i in range(600)], state_every=250)[:-1]
    result = run_ok("target-agillic", mirror, lines, tmp_path)
    assert thousand.calls[REMOVE] == 0
    assert thousand.members("VIP") == emails(range(1000))
    assert "no STATE followed the last record of stream vip" in result.stderr


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_a_complete_snapshot_removes_exactly_the_members_it_lost(
    thousand: AgillicEmulator, mirror: Config, tmp_path: Path
) -> None:
    run_ok(
        "target-agillic", mirror, snapshot([row(i) for i in range(50, 1000)]), tmp_path
    )
    assert thousand.members("VIP") == emails(range(50, 1000))
    removed = [
        recipient
        for r in thousand.requests
        if r.route == REMOVE and r.status == 200
        for recipient in r.body["recipientIds"]
    ]
    assert sorted(removed) == sorted(emails(range(50)))


def test_full_sync_puts_back_members_removed_outside_the_target(
    thousand: AgillicEmulator, mirror: Config, tmp_path: Path
) -> None:
    gone = [customer(i)["email"] for i in (3, 30, 300, 600, 900)]
    for email in gone:
        thousand.remove_member("VIP", email)
    rows = snapshot([row(i) for i in range(1000)])
    run_ok("target-agillic", mirror, rows, tmp_path)
    assert thousand.members("VIP") == emails(range(1000)) - set(gone)

    run_ok("target-agillic", {**mirror, "full_sync": True}, rows, tmp_path)
    assert thousand.members("VIP") == emails(range(1000))
