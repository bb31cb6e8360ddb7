"""Change detection, dry runs, crash recovery and the reject threshold (CLI)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from singer_delivery.ledger import Ledger
from tests.cli import customer, messages, run_ok, run_target, start_target

Config = dict[str, t.Any]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_config(request: pytest.FixtureRequest, agillic_config: Config) -> Config:
    """The Agillic config with its ledger on SQLite, then on real PostgreSQL."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        return {**agillic_config, "ledger_url": url}
    return agillic_config


def test_only_changed_records_are_sent(
    agillic_emulator: AgillicEmulator, ledger_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(500)]
    first = run_target("target-agillic", ledger_config, messages(rows), tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(agillic_emulator.upserted_ids()) == 500

    writes = agillic_emulator.write_calls()
    second = run_target("target-agillic", ledger_config, messages(rows), tmp_path)
    assert second.returncode == 0, second.stderr
    assert agillic_emulator.write_calls() == writes
    report = json.loads((tmp_path / "report.json").read_text())["streams"]["customers"]
    assert (report["unchanged"], report["sent"]) == (500, 0)

    changed = [3, 50, 51, 120, 300, 444, 499]
    for i in changed:
        rows[i] = customer(i, tier="platinum")
    mark = len(agillic_emulator.requests)
    third = run_target("target-agillic", ledger_config, messages(rows), tmp_path)
    assert third.returncode == 0, third.stderr
    assert sorted(agillic_emulator.upserted_ids(mark)) == sorted(
        customer(i)["email"] for i in changed
    )
    assert agillic_emulator.recipients[customer(444)["email"]]["TIER"] == "platinum"


def report_of(tmp_path: Path, name: str = "report.json") -> dict[str, t.Any]:
    return t.cast(
        dict[str, t.Any],
        json.loads((tmp_path / name).read_text())["streams"]["customers"],
    )


def test_identical_records_are_settled_before_mapping_until_a_setting_changes(
    agillic_emulator: AgillicEmulator, ledger_config: Config, tmp_path: Path
) -> None:
    """Source fingerprints: a record identical to the one last delivered is
    unchanged without being mapped. A change to a setting that may change
    payloads makes them stale: the records are mapped again, sent only if
    their payload changed, and the fingerprints of the others are renewed,
    without a write to Agillic. A setting of the run alone changes nothing."""
    rows = [customer(i) for i in range(300)]
    run_ok("target-agillic", ledger_config, messages(rows), tmp_path)
    writes = agillic_emulator.write_calls()
    other = str(tmp_path / "other.json")
    tuned = {**ledger_config, "batch_size_rows": 70, "report_path": other}
    run_ok("target-agillic", tuned, messages(rows), tmp_path)
    report = report_of(tmp_path, "other.json")
    assert (report["unchanged"], report["unchanged_at_source"]) == (300, 300)

    verified = {**ledger_config, "verify_deliveries": "all"}
    run_ok("target-agillic", verified, messages(rows), tmp_path)
    assert (report_of(tmp_path)["unchanged"], report_of(tmp_path)["sent"]) == (300, 0)
    assert report_of(tmp_path)["unchanged_at_source"] == 0
    run_ok("target-agillic", verified, messages(rows), tmp_path)
    assert report_of(tmp_path)["unchanged_at_source"] == 300
    assert agillic_emulator.write_calls() == writes

    reformatted = {**verified, "date_format": "yyyy/MM/dd"}
    run_ok("target-agillic", reformatted, messages(rows), tmp_path)
    assert report_of(tmp_path)["delivered"] == 300
    birthdate = customer(7)["birthdate"].replace("-", "/")
    assert agillic_emulator.recipients[customer(7)["email"]]["BIRTHDATE"] == birthdate


@pytest.mark.parametrize("unchanged_last", [True, False])
def test_the_last_record_of_a_key_in_a_batch_wins(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    unchanged_last: bool,
) -> None:
    """A record unchanged at the source supersedes an earlier changed one of
    the same key in its batch, and a changed one an earlier unchanged one."""
    rows = [customer(i) for i in range(10)]
    run_ok("target-agillic", agillic_config, messages(rows), tmp_path)
    changed = customer(4, tier="platinum")
    pair = [changed, rows[4]] if unchanged_last else [rows[4], changed]
    mark = len(agillic_emulator.requests)
    run_ok("target-agillic", agillic_config, messages(rows + pair), tmp_path)
    tier = agillic_emulator.recipients[rows[4]["email"]]["TIER"]
    if unchanged_last:
        assert (agillic_emulator.upserted_ids(mark), tier) == ([], rows[4]["tier"])
    else:
        assert (agillic_emulator.upserted_ids(mark), tier) == (
            [rows[4]["email"]],
            "platinum",
        )
    assert report_of(tmp_path)["duplicates"] == 2


def test_refused_record_is_sent_again_next_run_and_listed_in_rejects(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    refused = customer(5)["email"]
    agillic_emulator.refuse(lambda p: p.get("EMAIL") == refused, "blocked address")
    rows = [customer(i) for i in range(40)]
    first = run_target("target-agillic", agillic_config, messages(rows), tmp_path)
    assert first.returncode == 0, first.stderr

    [line] = [
        json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()
    ]
    assert (line["key"], line["message"], line["stream"]) == (
        refused,
        "blocked address",
        "customers",
    )
    assert {"run_id", "time", "reason", "http_status", "fields"} <= set(line)

    agillic_emulator.refuse_rules.clear()
    # an unchanged payload refused for good is quarantined by default; the
    # instance was fixed instead of the data, so the user asks to retry it
    retry = {**agillic_config, "retry_rejected": "always"}
    mark = len(agillic_emulator.requests)
    second = run_target("target-agillic", retry, messages(rows), tmp_path)
    assert second.returncode == 0, second.stderr
    assert agillic_emulator.upserted_ids(mark) == [refused]
    assert refused in agillic_emulator.recipients


def test_full_sync_sends_every_record_and_keeps_the_ledger(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(120)]
    run_ok("target-agillic", agillic_config, messages(rows), tmp_path)
    mark = len(agillic_emulator.requests)
    full = {**agillic_config, "full_sync": True}
    run_ok("target-agillic", full, messages(rows), tmp_path)
    assert len(agillic_emulator.upserted_ids(mark)) == 120

    mark = len(agillic_emulator.requests)
    run_ok("target-agillic", agillic_config, messages(rows), tmp_path)
    assert agillic_emulator.upserted_ids(mark) == []


def read_plan(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    *records, totals = lines
    return {r["key"]: r["action"] for r in records}, totals["totals"]


def test_dry_run_writes_nothing_and_the_next_real_run_follows_its_plan(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(50)]
    run_ok("target-agillic", agillic_config, messages(rows), tmp_path)
    for i in range(70, 80):  # exist in Agillic, unknown to the ledger
        email = customer(i)["email"]
        agillic_emulator.recipients[email] = {"EMAIL": email}
    rows = [customer(i, tier="changed") if i < 5 else customer(i) for i in range(80)]
    rows.append(customer(999, email=""))
    ledger_file = tmp_path / "ledger.sqlite"
    ledger_before = ledger_rows(ledger_file)
    writes, before = agillic_emulator.write_calls(), dict(agillic_emulator.recipients)

    dry = {**agillic_config, "dry_run": True, "max_reject_ratio": 1}
    result = run_target("target-agillic", dry, messages(rows), tmp_path)
    assert result.returncode == 0, result.stderr
    assert agillic_emulator.write_calls() == writes
    assert "dry run" in result.stderr
    assert len(ledger_before) == 50
    assert ledger_rows(ledger_file) == ledger_before
    plan, totals = read_plan(tmp_path / "report.plan.jsonl")
    assert totals == {"unchanged": 45, "update": 15, "create": 20, "reject": 1}

    mark = len(agillic_emulator.requests)
    real = run_target(
        "target-agillic",
        {**agillic_config, "max_reject_ratio": 1},
        messages(rows),
        tmp_path,
    )
    assert real.returncode == 0, real.stderr
    sent = set(agillic_emulator.upserted_ids(mark))
    assert {k for k, a in plan.items() if a == "create"} == sent - set(before)
    assert {k for k, a in plan.items() if a == "update"} == sent & set(before)
    assert {k for k, a in plan.items() if a == "unchanged"} == {
        r["email"] for r in rows if r["email"]
    } - sent
    report = json.loads((tmp_path / "report.json").read_text())["streams"]["customers"]
    assert (report["created"], report["updated"], report["unchanged"]) == (20, 15, 45)
    assert report["rejected_by_reason"] == {"missing_recipient_id": 1}


def ledger_rows(ledger_file: Path) -> set[tuple[t.Any, ...]]:
    """Every delivery row, to compare the ledger before and after a run."""
    with sqlite3.connect(ledger_file) as conn:
        return set(conn.execute("SELECT * FROM ledger_deliveries"))


@pytest.mark.slow
def test_crash_and_resume_delivers_every_record_exactly_once(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.configure(task_delay=0.3)
    rows = [customer(i) for i in range(20_000)]
    lines = messages(rows, state_every=1000)
    config = {**agillic_config, "batch_size_rows": 500, "max_concurrency": 4}
    proc = start_target("target-agillic", config, tmp_path)
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
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    stored_at_kill = len(agillic_emulator.recipients)
    assert stored_at_kill < 20_000, "the kill must land mid-run"

    offset = last_state["bookmarks"]["customers"]["offset"]
    assert offset >= 1000
    resumed = run_target("target-agillic", config, messages(rows[offset:]), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    stored = agillic_emulator.recipients
    assert len(stored) == 20_000
    assert stored[customer(19_999)["email"]]["FIRSTNAME"] == "Name19999"

    writes = agillic_emulator.write_calls()
    again = run_target("target-agillic", config, messages(rows), tmp_path)
    assert again.returncode == 0, again.stderr
    assert agillic_emulator.write_calls() == writes, "ledger disagrees with Agillic"


def test_passing_max_reject_ratio_fails_the_run_after_delivering(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.refuse(lambda p: p.get("TIER") == "gold", "no gold")
    rows = [customer(i) for i in range(30)]
    config = {**agillic_config, "max_reject_ratio": 0.2}
    result = run_target("target-agillic", config, messages(rows), tmp_path)

    assert result.returncode != 0
    assert "10 of 30 records were rejected (33.3%)" in result.stderr
    assert "max_reject_ratio=0.2" in result.stderr
    assert str(tmp_path / "rejects.jsonl") in result.stderr
    assert len(agillic_emulator.recipients) == 20
    assert result.states, "delivered records still checkpoint"


def test_second_run_against_the_same_ledger_and_instance_fails_clearly(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    ledger = Ledger.open(agillic_config["ledger_url"])
    endpoint = agillic_config["api_endpoint"].split("://", 1)[1]
    with ledger.run_lock(f"target-agillic {endpoint}", timeout=1):
        config = {**agillic_config, "ledger_lock_timeout": 1}
        result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)
    assert result.returncode != 0
    assert "another run is writing to target-agillic" in result.stderr
    assert agillic_emulator.write_calls() == 0


def test_run_report_goes_to_stderr_json_and_metrics(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(10)] + [customer(11, email=None)]
    config = {**agillic_config, "max_reject_ratio": 0.5}
    result = run_target("target-agillic", config, messages(rows), tmp_path)
    assert result.returncode == 0, result.stderr

    report = json.loads((tmp_path / "report.json").read_text())
    stream = report["streams"]["customers"]
    assert (stream["received"], stream["sent"], stream["created"]) == (11, 10, 10)
    assert stream["rejected_by_reason"] == {"missing_recipient_id": 1}
    assert stream["api_calls"] >= 2
    table = result.stderr[
        result.stderr.index(f"target-agillic run {report['run_id']}") :
    ]
    header, row = table.splitlines()[1:3]
    assert header.split()[:8] == [
        "stream",
        "received",
        "invalid",
        "unchanged",
        "sent",
        "created",
        "updated",
        "rejected",
    ]
    assert row.split()[:8] == ["customers", "11", "0", "0", "10", "10", "0", "1"]
    assert '"delivery_outcome":"rejected"' in result.stderr
    assert "METRIC" in result.stderr
