"""``meltano run tap-postgres target-agillic`` from a real PostgreSQL database."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator, RequestRecord
from tests.e2e.harness import COMPLETE_STATE, Meltano, Warehouse, customer, order

pytestmark = [pytest.mark.postgres, pytest.mark.meltano, pytest.mark.slow]

STATE_ID = "prod:tap-postgres-to-target-agillic"
TOKEN = "POST /oauth2/token"
UPSERT = "POST /recipients/v2/:upsert"
OTM_UPSERT = "POST /recipients/v2/oneToManyTables/:upsert"
ADD = "POST /recipients/:addToStaticTargetGroup"
REMOVE = "POST /recipients/:removeFromStaticTargetGroup"


@pytest.fixture
def agillic(
    agillic_emulator: AgillicEmulator, meltano: Meltano, tmp_path: Path
) -> AgillicEmulator:
    """The emulator, with the VIP group, wired into the prod environment."""
    agillic_emulator.add_group("VIP")
    meltano.env.update(
        TARGET_AGILLIC_API_ENDPOINT=agillic_emulator.url,
        TARGET_AGILLIC_DEVELOPER_KEY=agillic_emulator.developer_key,
        TARGET_AGILLIC_DEVELOPER_SECRET=agillic_emulator.developer_secret,
        TARGET_AGILLIC_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        TARGET_AGILLIC_REJECTS_PATH=str(tmp_path / "rejects.jsonl"),
        TARGET_AGILLIC_REPORT_PATH=str(tmp_path / "report.json"),
    )
    return agillic_emulator


@pytest.fixture
def pipeline(
    meltano: Meltano, warehouse: Warehouse, agillic: AgillicEmulator
) -> Meltano:
    """Meltano reading the seeded warehouse."""
    meltano.env["TAP_POSTGRES_SQLALCHEMY_URL"] = warehouse.tap_url
    return meltano


def person_data(row: dict[str, t.Any]) -> dict[str, t.Any]:
    """What meltano.yml's field_mapping makes of a customers row."""
    return {
        "CUSTOMER_ID": row["customer_id"],
        "EMAIL": row["email"],
        "FIRSTNAME": row["first_name"],
        "LASTNAME": row["last_name"],
        "MOBILE": row["phone"],
        "COUNTRY": row["country"],
        "TIER": row["tier"],
        "LIFETIME_VALUE": float(row["lifetime_value"]),
        "BIRTHDATE": row["birthdate"].strftime("%d.%m.%Y"),
        "OPT_IN": row["opt_in"],
    }


def written(requests: list[RequestRecord], route: str) -> list[t.Any]:
    """Accepted bodies of one write route."""
    return [r.body for r in requests if r.route == route and r.status < 300]


def upserted(requests: list[RequestRecord]) -> dict[str, set[str]]:
    """Recipient IDs upserted, split by stream: only customers carry CUSTOMER_ID."""
    entries = [
        e["personData"] for b in written(requests, UPSERT) for e in b["recipients"]
    ]
    return {
        "customers": {e["EMAIL"] for e in entries if "CUSTOMER_ID" in e},
        "vip": {e["EMAIL"] for e in entries if "CUSTOMER_ID" not in e},
    }


def otm_rows(requests: list[RequestRecord]) -> set[str]:
    """Order IDs of every accepted one-to-many row."""
    return {
        row["ID"]
        for body in written(requests, OTM_UPSERT)
        for recipient in body["recipients"]
        for row in recipient["records"]
    }


def group_changes(requests: list[RequestRecord], route: str) -> set[str]:
    return {i for body in written(requests, route) for i in body["recipientIds"]}


def test_pipeline_sends_only_changes_and_mirrors_the_audience_view(
    pipeline: Meltano, warehouse: Warehouse, agillic: AgillicEmulator
) -> None:
    first = pipeline("run", "tap-postgres", "target-agillic")
    # Meltano's own output names each count (METRIC lines lose their tags)
    log = first.stderr
    assert "target-agillic stream customers: received=30 sent=30 delivered=30" in log
    assert "target-agillic stream orders: received=45 sent=45 delivered=45" in log
    assert "target-agillic stream vip: received=10" in log
    # every STATE the target wrote is a new one (the tap sent three)
    assert 1 <= log.count("Incremental state has been updated") <= 3

    assert agillic.recipients == {
        customer(i)["email"]: person_data(customer(i)) for i in range(30)
    }
    rows = agillic.otm_tables["ORDERS"]["rows"]
    assert sum(len(by_id) for by_id in rows.values()) == 45
    assert rows[customer(7)["email"]]["O037"] == {
        "ID": "O037",
        "AMOUNT": 56.25,
        "ORDER_DATE": "10.02.2024",
        "STATUS": "shipped",
    }
    vips = warehouse.column("SELECT email FROM vip_customers")
    assert len(vips) == 10
    assert agillic.target_groups["VIP"]["members"] == vips
    assert pipeline.state(STATE_ID) == COMPLETE_STATE

    renamed, renamed_vip, demoted, new = customer(1), customer(2), customer(5), 100
    warehouse.execute(
        "UPDATE customers SET first_name = 'Renamed' WHERE customer_id IN (%s, %s)",
        renamed["customer_id"],
        renamed_vip["customer_id"],
    )
    warehouse.execute(
        "UPDATE customers SET tier = 'silver' WHERE customer_id = %s",
        demoted["customer_id"],
    )
    warehouse.insert("customers", [customer(new, tier="gold")])
    warehouse.insert("orders", [order(100, new)])
    warehouse.execute("UPDATE orders SET status = 'returned' WHERE order_id = 'O007'")
    mark = len(agillic.requests)

    again = pipeline("run", "tap-postgres", "target-agillic").stderr
    # rows tap-postgres reads again unchanged are settled by their source
    # fingerprints, without being mapped
    assert "stream customers: received=31 unchanged=27 unchanged_at_source=27 " in again
    assert "stream orders: received=46 unchanged=44 unchanged_at_source=44 " in again

    second = agillic.requests[mark:]
    changed = {renamed["email"], renamed_vip["email"], demoted["email"]}
    assert upserted(second) == {
        "customers": changed | {customer(new)["email"]},
        "vip": {renamed_vip["email"], customer(new)["email"]},
    }
    assert otm_rows(second) == {"O007", "O100"}
    # a renamed member only has its Person Data upserted; only the new one joins
    assert group_changes(second, ADD) == {customer(new)["email"]}
    assert group_changes(second, REMOVE) == {demoted["email"]}
    assert {r.route for r in second if r.method == "POST"} <= {
        TOKEN,
        UPSERT,
        OTM_UPSERT,
        ADD,
        REMOVE,
    }
    assert agillic.recipients[renamed["email"]]["FIRSTNAME"] == "Renamed"
    assert agillic.recipients[demoted["email"]]["TIER"] == "silver"
    assert agillic.otm_tables["ORDERS"]["rows"][order(7, 7)["email"]]["O007"][
        "STATUS"
    ] == ("returned")
    assert agillic.target_groups["VIP"]["members"] == warehouse.column(
        "SELECT email FROM vip_customers"
    )
    assert pipeline.state(STATE_ID) == COMPLETE_STATE


def test_state_never_names_a_stream_that_was_not_delivered(
    pipeline: Meltano, agillic: AgillicEmulator
) -> None:
    agillic.inject(OTM_UPSERT, status=503)
    pipeline.env["TARGET_AGILLIC_MAX_RETRIES"] = "0"

    result = pipeline("run", "tap-postgres", "target-agillic", check=False)

    assert result.returncode != 0
    assert len(agillic.recipients) == 30
    assert agillic.otm_tables["ORDERS"]["rows"] == {}
    assert set(pipeline.state(STATE_ID).get("bookmarks", {})) <= {"public-customers"}
