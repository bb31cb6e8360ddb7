"""Fixtures for running the targets against their emulators."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator, GladlyEmulator
from tests.cli import CUSTOMER_MAPPING


@pytest.fixture
def agillic_config(
    agillic_emulator: AgillicEmulator, tmp_path: Path
) -> dict[str, t.Any]:
    """A valid config pointing at the emulator, with files under tmp_path."""
    return {
        "api_endpoint": agillic_emulator.url,
        "developer_key": agillic_emulator.developer_key,
        "developer_secret": agillic_emulator.developer_secret,
        "field_mapping": CUSTOMER_MAPPING,
        "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "report_path": str(tmp_path / "report.json"),
        "max_retries": 8,
    }


#: Gladly tests run the emulator and the target at this rate unless they test
#: pacing itself, so they take milliseconds per record instead of 100 ms.
GLADLY_TEST_RATE = 200


@pytest.fixture
def gladly_config(gladly_emulator: GladlyEmulator, tmp_path: Path) -> dict[str, t.Any]:
    """A valid target-gladly config for the emulator, with files under tmp_path."""
    gladly_emulator.configure(rate_limit=GLADLY_TEST_RATE)
    return {
        "domain": "example",
        "base_url": gladly_emulator.url,
        "username": gladly_emulator.username,
        "api_token": gladly_emulator.api_token,
        "field_mapping": {
            "email": "email",
            "first_name": "name",
            "phone": "phone",
            "tier": "tier",
            "lifetime_value": "lifetime_value",
            "birthdate": "birthdate",
        },
        "max_requests_per_second": GLADLY_TEST_RATE,
        "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "report_path": str(tmp_path / "report.json"),
    }
