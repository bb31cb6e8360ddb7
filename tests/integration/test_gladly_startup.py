"""Startup refusals, secrets at debug level, and pacing at Gladly's real limit."""

from __future__ import annotations

import base64
import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import GladlyEmulator
from tests.cli import customer, messages, run_target

#: What a user sees at start-up and on bad input is checked on the real process.
pytestmark = pytest.mark.real_cli
Config = dict[str, t.Any]
NO_AUDIENCES = "Gladly has no list or audience API"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"sync_mode": "mirror"},
            f"sync_mode 'mirror' is not available: {NO_AUDIENCES}",
        ),
        ({"sync_mode": "add"}, f"sync_mode 'add' is not available: {NO_AUDIENCES}"),
        (
            {"audience_mode": "mirror"},
            f"audience_mode is not available: {NO_AUDIENCES}",
        ),
        ({"sync_mode": "merge"}, "sync_mode 'merge' is not one of upsert"),
        ({"domain": "https://mycompany.gladly.com"}, "domain 'https://mycompany"),
        ({"domain": "mycompany.gladly.com:8443"}, "use the organization's subdomain"),
        ({"domain": "mycompany.zendesk.com"}, "e.g. mycompany (for https://"),
        ({"domain": None}, "domain"),
        ({"api_token": None}, "api_token"),
        ({"base_url": "http://gladly.example.com"}, "base_url must use https"),
        ({"phone_type": "PAGER"}, "phone_type"),
        ({"field_mapping": {"mail": "emails"}}, "field_mapping maps 'mail'"),
        ({"max_requests_per_second": 0}, "max_requests_per_second must be more"),
        ({"max_reject_ratio": 3}, "max_reject_ratio"),
    ],
)
def test_invalid_config_is_refused_before_any_call_naming_the_setting(
    gladly_emulator: GladlyEmulator,
    gladly_config: Config,
    tmp_path: Path,
    change: Config,
    named: str,
) -> None:
    config = {k: v for k, v in {**gladly_config, **change}.items() if v is not None}
    result = run_target("target-gladly", config, messages([customer(1)]), tmp_path)

    assert result.returncode != 0
    assert named in result.stderr
    assert sum(gladly_emulator.calls.values()) == 0
    assert result.states == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"api_token": "wrong-token-value"}, "Gladly refused the API credentials"),
        ({"username": "nobody@example.com"}, "Check username"),
    ],
)
def test_bad_credentials_stop_the_run_before_reading_input(
    gladly_emulator: GladlyEmulator,
    gladly_config: Config,
    tmp_path: Path,
    change: Config,
    expected: str,
) -> None:
    config = {**gladly_config, **change}
    result = run_target("target-gladly", config, messages([customer(1)]), tmp_path)

    assert result.returncode != 0
    assert expected in result.stderr
    assert "api_token" in result.stderr
    assert gladly_emulator.write_calls() == 0
    assert gladly_emulator.calls == {"GET /api/v1/organization": 1}, "401 not retried"
    assert "wrong-token-value" not in result.stderr + result.stdout


def test_missing_permission_stops_the_run_with_the_fix(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    gladly_emulator.configure(forbidden=True)
    result = run_target(
        "target-gladly", gladly_config, messages([customer(1)]), tmp_path
    )

    assert result.returncode != 0
    assert "403 Forbidden" in result.stderr
    assert "API User role" in result.stderr
    assert gladly_emulator.write_calls() == 0
    assert gladly_emulator.calls == {"GET /api/v1/organization": 1}


def test_credentials_never_appear_in_debug_output(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    username, token = "api-user-5c1e@example.com", "token-3f9a7be21d"
    gladly_emulator.configure(username=username, api_token=token)
    gladly_emulator.inject("POST /api/v1/customer-profiles", status=503, count=2)
    config = {**gladly_config, "username": username, "api_token": token}
    rows = [customer(i) for i in range(20)] + [customer(99, email="")]
    result = run_target(
        "target-gladly",
        config,
        messages(rows),
        tmp_path,
        env={"TARGET_GLADLY_LOGLEVEL": "DEBUG", "LOGLEVEL": "DEBUG"},
    )

    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr
    assert len(gladly_emulator.profiles) == 20
    output = result.stdout + result.stderr
    output += (tmp_path / "rejects.jsonl").read_text()
    output += (tmp_path / "report.json").read_text()
    for path in tmp_path.glob("ledger.sqlite*"):
        output += path.read_bytes().decode("latin-1")
    basic = base64.b64encode(f"{username}:{token}".encode()).decode()
    for secret in (token, basic, username):
        assert secret not in output


@pytest.mark.slow
def test_pacing_at_ten_requests_per_second_per_method_avoids_429s(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    """Gladly's real limit and a realistic round trip; the 429 count is the check.

    GETs (finds) and POSTs (creates) have separate budgets: with records in
    flight concurrently they overlap, which the emulator sees as requests
    being handled at the same time.
    """
    gladly_emulator.configure(rate_limit=10, latency=0.05)
    config = {**gladly_config, "max_requests_per_second": 10}
    rows = [customer(i) for i in range(60)]
    result = run_target("target-gladly", config, messages(rows), tmp_path)

    assert result.returncode == 0, result.stderr
    assert len(gladly_emulator.profiles) == 60
    answered = sum(gladly_emulator.status_counts.values())
    assert answered >= 121
    assert gladly_emulator.rate_limited <= answered // 100
    assert gladly_emulator.peak_concurrency >= 2
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["streams"]["customers"]["created"] == 60
