"""SIGTERM at any moment: a bounded, honest stop (both targets, real CLI).

Each test stops a run at one moment (reading input, waiting on a batch task,
draining after the end of input) and checks the promises: the process ends
within the bound with a non-zero code, the report says it was interrupted,
the ledger holds only what the destination holds, the STATE written covers
only delivered records, no temporary file is left and nothing is removed.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator, GladlyEmulator
from singer_delivery.serialization import key_hash
from tests.cli import customer, messages, start_target, state_line

Config = dict[str, t.Any]
#: The stop bound: the default grace for batches in flight, plus slack.
BOUND = 30
#: A short ``shutdown_grace`` for tests whose batch task never finishes.
GRACE = 2
#: What ending takes beyond the grace (report, ledger, lock), generously.
SLACK = 8
REMOVE = "POST /recipients/:removeFromStaticTargetGroup"


def ledger_keys(tmp_path: Path) -> set[str]:
    """Every key hash the ledger says was delivered."""
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        return {
            row[0].hex()
            for row in conn.execute("SELECT key_hash FROM ledger_deliveries")
        }


def stop(
    proc: subprocess.Popen[str], seconds: float = BOUND
) -> tuple[int, float, str, str]:
    """SIGTERM; wait for the end. (exit code, seconds taken, stdout, stderr)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None
    stdout, stderr = proc.communicate(timeout=seconds)
    return proc.returncode, time.monotonic() - started, stdout, stderr


def wait_for(condition: t.Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.05)


def report(tmp_path: Path) -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], json.loads((tmp_path / "report.json").read_text()))


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> dict[str, str]:
    """A TMPDIR of the run's own, to show nothing is left in it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return {"TMPDIR": str(folder)}


def write(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.flush()


def check_agillic(
    emulator: AgillicEmulator, tmp_path: Path, stdout: str, code: int
) -> None:
    assert code == 128 + signal.SIGTERM
    assert report(tmp_path)["interrupted"] is True
    held = {key_hash(recipient) for recipient in emulator.recipients}
    assert ledger_keys(tmp_path) <= held
    for line in stdout.splitlines():
        offset = json.loads(line)["bookmarks"]["customers"]["offset"]
        assert all(customer(i)["email"] in emulator.recipients for i in range(offset))
    assert emulator.calls[REMOVE] == 0
    assert not list((tmp_path / "tmp").iterdir())


def check_gladly(emulator: GladlyEmulator, tmp_path: Path, code: int) -> set[str]:
    """The promises of a stopped target-gladly run; the emails Gladly holds."""
    assert code == 128 + signal.SIGTERM
    assert report(tmp_path)["interrupted"] is True
    emails = {
        e["original"]
        for profile in emulator.profiles.values()
        for e in profile.get("emails", [])
    }
    assert ledger_keys(tmp_path) <= {key_hash(email) for email in emails}
    assert not list((tmp_path / "tmp").iterdir())
    return emails


def test_agillic_sigterm_while_reading_input(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    tmpdir_env: dict[str, str],
) -> None:
    proc = start_target("target-agillic", agillic_config, tmp_path, env=tmpdir_env)
    write(proc, messages([customer(i) for i in range(50)]))
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["bookmarks"]["customers"]["offset"] == 50
    write(
        proc,
        [json.dumps({"type": "RECORD", "stream": "customers", "record": customer(99)})],
    )

    code, took, stdout, stderr = stop(proc)
    assert took < BOUND, stderr
    check_agillic(agillic_emulator, tmp_path, stdout, code)
    assert "Received SIGTERM" in stderr
    assert customer(99)["email"] not in agillic_emulator.recipients


def test_agillic_sigterm_while_waiting_on_a_task(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    tmpdir_env: dict[str, str],
) -> None:
    agillic_emulator.configure(task_delay=120)
    config = {**agillic_config, "shutdown_grace": GRACE}
    proc = start_target("target-agillic", config, tmp_path, env=tmpdir_env)
    write(proc, messages([customer(i) for i in range(30)]))
    wait_for(lambda: agillic_emulator.calls["GET /recipients/v2/task/{task_id}"] >= 2)

    code, took, stdout, stderr = stop(proc)
    assert GRACE <= took < GRACE + SLACK, stderr
    assert f"get up to {GRACE} s to settle" in stderr
    check_agillic(agillic_emulator, tmp_path, stdout, code)
    assert stdout == "", "no STATE passes a batch that was not acknowledged"
    assert ledger_keys(tmp_path) == set()


def test_agillic_sigterm_during_the_final_drain(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    tmpdir_env: dict[str, str],
) -> None:
    agillic_emulator.add_group("VIP")
    agillic_emulator.configure(task_delay=120)
    config = {
        **agillic_config,
        "audience_mode": "mirror",
        "target_group_name": "VIP",
        "shutdown_grace": GRACE,
    }
    proc = start_target("target-agillic", config, tmp_path, env=tmpdir_env)
    write(proc, messages([customer(i) for i in range(30)]))
    assert proc.stdin is not None
    proc.stdin.close()
    wait_for(lambda: agillic_emulator.calls["GET /recipients/v2/task/{task_id}"] >= 2)

    code, took, stdout, stderr = stop(proc)
    assert GRACE <= took < GRACE + SLACK, stderr
    check_agillic(agillic_emulator, tmp_path, stdout, code)
    assert agillic_emulator.members("VIP") == set()


def test_gladly_sigterm_while_reading_and_while_delivering(
    gladly_emulator: GladlyEmulator,
    gladly_config: Config,
    tmp_path: Path,
    tmpdir_env: dict[str, str],
) -> None:
    proc = start_target("target-gladly", gladly_config, tmp_path, env=tmpdir_env)
    write(proc, messages([customer(i) for i in range(20)]))
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["bookmarks"]["customers"]["offset"] == 20
    gladly_emulator.configure(latency=0.5)
    write(
        proc,
        [
            json.dumps({"type": "RECORD", "stream": "customers", "record": customer(i)})
            for i in range(100, 1100)
        ]
        + [state_line("customers", 1020)],
    )
    wait_for(lambda: len(gladly_emulator.profiles) > 20)
    calls_before = sum(gladly_emulator.status_counts.values())

    code, took, stdout, stderr = stop(proc)
    # no new request starts: the batch ends with the requests under way
    # (0.5 s each), well inside the default grace of 20 s
    assert took < SLACK, stderr
    assert sum(gladly_emulator.status_counts.values()) - calls_before < 100
    check_gladly(gladly_emulator, tmp_path, code)
    assert "1020" not in stdout


def test_gladly_sigterm_during_the_final_drain(
    gladly_emulator: GladlyEmulator,
    gladly_config: Config,
    tmp_path: Path,
    tmpdir_env: dict[str, str],
) -> None:
    gladly_emulator.configure(latency=0.5)
    proc = start_target("target-gladly", gladly_config, tmp_path, env=tmpdir_env)
    write(proc, messages([customer(i) for i in range(300)]))
    assert proc.stdin is not None
    proc.stdin.close()
    wait_for(lambda: len(gladly_emulator.profiles) >= 10)

    code, took, stdout, stderr = stop(proc)
    assert took < SLACK, stderr
    assert len(check_gladly(gladly_emulator, tmp_path, code)) < 300
    assert "300" not in stdout, "the final STATE needs every record delivered"
