"""target-agillic-probe through its command line, against each emulator variant.

Every run checks the probe's promises too: at most 25 API calls (the
emulator's count equals the report's), no secret or token in anything it
printed or wrote, and without ``--write`` no write except the inert group
call (an empty ID list the instance must refuse).
"""

from __future__ import annotations

import json
import socket
import subprocess
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from tests.cli import BIN

Config = dict[str, t.Any]
MAX_CALLS = 25
INERT_GROUP_CALL = "POST /recipients/:addToStaticTargetGroup -> 400"


@dataclass
class Probe:
    """One probe run: exit status, output, and the report file (if written)."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, t.Any]

    def row(self, shape: str) -> dict[str, t.Any]:
        """The report row of ``shape``."""
        return next(c for c in self.report["checks"] if c["shape"] == shape)

    def status(self, shape: str) -> str:
        return str(self.row(shape)["status"])

    def seen(self, shape: str) -> str:
        return str(self.row(shape)["seen"])

    def text(self) -> str:
        """Everything the probe printed or wrote."""
        return self.stdout + self.stderr + json.dumps(self.report)


def run_probe(config: Config, tmp_path: Path, *args: str) -> Probe:
    """``target-agillic-probe --config ... --output ... [args]`` in tmp_path."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    output = tmp_path / "probe.json"
    output.unlink(missing_ok=True)
    command = [str(BIN / "target-agillic-probe"), "--config", str(config_path)]
    proc = subprocess.run(
        [*command, "--output", str(output), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    report = json.loads(output.read_text()) if output.exists() else {}
    return Probe(proc.returncode, proc.stdout, proc.stderr, report)


@pytest.fixture
def config(agillic_emulator: AgillicEmulator) -> Config:
    """The same config a target-agillic run would use."""
    return {
        "api_endpoint": agillic_emulator.url,
        "developer_key": agillic_emulator.developer_key,
        "developer_secret": agillic_emulator.developer_secret,
    }


def assert_kept_promises(probe: Probe, emulator: AgillicEmulator) -> None:
    """The call cap, the call count in the report, and no secrets."""
    assert probe.report["api_calls"] == sum(emulator.calls.values()) <= MAX_CALLS
    assert emulator.write_calls() == len(probe.report["write_calls"])
    for secret in [emulator.developer_secret, *emulator.tokens]:
        assert secret not in probe.text()
    assert "Traceback" not in probe.stderr


def assert_left_nothing(emulator: AgillicEmulator) -> None:
    assert emulator.recipients == {}
    for group in emulator.target_groups:
        assert emulator.members(group) == set()


READ_ONLY = (
    "authentication",
    "Person Data discovery",
    "target group discovery",
    "task status path",
    "filtered list",
    "static group endpoints",
    "error envelope",
)
WRITES = (
    "batch upsert",
    "task status words",
    "task per-entry results",
    "read back by filter",
    "add to static group",
    "remove from static group",
    "delete recipient",
)


def test_read_only_confirms_the_assumed_shapes_and_writes_nothing(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    agillic_emulator.add_group("VIP")
    probe = run_probe(config, tmp_path)

    assert probe.returncode == 0, probe.stderr
    assert {shape: probe.status(shape) for shape in READ_ONLY} == dict.fromkeys(
        READ_ONLY, "confirmed"
    )
    assert probe.status("daily quota signal") == "not checked"
    assert "without spending the daily quota" in probe.seen("daily quota signal")
    for shape in WRITES:
        assert (probe.status(shape), probe.seen(shape)) == (
            "not checked",
            "needs --write",
        )
    assert probe.report["write_calls"] == [INERT_GROUP_CALL]
    assert agillic_emulator.write_calls() == 1
    assert_left_nothing(agillic_emulator)
    assert_kept_promises(probe, agillic_emulator)
    assert probe.report["target"] == "target-agillic"
    assert probe.report["version"]
    assert probe.report["time"]
    assert probe.report["instance"] == agillic_emulator.url.removeprefix("http://")
    assert "static group endpoints" in probe.stdout


def test_without_a_static_group_the_probe_makes_no_write_method_call(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    agillic_emulator.add_group("Newsletter", static=False)
    probe = run_probe(config, tmp_path)

    assert probe.returncode == 0, probe.stderr
    assert probe.status("static group endpoints") == "not checked"
    assert "no static target group" in probe.seen("static group endpoints")
    assert agillic_emulator.write_calls() == 0
    assert probe.report["write_calls"] == []
    assert_kept_promises(probe, agillic_emulator)


def test_the_output_file_defaults_to_the_working_directory(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    proc = subprocess.run(
        [str(BIN / "target-agillic-probe"), "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "target-agillic-probe.json").read_text())
    assert [set(row) for row in report["checks"]] == [
        {"shape", "status", "seen", "expected", "calls"}
    ] * len(report["checks"])


@pytest.mark.parametrize("write", [False, True])
@pytest.mark.parametrize("task_path", ["recipients", "messages"])
def test_task_path_is_found_where_the_instance_serves_it(
    agillic_emulator: AgillicEmulator,
    config: Config,
    tmp_path: Path,
    task_path: str,
    write: bool,
) -> None:
    agillic_emulator.configure(task_path=task_path)
    probe = run_probe(config, tmp_path, *(["--write"] if write else []))

    assert probe.returncode == 0, probe.stderr
    if task_path == "recipients":
        assert probe.status("task status path") == "confirmed"
    else:
        assert probe.status("task status path") == "differs"
        assert "served at /messages/v2/task/{taskId}" in probe.seen("task status path")
        assert "from no endpoint" in probe.seen("task status path")
    # the unknown route's 404 is no error answer of the API
    assert probe.status("error envelope") == "confirmed"
    if write:
        assert probe.status("task status words") == "confirmed"
        assert probe.status("task per-entry results") == "confirmed"
    assert_left_nothing(agillic_emulator)
    assert_kept_promises(probe, agillic_emulator)


@pytest.mark.parametrize(
    ("shape", "status", "seen"),
    [
        ("structured", "confirmed", "errors list of 0, created 1"),
        ("string", "differs", "details.result of type str: no per-entry results"),
        ("missing", "differs", "no details.result: no per-entry results"),
    ],
)
def test_write_reports_whether_tasks_carry_per_entry_results(
    agillic_emulator: AgillicEmulator,
    config: Config,
    tmp_path: Path,
    shape: str,
    status: str,
    seen: str,
) -> None:
    agillic_emulator.add_group("VIP")
    agillic_emulator.configure(task_result_shape=shape)
    probe = run_probe(config, tmp_path, "--write")

    assert probe.returncode == 0, probe.stderr
    assert probe.status("task per-entry results") == status
    assert seen in probe.seen("task per-entry results")
    for other in set(WRITES) - {"task per-entry results"}:
        assert probe.status(other) == "confirmed", (other, probe.seen(other))
    assert probe.report["left_behind"] == []
    assert_left_nothing(agillic_emulator)
    assert_kept_promises(probe, agillic_emulator)


@pytest.mark.parametrize(
    ("words", "polls", "status", "seen"),
    [
        ("standard", 0, "confirmed", "completed"),
        ("standard", 2, "confirmed", "running then completed"),
        ("pending", 1, "differs", "pending then completed: pending is not documented"),
        ("IN_PROGRESS", 2, "differs", "IN_PROGRESS then completed"),
    ],
)
def test_write_reports_the_task_status_words_seen(
    agillic_emulator: AgillicEmulator,
    config: Config,
    tmp_path: Path,
    words: str,
    polls: int,
    status: str,
    seen: str,
) -> None:
    agillic_emulator.configure(task_status_words=words, task_polls_before_done=polls)
    probe = run_probe(config, tmp_path, "--write")

    assert probe.returncode == 0, probe.stderr
    assert probe.status("task status words") == status
    assert probe.seen("task status words").startswith(seen)
    assert probe.status("task per-entry results") == "confirmed"
    assert_left_nothing(agillic_emulator)
    assert_kept_promises(probe, agillic_emulator)


@pytest.mark.slow
def test_a_task_that_never_finishes_caps_the_polls(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    agillic_emulator.configure(task_polls_before_done=100)
    probe = run_probe(config, tmp_path, "--write")

    assert probe.returncode == 0, probe.stderr
    assert agillic_emulator.calls["GET /recipients/v2/task/{task_id}"] == 1 + 6
    assert probe.status("task per-entry results") == "not checked"
    assert "still running after 6 polls" in probe.seen("task per-entry results")
    assert probe.status("read back by filter") == "not checked"
    # the task never applied, so the delete found nothing: the ID is reported
    assert probe.status("delete recipient") == "not checked"
    assert len(probe.report["left_behind"]) == 1
    assert_kept_promises(probe, agillic_emulator)


@pytest.mark.parametrize("write", [False, True])
def test_group_endpoints_that_do_not_exist_differ(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path, write: bool
) -> None:
    agillic_emulator.add_group("VIP")
    agillic_emulator.configure(group_api=False)
    probe = run_probe(config, tmp_path, *(["--write"] if write else []))

    assert probe.returncode == 0, probe.stderr
    assert probe.status("static group endpoints") == "differs"
    assert "no such endpoint" in probe.seen("static group endpoints")
    assert probe.status("error envelope") == "confirmed"
    if write:
        assert probe.status("add to static group") == "not checked"
        assert probe.status("delete recipient") == "confirmed"
    assert_left_nothing(agillic_emulator)
    assert_kept_promises(probe, agillic_emulator)


def test_the_configured_static_group_is_the_one_tried(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    for name in ("Alpha", "VIP"):
        agillic_emulator.add_group(name)
    probe = run_probe({**config, "target_group_name": "VIP"}, tmp_path, "--write")

    assert probe.returncode == 0, probe.stderr
    tried = {
        request.body["targetGroupName"]
        for request in agillic_emulator.requests
        if "StaticTargetGroup" in request.route
    }
    assert tried == {"VIP"}
    assert "VIP" not in probe.text()  # group names stay out of the report
    assert_kept_promises(probe, agillic_emulator)


def test_basic_auth_is_confirmed_without_a_token(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    probe = run_probe({**config, "auth_method": "basic"}, tmp_path)

    assert probe.returncode == 0, probe.stderr
    assert probe.status("authentication") == "confirmed"
    assert "with HTTP Basic" in probe.seen("authentication")
    assert agillic_emulator.tokens_issued == 0
    assert_kept_promises(probe, agillic_emulator)


def test_an_instance_refusing_basic_auth_stops_the_probe_in_one_line(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    agillic_emulator.configure(basic_auth=False)
    probe = run_probe({**config, "auth_method": "basic"}, tmp_path)

    assert probe.returncode == 2
    assert probe.stdout == ""
    (line,) = probe.stderr.strip().splitlines()
    assert "refused HTTP Basic" in line
    assert "auth_method to oauth2" in line
    assert_kept_promises(probe, agillic_emulator)


def test_bad_credentials_stop_the_probe_in_one_line_without_the_secret(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    probe = run_probe({**config, "developer_secret": "wrong-secret-4711"}, tmp_path)

    assert probe.returncode == 2
    (line,) = probe.stderr.strip().splitlines()
    assert "check developer_key and developer_secret" in line
    assert "wrong-secret-4711" not in probe.text()
    assert probe.report["error"]
    assert_kept_promises(probe, agillic_emulator)


def test_an_unreachable_endpoint_exits_2_in_one_line(
    config: Config, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = run_probe({**config, "api_endpoint": f"http://127.0.0.1:{port}"}, tmp_path)

    assert probe.returncode == 2
    assert probe.stdout == ""
    (line,) = probe.stderr.strip().splitlines()
    assert line.startswith(f"target-agillic-probe: could not probe 127.0.0.1:{port}")
    assert "Traceback" not in probe.stderr
    assert probe.report["api_calls"] <= 2


@pytest.mark.parametrize(
    ("quota_code", "status", "seen"),
    [
        ("DAILY_QUOTA_EXCEEDED", "confirmed", "429 with code DAILY_QUOTA_EXCEEDED"),
        ("", "not checked", "429 with code TOO_MANY_REQUESTS"),
    ],
)
def test_a_spent_quota_stops_the_probe_and_shows_its_signal(
    agillic_emulator: AgillicEmulator,
    config: Config,
    tmp_path: Path,
    quota_code: str,
    status: str,
    seen: str,
) -> None:
    agillic_emulator.configure(daily_quota=2, quota_code=quota_code)
    probe = run_probe(config, tmp_path)

    assert probe.returncode == 2
    assert len(probe.stderr.strip().splitlines()) == 1
    assert probe.status("daily quota signal") == status
    assert seen in probe.seen("daily quota signal")
    assert probe.status("task status path") == "not checked"
    assert_kept_promises(probe, agillic_emulator)


def test_an_invalid_config_exits_2_naming_the_setting_before_any_call(
    agillic_emulator: AgillicEmulator, config: Config, tmp_path: Path
) -> None:
    probe = run_probe({**config, "developer_secret": ""}, tmp_path)

    assert probe.returncode == 2
    (line,) = probe.stderr.strip().splitlines()
    assert "is not valid" in line
    assert "developer_secret" in line
    assert sum(agillic_emulator.calls.values()) == 0
