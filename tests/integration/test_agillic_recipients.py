"""target-agillic recipients through its CLI entry point against the emulator."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from tests.cli import customer, messages, run_target

Config = dict[str, t.Any]


def test_upsert_stores_every_record_once_with_the_right_values(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(2500)]
    result = run_target("target-agillic", agillic_config, messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    stored = agillic_emulator.recipients
    assert len(stored) == 2500
    assert sorted(agillic_emulator.upserted_ids()) == sorted(r["email"] for r in rows)
    sample = stored["user000007@example.com"]
    assert sample == {
        "EMAIL": "user000007@example.com",
        "FIRSTNAME": "Name7",
        "TIER": "silver",
        "LIFETIME_VALUE": 8.75,
        "BIRTHDATE": "17.08.1957",
        "CREATED_AT": "06.05.2024 07:08:09",
    }
    assert result.states[-1] == {"bookmarks": {"customers": {"offset": 2500}}}
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["streams"]["customers"]["created"] == 2500
    assert report["streams"]["customers"]["delivered"] == 2500


def seed(emulator: AgillicEmulator, *indexes: int) -> dict[str, dict[str, t.Any]]:
    """Put existing recipients into the emulator; return what was stored."""
    existing = {}
    for i in indexes:
        email = customer(i)["email"]
        existing[email] = {"EMAIL": email, "FIRSTNAME": f"Existing{i}", "TIER": "vip"}
    emulator.recipients.update({k: dict(v) for k, v in existing.items()})
    return existing


def rejects(tmp_path: Path) -> list[dict[str, t.Any]]:
    path = tmp_path / "rejects.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines()]
        if path.exists()
        else []
    )


def test_insert_rejects_only_existing_recipients_and_leaves_them_untouched(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    existing = seed(agillic_emulator, 3, 11, 42)
    rows = [customer(i) for i in range(60)]
    config = {**agillic_config, "sync_mode": "insert"}
    result = run_target("target-agillic", config, messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    stored = agillic_emulator.recipients
    assert len(stored) == 60
    for email, person in existing.items():
        assert stored[email] == person
    lines = rejects(tmp_path)
    assert sorted(line["key"] for line in lines) == sorted(existing)
    assert {line["reason"] for line in lines} == {"already_exists"}
    assert all(line["message"] == "already exists in Agillic" for line in lines)
    assert agillic_emulator.calls["POST /recipients"] == 60


def test_update_never_creates_a_recipient(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    existing = seed(agillic_emulator, 1, 2, 3)
    rows = [customer(i) for i in range(10)]
    config = {**agillic_config, "sync_mode": "update", "max_reject_ratio": 1}
    result = run_target("target-agillic", config, messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    stored = agillic_emulator.recipients
    assert sorted(stored) == sorted(existing)
    assert stored[customer(2)["email"]]["FIRSTNAME"] == "Name2"
    assert agillic_emulator.calls["PUT /recipients/{id}"] == 3
    assert agillic_emulator.calls["POST /recipients"] == 0
    lines = rejects(tmp_path)
    assert len(lines) == 7
    assert {line["reason"] for line in lines} == {"not_found"}
    assert lines[0]["message"] == "not found in Agillic; use upsert to create it"
    report = json.loads((tmp_path / "report.json").read_text())["streams"]["customers"]
    assert (report["updated"], report["created"], report["rejected"]) == (3, 0, 7)


def test_every_record_is_delivered_exactly_once_through_429s_and_5xx(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.inject(kind="status", status=429, rate=0.04, retry_after=0)
    agillic_emulator.inject(kind="status", status=429, rate=0.03)
    agillic_emulator.inject(kind="status", status=503, rate=0.03)
    agillic_emulator.inject(kind="drop", rate=0.02)
    rows = [customer(i) for i in range(2500)]
    config = {**agillic_config, "batch_size_rows": 100}
    result = run_target("target-agillic", config, messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    assert agillic_emulator.faults_fired >= 3
    assert len(agillic_emulator.recipients) == 2500
    applied = sorted(agillic_emulator.upserted_ids())
    assert applied == sorted(r["email"] for r in rows)
    report = json.loads((tmp_path / "report.json").read_text())["streams"]["customers"]
    assert report["retries"] >= 1
    assert report["delivered"] == 2500


@pytest.mark.slow
def test_short_token_lifetime_during_a_longer_run_causes_no_failure(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    # 12 batches, 3 in flight, each task taking a second: a run of several
    # token lifetimes, however fast the target reads
    agillic_emulator.configure(token_lifetime=2, task_delay=1.0)
    rows = [customer(i) for i in range(3000)]
    config = {**agillic_config, "batch_size_rows": 250, "max_concurrency": 1}
    result = run_target("target-agillic", config, messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    assert agillic_emulator.tokens_issued >= 3  # the token expired mid-run, twice
    assert len(agillic_emulator.recipients) == 3000


def test_peak_concurrency_never_exceeds_max_concurrency(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.configure(latency=0.02)
    rows = [customer(i) for i in range(300)]
    config = {**agillic_config, "sync_mode": "insert", "max_concurrency": 4}
    result = run_target("target-agillic", config, messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    assert len(agillic_emulator.recipients) == 300
    assert 2 <= agillic_emulator.peak_concurrency <= 4


def test_refused_entries_are_rejected_with_the_api_message_and_the_rest_delivered(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.refuse(lambda p: p.get("TIER") == "gold", "gold is closed")
    rows = [customer(i) for i in range(30)] + [customer(99, email=None)]
    config = {**agillic_config, "max_reject_ratio": 0.5}
    result = run_target("target-agillic", config, messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    gold = {r["email"] for r in rows if r["tier"] == "gold" and r["email"]}
    assert (
        set(agillic_emulator.recipients)
        == {r["email"] for r in rows if r["email"]} - gold
    )
    lines = rejects(tmp_path)
    refused = [line for line in lines if line["reason"] == "refused"]
    assert sorted(line["key"] for line in refused) == sorted(gold)
    assert all(line["message"] == "gold is closed" for line in refused)
    missing = [line for line in lines if line["reason"] == "missing_recipient_id"]
    assert [line["key"] for line in missing] == ["email=None"]
    assert "record" not in lines[0]


def test_daily_quota_stops_the_run_with_a_clear_message(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.configure(daily_quota=3)
    rows = [customer(i) for i in range(5000)]
    result = run_target("target-agillic", agillic_config, messages(rows), tmp_path)

    assert result.returncode != 0
    assert "DAILY_QUOTA_EXCEEDED" in result.stderr
    assert "quota" in result.stderr.lower()
    assert result.states == []
    # five batches, each tried once: a spent quota is never retried
    assert agillic_emulator.calls["POST /recipients/v2/:upsert"] <= 5
    report = json.loads((tmp_path / "report.json").read_text())
    assert "DAILY_QUOTA_EXCEEDED" in report["error"]
    assert "FAILED: Agillic's daily API quota is spent" in result.stderr
