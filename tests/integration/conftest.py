"""Fixtures for running target-agillic against the emulator."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from tests.cli import CUSTOMER_MAPPING
from tests.emulators import AgillicEmulator


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
