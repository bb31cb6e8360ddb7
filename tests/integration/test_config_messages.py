"""The first five minutes: every config mistake named before any input is read."""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator, GladlyEmulator
from tests.cli import BIN, customer, messages, run_ok, run_target, write_config

#: What a user sees at start-up and on bad input is checked on the real process.
pytestmark = pytest.mark.real_cli
Config = dict[str, t.Any]
TOKEN = "POST /oauth2/token"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"developer_key": ""}, "developer_key is empty; give a value"),
        ({"developer_secret": "   "}, None),
        (
            {"developer_secret": None},
            (
                "developer_secret is required (in the config, or the "
                "TARGET_AGILLIC_DEVELOPER_SECRET environment variable)"
            ),
        ),
        ({"api_endpoint": "http://127.0.0.1:{port}/v2"}, "without a path"),
        ({"max_concurrency": "lots"}, "max_concurrency must be an integer"),
        ({"max_removal_ratio": 2}, "max_removal_ratio must be between 0 and 1"),
    ],
)
def test_config_mistakes_are_named_with_the_fix_before_any_call(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    change: Config,
    expected: str | None,
) -> None:
    config = {**agillic_config, **change}
    if isinstance(config.get("api_endpoint"), str):
        config["api_endpoint"] = config["api_endpoint"].format(
            port=agillic_emulator.port
        )
    config = {k: v for k, v in config.items() if v is not None}
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)
    if expected is None:  # whitespace passes the schema; the API refuses it
        assert result.returncode == 1
        assert "check developer_key and developer_secret" in result.stderr
        return
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(agillic_emulator.calls.values()) == 0


def test_a_misspelled_setting_is_pointed_out_and_the_run_goes_on(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    config = {**agillic_config, "batchsize": 10}
    result = run_ok("target-agillic", config, messages([customer(1)]), tmp_path)
    assert "unknown setting 'batchsize' is ignored; did you mean batch_size_rows?" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "check developer_key and developer_secret"),
        (400, "check developer_key and developer_secret"),
        (404, "token endpoint was not found"),
        (503, "looks unavailable"),
    ],
)
def test_token_endpoint_answers_are_reported_for_what_they_are(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    status: int,
    expected: str,
) -> None:
    agillic_emulator.inject(route=TOKEN, status=status)
    config = {**agillic_config, "max_retries": 0}
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_numbers_from_the_environment_are_numbers(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    config_path = write_config(tmp_path / "config.json", agillic_config)
    env = {
        **os.environ,
        "TARGET_AGILLIC_REQUEST_TIMEOUT": "45",
        "TARGET_AGILLIC_MAX_REMOVAL_RATIO": "0.9",
        "TARGET_AGILLIC_BATCH_SIZE_ROWS": "250",
    }
    proc = subprocess.run(
        [str(BIN / "target-agillic"), "--config", str(config_path), "--config", "ENV"],
        input="\n".join(messages([customer(i) for i in range(10)])) + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    settings = json.loads((tmp_path / "report.json").read_text())["settings"]
    assert (settings["request_timeout"], settings["max_removal_ratio"]) == (45, 0.9)
    assert settings["batch_size_rows"] == 250


def test_each_state_is_written_once(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    lines = messages([customer(i) for i in range(100)], state_every=25)
    lines.append(lines[-1])  # taps repeat their last STATE at the end
    result = run_ok("target-agillic", agillic_config, lines, tmp_path)
    states = [json.dumps(state, sort_keys=True) for state in result.states]
    assert len(states) == len(set(states))
    assert result.states[-1] == {"bookmarks": {"customers": {"offset": 100}}}


def test_the_summary_names_every_count(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(5)] + [customer(9, email=None)]
    config = {**gladly_config, "max_reject_ratio": 1}
    result = run_ok("target-gladly", config, messages(rows), tmp_path)
    assert (
        "stream customers: received=6 sent=5 delivered=5 created=5 "
        "rejected=1 (missing_email:1) api_calls=" in result.stderr
    )
    assert "is full" not in result.stderr
