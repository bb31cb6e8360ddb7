"""Config checks before any input, secrets in logs, STATE after delivery."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from tests.cli import customer, messages, run_target, start_target, state_line

#: What a user sees at start-up and on bad input is checked on the real process.
pytestmark = pytest.mark.real_cli
Config = dict[str, t.Any]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"developer_key": None}, "developer_key"),
        ({"developer_secret": None}, "developer_secret"),
        ({"api_endpoint": "not a url"}, "api_endpoint"),
        ({"api_endpoint": "http://api-eu1.agillic.net"}, "api_endpoint must use https"),
        ({"batch_size_rows": 5000}, "batch_size_rows must be between 1 and 1000"),
        ({"sync_mode": "merge"}, "sync_mode"),
        ({"max_concurrency": 50}, "max_concurrency must be between 1 and 20"),
        ({"date_format": "dd.MM.yyyy Q"}, "date_format"),
        ({"ledger_url": "mysql://x/y"}, "ledger_url"),
        ({"max_reject_ratio": 3}, "max_reject_ratio"),
    ],
)
def test_invalid_config_fails_before_any_call_naming_the_setting(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    change: Config,
    named: str,
) -> None:
    config = {k: v for k, v in {**agillic_config, **change}.items() if v is not None}
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)

    assert result.returncode != 0
    assert named in result.stderr
    assert sum(agillic_emulator.calls.values()) == 0
    assert result.states == []


def test_bad_credentials_stop_the_run_before_reading_input(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    config = {**agillic_config, "developer_secret": "wrong-secret-value"}
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)

    assert result.returncode != 0
    assert "check developer_key and developer_secret" in result.stderr
    assert agillic_emulator.write_calls() == 0
    assert "wrong-secret-value" not in result.stderr + result.stdout


def test_credentials_and_tokens_never_appear_in_debug_output(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    key, secret = "key-7f3a9c1d", "secret-9b2e4d77"
    agillic_emulator.configure(developer_key=key, developer_secret=secret)
    agillic_emulator.inject(kind="expire_token", count=1)
    config = {**agillic_config, "developer_key": key, "developer_secret": secret}
    rows = [customer(i) for i in range(50)] + [customer(99, email="")]
    result = run_target(
        "target-agillic",
        config,
        messages(rows),
        tmp_path,
        env={"TARGET_AGILLIC_LOGLEVEL": "DEBUG", "LOGLEVEL": "DEBUG"},
    )

    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr
    output = result.stdout + result.stderr
    output += (tmp_path / "rejects.jsonl").read_text()
    output += (tmp_path / "report.json").read_text()
    for path in tmp_path.glob("ledger.sqlite*"):
        output += path.read_bytes().decode("latin-1")
    assert agillic_emulator.tokens_issued >= 2
    for value in [key, secret, *agillic_emulator.tokens]:
        assert value not in output
    # personal data stays out of the logs too (routes are logged, not URLs)
    assert customer(7)["email"] not in result.stderr


def test_state_is_written_only_after_the_records_before_it_are_delivered(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.configure(task_delay=1.0)
    lines = messages([customer(i) for i in range(20)])[:-1]
    proc = start_target("target-agillic", agillic_config, tmp_path)
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write("\n".join([*lines, state_line("customers", 20)]) + "\n")
    proc.stdin.flush()

    first_state = proc.stdout.readline()
    stored_when_state_arrived = len(agillic_emulator.recipients)

    proc.stdin.write(
        json.dumps({"type": "RECORD", "stream": "customers", "record": customer(500)})
        + "\n"
    )
    proc.stdin.close()
    proc.wait(timeout=60)
    assert json.loads(first_state) == {"bookmarks": {"customers": {"offset": 20}}}
    assert stored_when_state_arrived == 20
    assert proc.returncode == 0
    assert len(agillic_emulator.recipients) == 21
