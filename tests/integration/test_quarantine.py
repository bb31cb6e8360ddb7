"""Reject quarantine, run history and outcomes in the ledger (CLI, both dialects)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
import typing as t
from pathlib import Path

import psycopg
import pytest

from delivery_emulators import AgillicEmulator
from singer_delivery.ledger import SCHEMA_VERSION
from tests.cli import BIN, customer, messages, run_ok, run_target, start_target
from tests.older_ledgers import older_ledger

Config = dict[str, t.Any]
REFUSED = range(20)


@pytest.fixture(params=["sqlite", "postgres"])
def config(request: pytest.FixtureRequest, agillic_config: Config) -> Config:
    """The Agillic config on a SQLite ledger, then on real PostgreSQL."""
    chosen = {**agillic_config, "max_reject_ratio": 1}
    if request.param == "postgres":
        chosen["ledger_url"] = request.getfixturevalue("postgres_url")
    return chosen


def query(config: Config, sql: str) -> list[tuple[t.Any, ...]]:
    url = str(config["ledger_url"])
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return list(conn.execute(sql))
    with psycopg.connect(url) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def stats(tmp_path: Path) -> dict[str, t.Any]:
    report = json.loads((tmp_path / "report.json").read_text())
    return t.cast(dict[str, t.Any], report["streams"]["customers"])


def rows(fixed: t.Container[int] = ()) -> list[dict[str, t.Any]]:
    """100 customers; the first 20 have a tier the instance refuses, unless fixed."""
    return [
        customer(i, tier="bad tier" if i in REFUSED and i not in fixed else "gold")
        for i in range(100)
    ]


@pytest.fixture
def refusing(agillic_emulator: AgillicEmulator) -> AgillicEmulator:
    agillic_emulator.refuse(lambda p: p.get("TIER") == "bad tier", "tier not allowed")
    return agillic_emulator


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_refused_payloads_wait_for_a_change_and_fixed_ones_are_resolved(
    refusing: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", config, messages(rows()), tmp_path)
    assert stats(tmp_path)["rejected_by_reason"] == {"refused": 20}

    mark = len(refusing.requests)
    run_ok("target-agillic", config, messages(rows()), tmp_path)
    assert refusing.upserted_ids(mark) == []
    second = stats(tmp_path)
    assert (second["quarantined"], second["sent"]) == (20, 0)
    assert second["quarantined_by_reason"] == {"refused": 20}

    fixed = range(5)
    mark = len(refusing.requests)
    run_ok("target-agillic", config, messages(rows(fixed)), tmp_path)
    assert sorted(refusing.upserted_ids(mark)) == sorted(
        customer(i)["email"] for i in fixed
    )
    assert (stats(tmp_path)["delivered"], stats(tmp_path)["quarantined"]) == (5, 15)
    resolved = query(
        config,
        "SELECT destination_key FROM ledger_rejects WHERE resolved_at IS NOT NULL",
    )
    assert sorted(key for (key,) in resolved) == sorted(
        customer(i)["email"] for i in fixed
    )
    [(still_open,)] = query(
        config, "SELECT count(*) FROM ledger_rejects WHERE resolved_at IS NULL"
    )
    assert still_open == 15


@pytest.mark.parametrize("setting", [{"retry_rejected": "always"}, {"full_sync": True}])
def test_retry_rejected_always_and_full_sync_send_quarantined_records_again(
    refusing: AgillicEmulator, config: Config, tmp_path: Path, setting: Config
) -> None:
    run_ok("target-agillic", config, messages(rows()), tmp_path)
    mark = len(refusing.requests)
    run_ok("target-agillic", {**config, **setting}, messages(rows()), tmp_path)
    sent = set(refusing.upserted_ids(mark))
    assert {customer(i)["email"] for i in REFUSED} <= sent
    assert stats(tmp_path)["quarantined"] == 0


def test_quarantined_records_count_against_max_reject_ratio(
    refusing: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", config, messages(rows()), tmp_path)
    strict = {**config, "max_reject_ratio": 0.1}
    result = run_target("target-agillic", strict, messages(rows()), tmp_path)
    assert result.returncode == 1
    assert "20 of 100 records were rejected (20.0%) (of them 20 quarantined)" in (
        result.stderr
    )


def test_a_batch_task_that_failed_as_a_whole_is_retried_next_run(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    agillic_emulator.fail_next_tasks(3)
    failing = {**config, "max_retries": 1}
    first = run_target("target-agillic", failing, messages(rows(REFUSED)), tmp_path)
    assert first.returncode == 1
    assert "failed task" in first.stderr
    run_ok("target-agillic", config, messages(rows(REFUSED)), tmp_path)
    assert len(agillic_emulator.recipients) == 100
    assert stats(tmp_path)["quarantined"] == 0


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_the_runs_table_holds_each_run_with_the_reports_counts(
    refusing: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", config, messages(rows()), tmp_path)
    first = json.loads((tmp_path / "report.json").read_text())
    run_ok("target-agillic", config, messages(rows()), tmp_path)
    second = json.loads((tmp_path / "report.json").read_text())

    refusing.configure(task_delay=120)
    polls = refusing.calls["GET /recipients/v2/task/{task_id}"]
    proc = start_target("target-agillic", {**config, "shutdown_grace": 1}, tmp_path)
    assert proc.stdin is not None
    proc.stdin.write("\n".join(messages([customer(i) for i in range(200, 250)])) + "\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while refusing.calls["GET /recipients/v2/task/{task_id}"] == polls:
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    interrupted = json.loads((tmp_path / "report.json").read_text())

    runs = dict(query(config, "SELECT run_id, status FROM ledger_runs"))
    assert runs == {
        first["run_id"]: "succeeded",
        second["run_id"]: "succeeded",
        interrupted["run_id"]: "interrupted",
    }
    for report in (first, second, interrupted):
        counted = dict(
            query(
                config,
                "SELECT outcome, count FROM ledger_run_counts WHERE run_id = "
                f"'{report['run_id']}' AND stream = 'customers'",
            )
        )
        stream = report["streams"]["customers"]
        for outcome in (
            "received",
            "delivered",
            "unchanged",
            "quarantined",
            "rejected",
        ):
            assert counted.get(outcome, 0) == stream[outcome], outcome


def test_reject_keys_can_be_kept_as_hashes_only(
    refusing: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    run_ok(
        "target-agillic",
        {**config, "store_reject_keys": False},
        messages(rows()),
        tmp_path,
    )
    keys = query(config, "SELECT destination_key, key_hash FROM ledger_rejects")
    assert len(keys) == 20
    assert all(key is None and len(digest) == 32 for key, digest in keys)


def test_the_ledger_can_be_read_from_the_command_line(
    refusing: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", config, messages(rows()), tmp_path)
    shown = subprocess.run(
        [str(BIN / "delivery-ledger"), "--ledger-url", config["ledger_url"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "succeeded" in shown
    assert "received=100" in shown
    assert f"{customer(3)['email']}  refused (quarantined): tier not allowed" in shown


def as_older_schema(config: Config, version: int) -> None:
    """Rewrite the ledger as release ``version`` left it, the same deliveries in
    its tables (hex text before version 3 made them binary, no source
    fingerprints before version 4)."""
    if version == 3:  # schema 4 only added the source fingerprints
        query(config, "ALTER TABLE ledger_deliveries DROP COLUMN source_fingerprint")
        query(config, "UPDATE ledger_meta SET value = '3'")
        return
    dialect = (
        "sqlite" if str(config["ledger_url"]).startswith("sqlite") else "postgresql"
    )
    deliveries = [
        (bytes(scope).hex(), bytes(key).hex(), bytes(fingerprint).hex())
        for scope, key, fingerprint in query(
            config, "SELECT scope_id, key_hash, fingerprint FROM ledger_deliveries"
        )
    ]
    for table in query(
        config,
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if dialect == "sqlite"
        else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    ):
        query(config, f"DROP TABLE {table[0]}")
    for statement in older_ledger(dialect, version, deliveries):
        query(config, statement)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_ledger_of_an_earlier_schema_keeps_its_change_detection(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path, version: int
) -> None:
    """Each earlier release's tables, holding this run's deliveries, are
    migrated at the next run, and nothing is sent again; the rows get the
    source fingerprints they lacked (schema 4), without a write to Agillic."""
    run_ok("target-agillic", config, messages(rows(REFUSED)), tmp_path)
    as_older_schema(config, version)
    writes = agillic_emulator.write_calls()
    run_ok("target-agillic", config, messages(rows(REFUSED)), tmp_path)
    assert agillic_emulator.write_calls() == writes
    assert stats(tmp_path)["unchanged"] == 100
    assert query(config, "SELECT value FROM ledger_meta") == [(str(SCHEMA_VERSION),)]
    [(delivered, fingerprinted)] = query(
        config, "SELECT count(*), count(source_fingerprint) FROM ledger_deliveries"
    )
    assert fingerprinted == delivered == 100
