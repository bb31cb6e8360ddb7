"""sync_mode delete: guarded recipient deletes through the CLI, against the emulator."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from tests.cli import customer, messages, run_ok, run_target

Config = dict[str, t.Any]
DELETE = "DELETE /recipients/{id}"
GONE_SCHEMA = {"type": "object", "properties": {"email": {"type": "string"}}}


def gone(indexes: t.Iterable[int], **kwargs: t.Any) -> list[str]:
    """A stream of recipients to delete, keyed by email."""
    rows = [{"email": customer(i)["email"]} for i in indexes]
    return messages(rows, stream="gone", schema=GONE_SCHEMA, **kwargs)


def customers(indexes: t.Iterable[int]) -> list[str]:
    return messages([customer(i) for i in indexes])


def emails(indexes: t.Iterable[int]) -> set[str]:
    return {customer(i)["email"] for i in indexes}


def report_of(tmp_path: Path, stream: str = "gone") -> dict[str, t.Any]:
    report = json.loads((tmp_path / "report.json").read_text())
    streams: dict[str, dict[str, t.Any]] = report["streams"]
    return streams[stream]


@pytest.fixture
def delete_config(agillic_config: Config) -> Config:
    return {
        **agillic_config,
        "allow_deletes": True,
        "streams": {
            "gone": {"sync_mode": "delete", "field_mapping": {"email": "EMAIL"}}
        },
    }


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_deletes_go_through_as_a_dry_run_planned_them(
    agillic_emulator: AgillicEmulator, delete_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", delete_config, customers(range(50)), tmp_path)

    dry = {**delete_config, "dry_run": True}
    planned = run_target("target-agillic", dry, gone(range(20)), tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert len(agillic_emulator.recipients) == 50
    assert agillic_emulator.calls[DELETE] == 0
    lines = [
        json.loads(x) for x in (tmp_path / "report.plan.jsonl").read_text().splitlines()
    ]
    assert {x["action"] for x in lines[:-1]} == {"delete"}
    assert sorted(x["key"] for x in lines[:-1]) == sorted(emails(range(20)))
    assert lines[-1]["totals"] == {"delete": 20}

    result = run_target("target-agillic", delete_config, gone(range(20)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(agillic_emulator.recipients) == emails(range(20, 50))
    assert report_of(tmp_path)["deleted"] == 20
    assert result.states[-1]["bookmarks"]["gone"]["offset"] == 20

    again = run_target("target-agillic", delete_config, gone(range(20)), tmp_path)
    assert again.returncode == 0, again.stderr
    assert agillic_emulator.calls[DELETE] == 20


def test_more_deletes_than_max_deletes_delete_nothing(
    agillic_emulator: AgillicEmulator, delete_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", delete_config, customers(range(150)), tmp_path)
    config = {**delete_config, "max_deletes": 100}
    result = run_target(
        "target-agillic", config, gone(range(150), state_every=25), tmp_path
    )
    assert result.returncode != 0
    assert "max_deletes=100" in result.stderr
    assert "150 deletes" in result.stderr
    assert agillic_emulator.calls[DELETE] == 0
    assert len(agillic_emulator.recipients) == 150
    assert result.states == []


def test_deletes_without_allow_deletes_are_refused_before_any_call(
    agillic_emulator: AgillicEmulator, delete_config: Config, tmp_path: Path
) -> None:
    config = {**delete_config, "allow_deletes": False}
    result = run_target("target-agillic", config, gone(range(3)), tmp_path)
    assert result.returncode != 0
    assert "allow_deletes must be true for sync_mode delete (streams.gone)" in (
        result.stderr
    )
    assert sum(agillic_emulator.calls.values()) == 0


def test_a_recipient_already_gone_counts_as_deleted(
    agillic_emulator: AgillicEmulator, delete_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", delete_config, customers(range(3)), tmp_path)
    result = run_target("target-agillic", delete_config, gone(range(6)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert agillic_emulator.recipients == {}
    assert report_of(tmp_path)["deleted"] == 6
    assert not (tmp_path / "rejects.jsonl").exists()


def test_a_deleted_recipient_that_comes_back_is_upserted_again(
    agillic_emulator: AgillicEmulator, delete_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", delete_config, customers(range(10)), tmp_path)
    run_ok("target-agillic", delete_config, gone([2, 5, 7]), tmp_path)
    assert set(agillic_emulator.recipients) == emails(range(10)) - emails([2, 5, 7])

    mark = len(agillic_emulator.requests)
    run_ok("target-agillic", delete_config, customers(range(10)), tmp_path)
    assert sorted(agillic_emulator.upserted_ids(mark)) == sorted(emails([2, 5, 7]))
    assert set(agillic_emulator.recipients) == emails(range(10))


def test_a_refused_delete_is_rejected_with_the_api_reason(
    agillic_emulator: AgillicEmulator, delete_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", delete_config, customers(range(2)), tmp_path)
    agillic_emulator.inject(DELETE, count=1, status=403)
    config = {**delete_config, "max_reject_ratio": 1}
    result = run_target("target-agillic", config, gone([0]), tmp_path)
    assert result.returncode == 0, result.stderr
    [reject] = [
        json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()
    ]
    assert (reject["reason"], reject["http_status"]) == ("forbidden", 403)
    assert emails([0]) <= set(agillic_emulator.recipients)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (
            {"audience_mode": "remove", "target_group_name": "VIP"},
            "streams.gone: sync_mode delete cannot be combined with audience_mode",
        ),
        (
            {"object_type": "one_to_many", "one_to_many_table_id": "ORDERS"},
            (
                "streams.gone: sync_mode delete deletes recipients, so it cannot be "
                "combined with object_type one_to_many"
            ),
        ),
        (
            {"object_type": "event", "event_name": "ORDER_PLACED"},
            (
                "streams.gone: sync_mode delete deletes recipients, so it cannot be "
                "combined with object_type event"
            ),
        ),
    ],
)
def test_delete_combined_with_another_route_fails_at_startup(
    agillic_emulator: AgillicEmulator,
    delete_config: Config,
    tmp_path: Path,
    stream: Config,
    message: str,
) -> None:
    streams = {"gone": {**delete_config["streams"]["gone"], **stream}}
    config = {**delete_config, "streams": streams}
    result = run_target("target-agillic", config, gone(range(3)), tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert sum(agillic_emulator.calls.values()) == 0


def test_a_recipient_written_again_after_its_delete_can_be_deleted_again(
    agillic_emulator: AgillicEmulator, delete_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", delete_config, customers(range(3)), tmp_path)
    run_ok("target-agillic", delete_config, gone([1]), tmp_path)
    assert set(agillic_emulator.recipients) == emails([0, 2])

    run_ok("target-agillic", delete_config, customers(range(3)), tmp_path)
    assert set(agillic_emulator.recipients) == emails(range(3))
    run_ok("target-agillic", delete_config, gone([1]), tmp_path)
    assert set(agillic_emulator.recipients) == emails([0, 2])
    assert agillic_emulator.calls[DELETE] == 2


ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "email": {"type": "string"}},
}


def with_orders(indexes: t.Iterable[int]) -> list[str]:
    """Customers, then two ORDERS rows each (one-to-many, keyed by order_id)."""
    rows = [
        {"order_id": f"o-{i}-{n}", "email": customer(i)["email"]}
        for i in indexes
        for n in range(2)
    ]
    orders = messages(
        rows, stream="orders", schema=ORDER_SCHEMA, key_properties=["order_id"]
    )
    return [*customers(indexes), *orders]


def test_the_rows_of_a_deleted_recipient_come_back_with_it(
    agillic_emulator: AgillicEmulator, delete_config: Config, tmp_path: Path
) -> None:
    """Agillic deletes a recipient's one-to-many rows with it; when the
    recipient is written again, its rows must be sent again too."""
    config = {
        **delete_config,
        "streams": {
            **delete_config["streams"],
            "orders": {
                "object_type": "one_to_many",
                "one_to_many_table_id": "ORDERS",
                "field_mapping": {"order_id": "ID", "email": "EMAIL"},
            },
        },
    }
    stored = agillic_emulator.otm_tables["ORDERS"]["rows"]
    run_ok("target-agillic", config, with_orders(range(3)), tmp_path)
    assert set(stored) == emails(range(3))
    run_ok("target-agillic", config, gone([1]), tmp_path)
    assert set(stored) == emails([0, 2])

    run_ok("target-agillic", config, with_orders(range(3)), tmp_path)
    assert set(stored[customer(1)["email"]]) == {"o-1-0", "o-1-1"}
    assert set(agillic_emulator.recipients) == emails(range(3))
    orders = report_of(tmp_path, "orders")
    assert (orders["sent"], orders["unchanged"]) == (2, 4)
