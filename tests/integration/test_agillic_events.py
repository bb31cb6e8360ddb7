"""object_type event: firing Agillic events through the CLI, against the emulator."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from tests.cli import customer, messages, run_ok, run_target

Config = dict[str, t.Any]
FIRE = "POST /recipients/{id}/events/{event}/:achieveWithContext"
EVENT = "ORDER_PLACED"
ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "email": {"type": "string"},
        "amount": {"type": "number"},
        "ordered_on": {"type": "string", "format": "date"},
        "coupon": {"type": ["string", "null"]},
    },
}
ORDER_MAPPING = {
    "order_id": "ORDER_ID",
    "email": "EMAIL",
    "amount": "AMOUNT",
    "ordered_on": "ORDER_DATE",
    "coupon": "COUPON",
}


def order(n: int, customer_index: int, **changes: t.Any) -> dict[str, t.Any]:
    row = {
        "order_id": f"o-{n}",
        "email": customer(customer_index)["email"],
        "amount": n * 1.5,
        "ordered_on": f"2024-02-0{1 + n % 9}",
        "coupon": None,
    }
    row.update(changes)
    return row


def orders(rows: t.Iterable[dict[str, t.Any]], **kwargs: t.Any) -> list[str]:
    kwargs.setdefault("key_properties", ["order_id"])
    return messages(rows, stream="orders", schema=ORDER_SCHEMA, **kwargs)


def customers(indexes: t.Iterable[int]) -> list[str]:
    return messages([customer(i) for i in indexes])


def plan_of(tmp_path: Path) -> list[dict[str, t.Any]]:
    lines = (tmp_path / "report.plan.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def rejects_of(tmp_path: Path) -> list[dict[str, t.Any]]:
    path = tmp_path / "rejects.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def report_of(tmp_path: Path, stream: str = "orders") -> dict[str, t.Any]:
    report = json.loads((tmp_path / "report.json").read_text())
    streams: dict[str, dict[str, t.Any]] = report["streams"]
    return streams[stream]


def fired(emulator: AgillicEmulator) -> list[tuple[str, dict[str, t.Any]]]:
    return [(e.recipient_id, e.context_parameters) for e in emulator.fired(EVENT)]


@pytest.fixture
def event_config(agillic_config: Config) -> Config:
    return {
        **agillic_config,
        "streams": {
            "orders": {
                "object_type": "event",
                "event_name": EVENT,
                "field_mapping": ORDER_MAPPING,
            }
        },
    }


def with_orders(config: Config, **overrides: t.Any) -> Config:
    stream = {**config["streams"]["orders"], **overrides}
    return {**config, "streams": {**config["streams"], "orders": stream}}


@pytest.mark.real_cli  # the acceptance run, as its own process
def test_each_record_fires_its_event_once_with_its_context(
    agillic_emulator: AgillicEmulator, event_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", event_config, customers(range(30)), tmp_path)
    rows = [order(n, n % 30) for n in range(100)]
    result = run_target("target-agillic", event_config, orders(rows), tmp_path)
    assert result.returncode == 0, result.stderr

    expected = [
        (
            customer(n % 30)["email"],
            {
                "ORDER_ID": f"o-{n}",
                "AMOUNT": n * 1.5,
                "ORDER_DATE": f"0{1 + n % 9}.02.2024",
            },
        )
        for n in range(100)
    ]

    def by_order(event: tuple[str, dict[str, t.Any]]) -> str:
        return str(event[1]["ORDER_ID"])

    assert sorted(fired(agillic_emulator), key=by_order) == sorted(
        expected, key=by_order
    )
    assert report_of(tmp_path)["fired"] == 100
    assert result.states[-1]["bookmarks"]["orders"]["offset"] == 100

    writes = agillic_emulator.write_calls()
    again = run_target("target-agillic", event_config, orders(rows), tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(agillic_emulator.fired()) == 100
    assert agillic_emulator.write_calls() == writes
    assert report_of(tmp_path)["unchanged"] == 100


def test_a_changed_record_fires_again_only_with_refire_on_change(
    agillic_emulator: AgillicEmulator, event_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", event_config, customers(range(10)), tmp_path)
    rows = [order(n, n) for n in range(10)]
    run_ok("target-agillic", event_config, orders(rows), tmp_path)
    assert len(agillic_emulator.fired()) == 10

    rows[4] = order(4, 4, amount=99.5)
    run_ok("target-agillic", event_config, orders(rows), tmp_path)
    assert len(agillic_emulator.fired()) == 10

    refire = with_orders(event_config, refire_on_change=True)
    run_ok("target-agillic", refire, orders(rows), tmp_path)
    assert fired(agillic_emulator)[10:] == [
        (
            customer(4)["email"],
            {"ORDER_ID": "o-4", "AMOUNT": 99.5, "ORDER_DATE": "05.02.2024"},
        )
    ]
    run_ok("target-agillic", refire, orders(rows), tmp_path)
    assert len(agillic_emulator.fired()) == 11


def test_an_event_of_an_unknown_recipient_is_rejected_and_retried_next_run(
    agillic_emulator: AgillicEmulator, event_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", event_config, customers(range(5)), tmp_path)
    config = {**event_config, "max_reject_ratio": 0.5}
    rows = [order(n, n) for n in range(5)] + [order(99, 77)]
    result = run_target("target-agillic", config, orders(rows), tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(agillic_emulator.fired()) == 5

    [reject] = rejects_of(tmp_path)
    assert (reject["stream"], reject["key"]) == ("orders", "o-99")
    assert reject["reason"] == "recipient_not_found"
    assert "sync recipients first" in reject["message"]
    assert report_of(tmp_path)["rejected_by_reason"] == {"recipient_not_found": 1}

    run_ok("target-agillic", config, customers([77]), tmp_path)
    run_ok("target-agillic", config, orders(rows), tmp_path)
    assert fired(agillic_emulator)[5:] == [
        (
            customer(77)["email"],
            {"ORDER_ID": "o-99", "AMOUNT": 148.5, "ORDER_DATE": "01.02.2024"},
        )
    ]


@pytest.mark.parametrize("events_first", [False, True])
def test_recipients_and_their_events_in_one_run_in_either_order(
    agillic_emulator: AgillicEmulator,
    event_config: Config,
    tmp_path: Path,
    events_first: bool,
) -> None:
    # small batches: in events-first order, events go out before their
    # recipients are read, and must wait for them instead of being rejected
    config = {**event_config, "batch_size_rows": 10}
    people, events = customers(range(30)), orders(order(n, n % 30) for n in range(60))
    lines = [*events, *people] if events_first else [*people, *events]
    result = run_target("target-agillic", config, lines, tmp_path)

    assert result.returncode == 0, result.stderr
    assert len(agillic_emulator.recipients) == 30
    assert sorted(
        e.context_parameters["ORDER_ID"] for e in agillic_emulator.fired()
    ) == (sorted(f"o-{n}" for n in range(60)))
    assert rejects_of(tmp_path) == []
    refused = [
        r for r in agillic_emulator.requests if r.route == FIRE and r.status == 404
    ]
    assert bool(refused) is events_first


def test_an_unknown_event_name_is_rejected_for_good(
    agillic_emulator: AgillicEmulator, event_config: Config, tmp_path: Path
) -> None:
    agillic_emulator.known_events = [EVENT]
    run_ok("target-agillic", event_config, customers(range(3)), tmp_path)
    config = {
        **with_orders(event_config, event_name="ORDER_PLACD"),
        "max_reject_ratio": 1,
    }
    lines = orders(order(n, n) for n in range(3))
    result = run_target("target-agillic", config, lines, tmp_path)
    assert result.returncode == 0, result.stderr
    assert agillic_emulator.fired() == []

    rejects = rejects_of(tmp_path)
    assert {(r["reason"], r["http_status"]) for r in rejects} == {
        ("unknown_event", 404)
    }
    assert "ORDER_PLACD" in rejects[0]["message"]
    assert "event_name" in rejects[0]["message"]

    calls = agillic_emulator.calls[FIRE]
    again = run_target("target-agillic", config, lines, tmp_path)
    assert again.returncode == 0, again.stderr
    assert agillic_emulator.calls[FIRE] == calls
    assert report_of(tmp_path)["quarantined"] == 3


@pytest.mark.parametrize("events_first", [False, True])
def test_dry_run_plans_fire_lines_and_fires_nothing(
    agillic_emulator: AgillicEmulator,
    event_config: Config,
    tmp_path: Path,
    events_first: bool,
) -> None:
    run_ok("target-agillic", event_config, customers(range(10)), tmp_path)
    run_ok("target-agillic", event_config, orders([order(0, 0)]), tmp_path)
    writes = agillic_emulator.write_calls()

    # o-0 fired before; o-1..o-9 for existing recipients; o-10..o-14 for
    # recipients this dry run plans to create; o-15 for nobody
    rows = [order(n, n) for n in range(15)] + [order(15, 500)]
    people, events = customers(range(10, 15)), orders(rows)
    lines = [*events, *people] if events_first else [*people, *events]
    dry = {**event_config, "dry_run": True, "batch_size_rows": 4}
    result = run_target("target-agillic", dry, lines, tmp_path)

    assert result.returncode == 0, result.stderr
    assert agillic_emulator.write_calls() == writes
    assert len(agillic_emulator.fired()) == 1
    plan = plan_of(tmp_path)
    by_action: dict[str, set[str]] = {}
    for line in plan[:-1]:
        if line["stream"] == "orders":
            by_action.setdefault(line["action"], set()).add(line["key"])
    assert by_action == {
        "unchanged": {"o-0"},
        "fire": {f"o-{n}" for n in range(1, 15)},
        "reject": {"o-15"},
    }
    assert plan[-1]["totals"] == {"unchanged": 1, "fire": 14, "create": 5, "reject": 1}


def test_a_stream_without_key_properties_fires_each_distinct_row_once(
    agillic_emulator: AgillicEmulator, event_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", event_config, customers(range(2)), tmp_path)
    rows = [order(1, 0), order(1, 0), order(2, 1)]
    lines = orders(rows, key_properties=[])
    run_ok("target-agillic", event_config, lines, tmp_path)
    run_ok("target-agillic", event_config, lines, tmp_path)
    assert sorted(
        e.context_parameters["ORDER_ID"] for e in agillic_emulator.fired()
    ) == [
        "o-1",
        "o-2",
    ]


def test_null_context_parameters_are_left_out_and_empty_keys_rejected(
    agillic_emulator: AgillicEmulator, event_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", event_config, customers(range(2)), tmp_path)
    config = {**event_config, "max_reject_ratio": 1}
    rows = [order(1, 0, coupon="SPRING"), order(2, 1), order(3, 1, order_id="")]
    result = run_target("target-agillic", config, orders(rows), tmp_path)
    assert result.returncode == 0, result.stderr
    assert {e.context_parameters.get("COUPON") for e in agillic_emulator.fired()} == {
        "SPRING",
        None,
    }
    assert all(
        None not in e.context_parameters.values() for e in agillic_emulator.fired()
    )
    [reject] = rejects_of(tmp_path)
    assert (reject["reason"], reject["fields"]) == ("missing_event_key", ["order_id"])


def test_recipient_ids_and_event_names_are_percent_encoded(
    agillic_emulator: AgillicEmulator, event_config: Config, tmp_path: Path
) -> None:
    odd = "a+b/c d@example.com"
    run_ok("target-agillic", event_config, messages([customer(0, email=odd)]), tmp_path)
    config = with_orders(event_config, event_name="Order placed/EU")
    run_ok("target-agillic", config, orders([order(1, 0, email=odd)]), tmp_path)
    [event] = agillic_emulator.fired()
    assert (event.recipient_id, event.event) == (odd, "Order placed/EU")


def test_context_parameters_are_not_checked_as_person_data(
    agillic_emulator: AgillicEmulator, event_config: Config, tmp_path: Path
) -> None:
    # ORDER_ID, AMOUNT, ORDER_DATE and COUPON are no Person Data fields, and
    # preflight must not refuse them; a recipients stream's would be refused
    run_ok("target-agillic", event_config, customers(range(1)), tmp_path)
    run_ok("target-agillic", event_config, orders([order(1, 0)]), tmp_path)
    assert len(agillic_emulator.fired()) == 1


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (
            {"object_type": "event"},
            "streams.orders: object_type event needs event_name",
        ),
        (
            {
                "object_type": "event",
                "event_name": EVENT,
                "audience_mode": "add",
                "target_group_name": "VIP",
            },
            "streams.orders: audience_mode cannot be combined with object_type event",
        ),
        (
            {"refire_on_change": "sometimes"},
            "streams.orders.refire_on_change must be a boolean",
        ),
    ],
)
def test_invalid_event_settings_fail_at_startup_naming_the_stream(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    stream: Config,
    message: str,
) -> None:
    config = {**agillic_config, "streams": {"orders": stream}}
    result = run_target("target-agillic", config, orders([order(1, 0)]), tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert sum(agillic_emulator.calls.values()) == 0
