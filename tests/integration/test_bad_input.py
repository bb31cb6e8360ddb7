"""Bad input never stops good input; broken answers and bad endpoints (CLI)."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator, GladlyEmulator
from tests.cli import Result, customer, messages, run_ok, run_target

#: What a user sees at start-up and on bad input is checked on the real process.
pytestmark = pytest.mark.real_cli
Config = dict[str, t.Any]
TASK = "GET /recipients/v2/task/{task_id}"


def everything_written(result: Result, tmp_path: Path) -> str:
    """Every byte the run left where a person or a log collector could read it."""
    files = [tmp_path / "rejects.jsonl", tmp_path / "report.json"]
    return result.stdout + result.stderr + "".join(p.read_text() for p in files)


def test_one_huge_record_a_keyless_record_and_a_broken_line_are_rejected_alone(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(2999)]
    rows[100] = customer(100, first_name="x" * (21 * 1024 * 1024))
    keyless = customer(200)
    del keyless["email"]
    rows[200] = keyless
    lines = messages(rows)
    broken = '{"type": "RECORD", "stream": "customers", "record": {"email": "broken@example.com"'
    lines.insert(1500, broken)

    result = run_ok("target-agillic", agillic_config, lines, tmp_path)

    assert len(agillic_emulator.recipients) == 2997
    rejects = [
        json.loads(line)
        for line in (tmp_path / "rejects.jsonl").read_text().splitlines()
    ]
    assert sorted(r["reason"] for r in rejects) == [
        "missing_recipient_id",
        "payload_too_large",
        "unreadable_line",
    ]
    [unreadable] = [r for r in rejects if r["reason"] == "unreadable_line"]
    assert unreadable["line"] == 1501
    assert "broken@example.com" not in everything_written(result, tmp_path)
    assert result.states[-1] == {"bookmarks": {"customers": {"offset": 2999}}}


def test_a_response_cut_off_mid_body_is_retried_and_delivered_once(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.inject(route=TASK, kind="truncate", count=1)
    rows = [customer(i) for i in range(300)]
    run_ok("target-agillic", agillic_config, messages(rows), tmp_path)

    upserted = agillic_emulator.upserted_ids()
    assert sorted(upserted) == sorted(r["email"] for r in rows)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["streams"]["customers"]["retries"] == 1


def test_an_undecodable_answer_is_retried_too(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    gladly_emulator.inject(
        route="POST /api/v1/customer-profiles", kind="undecodable", count=1
    )
    rows = [customer(i) for i in range(5)]
    run_ok("target-gladly", gladly_config, messages(rows), tmp_path)
    assert len(gladly_emulator.profiles) == 5


def test_a_tls_failure_stops_at_once_naming_the_host(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    tls = agillic_emulator.url.replace("http://", "https://")
    config = {**agillic_config, "api_endpoint": tls}
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)
    assert result.returncode == 1
    assert "TLS connection to 127.0.0.1 failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(agillic_emulator.calls.values()) == 0  # the handshake never got through


def test_an_unknown_host_is_named(agillic_config: Config, tmp_path: Path) -> None:
    config = {
        **agillic_config,
        "api_endpoint": "https://no-such-host.invalid",
        "max_retries": 0,
    }
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)
    assert result.returncode == 1
    assert "no-such-host.invalid" in result.stderr
    assert "DNS" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://evil.com\\@127.0.0.1:{port}",
        "http://evil.com%5C@127.0.0.1:{port}",
        "http://user:secret@127.0.0.1:{port}",
        "http://127.0.0.1:{port}\\@evil.com",
        "http://127.0.0.1:{port} ",
        "http://127.0.0.1:{port}\t",
        "http://127.0.0.1:{port}/\x00",
        "http://127.0.0.1:{port}/api",
        "http://127.0.0.1:{port}?next=1",
    ],
)
def test_ambiguous_endpoints_are_refused_before_any_connection(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    endpoint: str,
) -> None:
    config = {
        **agillic_config,
        "api_endpoint": endpoint.format(port=agillic_emulator.port),
    }
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)
    assert result.returncode == 1
    assert "api_endpoint" in result.stderr
    assert "secret" not in result.stderr
    assert sum(agillic_emulator.calls.values()) == 0


def test_the_instance_is_named_the_same_however_its_url_is_written(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(20)]
    lower = {
        **agillic_config,
        "api_endpoint": f"http://localhost:{agillic_emulator.port}",
    }
    run_ok("target-agillic", lower, messages(rows), tmp_path)
    writes = agillic_emulator.write_calls()
    upper = {**lower, "api_endpoint": f"http://LOCALHOST:{agillic_emulator.port}/"}
    run_ok("target-agillic", upper, messages(rows), tmp_path)
    assert agillic_emulator.write_calls() == writes


@pytest.mark.parametrize(
    "ledger_url",
    [
        "postgresql://user:s3cret-pass@127.0.0.1:1/nowhere",
        "postgresql://user:s3cret-pass@[::1:bad/db",
        "mysql://user:s3cret-pass@127.0.0.1/db",
    ],
)
def test_an_unusable_ledger_is_one_line_naming_ledger_url_without_its_password(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    ledger_url: str,
) -> None:
    config = {**agillic_config, "ledger_url": ledger_url}
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)
    assert result.returncode == 1
    assert "ledger_url" in result.stderr
    assert "s3cret-pass" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert agillic_emulator.write_calls() == 0


@pytest.mark.slow
def test_a_run_that_loses_its_postgres_lock_stops_before_writing_again(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    postgres_url: str,
) -> None:
    import psycopg

    from tests.cli import start_target

    agillic_emulator.configure(task_delay=2)
    config = {**agillic_config, "ledger_url": postgres_url, "batch_size_rows": 100}
    proc = start_target("target-agillic", config, tmp_path)
    assert proc.stdin is not None
    assert proc.stdout is not None
    lines = messages([customer(i) for i in range(300)], state_every=100)
    proc.stdin.write("\n".join(lines[:102]) + "\n")  # SCHEMA, 100 records, STATE
    proc.stdin.flush()
    first = json.loads(proc.stdout.readline())
    assert first["bookmarks"]["customers"]["offset"] == 100

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        [(killed,)] = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    assert killed == 1
    stdout, stderr = proc.communicate("\n".join(lines[102:]) + "\n", timeout=60)

    assert proc.returncode == 1
    assert "lost its ledger lock" in stderr
    assert "ledger_url" in stderr
    assert stdout == "", "no STATE after the lock was lost"
    with psycopg.connect(postgres_url) as conn:
        [(committed,)] = conn.execute(
            "SELECT count(*) FROM ledger_deliveries"
        ).fetchall()
    assert committed == 100
