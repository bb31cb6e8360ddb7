"""target-gladly-probe through its command line, against each emulator variant.

Every run checks the probe's promises too: at most 25 API calls (the
emulator's count equals the report's), no API token in anything it printed
or wrote, and without ``--write`` exactly one write-method call: the inert
PATCH of an id that does not exist (404, nothing changes). The emulator
counts it in ``write_calls()``; the report lists it under ``write_calls``.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from delivery_emulators import GladlyEmulator
from tests.cli import BIN

Config = dict[str, t.Any]
MAX_CALLS = 25
INERT_PATCH = "PATCH /api/v1/customer-profiles/{id} -> 404"


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
    """``target-gladly-probe --config ... --output ... [args]`` in tmp_path."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    output = tmp_path / "probe.json"
    output.unlink(missing_ok=True)
    command = [str(BIN / "target-gladly-probe"), "--config", str(config_path)]
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
def config(gladly_emulator: GladlyEmulator) -> Config:
    """The same config a target-gladly run would use, at Gladly's real rate."""
    return {
        "domain": "example",
        "base_url": gladly_emulator.url,
        "username": gladly_emulator.username,
        "api_token": gladly_emulator.api_token,
    }


def assert_kept_promises(probe: Probe, emulator: GladlyEmulator) -> None:
    """The call cap, the call count in the report, and no credentials."""
    assert probe.report["api_calls"] == sum(emulator.calls.values()) <= MAX_CALLS
    assert emulator.write_calls() == len(probe.report["write_calls"])
    basic = base64.b64encode(f"{emulator.username}:{emulator.api_token}".encode())
    for secret in (emulator.api_token, basic.decode(), emulator.username):
        assert secret not in probe.text()
    assert "Traceback" not in probe.stderr


READ_ONLY = (
    "organization",
    "find by email",
    "read unknown id",
    "PATCH unknown id",
    "externalCustomerId search",
    "rate-limit headers",
    "rate budget per method",
    "error envelope",
)
WRITES = (
    "create with a client id",
    "find ignores email case",
    "update",
    "read one",
    "customAttributes merge",
    "uniqueness clash",
    "delete profile",
)


def test_read_only_confirms_the_assumed_shapes_with_one_inert_patch(
    gladly_emulator: GladlyEmulator, config: Config, tmp_path: Path
) -> None:
    probe = run_probe(config, tmp_path)

    assert probe.returncode == 0, probe.stderr
    assert {shape: probe.status(shape) for shape in READ_ONLY} == dict.fromkeys(
        READ_ONLY, "confirmed"
    )
    for shape in WRITES:
        assert (probe.status(shape), probe.seen(shape)) == (
            "not checked",
            "needs --write",
        )
    # the one write-method call: a PATCH of an id just read as absent
    assert probe.report["write_calls"] == [INERT_PATCH]
    (patch,) = [r for r in gladly_emulator.requests if r.method == "PATCH"]
    assert (patch.status, patch.body) == (404, {})
    assert gladly_emulator.profiles == {}
    assert_kept_promises(probe, gladly_emulator)
    assert probe.report["target"] == "target-gladly"
    assert probe.report["instance"] == gladly_emulator.url.removeprefix("http://")


@pytest.mark.parametrize("rate", [10, 200])
@pytest.mark.parametrize(
    ("scope", "status", "seen"),
    [
        ("per_method", "confirmed", "the PATCH found its own budget nearly full"),
        ("shared", "differs", "the PATCH continued the GETs' count, one budget"),
    ],
)
def test_the_rate_budget_is_told_shared_or_per_method(
    gladly_emulator: GladlyEmulator,
    config: Config,
    tmp_path: Path,
    scope: str,
    status: str,
    seen: str,
    rate: int,
) -> None:
    gladly_emulator.configure(rate_limit_scope=scope, rate_limit=rate)
    probe = run_probe({**config, "max_requests_per_second": rate}, tmp_path)

    assert probe.returncode == 0, probe.stderr
    assert probe.status("rate budget per method") == status
    assert seen in probe.seen("rate budget per method")
    assert f"GET remaining {rate - 1}, {rate - 2}, {rate - 3}, {rate - 4}" in (
        probe.seen("rate budget per method")
    )
    assert len(probe.row("rate budget per method")["calls"]) == 5
    assert probe.status("rate-limit headers") == "confirmed"
    assert_kept_promises(probe, gladly_emulator)


def test_a_shared_budget_names_the_setting_to_change(
    gladly_emulator: GladlyEmulator, config: Config, tmp_path: Path
) -> None:
    gladly_emulator.configure(rate_limit_scope="shared")
    probe = run_probe({**config, "rate_limit_scope": "per_method"}, tmp_path)

    assert "Set rate_limit_scope to shared" in probe.seen("rate budget per method")


def test_slow_pacing_leaves_the_budget_not_checked(
    gladly_emulator: GladlyEmulator, config: Config, tmp_path: Path
) -> None:
    probe = run_probe({**config, "max_requests_per_second": 1}, tmp_path)

    assert probe.returncode == 0, probe.stderr
    assert probe.status("rate budget per method") == "not checked"
    assert "too far apart" in probe.seen("rate budget per method")


@pytest.mark.parametrize("locked", [False, True])
def test_external_customer_id_search_locked_or_not(
    gladly_emulator: GladlyEmulator, config: Config, tmp_path: Path, locked: bool
) -> None:
    gladly_emulator.configure(external_id_locked=locked)
    probe = run_probe(config, tmp_path)

    assert probe.returncode == 0, probe.stderr
    if locked:
        assert probe.status("externalCustomerId search") == "differs"
        assert "cannot be searched on this organization" in probe.seen(
            "externalCustomerId search"
        )
    else:
        assert probe.status("externalCustomerId search") == "confirmed"
    assert probe.status("error envelope") == "confirmed"
    assert_kept_promises(probe, gladly_emulator)


@pytest.mark.parametrize(
    ("conflict_status", "seen"),
    [
        (409, "409 with code taken"),
        (400, "400 with code taken; not 409 (the target reads both as a clash)"),
    ],
)
def test_write_checks_every_profile_shape_and_reports_the_clash_status(
    gladly_emulator: GladlyEmulator,
    config: Config,
    tmp_path: Path,
    conflict_status: int,
    seen: str,
) -> None:
    gladly_emulator.configure(conflict_status=conflict_status)
    probe = run_probe(config, tmp_path, "--write")

    assert probe.returncode == 0, probe.stderr
    assert {shape: probe.status(shape) for shape in READ_ONLY + WRITES} == (
        dict.fromkeys(READ_ONLY + WRITES, "confirmed")
    )
    assert probe.seen("uniqueness clash") == seen
    assert gladly_emulator.profiles == {}
    assert probe.report["left_behind"] == []
    assert_kept_promises(probe, gladly_emulator)


def test_without_compliance_admin_the_probe_profile_is_left_behind_and_named(
    gladly_emulator: GladlyEmulator, config: Config, tmp_path: Path
) -> None:
    gladly_emulator.configure(compliance_admin=False)
    probe = run_probe(config, tmp_path, "--write")

    assert probe.returncode == 0, probe.stderr
    assert probe.status("delete profile") == "not checked"
    assert "Compliance Admin" in probe.seen("delete profile")
    (left,) = gladly_emulator.profiles
    assert left.startswith("probe-")
    assert probe.report["left_behind"] == [f"customer profile {left}"]
    assert left in probe.stdout
    assert_kept_promises(probe, gladly_emulator)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"forbidden": True}, "403 Forbidden"),
        ({"api_token": "other-token-5150"}, "Gladly refused the API credentials"),
    ],
)
def test_refused_credentials_stop_the_probe_in_one_line(
    gladly_emulator: GladlyEmulator,
    config: Config,
    tmp_path: Path,
    settings: Config,
    expected: str,
) -> None:
    gladly_emulator.configure(**settings)
    probe = run_probe(config, tmp_path)

    assert probe.returncode == 2
    assert probe.stdout == ""
    (line,) = probe.stderr.strip().splitlines()
    assert expected in line
    assert gladly_emulator.calls == {"GET /api/v1/organization": 1}
    assert_kept_promises(probe, gladly_emulator)


def test_an_unreachable_organization_exits_2_in_one_line(
    config: Config, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = run_probe({**config, "base_url": f"http://127.0.0.1:{port}"}, tmp_path)

    assert probe.returncode == 2
    assert probe.stdout == ""
    (line,) = probe.stderr.strip().splitlines()
    assert line.startswith(f"target-gladly-probe: could not probe 127.0.0.1:{port}")
    assert "Traceback" not in probe.stderr
    assert config["api_token"] not in probe.text()
