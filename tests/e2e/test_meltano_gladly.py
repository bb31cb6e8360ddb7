"""``meltano run tap-postgres target-gladly`` from a real PostgreSQL database."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from delivery_emulators import GladlyEmulator
from tests.e2e.harness import COMPLETE_STATE, Meltano, Warehouse, customer

pytestmark = [pytest.mark.postgres, pytest.mark.meltano, pytest.mark.slow]

STATE_ID = "prod:tap-postgres-to-target-gladly"
FIND = "GET /api/v1/customer-profiles"
CREATE = "POST /api/v1/customer-profiles"
PATCH = "PATCH /api/v1/customer-profiles/{id}"
READ = "GET /api/v1/customer-profiles/{id}"


@pytest.fixture
def pipeline(
    meltano: Meltano,
    warehouse: Warehouse,
    gladly_emulator: GladlyEmulator,
    tmp_path: Path,
) -> Meltano:
    """Meltano reading the warehouse into the emulator (at Gladly's 10/s)."""
    meltano.env.update(
        TAP_POSTGRES_SQLALCHEMY_URL=warehouse.tap_url,
        TARGET_GLADLY_DOMAIN="example",
        TARGET_GLADLY_BASE_URL=gladly_emulator.url,
        TARGET_GLADLY_USERNAME=gladly_emulator.username,
        TARGET_GLADLY_API_TOKEN=gladly_emulator.api_token,
        TARGET_GLADLY_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        TARGET_GLADLY_REJECTS_PATH=str(tmp_path / "rejects.jsonl"),
        TARGET_GLADLY_REPORT_PATH=str(tmp_path / "report.json"),
    )
    return meltano


def profile_fields(row: dict[str, t.Any]) -> dict[str, t.Any]:
    """What meltano.yml's field_mapping makes of a customers row."""
    return {
        "name": f"{row['first_name']} {row['last_name']}",
        "emails": [{"original": row["email"]}],
        "phones": [{"original": row["phone"]}],
        "externalCustomerId": row["customer_id"],
        "customAttributes": {
            "tier": row["tier"],
            "lifetime_value": f"{row['lifetime_value'].normalize():f}",
            "country": row["country"],
        },
    }


def by_email(emulator: GladlyEmulator) -> dict[str, dict[str, t.Any]]:
    """Profiles keyed by their (single) email, without server-set fields."""
    return {
        p["emails"][0]["original"]: {
            k: v for k, v in p.items() if k not in ("id", "createdAt", "updatedAt")
        }
        for p in emulator.profiles.values()
    }


def test_pipeline_creates_profiles_then_sends_only_the_changes(
    pipeline: Meltano, warehouse: Warehouse, gladly_emulator: GladlyEmulator
) -> None:
    pipeline("run", "tap-postgres", "target-gladly")

    assert by_email(gladly_emulator) == {
        customer(i)["email"]: profile_fields(customer(i)) for i in range(30)
    }
    # orders and vip were dropped by target-gladly's stream maps, but the tap
    # read them, and their bookmarks pass through like the others
    assert pipeline.state(STATE_ID) == COMPLETE_STATE

    renamed, regraded, new = customer(1), customer(2), customer(100)
    warehouse.execute(
        "UPDATE customers SET last_name = 'Renamed' WHERE customer_id = %s",
        renamed["customer_id"],
    )
    warehouse.execute(
        "UPDATE customers SET tier = 'platinum' WHERE customer_id = %s",
        regraded["customer_id"],
    )
    warehouse.insert("customers", [new])
    ids = {p["emails"][0]["original"]: i for i, p in gladly_emulator.profiles.items()}
    mark = len(gladly_emulator.requests)

    pipeline("run", "tap-postgres", "target-gladly")

    second = gladly_emulator.requests[mark:]
    assert [r.body["emails"][0]["original"] for r in second if r.route == CREATE] == [
        new["email"]
    ]
    changed = [
        f"/api/v1/customer-profiles/{ids[c['email']]}" for c in (renamed, regraded)
    ]
    assert sorted(r.path for r in second if r.route == PATCH) == sorted(changed)
    assert {r.path for r in second if r.route == READ} <= set(changed)
    looked_up = {e for r in second if r.route == FIND for e in r.query.get("email", [])}
    assert looked_up <= {renamed["email"], regraded["email"], new["email"]}
    profiles = by_email(gladly_emulator)
    assert len(profiles) == 31
    assert profiles[renamed["email"]]["name"] == "First1 Renamed"
    assert profiles[regraded["email"]]["customAttributes"]["tier"] == "platinum"
    assert profiles[new["email"]] == profile_fields(new)
    assert pipeline.state(STATE_ID) == COMPLETE_STATE
