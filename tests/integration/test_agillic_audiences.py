"""Target-group audiences, one-to-many rows and routing, through the CLI."""

from __future__ import annotations

import json
import signal
import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from tests.cli import customer, messages, run_ok, run_target, start_target

Config = dict[str, t.Any]
ADD = "POST /recipients/:addToStaticTargetGroup"
REMOVE = "POST /recipients/:removeFromStaticTargetGroup"
AUDIENCE_SCHEMA = {
    "type": "object",
    "properties": {"email": {"type": "string"}, "first_name": {"type": "string"}},
}
ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "email": {"type": "string"},
        "amount": {"type": "number"},
        "ordered_on": {"type": "string", "format": "date"},
    },
}


def member(i: int) -> dict[str, str]:
    return {"email": customer(i)["email"], "first_name": f"Name{i}"}


def audience(indexes: t.Iterable[int], **kwargs: t.Any) -> list[str]:
    return messages(
        [member(i) for i in indexes], stream="vip", schema=AUDIENCE_SCHEMA, **kwargs
    )


def activate_version(stream: str, version: int) -> str:
    return json.dumps(
        {"type": "ACTIVATE_VERSION", "stream": stream, "version": version}
    )


@pytest.fixture
def vip_config(agillic_emulator: AgillicEmulator, agillic_config: Config) -> Config:
    agillic_emulator.add_group("VIP")
    return {
        **agillic_config,
        "streams": {
            "vip": {
                "audience_mode": "mirror",
                "target_group_name": "VIP",
                "field_mapping": {"email": "EMAIL", "first_name": "FIRSTNAME"},
            }
        },
    }


def members(emulator: AgillicEmulator) -> set[str]:
    return set(emulator.target_groups["VIP"]["members"])


def group_requests(emulator: AgillicEmulator, route: str) -> list[list[str]]:
    return [
        r.body["recipientIds"]
        for r in emulator.requests
        if r.route == route and r.status == 200
    ]


def emails(indexes: t.Iterable[int]) -> set[str]:
    return {customer(i)["email"] for i in indexes}


def test_mirror_follows_the_audience_across_runs(
    agillic_emulator: AgillicEmulator, vip_config: Config, tmp_path: Path
) -> None:
    first = run_target("target-agillic", vip_config, audience(range(250)), tmp_path)
    assert first.returncode == 0, first.stderr
    assert members(agillic_emulator) == emails(range(250))
    assert group_requests(agillic_emulator, REMOVE) == []

    second_input = [*range(100, 250), *range(1000, 1150)]
    second = run_target("target-agillic", vip_config, audience(second_input), tmp_path)
    assert second.returncode == 0, second.stderr
    assert members(agillic_emulator) == emails(second_input)
    removed = [i for ids in group_requests(agillic_emulator, REMOVE) for i in ids]
    assert sorted(removed) == sorted(emails(range(100)))
    sizes = [
        len(ids)
        for route in (ADD, REMOVE)
        for ids in group_requests(agillic_emulator, route)
    ]
    assert max(sizes) <= 100
    report = json.loads((tmp_path / "report.json").read_text())["streams"]["vip"]
    assert (report["group_added"], report["group_removed"]) == (150, 100)

    writes = agillic_emulator.write_calls()
    empty = run_target("target-agillic", vip_config, audience([]), tmp_path)
    assert empty.returncode != 0
    assert "would remove 300 of the 300 members" in empty.stderr
    assert "max_removal_ratio" in empty.stderr
    assert agillic_emulator.write_calls() == writes
    assert members(agillic_emulator) == emails(second_input)


def test_second_identical_mirror_run_makes_no_write_calls(
    agillic_emulator: AgillicEmulator, vip_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", vip_config, audience(range(40)), tmp_path)
    writes = agillic_emulator.write_calls()
    again = run_target("target-agillic", vip_config, audience(range(40)), tmp_path)
    assert again.returncode == 0, again.stderr
    assert agillic_emulator.write_calls() == writes


def test_sigterm_mid_stream_removes_nothing(
    agillic_emulator: AgillicEmulator, vip_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", vip_config, audience(range(200)), tmp_path)
    proc = start_target("target-agillic", vip_config, tmp_path)
    assert proc.stdin is not None
    assert proc.stdout is not None
    partial = audience(range(20), state_every=10)
    proc.stdin.write("\n".join(partial[:-1]) + "\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["bookmarks"]["vip"]["offset"] == 10
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert group_requests(agillic_emulator, REMOVE) == []
    assert members(agillic_emulator) == emails(range(200))


def test_mirror_waits_for_the_closing_activate_version(
    agillic_emulator: AgillicEmulator, vip_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", vip_config, audience(range(100)), tmp_path)
    lines = audience(range(70))
    opened = [lines[0], activate_version("vip", 7), *lines[1:]]
    unclosed = run_target("target-agillic", vip_config, opened, tmp_path)
    assert unclosed.returncode == 0, unclosed.stderr
    assert members(agillic_emulator) == emails(range(100))
    assert "none after it, so the snapshot cannot be known complete" in (
        unclosed.stderr
    )

    closed = [*opened[:-1], activate_version("vip", 7), opened[-1]]
    result = run_target("target-agillic", vip_config, closed, tmp_path)
    assert result.returncode == 0, result.stderr
    assert members(agillic_emulator) == emails(range(70))


def test_add_and_remove_modes_each_work_alone(
    agillic_emulator: AgillicEmulator, vip_config: Config, tmp_path: Path
) -> None:
    vip = vip_config["streams"]["vip"]
    add = {**vip_config, "streams": {"vip": {**vip, "audience_mode": "add"}}}
    run_ok("target-agillic", add, audience(range(30)), tmp_path)
    run_ok("target-agillic", add, audience(range(20, 40)), tmp_path)
    assert members(agillic_emulator) == emails(range(40))
    assert agillic_emulator.recipients[customer(39)["email"]]["FIRSTNAME"] == "Name39"

    remove = {**vip_config, "streams": {"vip": {**vip, "audience_mode": "remove"}}}
    upserts = agillic_emulator.calls["POST /recipients/v2/:upsert"]
    result = run_target("target-agillic", remove, audience(range(10)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert members(agillic_emulator) == emails(range(10, 40))
    assert agillic_emulator.calls["POST /recipients/v2/:upsert"] == upserts

    for config, indexes in ((add, range(20, 40)), (remove, range(10))):
        writes = agillic_emulator.write_calls()
        run_ok("target-agillic", config, audience(indexes), tmp_path)
        assert agillic_emulator.write_calls() == writes


def test_membership_errors_become_rejects(
    agillic_emulator: AgillicEmulator, vip_config: Config, tmp_path: Path
) -> None:
    vip = vip_config["streams"]["vip"]
    remove = {
        **vip_config,
        "max_reject_ratio": 1,
        "streams": {"vip": {**vip, "audience_mode": "remove"}},
    }
    result = run_target("target-agillic", remove, audience([1, 2]), tmp_path)
    assert result.returncode == 0, result.stderr
    rejects = [
        json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()
    ]
    assert sorted(r["key"] for r in rejects) == sorted(emails([1, 2]))
    assert {r["reason"] for r in rejects} == {"not_found"}


@pytest.mark.parametrize(
    ("static", "problem"), [(False, "is not static"), (None, "does not exist")]
)
def test_dynamic_or_missing_group_is_refused_before_any_write(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    static: bool | None,
    problem: str,
) -> None:
    agillic_emulator.add_group("Newsletter", static=True)
    if static is not None:
        agillic_emulator.add_group("Dynamic VIP", static=static)
    config = {
        **agillic_config,
        "streams": {
            "vip": {"audience_mode": "add", "target_group_name": "Dynamic VIP"}
        },
    }
    result = run_target("target-agillic", config, audience(range(3)), tmp_path)
    assert result.returncode != 0
    assert f"target_group_name 'Dynamic VIP' {problem}" in result.stderr
    assert "static groups on this instance: Newsletter" in result.stderr
    assert agillic_emulator.write_calls() == 0


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (
            {"audience_mode": "add"},
            "streams.vip: audience_mode add needs target_group_name",
        ),
        (
            {"object_type": "one_to_many"},
            "streams.vip: object_type one_to_many needs one_to_many_table_id",
        ),
        (
            {
                "object_type": "one_to_many",
                "one_to_many_table_id": "ORDERS",
                "audience_mode": "add",
                "target_group_name": "VIP",
            },
            "streams.vip: audience_mode cannot be combined with object_type one_to_many",
        ),
        ({"colour": "blue"}, "streams.vip has unknown setting(s) colour"),
    ],
)
def test_invalid_stream_settings_fail_at_startup_naming_the_stream(
    agillic_emulator: AgillicEmulator,
    agillic_config: Config,
    tmp_path: Path,
    stream: Config,
    message: str,
) -> None:
    config = {**agillic_config, "streams": {"vip": stream}}
    result = run_target("target-agillic", config, audience(range(3)), tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert sum(agillic_emulator.calls.values()) == 0


def order(n: int, customer_index: int) -> dict[str, t.Any]:
    return {
        "order_id": f"o-{n}",
        "email": customer(customer_index)["email"],
        "amount": n * 1.5,
        "ordered_on": "2024-02-0" + str(1 + n % 9),
    }


@pytest.fixture
def routed_config(agillic_config: Config) -> Config:
    return {
        **agillic_config,
        "max_reject_ratio": 0.5,
        "streams": {
            "orders": {
                "object_type": "one_to_many",
                "one_to_many_table_id": "ORDERS",
                "field_mapping": {
                    "order_id": "ID",
                    "email": "EMAIL",
                    "amount": "AMOUNT",
                    "ordered_on": "ORDER_DATE",
                },
            }
        },
    }


def customers_then_orders(
    orders: list[dict[str, t.Any]], *, orders_first: bool = False
) -> list[str]:
    people = messages([customer(i) for i in range(30)])
    rows = messages(
        orders, stream="orders", schema=ORDER_SCHEMA, key_properties=["order_id"]
    )
    return [*rows, *people] if orders_first else [*people, *rows]


@pytest.mark.parametrize("orders_first", [False, True])
def test_one_run_routes_customers_and_orders_to_the_right_recipients(
    agillic_emulator: AgillicEmulator,
    routed_config: Config,
    tmp_path: Path,
    orders_first: bool,
) -> None:
    orders = [order(n, n % 30) for n in range(90)] + [order(999, 5000)]
    lines = customers_then_orders(orders, orders_first=orders_first)
    result = run_target("target-agillic", routed_config, lines, tmp_path)

    assert result.returncode == 0, result.stderr
    assert len(agillic_emulator.recipients) == 30
    rows = agillic_emulator.otm_tables["ORDERS"]["rows"]
    assert sum(len(r) for r in rows.values()) == 90
    for n in range(90):
        stored = rows[customer(n % 30)["email"]][f"o-{n}"]
        assert stored["AMOUNT"] == n * 1.5
        assert stored["ORDER_DATE"] == f"0{1 + n % 9}.02.2024"
    rejects = [
        json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()
    ]
    assert [(r["stream"], r["reason"]) for r in rejects] == [
        ("orders", "recipient_not_found")
    ]
    assert "sync recipients first" in rejects[0]["message"]

    mark = len(agillic_emulator.requests)
    again = run_target("target-agillic", routed_config, lines, tmp_path)
    assert again.returncode == 0, again.stderr
    writes = [
        r
        for r in agillic_emulator.requests[mark:]
        if r.method == "POST" and r.route != "POST /oauth2/token"
    ]
    # only the rejected row is sent again (retried until the input ends)
    assert {r.route for r in writes} == {"POST /recipients/v2/oneToManyTables/:upsert"}
    assert all(
        [row["ID"] for x in r.body["recipients"] for row in x["records"]] == ["o-999"]
        for r in writes
    )


def test_rows_unchanged_at_the_source_are_settled_before_mapping(
    agillic_emulator: AgillicEmulator, routed_config: Config, tmp_path: Path
) -> None:
    """One-to-many rows are looked up by recipient ID and row identifier read
    straight from the record; only the changed row is mapped and sent."""
    orders = [order(n, n % 30) for n in range(60)]
    run_ok("target-agillic", routed_config, customers_then_orders(orders), tmp_path)
    orders[7] = {**orders[7], "amount": 999.5}
    run_ok("target-agillic", routed_config, customers_then_orders(orders), tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())["streams"]["orders"]
    assert (report["unchanged"], report["unchanged_at_source"]) == (59, 59)
    assert report["delivered"] == 1
    rows = agillic_emulator.otm_tables["ORDERS"]["rows"]
    assert rows[customer(7)["email"]]["o-7"]["AMOUNT"] == 999.5


def test_missing_one_to_many_table_is_refused_before_any_write(
    agillic_emulator: AgillicEmulator, routed_config: Config, tmp_path: Path
) -> None:
    routed_config["streams"]["orders"]["one_to_many_table_id"] = "RETURNS"
    result = run_target(
        "target-agillic", routed_config, customers_then_orders([]), tmp_path
    )
    assert result.returncode != 0
    assert "one_to_many_table_id 'RETURNS' does not exist" in result.stderr
    assert agillic_emulator.write_calls() == 0


def test_dry_run_plan_includes_group_changes(
    agillic_emulator: AgillicEmulator, vip_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", vip_config, audience(range(20)), tmp_path)
    writes = agillic_emulator.write_calls()
    dry = {**vip_config, "dry_run": True}
    result = run_target("target-agillic", dry, audience(range(5, 25)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert agillic_emulator.write_calls() == writes
    lines = [
        json.loads(x) for x in (tmp_path / "report.plan.jsonl").read_text().splitlines()
    ]
    actions = [(x["key"], x["action"]) for x in lines[:-1]]
    assert sorted(k for k, a in actions if a == "group_remove") == sorted(
        emails(range(5))
    )
    assert sorted(k for k, a in actions if a == "group_add") == sorted(
        emails(range(20, 25))
    )
    assert lines[-1]["totals"] == {
        "unchanged": 15,
        "create": 5,
        "group_add": 5,
        "group_remove": 5,
    }


def test_unknown_mapped_person_data_field_fails_before_any_write(
    agillic_emulator: AgillicEmulator, agillic_config: Config, tmp_path: Path
) -> None:
    config = {**agillic_config, "field_mapping": {"email": "EMAIL", "tier": "SEGMENT"}}
    result = run_target("target-agillic", config, messages([customer(1)]), tmp_path)
    assert result.returncode != 0
    assert "Person Data field(s) SEGMENT that this Agillic instance does not have" in (
        result.stderr
    )
    assert agillic_emulator.write_calls() == 0


def test_dry_run_plans_rows_against_recipients_the_run_would_create(
    agillic_emulator: AgillicEmulator, routed_config: Config, tmp_path: Path
) -> None:
    lines = customers_then_orders(
        [order(n, n % 30) for n in range(10)] + [order(9, 77)]
    )
    dry = {**routed_config, "dry_run": True}
    result = run_target("target-agillic", dry, lines, tmp_path)
    assert result.returncode == 0, result.stderr
    assert agillic_emulator.write_calls() == 0
    plan = [
        json.loads(x) for x in (tmp_path / "report.plan.jsonl").read_text().splitlines()
    ]
    assert plan[-1]["totals"] == {"create": 40, "reject": 1}
    [reject] = [line for line in plan[:-1] if line["action"] == "reject"]
    assert reject["stream"] == "orders"
    assert reject["reason"] == "recipient_not_found"

    real = run_target("target-agillic", routed_config, lines, tmp_path)
    assert real.returncode == 0, real.stderr
    report = json.loads((tmp_path / "report.json").read_text())["streams"]
    assert report["orders"]["created"] == 10
    assert report["orders"]["rejected_by_reason"] == {"recipient_not_found": 1}


def test_a_changed_member_is_upserted_but_not_added_again(
    agillic_emulator: AgillicEmulator, vip_config: Config, tmp_path: Path
) -> None:
    run_ok("target-agillic", vip_config, audience(range(10)), tmp_path)
    adds = agillic_emulator.calls[ADD]
    changed = [member(i) for i in range(10)]
    changed[3]["first_name"] = "Renamed"
    lines = messages(changed, stream="vip", schema=AUDIENCE_SCHEMA)
    run_ok("target-agillic", vip_config, lines, tmp_path)
    assert agillic_emulator.calls[ADD] == adds
    assert agillic_emulator.recipients[customer(3)["email"]]["FIRSTNAME"] == "Renamed"
    assert members(agillic_emulator) == emails(range(10))
