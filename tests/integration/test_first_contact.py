"""Real instances whose answers differ from the emulator's defaults (CLI).

The emulators run in their variant modes: task statuses and results as
seen in real client code, a quota 429 that looks like any other, a rate
budget shared by every HTTP method, uniqueness clashes answered as 400.
"""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator, GladlyEmulator
from tests.cli import customer, messages, run_ok, run_target

Config = dict[str, t.Any]


def stream_report(tmp_path: Path) -> dict[str, t.Any]:
    report = json.loads((tmp_path / "report.json").read_text())
    return t.cast(dict[str, t.Any], report["streams"]["customers"])


@pytest.fixture
def loose_tasks(agillic_emulator: AgillicEmulator) -> AgillicEmulator:
    """Tasks that answer ``pending``, then ``completed`` with a string result,
    and silently skip a refused entry."""
    agillic_emulator.configure(
        task_status_words="pending",
        task_polls_before_done=2,
        task_result_shape="string",
    )
    dropped = customer(7)["email"]
    agillic_emulator.refuse(lambda p: p.get("EMAIL") == dropped, "dropped")
    return agillic_emulator


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_a_task_without_per_entry_results_verifies_nothing(
    loose_tasks: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(40)]
    config = {**agillic_config, "verify_deliveries": "off"}
    result = run_ok("target-agillic", config, messages(rows), tmp_path)
    stats = stream_report(tmp_path)
    assert (stats["unverified"], stats["delivered"], stats["created"]) == (40, 40, 0)
    assert "without per-entry results" in result.stderr
    assert loose_tasks.calls["GET /recipients/v2/task/{task_id}"] >= 3


def test_reading_back_commits_what_is_there_and_sends_the_rest_again(
    loose_tasks: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(40)]
    config = {**agillic_config, "verify_deliveries": "all"}
    run_ok("target-agillic", config, messages(rows), tmp_path)
    stats = stream_report(tmp_path)
    assert (stats["delivered"], stats["unverified"]) == (39, 0)
    assert stats["rejected_by_reason"] == {"not_applied": 1}
    assert loose_tasks.calls["GET /recipients"] == 1

    loose_tasks.refuse_rules.clear()
    mark = len(loose_tasks.requests)
    run_ok("target-agillic", config, messages(rows), tmp_path)
    assert loose_tasks.upserted_ids(mark) == [customer(7)["email"]]
    assert customer(7)["email"] in loose_tasks.recipients


def test_a_sample_that_finds_everything_trusts_the_rest(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.configure(task_result_shape="missing")
    rows = [customer(i) for i in range(120)]
    run_ok("target-agillic", agillic_config, messages(rows), tmp_path)
    stats = stream_report(tmp_path)
    assert stats["delivered"] == 120
    assert stats["unverified"] == 70  # one page of 50 read back, the rest trusted
    assert agillic_emulator.calls["GET /recipients"] == 1


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_a_daily_call_budget_stops_the_run_cleanly_and_the_next_goes_on(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(1000)]
    lines = messages(rows, state_every=100)
    budget = 9
    config = {**agillic_config, "batch_size_rows": 100, "daily_call_budget": budget}
    first = run_target("target-agillic", config, lines, tmp_path)

    assert first.returncode == 1
    assert f"daily_call_budget={budget} is spent" in first.stderr
    assert agillic_emulator.quota_used <= budget
    offset = first.states[-1]["bookmarks"]["customers"]["offset"]
    delivered = {customer(i)["email"] for i in range(offset)}
    assert delivered <= set(agillic_emulator.recipients)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["calls"]["daily_call_budget"] == budget
    assert report["calls"]["used_today"] <= budget

    again = run_target("target-agillic", config, messages(rows[offset:]), tmp_path)
    assert again.returncode == 1, "the budget of the day is spent"
    assert agillic_emulator.quota_used <= budget

    more = {**config, "daily_call_budget": 10_000}
    run_ok("target-agillic", more, messages(rows[offset:]), tmp_path)
    assert set(agillic_emulator.recipients) == {r["email"] for r in rows}


def test_a_dry_run_says_whether_it_fits_the_budget(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    rows = [customer(i) for i in range(250)]
    config = {
        **agillic_config,
        "dry_run": True,
        "batch_size_rows": 100,
        "daily_call_budget": 4,
    }
    result = run_ok("target-agillic", config, messages(rows), tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    estimate = report["calls"]
    assert (
        estimate["estimated_for_a_real_run"] == 9
    )  # three batches, each a POST and two polls
    assert estimate["fits"] is False
    assert "would need about" in result.stderr


@pytest.mark.parametrize("status", [409, 400])
def test_an_insert_clash_in_either_form_is_already_existing(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path, status: int
) -> None:
    gladly_emulator.configure(conflict_status=status)
    gladly_emulator.add_profile({"emails": [{"original": customer(1)["email"]}]})
    config = {**gladly_config, "sync_mode": "insert", "max_reject_ratio": 1}
    run_ok("target-gladly", config, messages([customer(1), customer(2)]), tmp_path)
    stats = stream_report(tmp_path)
    assert stats["rejected_by_reason"] == {"already_exists": 1}
    assert stats["created"] == 1


def test_phones_are_sent_in_e164_and_unreadable_ones_rejected(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    rows = [
        customer(1, phone="+45 12 34 56 78"),
        customer(2, phone="12345678"),
        customer(3, phone="call me maybe"),
    ]
    config = {**gladly_config, "default_phone_region": "DK", "max_reject_ratio": 1}
    result = run_ok("target-gladly", config, messages(rows), tmp_path)
    phones = {
        e["original"]: [p["original"] for p in profile.get("phones", [])]
        for profile in gladly_emulator.profiles.values()
        for e in profile["emails"]
    }
    assert phones == {
        customer(1)["email"]: ["+4512345678"],
        customer(2)["email"]: ["+4512345678"],
    }
    assert stream_report(tmp_path)["rejected_by_reason"] == {"invalid_phone": 1}
    assert "call me maybe" not in result.stderr


@pytest.mark.slow
def test_a_budget_shared_by_every_method_is_found_and_kept(
    gladly_emulator: GladlyEmulator, gladly_config: Config, tmp_path: Path
) -> None:
    gladly_emulator.configure(rate_limit=50, rate_limit_scope="shared")
    config = {**gladly_config, "max_requests_per_second": 50}
    rows = [customer(i) for i in range(200)]
    result = run_ok("target-gladly", config, messages(rows), tmp_path)
    assert len(gladly_emulator.profiles) == 200
    answered = sum(gladly_emulator.status_counts.values())
    assert gladly_emulator.rate_limited <= 0.01 * answered
    assert "one rate budget for all methods" in result.stderr
